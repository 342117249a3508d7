r"""Adaptive tempered sequential Monte Carlo (SMC) with random-walk Metropolis moves.

One run moves ``N`` particles from a normalised reference density ``q0``
(easy to sample) to the target ``q0(z) exp(ell(z))`` through the tempered
path ``q0(z) exp(beta ell(z))``, ``beta`` from 0 to 1.  Two uses:

* ``q0`` = the prior and ``ell`` = the log-likelihood (`fit_los_clouds`);
* ``q0`` = any normalised approximation of the posterior ``pi`` (e.g. a
  mixture of Gaussians at the optima of a multimodal posterior) and
  ``ell = ln pi - ln q0`` (`fit_cluster(method="smc")`).

Each iteration (Del Moral, Doucet & Jasra 2006; adaptive schedule of Jasra et
al. 2011):

1. **Move** at the current ``beta``: ``num_mcmc_steps`` random-walk Metropolis
   steps with the Gaussian proposal ``scale * chol(cov)`` from the particles'
   covariance; ``scale`` starts at ``2.38 / sqrt(d)`` and is adapted towards
   30 % acceptance.  With ``independence=True`` every second step is instead an
   independence Metropolis-Hastings step from N(particle mean, 2 cov): a global
   move that crosses a curved ridge in one step (the cluster fits use it).  (In
   the first iteration the first step evaluates the reference draws themselves,
   so ``ell`` has a single call site: half the compile time.)
2. **Reweight** to the next ``beta``, found by bisection so that the effective
   sample size of the incremental weights ``exp(dbeta ell)`` is
   ``target_ess`` N (or ``beta = 1`` if that is reached first); ``ln Z``
   accumulates ``ln mean exp(dbeta ell)``.
3. **Resample** (systematic).

The run ends with a move at ``beta = 1``.  Every particle carries the whole
path, so the final population holds each mode in proportion to its mass as
long as ``q0`` puts particles into every mode's basin (the moves only need to
mix WITHIN a mode), unlike MCMC chains, which keep the proportions they start
with.  ``ln Z`` estimates ``ln \int q0 exp(ell)`` (= the evidence for a
prior reference).  Independent runs (vmap `smc_run` over keys) give the
diagnostics: R-hat across runs, the spread of ``ln Z``.

`smc_run` is a pure function of arrays and two log-density callables, to be
vmapped over runs / data sets and jitted by the caller.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["smc_run", "lse", "particle_chol"]

#: target acceptance rate of the random-walk moves
_ACCEPT_TARGET = 0.3


def lse(x, axis=-1):
    """log-sum-exp with a stopped-gradient shift; ``-inf`` for an all ``-inf`` axis."""
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.squeeze(m, axis) + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis))


def particle_chol(z, fallback=1.0):
    """Cholesky factor of the covariance of particles ``z`` (N, d), with a relative jitter
    (1e-9 in float64, 1e-5 in float32); ``fallback`` times the identity if it is not finite."""
    n, d = z.shape
    dt = z.dtype
    zc = z - z.mean(axis=0)
    cov = zc.T @ zc / (n - 1)
    jitter = 1e-9 if dt == jnp.float64 else 1e-5
    cov = cov + jitter * (jnp.trace(cov) / d + 1.0) * jnp.eye(d, dtype=dt)
    chol = jnp.linalg.cholesky(cov)
    return jnp.where(jnp.all(jnp.isfinite(chol)), chol, fallback * jnp.eye(d, dtype=dt))


def smc_run(key, ell_fn, log_ref_fn, z0, num_mcmc_steps, target_ess, max_stages, batch=None, independence=False):
    """One adaptive tempered SMC run from ``z0`` (N, d) ~ q0.

    Parameters
    ----------
    key : PRNG key.
    ell_fn : callable z (d,) -> ell(z) (the tempered log-ratio; NaN counts as -inf).
    log_ref_fn : callable z (d,) -> ln q0(z).
    z0 : (N, d) draws from q0.
    num_mcmc_steps, max_stages : int (static) Metropolis steps per stage; most reweightings.
    target_ess : float, ESS fraction of each reweighting.
    batch : int, optional; particles per ``lax.map`` chunk of ``ell_fn`` (None: all vmapped).
    independence : bool (static); every second move an independence Metropolis-Hastings
        step from a Gaussian with the particles' mean and twice their covariance
        (global moves; the random-walk scale adapts on the random-walk steps only).

    Returns
    -------
    (z (N, d), ell (N,), ln Z, number of reweightings, final beta, mean acceptance)
    """
    n, d = z0.shape
    dt = z0.dtype
    if batch is None or batch >= n:
        ll_fn = jax.vmap(ell_fn)
    else:
        ll_fn = lambda q: jax.lax.map(ell_fn, q, batch_size=int(batch))  # noqa: E731
    ref_fn = jax.vmap(log_ref_fn)
    z = z0
    ll = jnp.full((n,), -jnp.inf, dt)
    lp = ref_fn(z).astype(dt)
    scale0 = 2.38 / math.sqrt(d)
    log_n = math.log(n)

    def ess_frac(lw):
        return jnp.exp(2.0 * lse(lw) - lse(2.0 * lw) - log_n)

    def cond(st):
        # stop after the mutation at beta = 1, at the stage cap, or when every weight vanished
        return ~st[-1] & ((st[6] < max_stages) | (st[4] >= 1.0)) & ~jnp.isneginf(st[5])

    def body(st):
        key, z, ll, lp, beta, logz, stage, scale, acc_sum, it, _ = st
        first = it == 0
        key, km, kr = jax.random.split(key, 3)
        # ---- mutation at beta: random-walk Metropolis with the particles' covariance
        chol = particle_chol(z, 0.1)
        mu = z.mean(axis=0)

        def log_q(x):  # independence proposal N(mu, 2 cov), up to a constant
            y = jax.scipy.linalg.solve_triangular(chol, (x - mu).T, lower=True)
            return -0.25 * jnp.sum(y * y, axis=0)

        def mh(carry, inp):
            z, ll, lp, nacc = carry
            k, i = inp
            k1, k2 = jax.random.split(k)
            fresh = first & (i == 0)  # evaluate the reference draws (accepted unconditionally)
            eps = jax.random.normal(k1, (n, d), dt) @ chol.T
            indep = independence & (i % 2 == 1)
            prop = jnp.where(fresh, z, jnp.where(indep, mu + math.sqrt(2.0) * eps, z + scale * eps))
            llp = ll_fn(prop).astype(dt)
            llp = jnp.where(jnp.isnan(llp), -jnp.inf, llp)
            lpp = ref_fn(prop).astype(dt)
            la = lpp - lp + beta * (llp - ll) + jnp.where(indep, log_q(z) - log_q(prop), 0.0)
            la = jnp.where(jnp.isneginf(llp), -jnp.inf, jnp.where(jnp.isneginf(ll), jnp.inf, la))
            acc = fresh | (jnp.log(jax.random.uniform(k2, (n,), dt)) < la)
            nacc = nacc + jnp.where(fresh | indep, 0, jnp.sum(acc, dtype=jnp.int32))
            return (jnp.where(acc[:, None], prop, z), jnp.where(acc, llp, ll), jnp.where(acc, lpp, lp), nacc), None

        (z, ll, lp, nacc), _ = jax.lax.scan(
            mh, (z, ll, lp, jnp.zeros((), jnp.int32)),
            (jax.random.split(km, num_mcmc_steps), jnp.arange(num_mcmc_steps)))
        n_indep = num_mcmc_steps // 2 if independence else 0
        nmoves = num_mcmc_steps - n_indep - first.astype(jnp.int32)
        rate = jnp.where(nmoves > 0, nacc / (n * jnp.maximum(nmoves, 1)), _ACCEPT_TARGET)
        scale = jnp.clip(scale * jnp.exp(2.0 * (rate - _ACCEPT_TARGET)), 0.02 * scale0, 3.0 * scale0).astype(dt)
        done = beta >= 1.0

        # ---- reweight to the next beta (ESS of the incremental weights = target_ess N)
        logw = lambda dl: jnp.where(jnp.isneginf(ll), -jnp.inf, dl * ll)  # noqa: E731
        rem = 1.0 - beta
        full = ess_frac(logw(rem)) >= target_ess

        def bisect(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            good = ess_frac(logw(mid)) >= target_ess
            return jnp.where(good, mid, lo), jnp.where(good, hi, mid)

        _, hi = jax.lax.fori_loop(0, 50, bisect, (jnp.zeros((), dt), rem))
        delta = jnp.where(full | done, rem, hi)
        lw = logw(delta)
        logz = jnp.where(done, logz, logz + lse(lw) - log_n)
        beta = jnp.where(full | done, 1.0, beta + delta).astype(dt)
        cdf = jnp.cumsum(jax.nn.softmax(lw))
        pos = (jax.random.uniform(kr, (), dt) + jnp.arange(n, dtype=dt)) / n
        idx = jnp.clip(jnp.searchsorted(cdf, pos), 0, n - 1)
        idx = jnp.where(done, jnp.arange(n), idx)
        z, ll, lp = z[idx], ll[idx], lp[idx]
        stage = stage + jnp.where(done, 0, 1)
        acc_sum = acc_sum + jnp.where(first, 0.0, rate)
        return key, z, ll, lp, beta, logz, stage, scale, acc_sum, it + 1, done

    st = (key, z, ll, lp, jnp.zeros((), dt), jnp.zeros((), dt), jnp.zeros((), jnp.int32), jnp.asarray(scale0, dt),
          jnp.zeros((), dt), jnp.zeros((), jnp.int32), jnp.bool_(False))
    _, z, ll, _, beta, logz, stage, _, acc_sum, it, _ = jax.lax.while_loop(cond, body, st)
    return z, ll, logz, stage, beta, acc_sum / jnp.maximum(it - 1, 1)
