"""Isochrones: brutus's ``Isochrone`` on MIST (lachesis-grids) or brutus HDF5 files.

The host class reads a file once, fills EEP gaps as brutus does, and keeps an
:class:`~brutus_jax.kernels.isochrone_interp.IsochroneTable` (numpy on the
host, device copies cached per dtype).  ``get_predictions`` returns numpy
arrays shaped like brutus's (NaN where brutus's would be NaN); the pure kernel
``predict`` (and ``jax_table``) are what jitted / differentiated code uses.

Interpolation in ([Fe/H], log age) is cubic Hermite by default (``interp=
'cubic'``: C1, smooth likelihoods for HMC; exact at nodes) or brutus's
multilinear (``interp='linear'``); linear in EEP either way.  See
``brutus_jax.kernels.isochrone_interp``.
"""

from __future__ import annotations

import functools
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.isochrone_interp import (DEFAULT_CORR_PARAMS, IsochroneTable, ghost_fill, isochrone_on_nodes,
                                        isochrone_predictions, terminal_eep)

__all__ = ["Isochrone", "DEFAULT_PREDICTIONS", "read_brutus_isochrones", "read_mist_lachesis"]

#: brutus's default prediction columns
DEFAULT_PREDICTIONS = ("mini", "mass", "logl", "logt", "logr", "logg", "feh_surf", "afe_surf")

#: lachesis column for each of our prediction names (feh_surf / afe_surf are built)
_LACHESIS = {"mini": "initial_mass", "mass": "star_mass", "logl": "log_L", "logt": "log_Teff",
             "logr": "log_R", "logg": "log_g", "mbol": "Mbol", "loga": "age"}


def _fill_eep_gaps_on_axis(values, eep):
    """Like :func:`_fill_eep_gaps` but interpolating in EEP value (brutus uses eep_u)."""
    nf, na, nl, ne, npred = values.shape
    flat = values.reshape(-1, ne, npred)
    eep = np.asarray(eep, float)
    for k in range(flat.shape[0]):
        sel = np.all(np.isfinite(flat[k]), axis=1)
        if sel.sum() < 2 or sel.all():
            continue
        first, last = np.argmax(sel), ne - 1 - np.argmax(sel[::-1])
        if sel[first:last + 1].all() and not np.isfinite(flat[k]).any(axis=1)[~sel].any():
            continue
        for j in range(npred):
            flat[k, :, j] = np.interp(eep, eep[sel], flat[k, sel, j], left=np.nan, right=np.nan)
    return values


def read_brutus_isochrones(path):
    """brutus's isochrone HDF5 (``/feh, /afe, /loga, /eep``, ``/predictions`` with
    attribute ``labels``).  Returns (axes dict, values (nf, na, nl, ne, np), labels)."""
    try:
        with h5py.File(path, "r") as f:
            axes = {k: np.asarray(f[k][:], float) for k in ("feh", "afe", "loga", "eep")}
            values = np.asarray(f["predictions"][:], float)
            labels = [s.decode() if isinstance(s, bytes) else str(s) for s in f["predictions"].attrs["labels"]]
    except (OSError, KeyError) as e:
        raise ValueError(f"mistfile: cannot read a brutus isochrone file from {path}: {e}") from e
    for k, a in axes.items():
        if a.ndim != 1 or np.any(np.diff(a) <= 0):
            raise ValueError(f"mistfile: axis /{k} of {path} must be 1-D and strictly increasing")
    shape = tuple(axes[k].size for k in ("feh", "afe", "loga", "eep")) + (len(labels),)
    if values.shape != shape:
        raise ValueError(f"mistfile: /predictions of {path} has shape {values.shape}, expected {shape}")
    return axes, values, labels


@functools.lru_cache(maxsize=2)
def read_mist_lachesis(path, max_eep=None):
    """MIST isochrones from lachesis-grids as brutus-style (axes, values, labels).

    Columns: ``mini, mass, logl, logt, logr, logg, feh_surf, afe_surf`` (the
    file has no surface abundances: feh_surf = initial [Fe/H], afe_surf = 0).
    Cached per process (read-only arrays).
    """
    from ..data.mist import read_lachesis_isochrones

    names = ("mini", "mass", "logl", "logt", "logr", "logg")
    iso = read_lachesis_isochrones(path, columns=tuple(_LACHESIS[n] for n in names), max_eep=max_eep)
    nf, nl, ne = iso["data"]["initial_mass"].shape
    values = np.empty((nf, 1, nl, ne, len(names) + 2))
    for j, n in enumerate(names):
        values[:, 0, :, :, j] = iso["data"][_LACHESIS[n]]
    finite = np.all(np.isfinite(values[..., :len(names)]), axis=-1)
    values[..., 6] = np.where(finite, iso["feh"][:, None, None, None], np.nan)
    values[..., 7] = np.where(finite, 0.0, np.nan)
    axes = {"feh": iso["feh"], "afe": np.zeros(1), "loga": iso["loga"], "eep": iso["eep"]}
    values = _fill_eep_gaps_on_axis(values, axes["eep"])
    values.setflags(write=False)
    return axes, values, list(names) + ["feh_surf", "afe_surf"]


def _dense_table(axes, values):
    valid = np.all(np.isfinite(values), axis=-1)
    filled = np.where(valid[..., None], values, 0.0)
    ghosted, usable = ghost_fill(axes["feh"], axes["loga"], filled, valid)
    return IsochroneTable(axes["feh"], axes["afe"], axes["loga"], axes["eep"], ghosted, valid, usable)


@functools.lru_cache(maxsize=2)
def _lachesis_table(path, max_eep):
    """Host table and a shared per-dtype device cache for the default MIST file."""
    axes, values, _ = read_mist_lachesis(path, max_eep)
    return _dense_table(axes, values), {}


class Isochrone:
    """Isochrone interpolator with brutus's API (``brutus.core.Isochrone``).

    Parameters
    ----------
    mistfile : str or Path, optional
        brutus-format isochrone HDF5 (e.g. ``MIST_1.2_iso_vvcrit0.0.h5``).
        Default: MIST v1.2 (v/vcrit = 0.4) isochrones of lachesis-grids
        (``source_file('mist_isochrones')``), EEP 0-1721, [Fe/H] -4..+0.5,
        log age 5-10.3.
    predictions : sequence of str, optional
        columns to return (default ``DEFAULT_PREDICTIONS``).
    verbose : bool
        progress messages to stderr.
    interp : {'cubic', 'linear'}
        interpolation in ([Fe/H], log age): cubic Hermite (C1, default) or
        brutus's multilinear.
    max_eep : int, optional
        (lachesis default only) drop EEPs above this to save memory.
    """

    def __init__(self, mistfile=None, predictions=None, verbose=True, interp="cubic", max_eep=None):
        if interp not in ("cubic", "linear"):
            raise ValueError(f"interp: must be 'cubic' or 'linear', got {interp!r}")
        self.interp = interp
        if verbose:
            sys.stderr.write("Constructing MIST isochrones...\n")
        if mistfile is None:
            from ..data.sources import source_file

            self.mistfile = str(source_file("mist_isochrones", verbose=verbose))
            axes, values, labels = read_mist_lachesis(self.mistfile, max_eep)
        else:
            self.mistfile = str(mistfile)
            axes, values, labels = read_brutus_isochrones(self.mistfile)
            values = _fill_eep_gaps_on_axis(values, axes["eep"])
        self.predictions = list(DEFAULT_PREDICTIONS if predictions is None else predictions)
        self.pred_labels = list(labels)
        missing = [p for p in self.predictions if p not in self.pred_labels]
        if missing:
            raise ValueError(f"predictions: {missing} not available in {self.mistfile}; "
                             f"available: {self.pred_labels}")
        self._pred_idxs = tuple(self.pred_labels.index(p) for p in self.predictions)
        need = ("mini", "logt", "logl", "logg")
        self._corr_cols = (tuple(self.pred_labels.index(n) for n in need)
                           if all(n in self.pred_labels for n in need) else None)
        self.feh_u, self.afe_u, self.loga_u, self.eep_u = (axes[k] for k in ("feh", "afe", "loga", "eep"))
        if mistfile is None:
            self._table_np, self._tables = _lachesis_table(self.mistfile, max_eep)
        else:
            self._table_np, self._tables = _dense_table(axes, values), {}
        if verbose:
            sys.stderr.write("done!\n")

    # ------------------------------------------------------------------ tables
    def jax_table(self, dtype=None):
        """The table on the default device in ``dtype`` (float64 under x64, else
        float32 by default); cached per dtype."""
        if dtype is None:
            dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        dtype = jnp.dtype(dtype)
        if dtype not in self._tables:
            t = self._table_np
            with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a trace
                self._tables[dtype] = IsochroneTable(*(jnp.asarray(a, dtype) for a in t[:5]),
                                                     jnp.asarray(t.valid), jnp.asarray(t.usable))
        return self._tables[dtype]

    def column(self, name):
        """Index of prediction ``name`` in the table's columns (file label order)."""
        if name not in self.pred_labels:
            raise ValueError(f"name: {name!r} not a prediction of this isochrone ({self.pred_labels})")
        return self.pred_labels.index(name)

    @property
    def corr_cols(self):
        """(mini, logt, logl, logg) column indices, or None if any is missing."""
        return self._corr_cols

    # ------------------------------------------------------------------ kernels
    def predict(self, table, feh, afe, loga, eep, apply_corr=True, corr_params=None):
        """Pure kernel: predictions in *file label order* at ``eep`` (n,).

        Traceable and differentiable in feh, afe, loga (and eep).  Returns
        ``(preds (n, n_label), ok (n,))`` with finite fill where not ok.
        """
        cp = DEFAULT_CORR_PARAMS if corr_params is None else tuple(corr_params)
        return isochrone_predictions(table, feh, afe, loga, eep, self._corr_cols, self.interp,
                                     apply_corr, cp)

    def on_nodes(self, table, feh, afe, loga):
        """Pure kernel: the uncorrected isochrone on every EEP node (vals, ok)."""
        return isochrone_on_nodes(table, feh, afe, loga, self.interp)

    def terminal_eep(self, table, feh, afe, loga):
        """Pure kernel: continuous terminal EEP at (feh, afe, loga), never beyond the last
        EEP with valid predictions (`brutus_jax.kernels.isochrone_interp.terminal_eep`)."""
        return terminal_eep(table, feh, afe, loga, self.interp)

    # ------------------------------------------------------------------ brutus API
    def get_predictions(self, feh=0.0, afe=0.0, loga=8.5, eep=None, apply_corr=True, corr_params=None):
        """Predictions along the isochrone (brutus's ``Isochrone.get_predictions``).

        Parameters
        ----------
        feh : float, [Fe/H] [dex]; afe : float, [alpha/Fe] [dex];
        loga : float, log10(age / yr); eep : array-like, optional (default: all EEP nodes);
        apply_corr : bool, brutus's empirical low-mass corrections;
        corr_params : (dtdm, drdm, msto_smooth, feh_scale), default (0.09, -0.09, 30, 0.5).

        Returns
        -------
        numpy array (n_eep, n_pred) in the order of ``self.predictions``; NaN
        beyond the end of the isochrone or outside the table.
        """
        eep = self.eep_u if eep is None else np.atleast_1d(np.asarray(eep, float))
        if corr_params is not None and len(tuple(corr_params)) != 4:
            raise ValueError("corr_params: expected (dtdm, drdm, msto_smooth, feh_scale)")
        table = self.jax_table()
        preds, ok = _predict_jit(self, table, float(feh), float(afe), float(loga), jnp.asarray(eep),
                                 bool(apply_corr), None if corr_params is None else tuple(map(float, corr_params)))
        out = np.where(np.asarray(ok)[:, None], np.asarray(preds, float), np.nan)
        return out[:, list(self._pred_idxs)]


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _predict_jit(iso, table, feh, afe, loga, eep, apply_corr, corr_params):
    return iso.predict(table, feh, afe, loga, eep, apply_corr, corr_params)
