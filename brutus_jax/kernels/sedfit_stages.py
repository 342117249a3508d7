"""Entry points of the per-model fit beyond `fit_star` (see `brutus_jax.kernels.sedfit`).

* `fit_star_mag`, `fit_star_flux`, `merge_flux`, `fit_star_finish`: the
  stages of `fit_star` as separate calls, so that the flux stage can run on
  each star's selected models only, gathered into a static capacity (what
  brutus iterates); `BruteForce` uses them.  No stage re-evaluates the whole
  grid at the end: the magnitude stage already evaluates every model's scale,
  chi-square and precision at its final (A_V, R_V), which is final for the
  models outside the flux stage, and the flux stage evaluates its own subset.
  ``precision="scale_err"`` keeps only the marginal scale error of each model
  (one pass over the grid instead of six on XLA:CPU, see `_materialise`);
  `icov_at` then re-evaluates the precision of the few models that need it.
* `fit_stars`: `fit_star` mapped over a batch of stars and jitted.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .sedfit import (DEFAULT_MAX_ITER_FLUX, DEFAULT_MAX_ITER_MAG, _MAG_THRESH_DEFAULT, BandMajorGrid, _flux_stage,
                     _grid_fit, _icov_matrix, _mag_stage, _materialise, _scale_fit, _setup, fit_star)
from .selection import true_indices

__all__ = ["FluxStage", "fit_star_mag", "fit_stars_mag", "fit_star_flux", "merge_flux", "fit_star_finish", "icov_at",
           "marginal_scale_err", "fit_stars"]


class FluxStage(NamedTuple):
    """Flux-stage results of one star on its ``capacity`` slots (`fit_star_flux`)."""

    idx: jax.Array  # (capacity,) int32: model of each slot, Nmodel for an empty slot
    av: jax.Array  # (capacity,)
    rv: jax.Array  # (capacity,)
    scale: jax.Array  # (capacity,)
    chi2: jax.Array  # (capacity,)
    icov: tuple  # six (capacity,) precision entries as `MagStage.icov`, or None
    scale_err: jax.Array  # (capacity,) marginal scale error, or None
    n_iter_flux: jax.Array  # () int32
    err_flux: jax.Array  # () last convergence error


def marginal_scale_err(entries):
    """sqrt of the marginal variance of s from the six (s, A_V, R_V) precision entries
    ``(I_ss, I_sA, I_sR, I_AA, I_RR, I_AR)``; brutus's fallbacks: conditional
    1/sqrt(I_ss), then 1e10."""
    i00, i01, i02, i11, i22, i12 = entries
    num = i11 * i22 - i12 * i12
    det = i00 * num - i01 * (i01 * i22 - i12 * i02) + i02 * (i01 * i12 - i11 * i02)
    ok_det = (det > 0) & (det < jnp.inf)
    # sqrt(C_ss) > 0 and finite iff C_ss is; each expensive value has one use (see
    # `_materialise`), so that XLA:CPU computes the whole chain in one fused pass
    marg = jnp.sqrt(num / jnp.where(ok_det, det, 1.0))
    ok_m = ok_det & (marg > 0) & (marg < jnp.inf)
    ok_c = (i00 > 0) & (i00 < jnp.inf)
    cond = 1.0 / jnp.sqrt(jnp.where(ok_c, i00, 1.0))
    return jnp.where(ok_m, marg, jnp.where(ok_c, cond, 1e10))


def _precision(kind):
    """What the stages keep of the precision: ``final(entries, one) -> (icov, scale_err)``
    (None: nothing, for `fit_star_mag` only)."""
    if kind is None:
        return None
    if kind == "icov":
        return lambda e, one: (tuple(_materialise(x, one) for x in e), None)
    if kind == "scale_err":  # one fused pass: the entries are never stored
        return lambda e, one: (None, marginal_scale_err(e))
    raise ValueError(f"precision: expected 'icov' or 'scale_err', got {kind!r}")


def fit_star_mag(grid, flux, err, mask, parallax=float("nan"), parallax_err=float("nan"), avlim=(0.0, 20.0),
                 av_gauss=(0.0, 1e6), rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), ltol=0.03, ltol_subthresh=0.01,
                 init_thresh=0.005, max_iter_mag=DEFAULT_MAX_ITER_MAG, model_mask=None, select_all=False,
                 precision="icov"):
    """Magnitude stage and flux-stage selection of `fit_star` -> `MagStage`, with
    every model's scale, chi-square and (static ``precision``) six precision
    entries (``"icov"``), marginal scale error (``"scale_err"``) or neither (None)
    at its (A_V, R_V)."""
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh,
               select_all, model_mask)
    return _mag_stage(c, parallax, parallax_err, max_iter_mag, final=_precision(precision))


def fit_stars_mag(grid, flux, err, mask, parallax, parallax_err, avlim=(0.0, 20.0), av_gauss=(0.0, 1e6),
                  rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), ltol=0.03, ltol_subthresh=0.01, init_thresh=0.005,
                  max_iter_mag=DEFAULT_MAX_ITER_MAG, model_mask=None, select_all=False, precision="icov"):
    """`fit_star_mag` of S stars at once (``flux, err, mask`` (S, Nfilt), ``parallax,
    parallax_err`` (S,)) in the star-minor layout: the per-model arrays are
    (Nmodel, S) while they iterate, so each model's grid coefficients are read once
    for all S stars instead of once per star (a vmapped `fit_star_mag` computes
    (S, Nmodel) arrays and streams the whole grid per star: on a GPU its
    magnitude-stage loop fusions are bound by those grid reads).  The loop runs as
    a vmapped one: every star steps until the last has stopped, a stopped star's
    values are kept, so the results equal ``vmap(fit_star_mag)``'s.  Returns
    `MagStage` with a leading star axis ((S, Nmodel) and (S,) fields), like vmap."""
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh,
               select_all, model_mask)
    mag = _mag_stage(c, parallax, parallax_err, max_iter_mag, final=_precision(precision))
    return jax.tree.map(lambda x: x.T, mag)


def fit_star_flux(grid, flux, err, mask, mag, capacity, avlim=(0.0, 20.0), av_gauss=(0.0, 1e6),
                  rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), ltol=0.03, ltol_subthresh=0.01,
                  max_iter_flux=DEFAULT_MAX_ITER_FLUX, precision="icov", idx=None):
    """Flux stage of `fit_star` on the selected models only -> `FluxStage`.

    The ``mag.active`` models (at most ``capacity``, a static int >= n_active;
    extra active models would stay frozen) are gathered into a dense
    ``capacity``-column grid and iterated there (brutus iterates exactly this
    subset); their final scale / chi-square / precision (as `fit_star_mag`'s
    ``precision``) are evaluated on that subset too.  Reads ``mag.active, av, rv``.
    ``idx``: optional (capacity,) int32 indices of the active models in index order
    padded with Nmodel, e.g. from numpy (on XLA:CPU ``jnp.nonzero`` over 655k models
    costs ~9 ms, numpy's ``flatnonzero`` ~0.4 ms); ``mag.active`` is then not read.
    """
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, 0.005,
               False, None)
    nmodel = grid.m0.shape[1]
    if idx is None:
        idx = true_indices(mag.active, capacity, nmodel)
    take = jnp.minimum(idx, nmodel - 1)
    sub = BandMajorGrid(*(x[:, take] for x in c.grid))
    av, rv, n_flux, lerr = _flux_stage(c, sub, mag.av[take], mag.rv[take], idx < nmodel, max_iter_flux)
    mle, entries = _scale_fit(sub, c.F, c.W, av, rv, True, c.av_ivar, c.rv_ivar, c.one)
    return FluxStage(idx, av, rv, mle.scale, mle.chi2, *_precision(precision)(entries, c.one), n_flux, lerr)


def merge_flux(mag, fl):
    """`MagStage` whose per-model values are final: the flux-stage slots of
    ``fl`` (`FluxStage`) scattered over the magnitude-stage values."""
    def put(x, v):
        return None if x is None else x.at[fl.idx].set(v, mode="drop")

    return mag._replace(av=put(mag.av, fl.av), rv=put(mag.rv, fl.rv), scale=put(mag.scale, fl.scale),
                        chi2=put(mag.chi2, fl.chi2), scale_err=put(mag.scale_err, fl.scale_err),
                        icov=None if mag.icov is None else tuple(map(put, mag.icov, fl.icov)))


def fit_star_finish(grid, flux, err, mask, mag, n_iter_flux, flux_err, avlim=(0.0, 20.0), av_gauss=(0.0, 1e6),
                    rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), dim_prior=True, ltol=0.03, model_mask=None,
                    icov_entries=False):
    """`GridFit` of `fit_star` from the final values ``mag`` (`merge_flux`'s output;
    nothing is re-evaluated).  ``icov_entries`` (static): ``icov`` is left as
    `MagStage.icov` (six (Nmodel,) entries, or None) instead of (Nmodel, 3, 3)."""
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, 0.01, 0.005, False, model_mask)
    icov = mag.icov if icov_entries else _icov_matrix(mag.icov, c.one)
    return _grid_fit(c, mag.av, mag.rv, mag.scale, mag.chi2, icov, mag, n_iter_flux, flux_err, dim_prior)


def icov_at(grid, flux, err, mask, av, rv, av_gauss=(0.0, 1e6), rv_gauss=(3.32, 0.18)):
    """(Nmodel, 3, 3) precision matrices of one star for the models of ``grid`` (e.g.
    gathered columns) at their (A_V, R_V) ``av, rv``: `GridFit.icov` where these
    are the final values."""
    c = _setup(grid, flux, err, mask, (0.0, 20.0), av_gauss, (1.0, 8.0), rv_gauss, 0.03, 0.01, 0.005, False, None)
    _, entries = _scale_fit(c.grid, c.F, c.W, av, rv, True, c.av_ivar, c.rv_ivar, c.one)
    return _icov_matrix(entries, c.one)


def fit_stars(
    grid,
    flux,
    err,
    mask,
    parallax=None,
    parallax_err=None,
    avlim=(0.0, 20.0),
    av_gauss=(0.0, 1e6),
    rvlim=(1.0, 8.0),
    rv_gauss=(3.32, 0.18),
    dim_prior=True,
    ltol=0.03,
    ltol_subthresh=0.01,
    init_thresh=0.005,
    max_iter_mag=DEFAULT_MAX_ITER_MAG,
    max_iter_flux=DEFAULT_MAX_ITER_FLUX,
    model_mask=None,
    batch_size="auto",
):
    """`fit_star` mapped over stars and jitted.

    ``flux, err, mask`` are (Nstar, Nfilt), ``parallax, parallax_err``
    (Nstar,) (None: no parallaxes); the grid and all options are shared by
    the batch.  Every option is passed to the compiled function as a traced
    value (``None`` options are first replaced by the equivalent values), so
    changing options never recompiles; a new shape, dtype or ``batch_size``
    does.  Returns a `GridFit` with a leading star axis.

    ``batch_size`` (static): how many stars are vectorised together inside
    the compiled call (``jax.lax.map(..., batch_size=batch_size)``); None
    vectorises all Nstar at once (``jax.vmap``).  "auto" is 4 on CPU, where
    a large vectorised batch makes its ~20 (Nstar, Nmodel) intermediates fall
    out of cache (measured on 2 cores, 107k models, float32: 9.5-10 ms/star
    in batches of 2-4, 14.5 ms/star with all 32 at once), and None on
    accelerators.  The results do not depend on it (up to rounding).
    """
    flux = jnp.asarray(flux)
    nstar = flux.shape[0]
    if parallax is None:
        parallax = jnp.full((nstar,), jnp.nan, flux.dtype)
    if parallax_err is None:
        parallax_err = jnp.full((nstar,), jnp.nan, flux.dtype)
    if av_gauss is None:
        av_gauss = (0.0, 1e6)
    if rv_gauss is None:
        rv_gauss = (3.32, 1e6)
    select_all = init_thresh is None
    if select_all:
        init_thresh = _MAG_THRESH_DEFAULT
    if model_mask is None:
        model_mask = jnp.ones((grid.m0.shape[1],), bool)
    opts = (avlim, av_gauss, rvlim, rv_gauss, dim_prior, ltol, ltol_subthresh, init_thresh,
            max_iter_mag, max_iter_flux, model_mask, select_all)  # fmt: skip
    if batch_size == "auto":
        batch_size = 4 if jax.default_backend() == "cpu" else None
    if batch_size is not None and batch_size >= nstar:
        batch_size = None
    return _fit_stars_jit(grid, flux, err, mask, parallax, parallax_err, opts, batch_size=batch_size)


def _fit_stars_impl(grid, flux, err, mask, parallax, parallax_err, opts, batch_size):
    (avlim, av_gauss, rvlim, rv_gauss, dim_prior, ltol, ltol_subthresh, init_thresh,
     max_iter_mag, max_iter_flux, model_mask, select_all) = opts  # fmt: skip

    def one(f, e, m, p, pe):
        return fit_star(
            grid, f, e, m, p, pe,
            avlim=avlim, av_gauss=av_gauss, rvlim=rvlim, rv_gauss=rv_gauss,
            dim_prior=dim_prior, ltol=ltol, ltol_subthresh=ltol_subthresh,
            init_thresh=init_thresh, max_iter_mag=max_iter_mag,
            max_iter_flux=max_iter_flux, model_mask=model_mask, select_all=select_all,
        )  # fmt: skip

    stars = (flux, err, mask, parallax, parallax_err)
    if batch_size is None:
        return jax.vmap(one)(*stars)
    return lax.map(lambda s: one(*s), stars, batch_size=batch_size)


#: the compiled batch kernel (one cache entry per shape and dtype)
_fit_stars_jit = jax.jit(_fit_stars_impl, static_argnames=("batch_size",))
