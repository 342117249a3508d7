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

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .linalg3 import cholesky3, inverse3

__all__ = ["lnd_precision", "laplace_draws", "MCIntegral", "mc_integrate", "draw_posterior",
           "StarPosterior", "integrate_and_draw"]

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


def laplace_draws(key, scale, av, rv, icov, nmc, avlim=(0.0, 20.0), rvlim=(1.0, 8.0),
                  precision_shrinkage=0.0, model_ids=None):
    """Antithetic Gaussian draws of (d [kpc], A_V, R_V): each (K, nmc).

    With ``model_ids`` (K,) the normals of each model come from
    ``fold_in(key, model_id)``, so a model's draws do not depend on K or on
    its position among the selected models (results independent of batching).
    """
    s = jnp.maximum(scale, MIN_SCALE)
    mean = jnp.stack([-0.5 * jnp.log(s), av, rv], axis=-1)  # (K, 3)
    cov = inverse3(lnd_precision(icov, scale, precision_shrinkage), regularize=True)
    L = cholesky3(cov)
    nh = (nmc + 1) // 2
    if model_ids is None:
        z = jax.random.normal(key, (scale.shape[0], nh, 3), dtype=mean.dtype)
    else:
        z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (nh, 3), dtype=mean.dtype))(model_ids)
    z = jnp.concatenate([z, -z], axis=1)[:, :nmc]  # antithetic pairs
    x = mean[:, None, :] + jnp.einsum("kij,knj->kni", L, z)
    d = jnp.clip(jnp.exp(x[..., 0]), 1e-3, 1e6)
    a = jnp.clip(x[..., 1], avlim[0], avlim[1])
    r = jnp.clip(x[..., 2], rvlim[0], rvlim[1])
    return d, a, r


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
    d, a, r = laplace_draws(key, scale, av, rv, icov, nmc, avlim, rvlim, precision_shrinkage, model_ids)
    lnp_mc = lnprob_base[:, None] + jnp.log(d) + extra_lnprior(d, a, r)
    lnp_mc = jnp.where(valid[:, None] & ~jnp.isnan(lnp_mc), lnp_mc, -jnp.inf)
    # one pass of exponentials serves the log-mean-exp and the ESS
    mx = jnp.max(lnp_mc, axis=1, keepdims=True)
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    w = jnp.exp(lnp_mc - mx)
    sw = jnp.sum(w, axis=1)
    sw2 = jnp.sum(w * w, axis=1)
    pos = sw > 0
    lnp = jnp.where(pos, mx[:, 0] + jnp.log(jnp.where(pos, sw, 1.0)) - jnp.log(float(nmc)), -jnp.inf)
    ess = jnp.where(pos, sw * sw / jnp.where(sw2 > 0, sw2, 1.0), 0.0)
    return MCIntegral(d, a, r, lnp_mc, lnp, ess)


def draw_posterior(key, valid, mc, ndraws):
    """Evidence, ``ndraws`` models ~ exp(lnp) (with replacement) and one MC sample
    per draw ~ exp(lnp_mc).  Returns (log_evid, model (ndraws,), sample (ndraws,)).

    Models are drawn by inverse-CDF sampling in slot order, so trailing padding
    slots (zero weight) do not change the draws.
    """
    k_model, k_pick = jax.random.split(key)
    log_evid = jax.nn.logsumexp(mc.lnp)
    # uniform over valid models if every weight vanished (flagged by log_evid = -inf)
    logits = jnp.where(jnp.isfinite(log_evid), mc.lnp, jnp.where(valid, 0.0, -jnp.inf))
    w = jnp.exp(logits - jnp.max(logits))
    cdf = jnp.cumsum(w)
    u = jax.random.uniform(k_model, (ndraws,), dtype=cdf.dtype) * cdf[-1]
    last = jnp.maximum(jnp.sum(w > 0) - 1, 0)
    idx = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last)
    idx = jnp.where(w[idx] > 0, idx, jnp.argmax(w))
    picks = mc.lnp_mc[idx]
    picks = jnp.where(jnp.any(jnp.isfinite(picks), axis=1, keepdims=True), picks, 0.0)
    j = jax.random.categorical(k_pick, picks, axis=-1)
    return log_evid, idx, j


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
