"""`fit_cluster(method="smc")`: the cluster posterior by adaptive tempered SMC.

NUTS chains keep the mode proportions they start with: on a posterior with
two separated modes (the age-[Fe/H]-A_V degeneracy, e.g. 500 members with
optima 2 nats apart) chains started in different modes never agree and R-hat
stays high.  Tempered SMC (`brutus_jax.kernels.smc`) moves particles from a
reference ``q0`` to the posterior and weights the modes by their mass.

* Space: every parameter through its logit (a bijection of the prior box onto
  R^d; the reflecting fold of the NUTS default has a periodic, non-integrable
  density that no normalised reference can be tempered into).
* Reference ``q0`` (``reference=``, `fit_cluster`'s ``smc_reference``):

  - ``"prior"`` (default): uniform in the prior box (logistic in z).  Needs
    no optimisation (`fit_cluster` skips it) and can find modes an optimiser
    misses; ~12 tempering steps on the 500-star toy cluster.
  - ``"laplace"``: an equal-weight mixture of Gaussians centred on
    the distinct optima of `fit_cluster`'s multi-start initialisation (within
    ``_MODE_NATS`` of the best; optima closer than 2 Mahalanobis units are
    merged), each with its Laplace covariance inflated ``inflate`` times in
    width.  Short path (~5 tempering steps); every mode the optimiser found
    is represented and the weights decide their shares, but a mode the
    optimiser missed stays missed: on the 500-star toy cluster (data seed 0)
    the L-BFGS starts all converged to the lower-likelihood mode (log age
    9.53, A_V 0.55) and this reference returned it alone, while the prior
    reference puts most of the mass in the better mode (9.60, 0.25) that
    includes the truth.
  - ``"both"``: half of each: every other particle from the prior box, the
    others from the Laplace mixture (``q0`` their equal-weight mixture).  The
    prior half finds modes the optimiser missed; the Laplace half finds
    narrow modes that prior draws never reach.  On the real Pleiades (80
    members, MIST) the prior reference alone ended in the all-field-star
    solution (field fraction 0.99, distance at its prior; ln Z -977) because
    the cluster's mode (distance within 0.3 %) holds a negligible share of the
    prior box at low temperature; "both" found it.  But on the 500-star toy
    (data seed 0) the Laplace half dominated the early reweightings and the
    prior half was resampled away before it reached the better mode: all
    runs agreed on the optimiser's mode (log age 9.53, A_V 0.56; the prior
    reference: 9.60, 0.25, with the truth).  Hence not the default.

* Output: ``num_chains`` independent SMC runs of ``num_samples`` particles, as
  (chains, draws) arrays; R-hat across runs checks that independent runs agree
  (e.g. on the modes' shares).  The particles stay in their genealogical order
  (systematic resampling keeps the descendants of one ancestor next to each
  other), so the autocorrelation-based ESS counts related particles as
  correlated, as for `fit_los_clouds`.
* Independence Metropolis-Hastings after tempering (``imh_steps`` > 0,
  `kernels.imh`): each run's particles start one chain each, proposing from a
  kernel density fitted to that run's particles; the draws are the chains'
  states, one chain after the other.  SMC's particles are few and related
  (resampled copies); the chains turn the same density evaluations into many
  nearly independent draws (acceptance ~0.4 on the toy clusters: ~0.2
  effective samples per evaluation, against ~0.005 for the SMC particles
  and ~0.008 for emcee), and they correct mode shares that a run got wrong as
  long as its particles reached every mode.
"""

from __future__ import annotations

import concurrent.futures
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.imh import imh_refit_run
from ..kernels.smc import smc_run

__all__ = ["laplace_mixture", "run_smc", "smc_flags", "REFERENCES"]

REFERENCES = ("both", "laplace", "prior")
#: optima further than this below the best are not given a reference component [nats]
_MODE_NATS = 20.0
#: below this independence-MH acceptance rate a run is flagged (its chains barely move)
_IMH_MIN_ACCEPT = 0.05
#: independence-MH steps with the particles' kernel density before it is refitted to the chains' states
#: (`kernels.imh.imh_refit_run`)
_IMH_FIRST_STEPS = 10


def laplace_mixture(z_opt, lp_opt, covs, inflate=2.0):
    """Distinct optima -> (means (K, d), Cholesky factors (K, d, d)) of the reference mixture.

    ``z_opt`` (M, d) sorted best first with ``lp_opt`` (M,); ``covs`` (M, d, d)
    their Laplace covariances.  Optima within ``_MODE_NATS`` of the best are
    kept unless within Mahalanobis distance 2 (under the kept optimum's
    covariance) of one already kept.
    """
    keep = []
    for k in range(len(z_opt)):
        if not (np.isfinite(lp_opt[k]) and lp_opt[k] > lp_opt[0] - _MODE_NATS):
            continue
        dup = False
        for j in keep:
            dz = z_opt[k] - z_opt[j]
            if float(dz @ np.linalg.solve(covs[j], dz)) < 4.0:
                dup = True
                break
        if not dup:
            keep.append(k)
    means = np.stack([z_opt[k] for k in keep])
    chols = np.stack([np.linalg.cholesky(inflate**2 * covs[k]) for k in keep])
    return means, chols


def _mixture_logpdf(means, chols):
    """ln of the equal-weight Gaussian mixture with the given means and Cholesky factors."""
    K, d = means.shape
    logdet = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=1, axis2=2)), axis=1)

    def logpdf(z):
        r = jax.vmap(lambda L, m: jax.scipy.linalg.solve_triangular(L, z - m, lower=True))(chols, means)
        comp = -0.5 * jnp.sum(r * r, axis=1) - logdet - 0.5 * d * math.log(2 * math.pi)
        return jax.scipy.special.logsumexp(comp) - math.log(K)

    return logpdf


def _logistic_logpdf(z):
    return jnp.sum(jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))


def run_smc(make_logdensity, args, key, rng, num_runs, num_particles, ndim, reference, means=None, chols=None, *,
            num_mcmc_steps=20, target_ess=0.5, max_stages=100, batch=16, dtype=jnp.float64, workers=1,
            imh_steps=0):
    """Tempered SMC from the chosen reference -> (z (R, M, d), ln pi (R, M), info dict).

    ``imh_steps`` = 0: the particles (M = N).  ``imh_steps`` = L > 0: each run's particles
    then start N independence Metropolis-Hastings chains of L steps with a kernel density
    proposal fitted to that run's particles (`kernels.imh`); the draws are the chains'
    states, chain after chain (M = N L; each chain's L draws adjacent, so the
    autocorrelation ESS sees their correlation), and each run stays independent of the others.

    ``make_logdensity(*args)``: z (d,) -> log posterior on the logit space
    (d = ``ndim``; ``args``, e.g. the data arrays, are passed to the compiled
    function as arguments, not baked in as constants); ``means``/``chols``:
    `laplace_mixture` (``reference="laplace"`` only); ``workers`` > 1: the runs
    on that many host threads (one compiled program; the draws do not depend on it).
    ``info["log_evidence"]`` (R,): ln of the integral of ``exp(logdensity)`` over z, i.e.
    ``ln int L(theta) exp(sum of the priors' logpdfs) dtheta`` over the prior box, with
    the priors as given (unnormalised: subtract ln(hi - lo) of each uniform parameter for the
    evidence under normalised uniform priors).
    """
    R, N, d = int(num_runs), int(num_particles), int(ndim)
    if reference not in REFERENCES:
        raise ValueError(f"smc_reference: one of {REFERENCES}, got {reference!r}")
    u = rng.uniform(1e-9, 1 - 1e-9, size=(R, N, d))
    z_prior = np.log(u) - np.log1p(-u)
    if reference != "prior":
        comp = rng.integers(0, means.shape[0], size=(R, N))
        z_lap = means[comp] + np.einsum("rnij,rnj->rni", chols[comp], rng.normal(size=(R, N, d)))
        log_lap = _mixture_logpdf(jnp.asarray(means, dtype), jnp.asarray(chols, dtype))
    if reference == "prior":
        z0, log_ref = z_prior, _logistic_logpdf
    elif reference == "laplace":
        z0, log_ref = z_lap, log_lap
    else:  # "both": an equal-weight mixture of the two (every other particle from each)
        z0 = np.where((np.arange(N) % 2 == 0)[None, :, None], z_prior, z_lap)

        def log_ref(z):
            return jnp.logaddexp(_logistic_logpdf(z), log_lap(z)) - math.log(2.0)

    @jax.jit
    def go(keys, z, args):
        logdensity = make_logdensity(*args)

        def one(k, z_):
            out = smc_run(k, lambda q: logdensity(q) - log_ref(q), log_ref, z_, int(num_mcmc_steps),
                          float(target_ess), int(max_stages), batch=int(batch), independence=True)
            zp = out[0]
            lp = out[1] + jax.vmap(log_ref)(zp)  # ln pi = ell + ln q0
            if not imh_steps:
                return (zp, lp) + out[2:] + (zp, jnp.zeros((), zp.dtype))
            batched = lambda q: jax.lax.map(logdensity, q, batch_size=int(batch))  # noqa: E731
            zs, lps, acc_imh = imh_refit_run(k, batched, zp, lp, int(imh_steps), _IMH_FIRST_STEPS)
            return (zs.reshape(-1, zp.shape[1]), lps.reshape(-1)) + out[2:] + (zp, acc_imh)

        return jax.vmap(one)(keys, z)

    keys, z0 = jax.random.split(key, R), jnp.asarray(z0, dtype)
    if workers <= 1:
        out = go(keys, z0, args)
    else:  # one host thread per run (XLA:CPU runs one such program on about one core)
        with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
            parts = list(pool.map(lambda r: jax.block_until_ready(go(keys[r:r + 1], z0[r:r + 1], args)), range(R)))
        out = [jnp.concatenate(x) for x in zip(*parts)]
    z, log_target, logz, stages, beta, acc, particles, acc_imh = (np.asarray(x) for x in out)
    uniq = np.array([np.unique(particles[r], axis=0).shape[0] / N for r in range(R)])
    info = dict(log_evidence=logz, n_steps=stages, finished=beta >= 1.0, acceptance=acc,
                unique_fraction=uniq, reference=reference, imh_steps=int(imh_steps),
                imh_acceptance=acc_imh if imh_steps else None,
                reference_means=np.asarray(means) if reference != "prior" else None)
    return z, log_target, info


def smc_flags(info, max_stages):
    """Reasons (list of str) not to call an SMC run converged, beyond R-hat / ESS."""
    flags = []
    if not np.all(info["finished"]):
        flags.append(f"SMC did not reach beta = 1 within {max_stages} tempering steps")
    # not a criterion: the spread of ln Z across runs (reported in the summary).  With few moves per
    # stage ln Z is biased low by tens of nats in some runs while their posteriors agree (60-star toy,
    # prior reference, 2 x 96 particles x 8 moves: ln Z -467 and -420, the same 95 % intervals)
    if np.min(info["unique_fraction"]) < 0.2:
        flags.append(f"few distinct particles (min fraction {np.min(info['unique_fraction']):.2f}); "
                     "raise smc_mcmc_steps")
    acc = info.get("imh_acceptance")
    if acc is not None and np.min(acc) < _IMH_MIN_ACCEPT:
        flags.append(f"independence MH acceptance {np.min(acc):.3f} < {_IMH_MIN_ACCEPT}: the particles' "
                     "density is a poor proposal (raise num_samples or smc_mcmc_steps)")
    return flags
