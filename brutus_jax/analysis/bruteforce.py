"""BruteForce: every model of a grid against a batch of stars, in two jitted stages.

(Stage 1 is itself three jitted calls; see below.)

Stage 1 (`_stage1`, a batch of B stars): the per-model (scale, A_V, R_V)
fit (`kernels.sedfit.fit_star`) in three jitted calls -- the magnitude stage
of every model (batch, vmapped in chunks), which also evaluates every model's
scale, chi-square and marginal scale error at its final (A_V, R_V), the flux
stage of each star on its own selected models only, gathered into a static
bucket of slots (as brutus iterates only that subset) and scattered in place
into the batch's arrays, and the lnl of every model with the static prior,
the parallax pre-selection prior and the selection mask (batch; no model is
re-evaluated).  The precision matrices are evaluated in stage 2, for the
selected models only.  Stage 2 (`_stage2`, on the device-resident stage-1 batch): each
star's selected models gathered into a static bucket of K slots
(`kernels.selection`; K = the next of 256, 1024, 4096, 8192, ... above its
selection size, at most ``max_models``), Monte-Carlo integration of the
Galactic / dust / parallax priors and the posterior draws
(`kernels.posterior`).  The flux stage and stage 2 run one call per group
of stars sharing a bucket (`_groups`, vmapped).

Shapes are static: B is fixed for a run (the last batch is padded), the
flux-stage capacity and K take a few bucket values each and group sizes are
powers of two, so a run compiles each stage a few times, never per star.
Randomness: star ``i`` uses ``fold_in(key, key_offset + i)`` and its K depends on that
star alone, so results do not depend on batching, grouping or device, and a
resumed run reproduces an uninterrupted one.  The host loop over batches and
local devices is `fit_runner`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.linalg3 import inverse3
from ..kernels.posterior import integrate_and_draw_lean, mc_integrate
from ..kernels.galactic import galactic_prior_terms
from ..kernels.priors import logp_extinction, logp_parallax, logp_parallax_scale
from ..kernels.sedfit import BandMajorGrid, fit_star, to_band_major
from ..kernels.sedfit_stages import (fit_star_finish, fit_star_flux, fit_star_mag, fit_stars_mag, icov_at,
                                     marginal_scale_err)
from ..kernels.selection import gather_selected, select_mask
from .compile_options import stage_jit
from .fit_io import FitOutput, fingerprint
from .prior_setup import galactic_labels, grid_lnprior

__all__ = ["BruteForce"]


def _default_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _icov_entries(icov):
    """The six distinct entries ``(I_ss, I_sA, I_sR, I_AA, I_RR, I_AR)`` of (..., 3, 3)
    precision matrices."""
    return tuple(icov[..., i, j] for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (2, 2), (1, 2)))


def _marginal_scale_err(icov):
    """sqrt of the marginal variance of s from (..., 3, 3) (s, A_V, R_V) precisions
    (`kernels.sedfit_stages.marginal_scale_err`, brutus's fallbacks)."""
    return marginal_scale_err(_icov_entries(icov))


class _IcovSource(NamedTuple):
    """`_stage1`'s ``fit.icov``: the precision matrices are not stored for the whole
    grid (on XLA:CPU each of their six entries costs a pass over it); `_stage2`
    evaluates them for its K selected models at their final (A_V, R_V) (`icov_at`)."""

    grid: BandMajorGrid
    flux: jax.Array  # (B, Nfilt)
    err: jax.Array
    mask: jax.Array
    av_gauss: jax.Array
    rv_gauss: jax.Array


def _mc_priors(plx, plxe, ell, b, feh_k, loga_k, gal_kwargs, dust=None, serial=False):
    """The priors integrated per Monte-Carlo point: ``(f, aux)`` with
    ``f(d, A_V, R_V, aux) -> d.shape``.

    Parallax (zero where ``plx``/``plxe`` are not usable), the Galactic prior when
    ``gal_kwargs`` is not None (``aux``: the per-model [Fe/H]/age terms (K, 3)
    of ``feh_k``/``loga_k`` (K,), evaluated once; ``f`` takes all K models'
    (K, nmc) points with the whole ``aux``, or one model's (nmc,) with its
    row), the 3-D dust prior when ``dust = (distances, mu, sigma, avlim)`` is given.
    ``serial``: the caller maps over stars one at a time (the Galactic terms'
    faster layout then differs, `galactic_prior_terms`).
    """
    gal, aux = (None, None) if gal_kwargs is None else galactic_prior_terms(feh_k, loga_k, ell, b,
                                                                             stacked=not serial, **gal_kwargs)

    def extra(d, a, r, aux):
        out = logp_parallax(1.0 / d, plx, plxe)
        if gal is not None:
            out = out + gal(d, aux)
        if dust is not None:
            dd, mu, sd, avlim = dust
            out = out + logp_extinction(a, dd, mu, sd, d, avlim=avlim)
        return jnp.broadcast_to(out, d.shape)

    return extra, aux


def _map(fn, xs, chunk):
    """vmap over the batch, or lax.map in chunks of ``chunk`` stars (CPU cache)."""
    if chunk is None or chunk >= jax.tree_util.tree_leaves(xs)[0].shape[0]:
        return jax.vmap(fn)(xs)
    # chunk 1: unbatched (batch_size=1 vmaps each star, which turns its while loops'
    # predicates into selects over every carry and undoes the magnitude stage's one-fusion
    # step, `kernels.sedfit._mag_stage`: 3 grid passes per iteration instead of 2)
    return jax.lax.map(fn, xs) if chunk == 1 else jax.lax.map(fn, xs, batch_size=chunk)


@stage_jit(static_argnames=("no_init_thresh", "chunk", "lazy", "star_minor"))
def _stage1_mag(grid, flux, err, mask, plx, plxe, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh,
                init_thresh, *, no_init_thresh, chunk=None, lazy=False, star_minor=False):
    """Stage 1a (batch): magnitude stage of every model and flux-stage selection.
    ``lazy`` (static): no marginal scale errors (``scale_err`` = 0, the value that
    maximises the parallax term of ``lnprob_sel``); the flux stage then sets those of
    its models and `_stage1` checks that no other model is selected (`_exact_scale_err`).
    ``star_minor`` (static): the whole batch in one `fit_stars_mag` call (each model's
    grid coefficients read once per batch, not once per star; same values; ``chunk``
    unused)."""
    kw = dict(avlim=avlim, av_gauss=av_gauss, rvlim=rvlim, rv_gauss=rv_gauss, ltol=ltol,
              ltol_subthresh=ltol_subthresh, init_thresh=init_thresh, select_all=no_init_thresh,
              precision=None if lazy else "scale_err")

    def lazy_err(mag):
        return mag._replace(scale_err=jnp.zeros_like(mag.scale)) if lazy else mag

    xs = (flux, err, mask, plx, plxe)
    if star_minor:
        return lazy_err(fit_stars_mag(grid, *xs, **kw))
    return _map(lambda a: lazy_err(fit_star_mag(grid, *a, **kw)), xs, chunk)


@stage_jit(donate_argnames=("mag",))
def _exact_scale_err(ids, grid, flux, err, mask, mag, av_gauss, rv_gauss):
    """Marginal scale errors of the models outside the flux stage of the stars ``ids``
    (`_stage1_mag` with ``lazy`` left them 0), at their final (A_V, R_V)."""
    def one(i):
        c = icov_at(grid, flux[i], err[i], mask[i], mag.av[i], mag.rv[i], av_gauss=av_gauss, rv_gauss=rv_gauss)
        return jnp.where(mag.active[i], mag.scale_err[i], _marginal_scale_err(c))

    return mag._replace(scale_err=mag.scale_err.at[ids].set(jax.lax.map(one, ids)))


@stage_jit(static_argnames=("capacity", "serial"), donate_argnames=("mag", "n_flux", "flux_err"))
def _stage1_flux(ids, grid, flux, err, mask, mag, n_flux, flux_err, idx, avlim, av_gauss, rvlim, rv_gauss, ltol,
                 ltol_subthresh, *, capacity, serial=False):
    """Stage 1b (stars ``ids`` (G,) of the batch, vmapped or mapped): flux stage of each star on
    its own selected models only, gathered into ``capacity`` slots (one compile per
    capacity bucket and group size).  The results are scattered into the batch's
    `MagStage` ``mag`` and per-star ``n_flux``, ``flux_err`` (B,), all donated:
    updated in place, no full-grid copy per star.  ``idx`` (G, capacity): the stars'
    active models from the host (`fit_star_flux`), or None.  ``serial`` (static):
    the stars one after another (``lax.map``: each leaves its iteration loop
    when it converges, not when the slowest of the group does), else vmapped;
    same values.  MIST grid on one CPU core: 28 -> 13 ms/star."""
    def one(i, idx_i):
        mag_i = jax.tree_util.tree_map(lambda x: x[i], mag)  # fit_star_flux reads active, av, rv only
        return fit_star_flux(grid, flux[i], err[i], mask[i], mag_i, capacity, avlim=avlim, av_gauss=av_gauss,
                             rvlim=rvlim, rv_gauss=rv_gauss, ltol=ltol, ltol_subthresh=ltol_subthresh,
                             precision="scale_err", idx=idx_i)

    fl = jax.lax.map(lambda x: one(*x), (ids, idx)) if serial else jax.vmap(one)(ids, idx)
    rows = ids[:, None]

    def put(x, v):
        return x.at[rows, fl.idx].set(v, mode="drop")

    mag = mag._replace(av=put(mag.av, fl.av), rv=put(mag.rv, fl.rv), scale=put(mag.scale, fl.scale),
                       chi2=put(mag.chi2, fl.chi2), scale_err=put(mag.scale_err, fl.scale_err))
    return mag, n_flux.at[ids].set(fl.n_iter_flux), flux_err.at[ids].set(fl.err_flux)


@stage_jit(static_argnames=("wt_thresh", "cdf_thresh", "dim_prior", "chunk"))
def _stage1_finish(grid, lnprior, flux, err, mask, plx, plxe, mag, n_flux, flux_err, avlim, av_gauss, rvlim,
                   rv_gauss, ltol, *, wt_thresh, cdf_thresh, dim_prior, chunk=None):
    """Stage 1c (batch): lnl of every model from its final values ``mag`` (nothing is
    re-evaluated), priors, selection for stage 2; last output: per star, whether a
    model outside the flux stage is selected (`_stage1`'s check of ``lazy``)."""
    def one(args):
        f, e, m, p, pe, mg, nfl, ferr = args
        fit = fit_star_finish(grid, f, e, m, mg, nfl, ferr, avlim=avlim, av_gauss=av_gauss, rvlim=rvlim,
                              rv_gauss=rv_gauss, dim_prior=dim_prior, ltol=ltol, icov_entries=True)
        base = fit.lnl + lnprior
        has_plx = jnp.isfinite(p) & jnp.isfinite(pe) & (pe > 0)
        lp = logp_parallax_scale(fit.scale, mg.scale_err, p, pe)
        lnprob_sel = base + jnp.where(has_plx, lp, 0.0)
        lnprob_sel = jnp.where(jnp.isnan(lnprob_sel), -jnp.inf, lnprob_sel)
        sel = select_mask(lnprob_sel, wt_thresh, cdf_thresh)
        pe_safe = jnp.where(has_plx, pe, 1.0)
        chi2p = fit.chi2 + jnp.where(has_plx, (jnp.sqrt(fit.scale) - p) ** 2 / pe_safe**2, 0.0)
        chi2min = jnp.min(jnp.where(jnp.isfinite(chi2p), chi2p, jnp.inf))
        nbands = fit.ndim + has_plx.astype(fit.ndim.dtype)
        return base, lnprob_sel, sel, jnp.sum(sel), chi2min, nbands, jnp.any(sel & ~mg.active)

    return _map(one, (flux, err, mask, plx, plxe, mag, n_flux, flux_err), chunk)


def _stage1(grid, lnprior, flux, err, mask, plx, plxe, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh,
            init_thresh, *, wt_thresh, cdf_thresh, dim_prior, no_init_thresh, nrows=None,
            group_bytes=None, serial=False, lazy_scale_err=None):
    """Stage 1 of a batch: the (scale, A_V, R_V) fit of every model (`fit_star`),
    with the flux stage of each star run on its own selected models only.
    ``nrows``: the real stars of a padded batch (padding rows skip the flux stage
    and keep magnitude-stage values; their results are not used);
    ``group_bytes``: see `_groups`; ``serial`` (the CPU setting): the stars one
    after another in the flux stage (`_stage1_flux`) and the magnitude stage,
    and in chunks of 4 in the finish; else (accelerators) the whole batch
    vmapped in each, the magnitude stage in the star-minor layout (`fit_stars_mag`:
    each model's coefficients read once per batch, not once per star; H200, 600k
    models, 512 stars: 64.5 -> 38.3 ms per batch, `benchmarks/bench_mag_stage.py`;
    on one CPU core it is 2x slower than one star at a time).  MIST grid, one CPU
    core: magnitude stage 98 ms/star in chunks of 4, 67 one by one (each star leaves
    its iteration loop when it converges; 32 since session 11, benchmarks/README.md);
    finish 5 ms/star in chunks of 4 (small chunks stay in cache,
    benchmarks/bench_loglike.py), 17 one by one.  ``lazy_scale_err`` (default: with a
    ``wt_thresh``): the magnitude stage skips the marginal scale errors of the whole grid
    (a third of its time on XLA:CPU); they enter only ``lnprob_sel`` of the models outside
    the flux stage, which are checked to stay unselected (else computed; same results).
    Returns ``(fit, base, lnprob_sel, sel, nsel, chi2min, nbands)``, ``fit`` the final
    `MagStage` (``av, rv, scale, chi2, scale_err`` of every model, (B, Nmodel) each;
    ``icov``: an `_IcovSource`)."""
    chunk_mag, chunk_fin = (1, 4) if serial else (None, None)
    lazy = wt_thresh is not None if lazy_scale_err is None else bool(lazy_scale_err)
    mag = _stage1_mag(grid, flux, err, mask, plx, plxe, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh,
                      init_thresh, no_init_thresh=no_init_thresh, chunk=chunk_mag, lazy=lazy,
                      star_minor=not serial)
    n_act = np.asarray(mag.n_active)
    nrows = flux.shape[0] if nrows is None else nrows
    nmodel, nfilt = grid.m0.shape[1], grid.m0.shape[0]
    caps = np.array([_bucket(int(n), nmodel, minimum=1024) for n in n_act[:nrows]])
    itemsize = jnp.dtype(flux.dtype).itemsize
    n_flux = jnp.zeros(flux.shape[0], jnp.int32)
    flux_err = jnp.zeros(flux.shape[0], flux.dtype)
    # on CPU the active models' indices are found by numpy (see `fit_star_flux`)
    act = np.array(mag.active) if next(iter(mag.active.devices())).platform == "cpu" else None  # a copy: donated
    for cap, ids, n in _groups(caps, lambda c: 32 * c * (nfilt + 4) * itemsize, group_bytes):
        idx = None
        if act is not None:
            idx = np.full((ids.size, cap), nmodel, np.int32)
            for r, j in enumerate(ids):
                nz = np.flatnonzero(act[j])[:cap]
                idx[r, :nz.size] = nz
        # numpy index arrays go to the jitted call as they are (see `fit_runner.fit_batch`)
        mag, n_flux, flux_err = _stage1_flux(ids, grid, flux, err, mask, mag, n_flux, flux_err, idx,
                                             avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, capacity=int(cap),
                                             serial=serial)
    def finish(mag):
        return _stage1_finish(grid, lnprior, flux, err, mask, plx, plxe, mag, n_flux, flux_err, avlim, av_gauss,
                              rvlim, rv_gauss, ltol, wt_thresh=wt_thresh, cdf_thresh=cdf_thresh,
                              dim_prior=dim_prior, chunk=chunk_fin)

    out = finish(mag)
    if lazy:
        # The lazy upper bound on lnprob_sel (scale_err 0) selects no model outside the
        # flux stage => the exact values select the same models (the maximum is then a
        # flux-stage model's exact value, and every other bound lies below the cut).
        # Otherwise (e.g. errors so large that brutus's un-normalised lnl of those models
        # competes, gotcha 3) the exact errors of the stars concerned, and again.
        leak = np.flatnonzero(np.asarray(out[-1])[:nrows])
        if leak.size:
            mag = _exact_scale_err(leak, grid, flux, err, mask, mag, av_gauss, rv_gauss)
            out = finish(mag)
    fit = mag._replace(icov=_IcovSource(grid, flux, err, mask, av_gauss, rv_gauss))
    return (fit,) + tuple(out[:-1])


def default_group_bytes(device):
    """``group_bytes`` when `BruteForce` is given none: 2 GiB on CPU (measured 1.3x
    faster than one star per call on 2 cores); on an accelerator a tenth of its
    memory, at least 2 GiB.  On an H200 with 2 GiB groups a batch of 512 stars made
    ~54 stage-2 calls whose host dispatch (~1.5 ms each) kept the GPU idle most of
    the time (benchmarks/README.md); larger groups make fewer calls."""
    limit = device_bytes_limit(device) if device.platform != "cpu" else None
    return 2 << 30 if limit is None else max(2 << 30, limit // 10)


def device_bytes_limit(device):
    """Bytes JAX may use on ``device`` (its ``memory_stats()["bytes_limit"]``), or None
    for backends without memory statistics."""
    try:
        return int(device.memory_stats()["bytes_limit"])
    except Exception:
        return None


def _groups(buckets, bytes_per_star, group_bytes=None):
    """Stars of one batch grouped for the per-bucket (vmapped) calls.

    ``buckets`` (n,): each star's static bucket (an int capacity, or a tuple
    such as (K, capped)).  Yields ``(bucket, ids, n_real)`` with ``ids`` the
    star indices padded to a power of two by repeating the first (so a run
    compiles once per bucket and group size, log2 of the batch size at most).
    A group holds at most ``group_bytes / bytes_per_star(bucket)`` stars;
    ``group_bytes`` defaults to 2 GiB (0: one star per call; `fit` passes
    `default_group_bytes` of its device).  Measured
    (benchmarks/README.md): 5.6x faster than one star per call on an H200
    (launch overhead), 1.3x on 2 CPU cores.
    """
    if group_bytes is None:
        group_bytes = 2 << 30
    buckets = list(buckets)
    for b in sorted(set(buckets)):
        ids = np.array([i for i, x in enumerate(buckets) if x == b])
        cap = max(1, int(group_bytes // max(bytes_per_star(b), 1)))
        cap = 1 << (cap.bit_length() - 1)
        for s in range(0, ids.size, cap):
            part = ids[s:s + cap]
            g = 1 << (part.size - 1).bit_length()
            yield b, np.concatenate([part, np.full(g - part.size, part[0])]), part.size


@stage_jit(static_argnames=("K", "capped", "nmc", "ndraws", "mode", "use_gal", "use_dust", "gal_kwargs",
                           "serial"))
def _stage2(ids, keys, pre_idx, nsel, sel, lnprob_sel, base, scale, av, rv, icov, feh, loga, plx, plxe, coords, dust_d,
            dust_mu, dust_sd, avlim, rvlim, dust_avlim, shrink, *, K, capped, nmc, ndraws, mode, use_gal, use_dust,
            gal_kwargs, serial=False):
    """Stage 2 for stars ``ids`` (G,) of a stage-1 batch, star ``i`` with PRNG key
    ``keys[i]`` (``keys`` (B,): the batch's; vmapped; one compile per (K bucket,
    capped) and group size).

    ``capped`` (static, known on the host from the selection sizes): whether the
    group's stars selected more than K models (then K are drawn by ``mode``);
    ``nsel`` (B,): selection sizes; ``pre_idx`` (G, K) int32: for uncapped
    groups, the selected models' indices gathered on the host
    (`selected_indices_host`, cheaper than on XLA:CPU), or None to gather them
    here.  K depends only on each star's own selection size, so its draws (keyed by
    the star's own PRNG key) do not depend on batching or grouping.  ``icov``:
    `_stage1`'s `_IcovSource` (the K models' precisions are evaluated here).
    ``serial`` (static): the group's stars one after another (``lax.map``)
    instead of vmapped; same values.  On XLA:CPU it halves stage 2 (MIST grid,
    one core: 110 -> 54 ms/star); accelerators want the parallel vmap.
    """
    gkw = dict(gal_kwargs)

    def one(g, i, key):
        p_i, pe_i, lb_i, mu_i, sd_i = plx[i], plxe[i], coords[i], dust_mu[i], dust_sd[i]
        k_sel, k_mc, k_draw = jax.random.split(key, 3)
        if pre_idx is None or capped:
            idx, valid = gather_selected(k_sel, sel[i], lnprob_sel[i], K, mode, capped=capped)
        else:
            idx = pre_idx[g]
            valid = jnp.arange(K) < nsel[i]
        # only the K selected models of star i are gathered (row slices x[i] of the
        # (B, Nmodel) arrays cost a full-grid copy per star under vmap)
        base_k, s_k, a_k, r_k = (x[i, idx] for x in (base, scale, av, rv))
        ic_k = icov_at(BandMajorGrid(*(x[:, idx] for x in icov.grid)), icov.flux[i], icov.err[i], icov.mask[i], a_k,
                       r_k, icov.av_gauss, icov.rv_gauss)
        extra, aux = _mc_priors(p_i, pe_i, lb_i[0], lb_i[1], None if feh is None else feh[idx],
                                None if loga is None else loga[idx], gkw if use_gal else None,
                                (dust_d, mu_i, sd_i, dust_avlim) if use_dust else None, serial=serial)
        post = integrate_and_draw_lean(k_mc, k_draw, valid, base_k, s_k, a_k, r_k, ic_k, extra, aux, nmc=nmc,
                                       ndraws=ndraws, avlim=avlim, rvlim=rvlim, precision_shrinkage=shrink)
        di = post.draw_model
        return dict(
            model_idx=idx[di].astype(jnp.int32),
            ml_scale=s_k[di], ml_av=a_k[di], ml_rv=r_k[di],
            ml_cov_sar=inverse3(ic_k[di], regularize=True),
            obj_log_post=post.lnp[di], obj_log_evid=post.log_evid, mc_ess=post.mc_ess[di],
            samps_dist=post.draw_dist, samps_red=post.draw_av, samps_dred=post.draw_rv,
            samps_logp=post.draw_logp,
        )

    xs = (jnp.arange(ids.shape[0]), ids, keys[ids])
    return jax.lax.map(lambda x: one(*x), xs) if serial else jax.vmap(one)(*xs)


_fit_star_jit = stage_jit(static_argnames=("dim_prior", "init_thresh"))(fit_star)


class _Job(NamedTuple):
    inp: object  # FitInputs
    lnp_static: np.ndarray
    feh: object
    loga: object
    settings: dict
    key_settings: dict  # settings that enter the fingerprint
    fkey: str
    attrs: dict


def _as_key(rstate):
    """(PRNG key, integer seed) from None / int / numpy RandomState or Generator / JAX key."""
    if rstate is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    elif isinstance(rstate, (int, np.integer)):
        seed = int(rstate)
    elif isinstance(rstate, np.random.RandomState):
        seed = int(rstate.randint(0, 2**31 - 1))
    elif isinstance(rstate, np.random.Generator):
        seed = int(rstate.integers(0, 2**63 - 1))
    else:
        key = jnp.asarray(rstate)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key, None
        return jax.random.wrap_key_data(key.astype(jnp.uint32)), None
    return jax.random.key(seed), seed


def _bucket(n, cap, minimum=256):
    """Static number of model slots K for a star whose selection has n models:
    256, 1024, 4096, then 1.5x and 4/3x steps (6144, 8192, 12288, 16384, ...: powers
    of two and their halfway points), at most ``cap``.  Padding slots cost work in
    proportion to K, each bucket a compile: half-octave steps keep ~85 % of the slots
    busy against ~72 % with powers of two (`bench_fit.py`, 64 stars, one core: flux stage
    19.1 -> 16.8 and stage 2 61.9 -> 57.9 ms/star, 27 instead of 16 flux-stage compiles)."""
    k = minimum
    while k < n:
        k = k * 4 if k < 4096 else (k * 3 // 2 if k & (k - 1) == 0 else k * 4 // 3)
    return int(min(k, cap))


class BruteForce:
    """Bayesian fits of individual stars against a model grid (brutus.analysis.BruteForce).

    Parameters
    ----------
    star_grid : StarGrid
        The model grid (``brutus_jax.core.StarGrid``).
    verbose : bool
        Progress output to stderr.
    dtype : jnp dtype, optional
        Compute dtype; default float64 when ``jax_enable_x64`` is on, else float32.
    group_bytes : int, optional
        Memory (bytes) for the stars of one batch that share a bucket and go
        through the per-star stages (flux stage, stage 2) in one call (vmapped on
        accelerators, one after another on CPU); default
        `default_group_bytes` of the device (2 GiB on CPU, a tenth of an
        accelerator's memory), 0 for one star per call.  Results do not depend on it.
    devices : sequence of jax.Device, optional
        Devices that fit batches of stars in parallel (one host thread each,
        the grid replicated on every one); default all local devices of the
        default backend.  Results do not depend on it.
    threads_per_device : int, optional
        Host threads fitting batches concurrently on each device, so that one
        batch's dispatch and host syncs overlap another's device work; default 2
        on accelerators, 1 on CPU (`fit_runner.threads_for`).  Results do not
        depend on it.

    Attributes
    ----------
    star_grid, models (Nmodel, Nfilt, 3), models_labels (all labels and predictions,
    structured), labels_mask (structured bool, True for grid axes), nmodels, nfilters.
    """

    def __init__(self, star_grid, verbose=True, dtype=None, group_bytes=None, devices=None,
                 threads_per_device=None):
        self.star_grid = star_grid
        self.models = star_grid.models
        self.models_labels = star_grid.labels
        self.labels_mask = star_grid.labels_mask
        self.verbose = verbose
        self.dtype = dtype or _default_dtype()
        self.group_bytes = group_bytes
        self.threads_per_device = threads_per_device
        # flux stage and stage 2 over a group of stars: None picks by platform (lax.map on
        # CPU, vmap elsewhere); tests set it to compare both paths
        self._serial_stars = None
        self.devices = list(devices) if devices is not None else jax.local_devices()
        if not self.devices:
            raise ValueError("devices: expected at least one JAX device")
        self._host_gather = None  # selected models gathered by numpy (None: on CPU backends)
        self._lazy_scale_err = None  # `_stage1`'s lazy_scale_err (None: with a wt_thresh); tests compare
        self._grid = to_band_major(np.asarray(self.models), dtype=self.dtype)

    @property
    def nmodels(self):
        return int(self.models.shape[0])

    @property
    def nfilters(self):
        return int(self.models.shape[1])

    def get_sed_grid(self, indices=None, av=None, rv=None, return_flux=False):
        """SEDs, reddening vectors and their R_V derivatives (see StarGrid.get_sed_grid)."""
        return self.star_grid.get_sed_grid(indices=indices, av=av, rv=rv, return_flux=return_flux)

    # ------------------------------------------------------------------ single star
    def loglike_grid(self, data, data_err, data_mask, avlim=(0.0, 20.0), av_gauss=(0.0, 1e6), rvlim=(1.0, 8.0),
                     rv_gauss=(3.32, 0.18), av_init=None, rv_init=None, dim_prior=True, ltol=0.03,
                     ltol_subthresh=0.01, init_thresh=0.005, parallax=None, parallax_err=None,
                     return_vals=False, indices=None):
        """ln-likelihood of every model for one star (brutus semantics; see kernels.sedfit).

        Returns ``(lnl, Ndim, chi2)`` or, with ``return_vals``,
        ``(lnl, Ndim, chi2, scale, av, rv, icov_sar)`` as numpy arrays.
        ``av_init``/``rv_init`` are accepted for compatibility; like brutus 1.2
        the optimiser starts every model at the prior means.
        """
        data, data_err, data_mask = (np.atleast_1d(np.asarray(x)) for x in (data, data_err, data_mask))
        if not (data.shape == data_err.shape == data_mask.shape == (self.nfilters,)):
            raise ValueError(f"data, data_err, data_mask: expected shape ({self.nfilters},) each")
        clean = np.isfinite(data) & np.isfinite(data_err) & (data_err > 0) & data_mask.astype(bool)
        if not clean.any():
            raise ValueError("data_mask: no usable band (all masked, non-finite or with err <= 0)")
        grid = self._grid if indices is None else to_band_major(np.asarray(self.models)[indices], dtype=self.dtype)
        dt = self.dtype
        p = np.nan if parallax is None else float(parallax)
        pe = np.nan if parallax_err is None else float(parallax_err)
        fit = _fit_star_jit(
            grid, jnp.asarray(data, dt), jnp.asarray(data_err, dt), jnp.asarray(data_mask, bool),
            jnp.asarray(p, dt), jnp.asarray(pe, dt), avlim=avlim, av_gauss=av_gauss or (0.0, 1e6), rvlim=rvlim,
            rv_gauss=rv_gauss or (3.32, 1e6), dim_prior=bool(dim_prior), ltol=ltol, ltol_subthresh=ltol_subthresh,
            init_thresh=init_thresh)
        out = (np.asarray(fit.lnl), int(fit.ndim), np.asarray(fit.chi2))
        if return_vals:
            out += (np.asarray(fit.scale), np.asarray(fit.av), np.asarray(fit.rv), np.asarray(fit.icov))
        return out

    def logpost_grid(self, results, parallax=None, parallax_err=None, coord=None, Nmc_prior=100, lnprior=None,
                     wt_thresh=1e-3, cdf_thresh=2e-3, max_models=50000, precision_shrinkage=0.0,
                     subsample_mode="representative", lngalprior=None, lndustprior=None, dustfile=None,
                     dlabels=None, avlim=(0.0, 20.0), rvlim=(1.0, 8.0), mem_lim=8000.0, rstate=None,
                     apply_av_prior=True, R_solar=8.2, Z_solar=0.025):
        """Selection and MC prior integration for one star (brutus ``logpost_grid``).

        ``results`` is ``loglike_grid(..., return_vals=True)``.  ``lnprior``
        (per model) defaults to 0 here, as in brutus; ``fit`` assembles the
        static prior with `prior_setup.grid_lnprior`.  The Galactic prior is
        applied when ``coord`` (l, b) is given and ``lngalprior`` is not False;
        the dust prior when ``dustfile`` is given and ``apply_av_prior``.

        Returns ``(sel, cov_sar, lnp, dist_mc, av_mc, rv_mc, lnp_mc, mc_ess)``
        with sel the selected model indices and the MC arrays (Nsel, Nmc).
        """
        lnl, _, _, scale, av, rv, icov = results
        dt = self.dtype
        base = np.asarray(lnl, float) + (0.0 if lnprior is None else np.asarray(lnprior, float))
        p = np.nan if parallax is None else float(parallax)
        pe = np.nan if parallax_err is None else float(parallax_err)
        key, _ = _as_key(rstate if rstate is not None else 0)
        feh, loga = galactic_labels(self.models_labels if dlabels is None else dlabels)
        use_gal = coord is not None and lngalprior is not False
        use_dust = dustfile is not None and apply_av_prior
        dust_d, mu, sd = np.zeros(1), np.zeros(1), np.ones(1)
        if use_dust:
            from ..dust import Bayestar

            dmap = Bayestar(dustfile) if isinstance(dustfile, (str, os.PathLike)) else dustfile
            dust_d, mu, sd = (np.asarray(x, float) for x in dmap.query(np.atleast_2d(coord)))
            mu, sd = mu[0], sd[0]
        icov = jnp.asarray(icov, dt)
        scale = jnp.asarray(scale, dt)
        has_plx = np.isfinite(p) and np.isfinite(pe) and pe > 0
        lsel = jnp.asarray(base, dt)
        if has_plx:
            lsel = lsel + logp_parallax_scale(scale, _marginal_scale_err(icov), p, pe)
        lsel = jnp.where(jnp.isnan(lsel), -jnp.inf, lsel)
        sel = select_mask(lsel, wt_thresh, None if wt_thresh is not None else cdf_thresh)
        nsel = int(jnp.sum(sel))
        K = _bucket(nsel, int(max_models))
        nmc = int(max(1, min(int(Nmc_prior), int(mem_lim * 1e6 / (8 * max(nsel, 1) * 4)))))
        k_sel, k_mc = jax.random.split(key)
        idx, valid = gather_selected(k_sel, sel, lsel, K, subsample_mode)
        coord = (0.0, 0.0) if coord is None else tuple(float(c) for c in np.ravel(coord)[:2])
        extra, aux = _mc_priors(p, pe, coord[0], coord[1], None if feh is None else jnp.asarray(feh, dt)[idx],
                                None if loga is None else jnp.asarray(loga, dt)[idx],
                                dict(R_solar=float(R_solar), Z_solar=float(Z_solar)) if use_gal else None,
                                (jnp.asarray(dust_d, dt), jnp.asarray(mu, dt), jnp.asarray(sd, dt), (0.0, 20.0))
                                if use_dust else None)

        mc = mc_integrate(k_mc, valid, jnp.asarray(base, dt)[idx], scale[idx], jnp.asarray(av, dt)[idx],
                          jnp.asarray(rv, dt)[idx], icov[idx], lambda d, a, r: extra(d, a, r, aux), nmc=nmc,
                          avlim=tuple(avlim), rvlim=tuple(rvlim), precision_shrinkage=precision_shrinkage,
                          model_ids=idx)
        m = int(np.sum(np.asarray(valid)))
        take = lambda x: np.asarray(x)[:m]  # noqa: E731
        return (take(idx), take(inverse3(icov[idx], regularize=True)), take(mc.lnp), take(mc.dist), take(mc.av),
                take(mc.rv), take(mc.lnp_mc), take(mc.mc_ess))

    # ------------------------------------------------------------------ many stars
    def fit(self, data, data_err, data_mask, data_labels, save_file, phot_offsets=None, parallax=None,
            parallax_err=None, Nmc_prior=50, avlim=(0.0, 20.0), av_gauss=None, rvlim=(1.0, 8.0),
            rv_gauss=(3.32, 0.18), lnprior=None, wt_thresh=1e-3, cdf_thresh=2e-3, Ndraws=250, apply_agewt=True,
            apply_grad=True, lngalprior=None, lndustprior=None, dustfile=None, apply_dlabels=True,
            data_coords=None, logl_dim_prior=True, ltol=0.03, ltol_subthresh=0.01, logl_initthresh=0.005,
            mag_max=50.0, merr_max=0.25, rstate=None, save_dar_draws=True, running_io=True, mem_lim=8000.0,
            max_models=50000, precision_shrinkage=0.0, subsample_mode="representative", verbose=True,
            R_solar=8.2, Z_solar=0.025, overwrite=False, batch_size=None, key_offset=0):
        """Fit every star and write brutus's HDF5 output; returns the file path.

        Arguments and defaults are brutus 1.2.0's (see the seed document);
        fluxes in maggies, parallaxes in mas, ``data_coords`` Galactic (l, b) in
        degrees (or an astropy SkyCoord).  ``rstate`` may be None, an int seed,
        a numpy RandomState/Generator or a JAX PRNG key; the seed used is stored
        in the file's attributes.  Extensions: ``overwrite`` (replace an
        existing file of a different fit; by default such a file is refused and
        a file of the same fit is resumed), ``batch_size`` (stars per
        compiled batch; default from ``mem_lim`` on CPU, from the device's memory on
        an accelerator, `fit_runner.batch_size_for`) and ``key_offset`` (star
        ``i`` draws with ``fold_in(key, key_offset + i)``: a shard of a
        catalogue starting at row ``key_offset`` gives the rows of the
        whole-catalogue fit).

        Stars with no usable band get ``obj_Nbands = 0`` and ``obj_status = 2``;
        stars for which no model has finite posterior get ``obj_status = 3``.
        ``lngalprior`` / ``lndustprior`` callables are not supported (the priors
        are compiled kernels): pass None to use the defaults, or False to
        switch the Galactic prior off.
        """
        from .fit_runner import run_fit

        key, seed = _as_key(rstate)
        job = self._job(key, seed, rstate is None, data, data_err, data_mask, data_labels, phot_offsets, parallax,
                        parallax_err, Nmc_prior, avlim, av_gauss, rvlim, rv_gauss, lnprior, wt_thresh, cdf_thresh,
                        Ndraws, apply_agewt, apply_grad, lngalprior, lndustprior, dustfile, data_coords,
                        logl_dim_prior, ltol, ltol_subthresh, logl_initthresh, mag_max, merr_max, save_dar_draws,
                        max_models, precision_shrinkage, subsample_mode, R_solar, Z_solar, key_offset)
        out = FitOutput(save_file, job.inp.labels, Ndraws, save_dar_draws, job.fkey, overwrite=overwrite,
                        attrs=job.attrs)
        if out.resumed and rstate is None:
            key, seed = _as_key(int(out.attrs["brutus_jax_seed"]))
        try:
            run_fit(self, out, job.inp, key, job.lnp_static, job.feh, job.loga, job.settings, av_gauss, rv_gauss,
                    mem_lim, batch_size, running_io, verbose and self.verbose, self.devices)
        finally:
            out.close()
        return str(out.path)

    def fit_stream(self, read_rows, nrows, save_file, chunk_size=65536, rstate=None, key_offset=0, overwrite=False,
                   verbose=True, mem_lim=8000.0, batch_size=None, attrs=None, **fit_kwargs):
        """`fit` of a catalogue read block by block: memory holds one block.

        ``read_rows(start, stop)`` returns `fit`'s data keywords (``data``,
        ``data_err``, ``data_mask``, ``data_labels`` and optionally
        ``parallax``, ``parallax_err``, ``data_coords``) for rows
        ``start:stop`` of ``nrows``; ``fit_kwargs`` are `fit`'s other
        arguments.  Every row is written to one file, equal to
        ``fit`` on all rows at once with the same ``rstate`` and
        ``key_offset`` (row ``i`` draws with ``fold_in(key, key_offset + i)``).
        Re-running resumes; a block whose inputs differ from those the file
        was started with is refused (``chunk_keys`` records each block's
        fingerprint).  ``attrs``: extra file attributes (e.g. the catalogue's
        total rows, ``brutus_jax_catalog_rows``, which `catalog.merge_fits`
        uses to check that no shard is missing).  See `fit_stream.run_stream`.
        """
        from .fit_stream import run_stream

        return run_stream(self, read_rows, nrows, save_file, chunk_size, rstate, key_offset, overwrite, verbose,
                          mem_lim, batch_size, fit_kwargs, attrs)

    def _job(self, key, seed, fresh_seed, data, data_err, data_mask, data_labels, phot_offsets, parallax,
             parallax_err, Nmc_prior, avlim, av_gauss, rvlim, rv_gauss, lnprior, wt_thresh, cdf_thresh, Ndraws,
             apply_agewt, apply_grad, lngalprior, lndustprior, dustfile, data_coords, logl_dim_prior, ltol,
             ltol_subthresh, logl_initthresh, mag_max, merr_max, save_dar_draws, max_models, precision_shrinkage,
             subsample_mode, R_solar, Z_solar, key_offset):
        """Validated inputs, static prior, settings and fingerprint of a `fit` call."""
        from .fit_inputs import prepare_inputs

        inp = prepare_inputs(self, data, data_err, data_mask, data_labels, phot_offsets, parallax, parallax_err,
                             avlim, rvlim, data_coords, dustfile, lngalprior, lndustprior, mag_max, merr_max,
                             subsample_mode, Nmc_prior, Ndraws, max_models)
        lnp_static = grid_lnprior(self.models_labels, self.labels_mask, lnprior, apply_agewt, apply_grad)
        # apply_dlabels is accepted for compatibility: as in brutus 1.2 (gotcha 5) the Galactic
        # prior always sees the grid's feh/loga (prior_setup documents the one rule).
        feh, loga = galactic_labels(self.models_labels)
        settings = dict(Nmc_prior=Nmc_prior, avlim=tuple(avlim), av_gauss=av_gauss, rvlim=tuple(rvlim),
                        rv_gauss=rv_gauss, wt_thresh=wt_thresh, cdf_thresh=cdf_thresh, Ndraws=Ndraws,
                        apply_agewt=apply_agewt, apply_grad=apply_grad, use_gal=inp.use_gal,
                        dustfile=str(dustfile), logl_dim_prior=logl_dim_prior, ltol=ltol,
                        ltol_subthresh=ltol_subthresh, logl_initthresh=logl_initthresh, seed=seed,
                        save_dar_draws=save_dar_draws, max_models=max_models,
                        precision_shrinkage=precision_shrinkage, subsample_mode=subsample_mode, R_solar=R_solar,
                        Z_solar=Z_solar, nmodels=self.nmodels, dtype=str(jnp.dtype(self.dtype)),
                        key_offset=int(key_offset))
        # rstate=None draws a fresh seed; it is left out of the fingerprint and read back from the
        # file on resume, so re-running the same call continues the same fit
        key_settings = {k: v for k, v in settings.items() if not (k == "seed" and fresh_seed)}
        fkey = fingerprint(inp.flux, inp.err, inp.mask, inp.plx, inp.plxe, inp.coords, lnp_static, **key_settings)
        attrs = {"brutus_jax_seed": -1 if seed is None else seed, "brutus_jax_settings": repr(settings)}
        return _Job(inp, lnp_static, feh, loga, settings, key_settings, fkey, attrs)
