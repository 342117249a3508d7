"""``StarGrid``: a brute-force model grid with interpolated SEDs and predictions.

Thin host layer over two pure kernels: ``kernels.interpolation`` (multilinear
interpolation on the incomplete model lattice, nearest-model fallback) and
``kernels.seds`` (``m = m0 + A_V (a + b R_V)``).

Label plumbing (brutus gotcha 1)
--------------------------------
brutus accepts three calling forms and gives each a different meaning; here
all three are resolved by ONE rule into the same attributes:

* ``labels`` (attribute) always holds EVERY per-model column: grid inputs and
  predictions together (v0.8 semantics, which is what the Galactic / age
  priors downstream need: ``feh``, ``loga``, ``agewt`` are all found there);
* ``label_names`` are the grid axes, ``param_names`` everything else;
* the grid axes are
    (a) ``StarGrid(models, labels)``: the fields of ``labels`` among
        ``mini, eep, feh, afe, smf``;
    (b) ``StarGrid(models, labels, label_mask)`` with the structured bool
        ``(1,)`` mask returned by ``load_models``: the fields marked True;
    (c) ``StarGrid(models, labels, params)`` with a structured float array of
        predictions (one row per model): as in (a), and ``params``' fields
        become predictions.
* ``labels_mask`` is the structured bool ``(1,)`` array (True = grid axis)
  over all fields, like brutus's ``load_models`` mask.

Thus a grid from ``load_models`` gives the same StarGrid whichever way it is
passed, and the result reproduces v0.8's prior semantics (grid-spacing prior
on the grid axes only, predictions available for the priors).

Deviations from brutus 1.2.0 ``StarGrid``
-----------------------------------------
* When the bracketing corners are missing (or carry < 50 % of the weight) and
  with ``use_multilinear=False``, brutus returns an inverse-distance-weighted
  average of the 8 nearest models (KD-tree); we return the single nearest
  model in the same normalised units (an IDW blend of models far apart along
  a truncated track is not a stellar model).  On-node and bracketed queries
  agree with brutus.
* Queries may be arrays (broadcast together, also with ``av``, ``rv``,
  ``dist``); outputs then carry the broadcast shape in front.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import interpolation as _interp
from ..kernels.seds import get_seds as _get_seds

__all__ = ["StarGrid"]

GRID_INPUTS = ("mini", "eep", "feh", "afe", "smf")


@functools.partial(jax.jit, static_argnames=("method",))
def _rows_weights(axes, lattice, points, method):
    if method == "multilinear":
        return _interp.corner_weights(axes, lattice, points)
    near = _interp.nearest_rows(axes, lattice, points)
    ok = near >= 0
    return jnp.where(ok, near, 0)[:, None], jnp.where(ok, 1.0, 0.0)[:, None].astype(points.dtype)


@functools.partial(jax.jit, static_argnames=("return_flux",))
def _seds_from_weights(models, rows, weights, av, rv, dmod, return_flux):
    coeffs = _interp.apply_weights(models, rows, weights)  # (Nq, Nfilt, 3)
    mags = _get_seds(coeffs, av, rv) + dmod[:, None]
    if return_flux:
        return 10.0 ** (-0.4 * mags)
    return mags


_apply_weights = jax.jit(_interp.apply_weights)


def _pad(x):
    """Pad the leading (query) axis to a power of two by repeating the last row.

    Keeps the number of distinct shapes (hence XLA compiles) logarithmic in
    the number of queries; callers slice the first ``nq`` results.
    """
    n = x.shape[0]
    size = 1 << max(n - 1, 0).bit_length()
    if size == n or n == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


def _is_mask(arr):
    names = getattr(getattr(arr, "dtype", None), "names", None)
    return bool(names) and all(arr.dtype[n] == np.bool_ for n in names) and arr.size == 1


class StarGrid:
    """Pre-computed model grid: interpolated SEDs and stellar predictions.

    Parameters
    ----------
    models : array (Nmodel, Nfilt, 3)
        ``(m0, a, b)`` per band at 1 kpc (e.g. from ``load_models``).
    labels : structured array (Nmodel,)
        Per-model labels (grid inputs, and possibly predictions).
    params : structured array, optional
        Either the structured bool ``(1,)`` mask from ``load_models`` (marks
        the grid axes), or a structured float array ``(Nmodel,)`` of
        predictions.  See the module docstring for the one rule that resolves
        the three forms.
    filters : list of str, optional
        Band names; default ``models.filters`` (set by ``load_models``), else
        ``filt0, filt1, ...``.
    verbose : bool
        Print a one-line summary.

    Attributes
    ----------
    models : jax array (Nmodel, Nfilt, 3)
    labels : structured numpy array (Nmodel,) with all fields
    label_names : list of grid-axis names; ``param_names``: predictions
    labels_mask : structured bool (1,), True for grid axes
    params : structured numpy array of the predictions (or None)
    filters : tuple of str; ``nmodels``, ``nfilters``
    axes : dict name -> sorted unique nodes (alias ``grid_axes``)
    lattice : int32 numpy array over the axes; model row or -1
    """

    def __init__(self, models, labels, params=None, filters=None, verbose=True):
        models_np = np.asarray(models)
        if models_np.ndim == 2 and models_np.shape[1] % 3 == 0:
            models_np = models_np.reshape(models_np.shape[0], -1, 3)
        if models_np.ndim != 3 or models_np.shape[2] != 3:
            raise ValueError(f"models must have shape (Nmodel, Nfilt, 3), got {np.shape(models)}")
        nmodels, nfilters = models_np.shape[:2]

        labels = np.asarray(labels)
        if labels.dtype.names is None:
            raise ValueError(f"labels must be a structured array with named fields, got dtype {labels.dtype}")
        if labels.shape != (nmodels,):
            raise ValueError(f"labels must have shape ({nmodels},) (one row per model), got {labels.shape}")

        columns = {n: np.asarray(labels[n], dtype=np.float64) for n in labels.dtype.names}
        if params is None:
            axes_names = [n for n in labels.dtype.names if n in GRID_INPUTS]
        elif _is_mask(np.asarray(params)):
            mask = np.asarray(params).reshape(-1)
            unknown = [n for n in mask.dtype.names if n not in columns]
            if unknown:
                raise ValueError(f"params (label mask) names fields {unknown} that labels lacks")
            axes_names = [n for n in labels.dtype.names if n in mask.dtype.names and bool(mask[n][0])]
        else:
            params = np.asarray(params)
            if params.dtype.names is None or params.shape != (nmodels,):
                raise ValueError(
                    "params must be the structured bool (1,) label_mask from load_models or a "
                    f"structured array of predictions with shape ({nmodels},); got dtype "
                    f"{params.dtype}, shape {params.shape}"
                )
            clash = [n for n in params.dtype.names if n in columns]
            if clash:
                raise ValueError(f"params fields {clash} also appear in labels")
            axes_names = [n for n in labels.dtype.names if n in GRID_INPUTS]
            columns.update({n: np.asarray(params[n], dtype=np.float64) for n in params.dtype.names})

        all_names = list(columns)
        self.label_names = list(axes_names)
        self.param_names = [n for n in all_names if n not in axes_names]
        self.labels = np.empty(nmodels, dtype=[(n, np.float64) for n in all_names])
        for n, v in columns.items():
            self.labels[n] = v
        self.labels_mask = np.zeros(1, dtype=[(n, np.bool_) for n in all_names])
        for n in self.label_names:
            self.labels_mask[n] = True
        self.params = self.labels[self.param_names] if self.param_names else None

        if filters is None:
            filters = getattr(models, "filters", None)
        if filters is None:
            filters = [f"filt{i}" for i in range(nfilters)]
        filters = (filters,) if isinstance(filters, str) else tuple(str(f) for f in filters)
        if len(filters) != nfilters:
            raise ValueError(f"filters has {len(filters)} names but models has {nfilters} bands")
        self.filters = filters
        self.nmodels, self.nfilters = nmodels, nfilters

        self.models = jnp.asarray(models_np)
        coords = np.stack([columns[n] for n in self.label_names], axis=-1) if self.label_names else np.zeros((nmodels, 0))
        axes, lattice = _interp.build_lattice(coords)
        self.axes = dict(zip(self.label_names, axes))
        self.grid_axes = self.axes
        self.grid_shape = lattice.shape
        self.lattice = lattice
        self._axes_j = tuple(jnp.asarray(a) for a in axes)
        self._lattice_j = jnp.asarray(lattice)
        self._pred_values = (
            jnp.asarray(np.stack([columns[n] for n in self.param_names], axis=-1))
            if self.param_names
            else None
        )

        if verbose:
            print(
                f"StarGrid: {nmodels:,} models, {nfilters} filters, grid axes "
                f"{dict((n, len(a)) for n, a in self.axes.items())} "
                f"({int((lattice >= 0).sum()):,} of {lattice.size:,} lattice points filled), "
                f"predictions {self.param_names}"
            )

    # ------------------------------------------------------------------ queries

    def _query(self, values, extra=()):
        """Broadcast query values to points (Nq, k); return (points, shape, given)."""
        given = {n: values[n] for n in self.label_names if values.get(n) is not None}
        missing = [n for n in self.label_names if n not in given and len(self.axes[n]) > 1]
        if missing:
            ranges = {n: (float(self.axes[n][0]), float(self.axes[n][-1])) for n in missing}
            raise ValueError(
                f"grid axis/axes {missing} not specified; they span {ranges} and have no "
                "default. Pass a value for each."
            )
        cols = [np.asarray(given[n], dtype=np.float64) if n in given else self.axes[n][0] for n in self.label_names]
        shape = np.broadcast_shapes(*(np.shape(c) for c in cols), *(np.shape(e) for e in extra))
        nq = int(np.prod(shape))
        points = np.stack([np.broadcast_to(c, shape).reshape(-1) for c in cols], axis=-1) if cols else np.zeros((nq, 0))
        return jnp.asarray(_pad(points)), shape, given

    def _rows_weights(self, points, use_multilinear):
        method = "multilinear" if use_multilinear else "nearest"
        return _rows_weights(self._axes_j, self._lattice_j, points, method)

    def _predictions(self, rows, weights, shape, given):
        nq = int(np.prod(shape))
        out = {}
        if self.param_names:
            for n in self.label_names:
                if n in given:  # echoed as passed (broadcast for array queries)
                    out[n] = given[n] if shape == () else np.broadcast_to(np.asarray(given[n], dtype=np.float64), shape)
            vals = np.asarray(_apply_weights(self._pred_values, rows, weights))[:nq]
            names = self.param_names
        else:
            coords = jnp.asarray(np.stack([self.labels[n] for n in self.label_names], axis=-1))
            vals = np.asarray(_apply_weights(coords, rows, weights))[:nq]
            names = self.label_names
        for i, n in enumerate(names):
            v = vals[:, i].reshape(shape)
            out[n] = v[()] if v.ndim == 0 else v
        return out

    def get_predictions(self, mini=None, eep=None, feh=None, afe=None, smf=None, use_multilinear=True, **kwargs):
        """Interpolated predictions at the given grid coordinates.

        Every multi-valued grid axis must be given (ValueError otherwise);
        values may be scalars or arrays (broadcast together).  Values for
        names that are not grid axes are ignored (as brutus does).

        Returns
        -------
        dict
            The given grid inputs, then every prediction (``loga``, ``logt``,
            ...) interpolated multilinearly (nearest model when
            ``use_multilinear=False``).  Without predictions, the grid labels
            themselves are interpolated.
        """
        values = dict(mini=mini, eep=eep, feh=feh, afe=afe, smf=smf, **kwargs)
        points, shape, given = self._query(values)
        rows, weights = self._rows_weights(points, use_multilinear)
        return self._predictions(rows, weights, shape, given)

    def get_seds(
        self,
        mini=None,
        eep=None,
        feh=None,
        afe=None,
        av=0.0,
        rv=3.3,
        smf=None,
        dist=1000.0,
        return_dict=True,
        return_flux=False,
        return_predictions=True,
        use_multilinear=True,
        **kwargs,
    ):
        """Reddened SED at the given grid coordinates, distance [pc], A_V and R_V.

        The coefficients ``(m0, a, b)`` are interpolated (like
        ``get_predictions``), reddened with ``kernels.seds.get_seds`` and
        shifted by the distance modulus ``5 log10(dist / 1000)``; fluxes are
        ``10**(-0.4 m)`` in maggies.

        Returns (brutus's convention)
        -----------------------------
        sed : numpy array (..., Nfilt)
            Magnitudes (or fluxes), bands in ``self.filters`` order.
        params : dict, array or None
            Predictions as from ``get_predictions`` (a dict when
            ``return_dict``, else an array of its values); None when
            ``return_predictions`` is False.
        params2 : {} (or empty array when not ``return_dict``)
            Secondary-star placeholder (brutus's StarGrid has no binaries).
        """
        values = dict(mini=mini, eep=eep, feh=feh, afe=afe, smf=smf, **kwargs)
        dist = 1000.0 if dist is None else dist
        points, shape, given = self._query(values, extra=(av, rv, dist))
        rows, weights = self._rows_weights(points, use_multilinear)
        nq = int(np.prod(shape))

        def per_query(v):
            return _pad(np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(nq))

        dmod = 5.0 * np.log10(per_query(dist) / 1000.0)
        av_q, rv_q, dmod = (jnp.asarray(v) for v in (per_query(av), per_query(rv), dmod))
        seds = _seds_from_weights(self.models, rows, weights, av_q, rv_q, dmod, bool(return_flux))
        sed = np.asarray(seds)[:nq].reshape(shape + (self.nfilters,))

        params = self._predictions(rows, weights, shape, given) if return_predictions else None
        if return_dict:
            return sed, params, {}
        if isinstance(params, dict):
            # (..., Nparams): brutus's (Nparams,) for a scalar query
            params = np.stack([np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for v in params.values()], axis=-1)
        return sed, params, np.array([])

    def get_sed_grid(self, indices=None, av=None, rv=None, return_flux=False):
        """SEDs, reddening vectors and their R_V derivatives for grid rows.

        Like brutus's ``BruteForce.get_sed_grid``: ``av``/``rv`` default to
        0 / 3.3 and may be scalars or one value per selected row.

        Returns
        -------
        seds, rvecs, drvecs : jax arrays (Nsel, Nfilt)
            Magnitudes (or fluxes) and the derivatives described in
            ``kernels.seds``.
        """
        coeffs = self.models if indices is None else self.models[jnp.asarray(indices)]
        return _get_seds(coeffs, av, rv, return_flux=return_flux, return_rvec=True, return_drvec=True)

    def __len__(self):
        return self.nmodels

    def __repr__(self):
        return (
            f"StarGrid(nmodels={self.nmodels:,}, nfilters={self.nfilters}, "
            f"axes={self.label_names}, predictions={self.param_names})"
        )
