"""Monte-Carlo integration of the priors over (ln d, A_V, R_V) and posterior draws.

For one star and its K selected models (padded to a static K; ``valid`` marks
the real ones) this is brutus's ``logpost_grid`` after selection plus the
evidence and resampling of ``_fit`` (ALGORITHMS.md §3.7-3.8):

* the Laplace approximation of each model's likelihood in
  (eta = ln d = -1/2 ln s, A_V, R_V) is the proposal: precision
  ``J[0,0] = 4 s^2 I00``, ``J[0,k] = -2 s I0k``, other entries of the
  (s, A_V, R_V) Fisher matrix unchanged (optionally off-diagonals shrunk);
* ``Nmc`` antithetic draws per model, clipped to d in [1e-3, 1e6] kpc,
  A_V in avlim, R_V in rvlim;
* ``lnp_mc = lnprob_base + ln d + extra priors(d, A_V)``;
  ``lnp = logsumexp(lnp_mc) - ln Nmc``; ``mc_ess = 1 / sum w^2``;
* evidence ``logsumexp(lnp)``; ``Ndraws`` models resampled with replacement
  ``~ exp(lnp)`` and one MC sample per draw picked ``~ exp(lnp_mc)``.

All randomness comes from an explicit PRNG key (one per star).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .linalg3 import cholesky3, inverse3
from .hashrng import hash_bits, unit_interval
from .selection import searchsorted_unrolled

__all__ = ["lnd_precision", "standard_normals", "laplace_lnd_draws", "laplace_draws", "MCIntegral", "mc_integrate",
           "draw_posterior", "StarPosterior", "integrate_and_draw", "DrawnPosterior", "integrate_and_draw_lean"]

MIN_SCALE = 1e-20


def lnd_precision(icov, scale, precision_shrinkage=0.0):
    """Precision in (ln d, A_V, R_V) from the (s, A_V, R_V) one; (..., 3, 3)."""
    s = jnp.maximum(scale, MIN_SCALE)
    J = icov
    J = J.at[..., 0, 0].set(4.0 * s * s * icov[..., 0, 0])
    for k in (1, 2):
        J = J.at[..., 0, k].set(-2.0 * s * icov[..., 0, k])
        J = J.at[..., k, 0].set(-2.0 * s * icov[..., k, 0])
    off = 1.0 - jnp.eye(3, dtype=J.dtype)
    return J * (1.0 - precision_shrinkage * off)  # traced-safe; identity for 0


def standard_normals(key, shape, dtype, offset=None):
    """Standard normal variates from a counter-based hash keyed by a JAX PRNG key.

    Two 32-bit words drawn from ``key`` seed ``lowbias32(lowbias32(c ^ s0) + s1)``
    over the counters ``c`` of the output (with ``offset`` (shape[0],), row k
    counts from ``offset[k] * prod(shape[1:])``: disjoint streams per row); the top 23 bits give ``u`` in (0, 1) and
    ``z = sqrt(2) erfinv(2u - 1)`` (so ``|z| < 5.3``, finite in float32 too).  On XLA:CPU this is
    ~7x cheaper than ``jax.random.normal`` (threefry), which dominated the
    Monte-Carlo prior integration; moments, a KS test and independence across
    keys are checked in tests/test_linalg3_posterior.py.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    size = int(np.prod(shape[1:])) if offset is not None else 0
    c = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape)
    if offset is not None:  # rows get disjoint counter ranges starting at offset * size
        c = c % jnp.uint32(max(size, 1)) + (offset.astype(jnp.uint32) * jnp.uint32(size)).reshape(
            (shape[0],) + (1,) * (len(shape) - 1))
    return _hash_normals(seed, c, dtype)


def _hash_normals(seed, counters, dtype):
    """N(0, 1) variates of uint32 ``counters`` under the two seed words (see `standard_normals`)."""
    bits = hash_bits(seed, counters)
    u = 2.0 * unit_interval(bits, dtype) - 1.0  # (2u - 1) in (-1, 1), exact: |z| < 5.3
    return jnp.asarray(math.sqrt(2.0), dtype) * jax.lax.erf_inv(u)


_LN_DMIN, _LN_DMAX = math.log(1e-3), math.log(1e6)


def laplace_lnd_draws(key, scale, av, rv, icov, nmc, avlim=(0.0, 20.0), rvlim=(1.0, 8.0),
                      precision_shrinkage=0.0, model_ids=None):
    """Antithetic Gaussian draws of (ln d, d [kpc], A_V, R_V), each (K, nmc).

    ln d is clipped to [ln 1e-3, ln 1e6] (d in [1e-3, 1e6] kpc), A_V to avlim,
    R_V to rvlim.  With ``model_ids`` (K,) each model's normals come from its
    own counter range, so a model's draws do not depend on K or on its
    position among the selected models.  Expensive intermediates are
    materialised (``optimization_barrier``): XLA:CPU otherwise re-computes
    the hash and the 3x3 factorisation inside every consumer (3x slower).
    """
    s = jnp.maximum(scale, MIN_SCALE)
    dt = jnp.result_type(s.dtype, av.dtype)
    cov = inverse3(lnd_precision(icov, scale, precision_shrinkage), regularize=True)
    L = jax.lax.optimization_barrier(cholesky3(cov))
    nh = (nmc + 1) // 2
    z = jax.lax.optimization_barrier(standard_normals(key, (scale.shape[0], 3, nh), dt, model_ids))
    z = jnp.concatenate([z, -z], axis=2)[..., :nmc]  # antithetic pairs
    z0, z1, z2 = z[:, 0], z[:, 1], z[:, 2]
    col = lambda v: v[:, None]  # noqa: E731
    x0 = col(-0.5 * jnp.log(s)) + col(L[:, 0, 0]) * z0
    x1 = col(av) + col(L[:, 1, 0]) * z0 + col(L[:, 1, 1]) * z1
    x2 = col(rv) + col(L[:, 2, 0]) * z0 + col(L[:, 2, 1]) * z1 + col(L[:, 2, 2]) * z2
    lnd = jnp.clip(x0, _LN_DMIN, _LN_DMAX)
    return jax.lax.optimization_barrier(
        (lnd, jnp.exp(lnd), jnp.clip(x1, avlim[0], avlim[1]), jnp.clip(x2, rvlim[0], rvlim[1])))


def laplace_draws(key, scale, av, rv, icov, nmc, avlim=(0.0, 20.0), rvlim=(1.0, 8.0),
                  precision_shrinkage=0.0, model_ids=None):
    """Antithetic Gaussian draws of (d [kpc], A_V, R_V): each (K, nmc)
    (`laplace_lnd_draws` without ln d)."""
    return laplace_lnd_draws(key, scale, av, rv, icov, nmc, avlim, rvlim, precision_shrinkage, model_ids)[1:]


class StarPosterior(NamedTuple):
    lnp: jax.Array  # (K,) MC-integrated log-posterior per selected model (-inf for padding)
    mc_ess: jax.Array  # (K,)
    cov_sar: jax.Array  # (K, 3, 3) covariance in (s, A_V, R_V)
    log_evid: jax.Array  # ()
    draw_model: jax.Array  # (Ndraws,) index into the K selected models
    draw_dist: jax.Array  # (Ndraws,) kpc
    draw_av: jax.Array
    draw_rv: jax.Array
    draw_logp: jax.Array  # lnp_mc of the picked MC sample


class MCIntegral(NamedTuple):
    dist: jax.Array  # (K, nmc) kpc
    av: jax.Array  # (K, nmc)
    rv: jax.Array  # (K, nmc)
    lnp_mc: jax.Array  # (K, nmc)
    lnp: jax.Array  # (K,)
    mc_ess: jax.Array  # (K,)


def mc_integrate(key, valid, lnprob_base, scale, av, rv, icov, extra_lnprior, *, nmc,
                 avlim=(0.0, 20.0), rvlim=(1.0, 8.0), precision_shrinkage=0.0, model_ids=None):
    """MC integration of the priors for K models (see module docstring).

    ``extra_lnprior(d, A_V, R_V) -> (K, nmc)`` adds the priors beyond the static
    one (Galactic structure, dust map, parallax); it must be jax-traceable.
    Padding models (``valid`` False) get lnp = -inf and mc_ess = 0.
    """
    lnd, d, a, r = laplace_lnd_draws(key, scale, av, rv, icov, nmc, avlim, rvlim, precision_shrinkage, model_ids)
    lnp_mc = lnprob_base[:, None] + lnd + extra_lnprior(d, a, r)
    lnp_mc = jax.lax.optimization_barrier(jnp.where(valid[:, None] & ~jnp.isnan(lnp_mc), lnp_mc, -jnp.inf))
    lnp, ess = _log_mean_exp_ess(lnp_mc)
    return MCIntegral(d, a, r, lnp_mc, lnp, ess)


def _log_mean_exp_ess(*parts, axis=-1):
    """(log mean exp, Kish ESS) over ``axis`` (the samples) of ``lnp_mc`` (given whole
    or as ``parts`` that would be concatenated along it); -inf / 0 where every term is
    -inf.  One pass of exponentials serves both."""
    nmc = sum(x.shape[axis] for x in parts)
    mx = functools.reduce(jnp.maximum, [jnp.max(x, axis=axis, keepdims=True) for x in parts])
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    w = [jnp.exp(x - mx) for x in parts]
    sw = sum(jnp.sum(x, axis=axis) for x in w)
    sw2 = sum(jnp.sum(x * x, axis=axis) for x in w)
    pos = sw > 0
    lnp = jnp.where(pos, jnp.squeeze(mx, axis) + jnp.log(jnp.where(pos, sw, 1.0)) - jnp.log(float(nmc)), -jnp.inf)
    ess = jnp.where(pos, sw * sw / jnp.where(sw2 > 0, sw2, 1.0), 0.0)
    return lnp, ess


def draw_posterior(key, valid, mc, ndraws):
    """Evidence, ``ndraws`` models ~ exp(lnp) (with replacement) and one MC sample
    per draw ~ exp(lnp_mc).  Returns (log_evid, model (ndraws,), sample (ndraws,)).

    Models are drawn by inverse-CDF sampling in slot order, so trailing padding
    slots (zero weight) do not change the draws.
    """
    k_model, k_pick = jax.random.split(key)
    log_evid, idx = _draw_models(k_model, valid, mc.lnp, ndraws)
    return log_evid, idx, _pick_samples(k_pick, mc.lnp_mc[idx])


def _draw_models(key, valid, lnp, ndraws):
    """(log evidence, ``ndraws`` model slots ~ exp(lnp)) by inverse-CDF sampling."""
    log_evid = jax.nn.logsumexp(lnp)
    # uniform over valid models if every weight vanished (flagged by log_evid = -inf)
    logits = jnp.where(jnp.isfinite(log_evid), lnp, jnp.where(valid, 0.0, -jnp.inf))
    w = jnp.exp(logits - jnp.max(logits))
    cdf = jnp.cumsum(w)
    u = jax.random.uniform(key, (ndraws,), dtype=cdf.dtype) * cdf[-1]
    last = jnp.maximum(jnp.sum(w > 0) - 1, 0)
    idx = jnp.minimum(searchsorted_unrolled(cdf, u, side="right"), last)
    return log_evid, jnp.where(w[idx] > 0, idx, jnp.argmax(w))


def _pick_samples(key, picks):
    """One MC sample per row of ``picks`` (ndraws, nmc) ~ exp(picks)."""
    picks = jnp.where(jnp.any(jnp.isfinite(picks), axis=1, keepdims=True), picks, 0.0)
    return jax.random.categorical(key, picks, axis=-1)


class DrawnPosterior(NamedTuple):
    lnp: jax.Array  # (K,) MC-integrated log-posterior per model slot (-inf for padding)
    mc_ess: jax.Array  # (K,)
    log_evid: jax.Array  # ()
    draw_model: jax.Array  # (Ndraws,) slot of each draw
    draw_dist: jax.Array  # (Ndraws,) kpc
    draw_av: jax.Array
    draw_rv: jax.Array
    draw_logp: jax.Array  # lnp_mc of the picked MC sample


def _mc_block(K, largest=2048):
    """Models per block of `integrate_and_draw_lean`'s first pass: K itself up to
    ``largest``, else the largest divisor of K that is a multiple of 8 and at most
    ``largest`` (K when there is none).  Measured (K x 50 samples, Galactic prior +
    parallax, float32): on one core the (samples, K) layout ran at 16-17 ns per
    sample up to K = 16384 against ~20.5 for (K, samples), but at 24-29 for K =
    24576-50000, when the per-model values no longer stay in cache across the
    samples; and XLA:CPU spreads a pass over the cores by its outer (block) axis,
    so one block of 16384 models ran on one core of two.  Blocks of <= 2048: one
    core 18.6 (K = 8192) and 17.6 (K = 50000) ns per sample with the draws, two
    cores 10.4 and 10.2, against ~21.6 / ~22 and ~12 / ~12.2 for (K, samples)."""
    if K <= largest:
        return K
    best = next((c for c in range(largest - largest % 8, 7, -8) if K % c == 0), None)
    return best or K


def integrate_and_draw_lean(key_mc, key_draw, valid, lnprob_base, scale, av, rv, icov, extra_lnprior, aux=None, *,
                            nmc, ndraws, avlim=(0.0, 20.0), rvlim=(1.0, 8.0), precision_shrinkage=0.0):
    """`mc_integrate` + `draw_posterior` without returning the (K, nmc) samples.

    Pass 1 computes each model's ``lnp`` and ``mc_ess`` from its ``nmc``
    samples; pass 2 draws ``ndraws`` model slots and regenerates only their
    samples, which the counter-based normals reproduce exactly (model slot k
    uses the counters of row k).  Same key use, draws and values as
    `mc_integrate` followed by `draw_posterior` (to rounding; tested), without
    the four (K, nmc) outputs.  (Chunking pass 1 over models with ``lax.map``
    was measured 5x slower on XLA:CPU.)

    ``key_mc`` seeds the samples (as the key of `mc_integrate`), ``key_draw``
    the draws (as the key of `draw_posterior`).  ``extra_lnprior(d, A_V, R_V,
    aux_k)`` must broadcast: pass 1 calls it with the points of all K models in
    blocks, (K/c, n, c), and each leaf of ``aux`` reshaped from (K, ...) to
    (K/c, 1, c, ...); pass 2 per model with (nmc,) points and that model's slice
    ``aux_k`` of the pytree ``aux`` (leading axis K).
    """
    dt = jnp.result_type(scale.dtype, av.dtype)
    seed = jax.random.bits(key_mc, (2,), jnp.uint32)
    nh = (nmc + 1) // 2
    cov = inverse3(lnd_precision(icov, scale, precision_shrinkage), regularize=True)
    L = cholesky3(cov)
    ln_s = -0.5 * jnp.log(jnp.maximum(scale, MIN_SCALE))

    def normals(slot, comp, j=None):  # component comp (0: ln d, 1: A_V, 2: R_V) of model slot, sample j
        j = jax.lax.iota(jnp.uint32, nh) if j is None else j  # default: the slot's nh samples
        c = slot.astype(jnp.uint32) * jnp.uint32(3 * nh) + jnp.uint32(comp * nh) + j
        return _hash_normals(seed, c, dt)

    def lnp_mc_of(z, ln_s_k, av_k, rv_k, L_k, base_k, ok_k, aux_k):
        z0, z1, z2 = z
        x0 = ln_s_k + L_k[0, 0] * z0
        x1 = av_k + L_k[1, 0] * z0 + L_k[1, 1] * z1
        x2 = rv_k + L_k[2, 0] * z0 + L_k[2, 1] * z1 + L_k[2, 2] * z2
        lnd = jnp.clip(x0, _LN_DMIN, _LN_DMAX)
        d, a, r = jnp.exp(lnd), jnp.clip(x1, avlim[0], avlim[1]), jnp.clip(x2, rvlim[0], rvlim[1])
        lnp_mc = base_k + lnd + extra_lnprior(d, a, r, aux_k)
        return d, a, r, jnp.where(ok_k & ~jnp.isnan(lnp_mc), lnp_mc, -jnp.inf)

    def samples(slot, *rest):  # the nmc samples of one model: the antithetic pairs (z, -z)
        z = [jnp.concatenate([x, -x])[:nmc] for x in (normals(slot, c) for c in range(3))]
        return lnp_mc_of(z, *rest)

    K = scale.shape[0]
    slots = jnp.arange(K)
    per_model = (slots, ln_s, av, rv, L, lnprob_base, valid, aux)
    # Pass 1 evaluates the two antithetic halves separately: each normal of the three
    # components then has two consumers, so XLA:CPU computes it once into a buffer
    # (only the components the priors use: ln d's without a dust prior) instead of
    # re-deriving hash and erf_inv for every sample inside the fused sample loop
    # (MC pass 24.3 -> 21.0 ns/sample, benchmarks/README.md).  Laid out (K / c, nh, c):
    # blocks of c models, samples, the block's models, so the long model axis is the
    # vectorised one (rows of 25 samples leave XLA:CPU's loops mostly in remainders)
    # while a block's per-model values stay in cache across its samples, and the
    # blocks spread over the cores (`_mc_block`).
    # Same values as `samples` (the sums run in another order).
    c = _mc_block(K)
    blk = lambda x: x.reshape((K // c, 1, c) + x.shape[1:])  # noqa: E731  (K, ...) -> (K/c, 1, c, ...)
    z = [normals(blk(slots), comp, jax.lax.iota(jnp.uint32, nh)[None, :, None]) for comp in range(3)]
    m = nmc - nh
    every = (blk(ln_s), blk(av), blk(rv), jnp.moveaxis(L, 0, -1).reshape((3, 3, K // c, 1, c)),
             blk(lnprob_base), blk(valid), jax.tree_util.tree_map(blk, aux))
    halves = [lnp_mc_of(h, *every)[3] for h in [z] + ([[-x[:, :m] for x in z]] if m else [])]
    lnp, ess = (x.reshape(K) for x in _log_mean_exp_ess(*halves, axis=1))
    k_model, k_pick = jax.random.split(key_draw)
    log_evid, di = _draw_models(k_model, valid, lnp, ndraws)
    d, a, r, lnp_mc = jax.vmap(samples)(*jax.tree_util.tree_map(lambda x: x[di], per_model))
    dj = _pick_samples(k_pick, lnp_mc)
    pick = lambda x: jnp.take_along_axis(x, dj[:, None], axis=1)[:, 0]  # noqa: E731
    return DrawnPosterior(lnp, ess, log_evid, di, pick(d), pick(a), pick(r), pick(lnp_mc))


def integrate_and_draw(key, valid, lnprob_base, scale, av, rv, icov, extra_lnprior, *, nmc, ndraws,
                       avlim=(0.0, 20.0), rvlim=(1.0, 8.0), precision_shrinkage=0.0):
    """``mc_integrate`` then ``draw_posterior`` for one star's K models."""
    k_mc, k_draw = jax.random.split(key)
    mc = mc_integrate(k_mc, valid, lnprob_base, scale, av, rv, icov, extra_lnprior, nmc=nmc, avlim=avlim,
                      rvlim=rvlim, precision_shrinkage=precision_shrinkage, model_ids=None)
    log_evid, idx, j = draw_posterior(k_draw, valid, mc, ndraws)
    return StarPosterior(lnp=mc.lnp, mc_ess=mc.mc_ess, cov_sar=inverse3(icov, regularize=True),
                         log_evid=log_evid, draw_model=idx, draw_dist=mc.dist[idx, j], draw_av=mc.av[idx, j],
                         draw_rv=mc.rv[idx, j], draw_logp=mc.lnp_mc[idx, j])
