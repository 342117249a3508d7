"""Entry points of the per-model fit beyond `fit_star` (see `brutus_jax.kernels.sedfit`).

* `fit_star_mag`, `fit_star_flux`, `fit_star_finish`: the three stages of
  `fit_star` as separate calls, so that the flux stage can run on each star's
  selected models only, gathered into a static capacity (what brutus
  iterates); `BruteForce` uses them.
* `fit_stars`: `fit_star` mapped over a batch of stars and jitted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .sedfit import (DEFAULT_MAX_ITER_FLUX, DEFAULT_MAX_ITER_MAG, _MAG_THRESH_DEFAULT, BandMajorGrid, _finish,
                     _flux_stage, _mag_stage, _setup, fit_star)

__all__ = ["fit_star_mag", "fit_star_flux", "fit_star_finish", "fit_stars"]


def fit_star_mag(grid, flux, err, mask, parallax=float("nan"), parallax_err=float("nan"), avlim=(0.0, 20.0),
                 av_gauss=(0.0, 1e6), rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), ltol=0.03, ltol_subthresh=0.01,
                 init_thresh=0.005, max_iter_mag=DEFAULT_MAX_ITER_MAG, model_mask=None, select_all=False):
    """Magnitude stage and flux-stage selection of `fit_star` -> `MagStage`."""
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh,
               select_all, model_mask)
    return _mag_stage(c, parallax, parallax_err, max_iter_mag)


def fit_star_flux(grid, flux, err, mask, mag, capacity, avlim=(0.0, 20.0), av_gauss=(0.0, 1e6),
                  rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), ltol=0.03, ltol_subthresh=0.01,
                  max_iter_flux=DEFAULT_MAX_ITER_FLUX):
    """Flux stage of `fit_star` on the selected models only.

    The ``mag.active`` models (at most ``capacity``, a static int >= n_active;
    extra active models would stay frozen) are gathered into a dense
    ``capacity``-column grid, iterated there (brutus iterates exactly this
    subset) and scattered back.  Returns (av, rv, n_iter_flux, last error),
    full (Nmodel,) arrays.
    """
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, 0.005,
               False, None)
    nmodel = grid.m0.shape[1]
    idx = jnp.nonzero(mag.active, size=capacity, fill_value=nmodel)[0]
    take = jnp.minimum(idx, nmodel - 1)
    sub = BandMajorGrid(*(x[:, take] for x in c.grid))
    av_c, rv_c, n_flux, lerr = _flux_stage(c, sub, mag.av[take], mag.rv[take], idx < nmodel, max_iter_flux)
    av = mag.av.at[idx].set(av_c, mode="drop")
    rv = mag.rv.at[idx].set(rv_c, mode="drop")
    return av, rv, n_flux, lerr


def fit_star_finish(grid, flux, err, mask, mag, av, rv, n_iter_flux, flux_err, avlim=(0.0, 20.0),
                    av_gauss=(0.0, 1e6), rvlim=(1.0, 8.0), rv_gauss=(3.32, 0.18), dim_prior=True, ltol=0.03,
                    model_mask=None):
    """Final evaluation of `fit_star` at the flux-stage (A_V, R_V) -> `GridFit`."""
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, 0.01, 0.005, False, model_mask)
    return _finish(c, av, rv, mag, n_iter_flux, flux_err, dim_prior)


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
