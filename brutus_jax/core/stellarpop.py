"""Stellar populations with binaries (brutus's ``StellarPop``) in JAX.

Magnitudes come from the MIST/C3K bolometric-correction table (default; the
same physics as ``brutus_jax.data.build_grid``'s models) or from brutus's
neural-network file (``nnfile``, ``nn_c3k.h5`` format).  The heavy tables are
built once per process (and the G23 relative R_V slopes cached on disk).

``get_seds`` / ``get_seds_smf_grid`` return numpy outputs shaped like brutus
1.2.0's; ``get_seds_smf_grid_jax`` returns a :class:`PopSEDGrid` and is
traceable and differentiable in feh, loga, av, rv, dist.
"""

from __future__ import annotations

import functools
import hashlib
import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.bc_sed import BCSEDTable, NNWeights, bc_table_mags, nn_mags
from ..kernels.isochrone_interp import DEFAULT_CORR_PARAMS
from ..kernels.popgrid import PopSEDGrid, population_seds

__all__ = ["StellarPop", "bc_sed_table"]

_NEEDED = ("mini", "logt", "logl", "logg", "feh_surf", "afe_surf")
_RV_CACHE_VERSION = 1


def _default_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


@functools.lru_cache(maxsize=4)
def bc_sed_table(bc_path, filters):
    """Numpy :class:`BCSEDTable` for ``filters`` (tuple) from ``bc_tables.h5``.

    ``BC0`` is the table at A_V = 0; ``k31`` is the grid builder's weighted A_V slope on ``AV_LATTICE`` at each
    (feh, log Teff, logg) node; ``rel`` the band-averaged G23 relative R_V
    slope of ``data.build._relative_slope_interpolator`` (cached on disk under
    ``<data_dir>/cache``); bands without a filter curve get ``b_abs`` from
    ``reddening.rv_coefficients(k31)``.
    """
    from ..data.bolometric import BCTable
    from ..data.reddening import AV_LATTICE, SPECLITE_NAMES, av_slope, rv_coefficients

    bct = BCTable(bc_path, filters)
    nb = len(filters)
    fn, an, tn, gn = bct.feh_nodes, bct.av_nodes, bct.logt_nodes, bct.logg_nodes
    if an[0] != 0.0:
        raise ValueError(f"bc_path: the A_V axis of {bc_path} must start at 0 (got {an[0]})")
    bc = np.empty((fn.size, an.size, tn.size, gn.size, nb))
    for bands, rgi in bct._interp.values():
        vals = np.asarray(rgi.values)
        for j, b in enumerate(bands):
            bc[..., filters.index(b)] = vals[..., j]
    # BC on the A_V lattice (linear in A_V between table nodes, as the grid builder's interpolation)
    lat = np.empty((AV_LATTICE.size,) + bc.shape[:1] + bc.shape[2:])
    for k, a in enumerate(AV_LATTICE):
        i = int(np.clip(np.searchsorted(an, a, side="right") - 1, 0, an.size - 2))
        t = (a - an[i]) / (an[i + 1] - an[i])
        lat[k] = (1 - t) * bc[:, i] + t * bc[:, i + 1]
    k31 = av_slope(np.moveaxis(-lat, 0, -1))
    rel = np.zeros_like(k31)
    babs = np.zeros_like(k31)
    curve = tuple(f for f in filters if f in SPECLITE_NAMES)
    if curve:
        rel_c = _relative_slopes(bc_path, curve, (fn, tn, gn))
        for j, f in enumerate(curve):
            rel[..., filters.index(f)] = rel_c[..., j]
    for i, f in enumerate(filters):
        if f not in SPECLITE_NAMES:
            _, babs[..., i], _ = rv_coefficients(k31[..., i])
    return BCSEDTable(fn, tn, gn, np.concatenate([bc[:, 0], k31, rel, babs], axis=-1))


def _relative_slopes(bc_path, bands, axes):
    """G23 relative R_V slopes on the BC nodes (disk-cached; ~10 s to compute)."""
    from ..data.build import _relative_slope_interpolator
    from ..data.sources import SOURCES, data_dir

    key = hashlib.sha256(json.dumps({"v": _RV_CACHE_VERSION, "bands": list(bands),
                                     "bc": SOURCES["mist_bc_tables"].sha256}).encode()).hexdigest()[:16]
    path = data_dir() / "cache" / f"rv_rel_slopes_{key}.npy"
    if path.exists():
        try:
            arr = np.load(path)
            if arr.shape == tuple(a.size for a in axes) + (len(bands),):
                return arr
        except (OSError, ValueError):
            pass
    rgi, _ = _relative_slope_interpolator(str(bc_path), tuple(bands))
    for a, g in zip(axes, rgi.grid):
        if a.shape != g.shape or not np.allclose(a, g):
            raise RuntimeError("relative R_V slopes: node axes differ from the BC table's")
    arr = np.asarray(rgi.values, float)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npy")
        np.save(tmp, arr)
        tmp.replace(path)
    except OSError:
        pass
    return arr


def read_nn_file(nnfile, filters=None):
    """brutus ``nn_c3k.h5``: per-filter groups ``w1, b1, w2, b2, w3, b3, xmin, xmax``.
    Returns (filters tuple, numpy NNWeights)."""
    try:
        with h5py.File(nnfile, "r") as f:
            avail = tuple(k for k in f.keys() if isinstance(f[k], h5py.Group))
            if filters is None:
                filters = avail
            filters = tuple([filters] if isinstance(filters, str) else filters)
            unknown = [b for b in filters if b not in avail]
            if unknown:
                raise ValueError(f"filters: unknown filter name(s) {unknown}; available in {nnfile}: "
                                 f"{', '.join(avail)}")
            get = {k: [np.asarray(f[b][k][:], float) for b in filters]
                   for k in ("w1", "b1", "w2", "b2", "w3", "b3", "xmin", "xmax")}
    except OSError as e:
        raise ValueError(f"nnfile: cannot read {nnfile}: {e}") from e
    xmin, xmax = np.stack(get["xmin"]), np.stack(get["xmax"])
    if not (np.all(xmin == xmin[0]) and np.all(xmax == xmax[0])):
        raise ValueError(f"nnfile: filters of {nnfile} have different xmin/xmax ranges")
    nb = len(filters)
    w = NNWeights(np.stack(get["w1"]), np.stack(get["b1"]).reshape(nb, -1), np.stack(get["w2"]),
                  np.stack(get["b2"]).reshape(nb, -1), np.stack(get["w3"]).reshape(nb, -1),
                  np.stack(get["b3"]).reshape(nb), xmin[0].reshape(-1), xmax[0].reshape(-1))
    return filters, w


def _bc_sed_fn(table, logt, logg, feh, afe, logl, av, rv, dist):
    m = bc_table_mags(table, logt, logg, feh, logl, av, rv, dist)
    return m, jnp.ones(m.shape[:-1], bool)


def _bc_sed_fn_cubic(table, logt, logg, feh, afe, logl, av, rv, dist):
    m = bc_table_mags(table, logt, logg, feh, logl, av, rv, dist, feh_cubic=True)
    return m, jnp.ones(m.shape[:-1], bool)


def _nn_sed_fn(weights, logt, logg, feh, afe, logl, av, rv, dist):
    return nn_mags(weights, logt, logg, feh, afe, logl, av, rv, dist)


class StellarPop:
    """Synthetic photometry of simple stellar populations (brutus's ``StellarPop``).

    Parameters
    ----------
    isochrone : Isochrone, optional
        default: ``Isochrone()`` (MIST from lachesis-grids, cubic interpolation).
    filters : sequence of str, optional
        band names; default ``data.filters.DEFAULT_FILTERS`` (the grid
        builder's: Gaia EDR3 + DR2, PS1 grizy, 2MASS JHKs, WISE W1 W2), or
        every filter of ``nnfile`` when one is given.
    nnfile : path, optional
        brutus's neural-network BC file; default: the MIST/C3K BC table,
        interpolated like the isochrone in [Fe/H]: cubic Hermite when
        ``isochrone.interp == 'cubic'`` (C1 across [Fe/H] nodes), else
        multilinear (exactly the grid builder's models); multilinear in
        (log Teff, logg) and linear in A_V either way.
    verbose : bool
    """

    def __init__(self, isochrone=None, filters=None, nnfile=None, verbose=True):
        from ..data.filters import DEFAULT_FILTERS, check_filters
        from .isochrone import Isochrone

        self.isochrone = Isochrone(verbose=verbose) if isochrone is None else isochrone
        missing = [n for n in _NEEDED if n not in self.isochrone.pred_labels]
        if missing:
            raise ValueError(f"isochrone: needs predictions {missing} (has {self.isochrone.pred_labels})")
        self._cols = tuple((n, self.isochrone.column(n)) for n in _NEEDED)
        self.nnfile = nnfile
        if nnfile is None:
            from ..data.sources import source_file

            self.filters = check_filters(DEFAULT_FILTERS if filters is None else filters)
            self._sed_np = bc_sed_table(str(source_file("mist_bc_tables", verbose=verbose)), self.filters)
            self._sed_fn = _bc_sed_fn_cubic if self.isochrone.interp == "cubic" else _bc_sed_fn
        else:
            self.filters, self._sed_np = read_nn_file(nnfile, filters)
            self._sed_fn = _nn_sed_fn
        self.NFILT = len(self.filters)
        self._sed_dev = {}
        self._jitted = {}

    # ------------------------------------------------------------------ device data
    def sed_data(self, dtype=None):
        """SED tables (BC table or NN weights) on device in ``dtype`` (cached)."""
        dtype = jnp.dtype(_default_dtype() if dtype is None else dtype)
        if dtype not in self._sed_dev:
            with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a trace
                self._sed_dev[dtype] = type(self._sed_np)(*(jnp.asarray(a, dtype) for a in self._sed_np))
        return self._sed_dev[dtype]

    def jax_data(self, dtype=None):
        """``(IsochroneTable, SED tables)`` on device in ``dtype`` (a pytree; pass
        it into jitted functions as an argument)."""
        return self.isochrone.jax_table(dtype), self.sed_data(dtype)

    def with_data(self, data):
        """This population with its device tables fixed to ``data`` (from `jax_data`).

        For use inside a jitted function that takes ``data`` as an argument,
        so the tables are not baked into the program as constants::

            f = jax.jit(lambda th, data: isochrone_population_loglike(th, pop.with_data(data), ...))
            f(theta, pop.jax_data())
        """
        return _WithData(self, data)

    def _eep(self, eep):
        return self.isochrone.eep_u if eep is None else np.atleast_1d(np.asarray(eep, float))

    # ------------------------------------------------------------------ kernel
    def population_detail(self, iso_table, sed_data, smf_values, eep, feh=0.0, afe=0.0, loga=8.5, av=0.0,
                          rv=3.3, dist=1000.0, mini_bound=0.5, eep_binary_max=480.0, apply_corr=True,
                          corr_params=None):
        """Pure kernel (jit/grad-able): :class:`PopDetail` for all ``smf_values``."""
        cp = DEFAULT_CORR_PARAMS if corr_params is None else tuple(corr_params)
        return population_seds(iso_table, sed_data, smf_values, eep, feh, afe, loga, av, rv, dist, mini_bound,
                               eep_binary_max, cp, cols=dict(self._cols), method=self.isochrone.interp,
                               apply_corr=bool(apply_corr), sed_fn=self._sed_fn)

    def get_seds_smf_grid_jax(self, smf_values, feh=0.0, afe=0.0, loga=8.5, eep=None, av=0.0, rv=3.3,
                              dist=1000.0, mini_bound=0.5, eep_binary_max=480.0, apply_corr=True,
                              corr_params=None, dtype=None, data=None):
        """SEDs on the (smf, eep) grid as a :class:`PopSEDGrid` (JAX arrays).

        Traceable by ``jax.jit`` and differentiable in feh, loga, av, rv, dist
        (and afe, mini_bound, eep_binary_max as values); ``smf_values`` and
        ``eep`` fix the static shapes (default eep: the isochrone's EEP nodes).
        ``dtype`` defaults to float64 under x64, else float32 (or the dtype of
        a floating ``smf_values`` JAX array, or of ``data``).

        ``data``: the ``(isochrone table, SED tables)`` pytree of
        :meth:`jax_data`.  Inside a jitted function pass it as an *argument*
        of that function (``jax.jit(lambda th, data: pop.get_seds_smf_grid_jax(
        ..., data=data))``): left out, the ~180 MB tables are captured as
        constants, which makes compilation several times slower.
        """
        if data is not None:
            dtype = data[0].values.dtype
        elif dtype is None and isinstance(smf_values, jax.Array) and jnp.issubdtype(smf_values.dtype, jnp.floating):
            dtype = smf_values.dtype
        dtype = jnp.dtype(_default_dtype() if dtype is None else dtype)
        iso_table, sed_data = self.jax_data(dtype) if data is None else data
        eep = self._eep(eep) if not isinstance(eep, jax.Array) else eep
        smf = jnp.atleast_1d(jnp.asarray(smf_values, dtype))
        eep = jnp.asarray(eep, dtype)
        d = self._kernel(apply_corr, corr_params)(iso_table, sed_data, smf, eep,
                                                  *(jnp.asarray(x, dtype) for x in (feh, afe, loga, av, rv, dist,
                                                                                    mini_bound, eep_binary_max)))
        n_smf = smf.shape[0]
        mini = d.prim[:, self.isochrone.column("mini")]
        return PopSEDGrid(d.mags, jnp.broadcast_to(d.sed_ok, (n_smf,) + d.sed_ok.shape),
                          jnp.broadcast_to(mini, (n_smf,) + mini.shape),
                          jnp.broadcast_to(d.prim_ok, (n_smf,) + d.prim_ok.shape), eep, smf)

    def eep_end(self, feh, loga, afe=0.0, data=None):
        """Continuous terminal EEP of the isochrone at (feh, loga) (the ``row_measure="smooth"``
        hook of `brutus_jax.analysis.isochrone_population_loglike`).

        The interpolated isochrone ends at a step function of (feh, loga) that
        jumps at the table's nodes; this is a continuous (C1 for cubic
        interpolation) lower bound of it
        (`brutus_jax.kernels.isochrone_interp.terminal_eep`): the smooth
        measure gives rows beyond it weight 0 and the row straddling it the
        fraction of its cell below it, so the likelihood no longer jumps at
        nodes.  Rows below it always have valid isochrone predictions; other
        invalid rows (``mini < mini_bound``, SED back end) keep brutus's rule.
        Traceable and differentiable in feh, loga, afe.  ``data``: the
        :meth:`jax_data` pytree (default: this population's tables in the
        dtype of a floating ``loga`` array, else the default dtype).
        """
        if data is None:
            dt = jnp.result_type(loga) if isinstance(loga, jax.Array) else None
            dt = dt if dt is not None and jnp.issubdtype(dt, jnp.floating) else _default_dtype()
            table = self.isochrone.jax_table(dt)
        else:
            table = data[0]
        return self.isochrone.terminal_eep(table, feh, afe, loga)

    # ------------------------------------------------------------------ brutus API
    def _detail_numpy(self, smf_values, feh, afe, loga, eep, av, rv, dist, mini_bound, eep_binary_max,
                      apply_corr, corr_params):
        if corr_params is not None and len(tuple(corr_params)) != 4:
            raise ValueError("corr_params: expected (dtdm, drdm, msto_smooth, feh_scale)")
        dtype = jnp.dtype(_default_dtype())
        eep = self._eep(eep)
        smf = np.atleast_1d(np.asarray(smf_values, float))
        args = [jnp.asarray(x, dtype) for x in (smf, eep, feh, afe, loga, av, rv, dist, mini_bound, eep_binary_max)]
        d = self._kernel(apply_corr, corr_params)(self.isochrone.jax_table(dtype), self.sed_data(dtype), *args)
        return jax.tree_util.tree_map(np.asarray, d), eep, smf

    def _kernel(self, apply_corr, corr_params):
        """The jitted :meth:`population_detail` for these static settings (cached)."""
        key = (bool(apply_corr), None if corr_params is None else tuple(map(float, corr_params)))
        if key not in self._jitted:
            self._jitted[key] = jax.jit(functools.partial(self._detail_kernel, apply_corr=key[0],
                                                          corr_params=key[1]))
        return self._jitted[key]

    def _detail_kernel(self, iso_table, sed_data, smf, eep, feh, afe, loga, av, rv, dist, mini_bound,
                       eep_binary_max, *, apply_corr, corr_params):
        return self.population_detail(iso_table, sed_data, smf, eep, feh, afe, loga, av, rv, dist, mini_bound,
                                      eep_binary_max, apply_corr, corr_params)

    def _format(self, d, k, q, return_dict):
        iso = self.isochrone
        idx = list(iso._pred_idxs)
        prim = np.where(d.prim_ok[:, None], d.prim.astype(float), np.nan)[:, idx]
        seds = np.where(d.sed_ok[:, None], d.mags[k].astype(float), np.nan)
        if 0.0 < q < 1.0:
            sec = np.where(d.sec_ok[k][:, None], d.sec[k].astype(float), np.nan)[:, idx]
        elif q == 1.0:
            sec = np.where(d.eq_binary[k][:, None], prim, np.nan)
        else:
            sec = np.full_like(prim, np.nan)
        if return_dict:
            return seds, dict(zip(iso.predictions, prim.T)), dict(zip(iso.predictions, sec.T))
        return seds, prim.T, sec

    def get_seds(self, feh=0.0, afe=0.0, loga=8.5, eep=None, av=0.0, rv=3.3, binary_fraction=0.0, dist=1000.0,
                 mini_bound=0.5, eep_binary_max=480.0, apply_corr=True, corr_params=None, return_dict=True):
        """Synthetic photometry of a population (brutus's ``StellarPop.get_seds``).

        Parameters
        ----------
        feh, afe [dex]; loga [log10 yr]; eep (default: isochrone EEP nodes);
        av [mag]; rv; binary_fraction: secondary mass fraction q (0: single
        stars, 0 < q < 1: companions of mass q mini, 1: equal-mass twins);
        dist [pc]; mini_bound [Msun]: minimum initial mass of any component;
        eep_binary_max: binaries only where both EEPs are <= this;
        apply_corr, corr_params: empirical corrections; return_dict.

        Returns
        -------
        seds : (n_eep, n_filt) apparent magnitudes (NaN where no star).
        params, params2 : dicts of (n_eep,) primary / secondary predictions
            (``return_dict=False``: arrays (n_pred, n_eep) and (n_eep, n_pred),
            as brutus).
        """
        d, eep, smf = self._detail_numpy(binary_fraction, feh, afe, loga, eep, av, rv, dist, mini_bound,
                                         eep_binary_max, apply_corr, corr_params)
        return self._format(d, 0, float(smf[0]), return_dict)

    def get_seds_smf_grid(self, smf_values, feh=0.0, afe=0.0, loga=8.5, eep=None, av=0.0, rv=3.3, dist=1000.0,
                          mini_bound=0.5, eep_binary_max=480.0, apply_corr=True, corr_params=None,
                          return_dict=True):
        """``[get_seds(binary_fraction=q, ...) for q in smf_values]`` computed in one pass."""
        d, eep, smf = self._detail_numpy(smf_values, feh, afe, loga, eep, av, rv, dist, mini_bound,
                                         eep_binary_max, apply_corr, corr_params)
        return [self._format(d, k, float(q), return_dict) for k, q in enumerate(smf)]


class _WithData:
    """A `StellarPop` whose ``get_seds_smf_grid_jax`` uses fixed device tables."""

    def __init__(self, pop, data):
        self._pop, self._data = pop, data

    def get_seds_smf_grid_jax(self, *args, **kwargs):
        return self._pop.get_seds_smf_grid_jax(*args, data=self._data, **kwargs)

    def eep_end(self, feh, loga, afe=0.0):
        return self._pop.eep_end(feh, loga, afe, data=self._data)

    def __getattr__(self, name):  # everything else as the wrapped population
        return getattr(self._pop, name)
