"""Cluster fits: the population likelihood sampled with blackjax NUTS (or tempered SMC).

brutus leaves sampling ``isochrone_population_loglike`` to the user (emcee,
hours).  :func:`fit_cluster` returns a converged posterior in one call:

1. **Space.**  The free parameters of theta = [feh, loga, av, rv, dist,
   field_frac] are mapped to R (`cluster_params`, ``transform=``): the
   distance by a scaled logit with its Jacobian, the others by a reflecting
   fold at their bounds (unit Jacobian); priors are documented there.
2. **Initialisation** (the age-[Fe/H]-distance-A_V degeneracy makes the
   likelihood multimodal): ``num_starts`` stratified points in the prior box
   (distances drawn around the members' median parallax when parallaxes are
   given) scored with a 0.3 mag error floor, the best ``num_opt`` optimised
   by L-BFGS (optax, at most ``opt_steps`` iterations per stage, stopping
   once it stops gaining) on the log posterior in a continuation over error floors
   0.3, 0.1, 0.03 mag down to ``err_floor`` (wide basins first; the field
   fraction held at 0.1 in the first stage); chains start at the distinct optima within 10 nats of the best
   (others from the best), each jittered by half the Laplace covariance.
3. **NUTS** with blackjax's window adaptation of the step size and a DENSE
   inverse mass matrix (a diagonal one does not mix on cluster likelihoods,
   JAX_NOTES.md), started from the Laplace covariance at the best optimum, ``num_warmup`` then ``num_samples`` per chain, chains run
   on one host thread each (CPU) or vmapped (accelerators); each compiled
   once per call.  Or (``method="smc"``, for posteriors with separated modes)
   adaptive tempered SMC from the prior (or from a mixture of Gaussians at
   the optima; `cluster_smc`): independent runs take the chains' place.
4. **Diagnostics**: rank-normalised split R-hat, bulk/tail ESS
   (`diagnostics`), divergences, step sizes, acceptance.  A run is called
   converged only when every free parameter has R-hat < 1.01 and
   ESS >= ``min_ess`` and no transition diverged; otherwise a warning is
   issued and ``result.converged`` is False with the reasons in
   ``result.flags``.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from . import cluster_smc
from . import diagnostics as diag
from .cluster_result import ClusterResult
from .cluster_params import PARAMS, build_specs, free_names, log_prior_jacobian, to_theta, to_z
from .populations import _check_obs, isochrone_population_loglike

__all__ = ["fit_cluster", "cluster_logdensity", "ClusterResult"]


def _prepare_obs(obs_phot, obs_err, parallax, parallax_err, mask, err_floor, dtype):
    """(flux, err, parallax, parallax_err, mask) in ``dtype`` (None where not given);
    shapes checked as `isochrone_population_loglike` checks them."""
    if (parallax is None) != (parallax_err is None):
        raise ValueError("parallax_err: parallax and parallax_err must be given together")
    if err_floor < 0 or not np.isfinite(err_floor):
        raise ValueError(f"err_floor: must be a finite magnitude >= 0, got {err_floor}")
    flux, err = _check_obs(obs_phot, obs_err, mask, parallax, parallax_err, names=("obs_phot", "obs_err"))
    if flux.shape[0] == 0:
        raise ValueError("obs_phot: no objects")
    cast = lambda x: None if x is None else jnp.asarray(x, dtype)  # noqa: E731
    return tuple(cast(x) for x in (flux, err, parallax, parallax_err, mask))


#: field fraction of the starting points, held during the first optimisation stage:
#: from a poor start, "every star is a field star" is a wide basin of the posterior
#: (flat in the other parameters) that a free optimiser falls into.
_FF_START = 0.1
#: error floors [mag] of the initialisation's continuation stages (those above err_floor)
_INIT_FLOORS = (0.3, 0.1, 0.03)
#: SMC: width factor of the Laplace reference components, most tempering steps
_SMC_INFLATE = 3.0
_SMC_MAX_STEPS = 100
#: SMC: default particles per run (with the independence-MH chains after tempering, 200
#: particles converged in 10/10 simulated 60-star clusters; without them it took 500)
_SMC_PARTICLES = 200


def _smc_batch(nobj):
    """Particles evaluated together by SMC: ~2M (object, row) likelihood terms per chunk."""
    return int(max(1, min(64, 2**21 // max(1500 * int(nobj), 1))))


#: L-BFGS stopping rule of the initialisation: a gain below abs + rel * |ln p| nats
_OPT_TOL = (1e-3, 1e-7)


#: a posterior median field fraction above this is flagged: almost no star is explained as a member
_FIELD_MAX = 0.9


def _field_flag(samples, names):
    """[reason] when the median field fraction exceeds ``_FIELD_MAX`` (a missed cluster mode, a
    wrong population or wrong priors), else []."""
    if "field_frac" not in names:
        return []
    med = float(np.median(samples["field_frac"]))
    if not med > _FIELD_MAX:
        return []
    return [f"median field fraction {med:.3f} > {_FIELD_MAX}: the model explains almost no star as a member "
            "(a missed cluster mode? with method='smc' try smc_reference='both'; or check the data and priors)"]


def _init_points(rng, specs, n, parallax, parallax_err):
    """Stratified (Latin hypercube) starting points for the free parameters."""
    free = [s for s in specs if s.fixed is None]
    u = (rng.permuted(np.tile(np.arange(n), (len(free), 1)), axis=1).T + rng.uniform(size=(n, len(free)))) / n
    x = np.empty_like(u)
    for k, s in enumerate(free):
        lo, hi = s.lo, s.hi
        if s.name == "dist":
            d0 = None
            if parallax is not None:
                p, pe = np.asarray(parallax, float), np.asarray(parallax_err, float)
                good = np.isfinite(p) & np.isfinite(pe) & (pe > 0) & (p > 3 * pe)
                if good.sum() >= 3:
                    d0 = 1000.0 / np.median(p[good])
            if d0 is not None and lo < d0 < hi:
                x[:, k] = np.clip(d0 * np.exp(0.2 * (u[:, k] - 0.5)), lo, hi)
            else:  # uniform in log distance
                x[:, k] = np.exp(np.log(lo) + u[:, k] * (np.log(hi) - np.log(lo)))
        elif s.name == "field_frac":  # a minority of field stars (see _FF_START)
            x[:, k] = np.clip(_FF_START, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo))
        else:
            x[:, k] = lo + (hi - lo) * (0.05 + 0.9 * u[:, k])
    return x


def _host_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _fd_hessian(grad_fn, z, dtype, zdtype, *args):
    """Hessian by central differences of the gradient (second-order autodiff can be NaN
    where a model has integrable singularities, e.g. u**1.6 at u = 0)."""
    h = 1e-4 if jnp.dtype(dtype) == jnp.float64 else 3e-2
    eye = np.eye(z.size) * h
    g = np.stack([np.asarray(grad_fn(jnp.asarray(q, zdtype), *args), float)
                  for q in np.concatenate([z + eye, z - eye])])
    hess = (g[:z.size] - g[z.size:]) / (2 * h)
    return 0.5 * (hess + hess.T)


def _laplace_covariance(hess, max_var=4.0):
    """Covariance ``(-H)^-1`` of the log density's Hessian, eigenvalues clipped to
    (1e-10, ``max_var``] (unconstrained units; non-concave directions get ``max_var``)."""
    h = -0.5 * (hess + hess.T)
    if not np.all(np.isfinite(h)):
        return np.eye(h.shape[0])
    w, v = np.linalg.eigh(h)
    var = np.where(w > 1.0 / max_var, 1.0 / np.maximum(w, 1e-300), max_var)
    var = np.clip(var, 1e-10, max_var)
    return (v * var) @ v.T


def cluster_logdensity(stellarpop, specs, obs, err_floor, cluster_prob=0.95, row_measure="smooth",
                       **likelihood_kwargs):
    """`fit_cluster`'s log posterior as a function of the unconstrained free parameters z.

    ``specs``: `cluster_params.build_specs`; ``obs``: (flux, err, parallax,
    parallax_err, mask) (None where absent); ``err_floor`` [mag] (may be traced)
    is added in quadrature to the errors.  Returns ``logdensity(z)``: ln
    likelihood + ln prior + ln|dtheta/dz|, ``-inf`` where not finite.  Also what
    other samplers (e.g. emcee in benchmarks/bench_cluster_emcee.py) should use.
    """
    flux, err, plx, plxe, msk = obs
    err = jnp.sqrt(err**2 + (err_floor * (math.log(10.0) / 2.5) * flux) ** 2)

    def logdensity(z):
        theta, lp = log_prior_jacobian(z, specs)
        ll = isochrone_population_loglike(theta, stellarpop, flux, err, parallax=plx, parallax_err=plxe,
                                          cluster_prob=cluster_prob, mask=msk, row_measure=row_measure,
                                          **likelihood_kwargs)
        out = ll + lp
        return jnp.where(jnp.isfinite(out), out, -jnp.inf)

    return logdensity


def fit_cluster(stellarpop, obs_phot, obs_err, parallax=None, parallax_err=None, mask=None, cluster_prob=0.95,
                priors=None, num_chains=4, num_warmup=500, num_samples=None, seed=0, progress=True, *,
                err_floor=0.02, num_starts=64, num_opt=None, opt_steps=100, chain_method=None,
                target_accept=0.8, max_num_doublings=10, min_ess=None, dtype=None, row_measure="smooth",
                transform=None, method="nuts", smc_reference="prior", smc_mcmc_steps=20, smc_target_ess=0.5,
                smc_imh_steps=100, **likelihood_kwargs):
    """Posterior of a coeval cluster's [Fe/H], log age, A_V, R_V, distance and field fraction.

    Parameters
    ----------
    stellarpop : StellarPop or a population with ``get_seds_smf_grid_jax``
        (e.g. `brutus_jax.data.toy_population.ToyPopulation`).
    obs_phot, obs_err : array (N_objects, N_filters)
        Fluxes ``10**(-0.4 mag)`` in the population's filters and their errors.
    parallax, parallax_err : array (N_objects,), optional
        [mas]; both or neither.
    mask : array (N_objects, N_filters), optional
        Band mask (1 = use).
    cluster_prob : float
        Prior membership probability (as ``isochrone_population_loglike``).
    priors : dict, optional
        Per-parameter bounds / log-densities / fixed values (`cluster_params`).
    num_chains, num_warmup, num_samples : int
        Chains; warmup (window adaptation) and kept draws per chain (default
        500).  ``method="smc"``: runs and particles per run (default 200).
    seed : int or JAX PRNG key
    progress : bool
        Progress bar (stderr) over initialisation, warmup and sampling.
    err_floor : float
        Magnitude error added in quadrature to every band [mag]; default 0.02.
        It stands for isochrone/BC systematics and smooths the ripple that a
        discrete EEP grid puts into the likelihood in A_V and distance when
        the photometric errors are smaller than the grid's magnitude spacing;
        (benchmarks/README.md).  0 with ``row_measure="brutus"`` reproduces
        ``isochrone_population_loglike``.
    num_starts, num_opt, opt_steps : int
        Initialisation: prior points scored, how many of the best are
        optimised (default ``num_chains``; SMC: twice that), most L-BFGS iterations per
        continuation stage (it stops earlier after 3 iterations gaining
        < 1e-3 nats).
    chain_method : {"parallel", "sequential", "vectorized"}, optional
        "parallel" (default on CPU): one host thread per chain, as many at
        once as the process has cores; "sequential": one chain at a time;
        "vectorized" (default on accelerators): the chains vmapped in one
        program.  The draws do not depend on it (each chain has its own key).
        Measured on 2 cores (60 stars, 4 chains x 200 + 200): 85 s parallel,
        125 s sequential.
    target_accept, max_num_doublings : NUTS settings (0.8, 10).
    min_ess : float, optional
        Bulk and tail ESS required to call the run converged (default 100 per chain).
    dtype : optional
        Compute dtype of the likelihood (default float64 under x64, else
        float32).  The sampler's own state (positions, momenta, step sizes)
        is float64 whenever x64 is enabled, so ``dtype="float32"`` under x64
        runs the expensive likelihood in float32 and NUTS in float64.  On
        CPU that is the fast setting (XLA:CPU's float64 ``log`` is ~4x
        slower): 500 members with ``method="smc"`` converge in ~3.5-4 min on
        2 cores, and on the 60-star toy the posterior agrees with float64 to
        3 digits (benchmarks/README.md).
    row_measure : {"smooth", "brutus"}
        Grid measure of the likelihood (`isochrone_population_loglike`).
        Default "smooth", a deliberate difference from brutus: brutus's
        measure drops the last valid row of the isochrone, so the integral's
        end jumps by a whole EEP cell whenever a terminal row switches
        validity with age or [Fe/H] -- O(1)-nat discontinuities that stop
        NUTS from mixing.  "smooth" gives the cell straddling the terminal
        EEP the fraction of it below the end; it equals brutus's measure
        whenever the end is on a grid node and differs from it by at most
        one terminal cell in between (benchmarks/README.md).
    transform : None, "logit", "reflect" or dict {name: transform}
        Map of each parameter to the sampled space (`cluster_params`).  None:
        the defaults (``dist`` logit; the others "reflect", a fold at the
        box's bounds with unit Jacobian that keeps posteriors which reach a
        bound, such as A_V near 0, free of exponential tails).  ``method="smc"``
        needs (and defaults to) "logit" everywhere.
    method : {"nuts", "smc"}
        "nuts" (default): ``num_chains`` NUTS chains.  "smc": ``num_chains``
        independent adaptive tempered SMC runs of ``num_samples`` particles
        each (`cluster_smc`; on CPU one host thread per run; ``num_warmup``, ``chain_method``,
        ``target_accept`` and ``max_num_doublings`` are not used).  Use it when
        the posterior has separated modes (NUTS chains then disagree and
        R-hat stays high): SMC weights the modes by their mass.
    smc_reference : {"prior", "both", "laplace"}
        SMC's starting distribution (benchmarks/README.md): the prior box
        ("prior", default: no optimisation; finds broad modes an optimiser
        misses, but can miss a narrow one: on the real Pleiades it ended in
        the all-field-star solution, 53 nats of ln Z below the cluster, which
        the field-fraction flag below catches), a mixture of Gaussians at the
        distinct optima of the initialisation ("laplace": fewer tempering
        steps, but blind to modes the optimiser missed: on the 500-star toy
        it returned the wrong one of two modes), or half of each ("both":
        found the Pleiades' cluster mode, but on the 500-star toy the prior
        half was resampled away before it reached the better mode, so it
        returned the optimiser's mode like "laplace").  A run whose median
        field fraction exceeds 0.9 is flagged (the model then explains almost
        no star): try "both".
    smc_mcmc_steps, smc_target_ess : int, float
        Metropolis steps per tempering step (20: random-walk and independence
        steps alternating, `kernels.smc.smc_run`) and the ESS fraction that
        sets each temperature increment (0.5).  10 steps are twice as fast
        and converged on the 60-star toy (83 s) and the 500-star toy, but in
        only 7 of 10 simulated clusters (benchmarks/README.md).
    smc_imh_steps : int
        After tempering, each particle starts an independence Metropolis-Hastings
        chain of this many steps whose proposal is a kernel density fitted to
        its run's particles (`kernels.imh`); the draws are the chains' states,
        so ``samples[...]`` has ``num_samples * smc_imh_steps`` draws per run
        (0: the particles themselves, ``num_samples`` per run).  The chains
        need no burn-in (they start at the particles), correct mode shares
        a run got slightly wrong, and give ~0.1-0.2 effective samples per
        evaluation against ~0.005 for the particles and ~0.007 for emcee
        (acceptance 0.3-0.5 on the toy clusters).  Default 100: ~15-25 % of
        the SMC run's evaluations (benchmarks/README.md).
    **likelihood_kwargs
        Forwarded to ``isochrone_population_loglike`` (``smf_grid``,
        ``eep_grid``, ``dim_prior``, ``mini_bound``, ``eep_binary_max``,
        ``corr_params``, outlier options).

    Returns
    -------
    ClusterResult
    """
    import optax
    from tqdm.auto import tqdm

    if method not in ("nuts", "smc"):
        raise ValueError(f"method: 'nuts' or 'smc', got {method!r}")
    num_samples = int(num_samples if num_samples is not None else (500 if method == "nuts" else _SMC_PARTICLES))
    if num_chains < 1 or num_samples < 4 or (method == "nuts" and num_warmup < 20):
        raise ValueError("num_chains >= 1, num_samples >= 4 and num_warmup >= 20 are required")
    if method == "smc":
        if smc_reference not in cluster_smc.REFERENCES:
            raise ValueError(f"smc_reference: one of {cluster_smc.REFERENCES}, got {smc_reference!r}")
        if not (0.0 < smc_target_ess < 1.0) or int(smc_mcmc_steps) < 1 or int(smc_imh_steps) < 0:
            raise ValueError("smc_target_ess must be in (0, 1), smc_mcmc_steps >= 1 and smc_imh_steps >= 0")
        transform = "logit" if transform is None else transform
    if row_measure not in ("smooth", "brutus"):
        raise ValueError(f"row_measure: 'smooth' or 'brutus', got {row_measure!r}")
    if chain_method is None:
        chain_method = "parallel" if jax.default_backend() == "cpu" else "vectorized"
    if chain_method not in ("sequential", "parallel", "vectorized"):
        raise ValueError(f"chain_method: 'sequential', 'parallel' or 'vectorized', got {chain_method!r}")
    zdtype = jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)  # sampler state
    dtype = jnp.dtype(dtype or zdtype)  # likelihood
    specs = build_specs(stellarpop, priors, transform)
    if method == "smc" and any(sp.transform != "logit" for sp in specs if sp.fixed is None):
        raise ValueError("transform: method='smc' needs the logit map for every parameter (a reflected "
                         "parameter has a periodic density that cannot be tempered from a normalised reference)")
    names = free_names(specs)
    nfree = len(names)
    if nfree == 0:
        raise ValueError("priors: every parameter is fixed; nothing to sample")
    obs = _prepare_obs(obs_phot, obs_err, parallax, parallax_err, mask, float(err_floor), dtype)
    popdata = stellarpop.jax_data(dtype) if hasattr(stellarpop, "jax_data") else None
    num_opt = int(num_opt or (num_chains if method == "nuts" else 2 * num_chains))
    min_ess = float(100 * num_chains if min_ess is None else min_ess)
    seed_int = seed if isinstance(seed, (int, np.integer)) else 0
    key = jax.random.key(int(seed)) if isinstance(seed, (int, np.integer)) else seed
    rng = np.random.default_rng(int(seed_int))

    def make_logdensity(data, obs_, floor=None):
        """Log posterior on z; ``floor`` [mag] (traced) is added in quadrature to the errors."""
        pop = stellarpop.with_data(data) if data is not None else stellarpop
        ld = cluster_logdensity(pop, specs, obs_, err_floor if floor is None else floor, cluster_prob,
                                row_measure, **likelihood_kwargs)
        if dtype == zdtype:
            return ld
        return lambda z: ld(z.astype(dtype)).astype(z.dtype)  # float32 likelihood, float64 sampler

    timing = {}
    nbar = 1 if method == "smc" or chain_method == "vectorized" else num_chains
    bar = tqdm(total=2 + nbar + (10 if method == "nuts" else 0), disable=not progress,
               desc="fit_cluster", file=sys.stderr)

    # ---------------------------------------------------------------- 1. initialisation
    def initialise():
        """Multi-start L-BFGS continuation -> (optima, their ln p, iterations, Laplace covariance,
        chain starts, the jitted gradient)."""
        t0 = time.perf_counter()
        x0 = _init_points(rng, specs, int(num_starts), parallax, parallax_err)
        z0 = jnp.asarray(to_z(x0, specs), zdtype)

        @jax.jit
        def score(zs, floor, data, obs_):
            return jax.lax.map(make_logdensity(data, obs_, floor), zs)

        # continuation: the starts are scored and optimised with large error floors first (wide
        # basins, gradients that point to the cluster sequence), then with the requested floor
        floors = [f for f in _INIT_FLOORS if f > err_floor] + [float(err_floor)]
        lp0 = np.asarray(score(z0, floors[0], popdata, obs))
        order = np.argsort(-np.where(np.isfinite(lp0), lp0, -np.inf))[:num_opt]
        bar.set_postfix_str("optimising")
        hold_mask = jnp.asarray([0.0 if n == "field_frac" else 1.0 for n in names], zdtype)

        @jax.jit
        def optimise(zs, floor, hold, data, obs_):
            """L-BFGS (optax) on -log posterior from each start; gradients of held
            parameters are zeroed."""
            ld = make_logdensity(data, obs_, floor)
            mask = jnp.where(hold, hold_mask, 1.0)

            def neg(q):
                v = -ld(q)
                return jnp.where(jnp.isfinite(v), v, 1e30)

            opt = optax.lbfgs()
            vg = optax.value_and_grad_from_state(neg)

            def one(z):
                # at most opt_steps iterations; stop once 3 consecutive ones gain < _OPT_TOL nats
                # (float32 line searches otherwise spin at the optimum: ~20 evaluations per step)
                def step(carry):
                    z, st, v_prev, it, flat = carry
                    v, g = vg(z, state=st)
                    g = jnp.where(jnp.isfinite(g), g, 0.0) * mask
                    upd, st = opt.update(g, st, z, value=v, grad=g, value_fn=neg)
                    small = jnp.abs(v_prev - v) < _OPT_TOL[0] + _OPT_TOL[1] * jnp.abs(v)
                    return optax.apply_updates(z, upd), st, v, it + 1, jnp.where(small, flat + 1, 0)

                def going(carry):
                    return (carry[3] < int(opt_steps)) & (carry[4] < 3)

                big = jnp.asarray(jnp.inf, z.dtype)
                z, _, _, it, _ = jax.lax.while_loop(going, step, (z, opt.init(z), big, 0, 0))
                return z, ld(z), it

            return jax.lax.map(one, zs)

        zs = z0[order]
        opt_iters = []
        for k, fl in enumerate(floors):  # the field fraction is held at its start in the first stage
            zs, lp_opt, its = optimise(zs, fl, k == 0 and len(floors) > 1, popdata, obs)
            opt_iters.append(np.asarray(its))
        z_opt, lp_opt = np.asarray(zs), np.asarray(lp_opt)
        lp_opt = np.where(np.isfinite(lp_opt), lp_opt, -np.inf)
        rank = np.argsort(-lp_opt)
        z_opt, lp_opt = z_opt[rank], lp_opt[rank]
        if not np.isfinite(lp_opt[0]):
            raise RuntimeError("fit_cluster: no starting point has a finite posterior density; check the "
                               "photometry units (fluxes 10**(-0.4 mag)), filters and priors")
        starts = [z_opt[k] if (k < len(z_opt) and lp_opt[k] > lp_opt[0] - 10.0) else z_opt[0]
                  for k in range(num_chains)]
        # Laplace approximation at the best optimum: the initial dense inverse mass matrix (the
        # unconstrained scales differ by ~100x, so identity-mass warmup needs ~1000-step trajectories)
        grad_j = jax.jit(lambda z, data, obs_: jax.grad(make_logdensity(data, obs_))(z))
        hess = _fd_hessian(grad_j, np.asarray(z_opt[0], float), dtype, zdtype, popdata, obs)
        imm0 = _laplace_covariance(hess)
        chol = np.linalg.cholesky(imm0)
        zc = jnp.asarray(np.stack(starts) + 0.5 * rng.normal(size=(num_chains, nfree)) @ chol.T, zdtype)
        timing["init"] = time.perf_counter() - t0
        return z_opt, lp_opt, opt_iters, imm0, zc, grad_j

    if method == "nuts" or smc_reference != "prior":
        z_opt, lp_opt, opt_iters, imm0, zc, grad_j = initialise()
    else:  # SMC from the prior needs no optimum; the best particle stands in for the MAP below
        timing["init"], z_opt = 0.0, None
    bar.update(2)

    # ---------------------------------------------------------------- 2. sampling
    if method == "nuts":
        pos, logd, extra = _run_nuts(make_logdensity, popdata, obs, zc, imm0, key, timing, bar, num_chains=num_chains,
                                     num_warmup=num_warmup, num_samples=num_samples, chain_method=chain_method,
                                     target_accept=target_accept, max_num_doublings=max_num_doublings,
                                     zdtype=zdtype)
    else:
        t0 = time.perf_counter()
        bar.set_postfix_str("SMC")
        means = chols = None
        if smc_reference != "prior":
            covs = [imm0] + [_laplace_covariance(_fd_hessian(grad_j, np.asarray(z, float), dtype, zdtype, popdata,
                                                              obs)) for z in z_opt[1:]]
            means, chols = cluster_smc.laplace_mixture(z_opt, lp_opt, np.stack(covs), inflate=_SMC_INFLATE)
        pos, logd, sm = cluster_smc.run_smc(
            make_logdensity, (popdata, obs), key, rng, num_chains, num_samples, nfree, smc_reference, means, chols,
            num_mcmc_steps=smc_mcmc_steps, target_ess=smc_target_ess, max_stages=_SMC_MAX_STEPS,
            batch=_smc_batch(obs[0].shape[0]), dtype=zdtype, imh_steps=int(smc_imh_steps),
            workers=min(num_chains, _host_cores()) if jax.default_backend() == "cpu" else 1)
        timing["smc"] = time.perf_counter() - t0
        extra = dict(smc=sm)
        bar.update(1)
    bar.close()

    # ---------------------------------------------------------------- 3. results and diagnostics
    theta = np.asarray(to_theta(jnp.asarray(pos), specs)[0], float)
    samples = {n: theta[..., i] for i, n in enumerate(PARAMS)}
    free_samples = {n: samples[n] for n in names}
    rhat = {n: diag.split_rhat(x) for n, x in free_samples.items()}
    essb = {n: diag.ess_bulk(x) for n, x in free_samples.items()}
    esst = {n: diag.ess_tail(x) for n, x in free_samples.items()}
    flags = []
    bad_r = [n for n, r in rhat.items() if not (r < 1.01)]
    if bad_r:
        flags.append("R-hat >= 1.01 for " + ", ".join(f"{n} ({rhat[n]:.3f})" for n in bad_r))
    low = [n for n in names if not (min(essb[n], esst[n]) >= min_ess)]
    if low:
        flags.append(f"ESS < {min_ess:.0f} for " + ", ".join(f"{n} ({min(essb[n], esst[n]):.0f})" for n in low))
    flags += _field_flag(samples, names)
    if method == "nuts" and extra["divergences"].sum() > 0:
        flags.append(f"{int(extra['divergences'].sum())} divergent transitions")
    if method == "smc":
        flags += cluster_smc.smc_flags(extra["smc"], _SMC_MAX_STEPS)
    if not np.all(np.isfinite(logd)):
        flags.append("non-finite log density in the draws")
    converged = not flags
    if not converged:
        warnings.warn(f"fit_cluster: the {'chains' if method == 'nuts' else 'SMC runs'} are not converged: "
                      + "; ".join(flags)
                      + " (run longer, add err_floor, fix poorly constrained parameters or check the data)",
                      RuntimeWarning, stacklevel=2)
    if z_opt is not None:
        theta_opt = np.asarray(to_theta(jnp.asarray(z_opt), specs)[0])
        init = dict(theta=theta_opt, logdensity=lp_opt, opt_iterations=np.stack(opt_iters),
                    starts=np.asarray(to_theta(zc, specs)[0]), laplace_cov=imm0)
        map_theta = theta_opt[0]
    else:  # SMC from the prior: no optimisation; the particle of highest density
        init = None
        map_theta = theta.reshape(-1, len(PARAMS))[int(np.argmax(np.where(np.isfinite(logd), logd, -np.inf)))]
    min_essb = min(essb.values())
    wall = timing["warmup"] + timing["sampling"] if method == "nuts" else timing["smc"]
    diagnostics = dict(
        method=method, rhat=rhat, ess_bulk=essb, ess_tail=esst, **extra,
        init=init,
        timing=timing, ess_per_s=min_essb / max(wall, 1e-9),
    )
    fixed = {s.name: s.fixed for s in specs if s.fixed is not None}
    return ClusterResult(samples=samples, logdensity=logd, diagnostics=diagnostics, converged=converged,
                         flags=flags, free=names, fixed=fixed, map_theta=map_theta)


def _run_nuts(make_logdensity, popdata, obs, zc, imm0, key, timing, bar, *, num_chains, num_warmup, num_samples,
              chain_method, target_accept, max_num_doublings, zdtype):
    """Window adaptation and NUTS sampling of ``num_chains`` chains from ``zc`` ->
    (positions (chains, draws, d), log densities, NUTS diagnostics dict)."""
    import blackjax

    def warm(k, z, data, obs_):
        wa = blackjax.window_adaptation(blackjax.nuts, make_logdensity(data, obs_), is_mass_matrix_diagonal=False,
                                        initial_inverse_mass_matrix=jnp.asarray(imm0, zdtype),
                                        target_acceptance_rate=target_accept, max_num_doublings=max_num_doublings,
                                        adaptation_info_fn=blackjax.adaptation.base.get_filter_adapt_info_fn())
        (state, params), _ = wa.run(k, z, num_steps=int(num_warmup))
        return state, {"step_size": params["step_size"], "inverse_mass_matrix": params["inverse_mass_matrix"]}

    block = max(1, math.ceil(num_samples / 10))
    nblocks = math.ceil(num_samples / block)

    def sample(k, state, params, data, obs_):
        kern = blackjax.nuts(make_logdensity(data, obs_), max_num_doublings=max_num_doublings, **params)

        def step(st, kk):
            st, info = kern.step(kk, st)
            return st, (st.position, st.logdensity, info.is_divergent, info.acceptance_rate,
                        info.num_integration_steps)

        return jax.lax.scan(step, state, jax.random.split(k, block))

    if chain_method == "vectorized":
        warm_j = jax.jit(jax.vmap(warm, in_axes=(0, 0, None, None)))
        sample_j = jax.jit(jax.vmap(sample, in_axes=(0, 0, 0, None, None)))
    else:
        warm_j, sample_j = jax.jit(warm), jax.jit(sample)
    k_warm, k_samp = jax.random.split(key)
    kw = jax.random.split(k_warm, num_chains)
    ks = jax.random.split(k_samp, (nblocks, num_chains))
    t0 = time.perf_counter()
    bar.set_postfix_str("warmup")
    if chain_method == "vectorized":
        states, params = warm_j(kw, zc, popdata, obs)
        jax.block_until_ready(states)
        bar.update(1)
        timing["warmup"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        bar.set_postfix_str("sampling")
        chunks = []
        for b in range(nblocks):
            states, out = sample_j(ks[b], states, params, popdata, obs)
            chunks.append(jax.tree_util.tree_map(np.asarray, out))
            bar.update(10 / nblocks)
        timing["sampling"] = time.perf_counter() - t0
    else:
        def warm_chain(c):
            out = jax.block_until_ready(warm_j(kw[c], zc[c], popdata, obs))
            bar.update(1)
            return out

        def sample_chain(c):
            st, outs = states[c], []
            for b in range(nblocks):
                st, out = sample_j(ks[b, c], st, params[c], popdata, obs)
                outs.append(jax.tree_util.tree_map(np.asarray, out))
                bar.update(10 / nblocks / num_chains)
            return outs

        # one host thread per chain ("parallel"): XLA:CPU runs a small likelihood on one core,
        # so concurrent chains use the others; the chains' results do not depend on it
        workers = 1 if chain_method == "sequential" else min(num_chains, _host_cores())
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            res = list(pool.map(warm_chain, range(num_chains)))
            states = [r[0] for r in res]
            params = [r[1] for r in res]
            timing["warmup"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            bar.set_postfix_str("sampling")
            per_chain = list(pool.map(sample_chain, range(num_chains)))
        timing["sampling"] = time.perf_counter() - t0
        chunks = [jax.tree_util.tree_map(lambda *a: np.stack(a), *[per_chain[c][b] for c in range(num_chains)])
                  for b in range(nblocks)]
        params = jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(x) for x in a]), *params)
    pos, logd, div, acc, nsteps = (np.concatenate(x, axis=1)[:, :num_samples] for x in zip(*chunks))
    params = {k: np.asarray(v) for k, v in params.items()}
    nuts = dict(divergences=div.sum(axis=1), diverging=div, step_size=params["step_size"],
                inverse_mass_matrix=params["inverse_mass_matrix"], acceptance=acc.mean(axis=1), accept_draws=acc,
                mean_num_steps=nsteps.mean(axis=1), n_steps_draws=nsteps)
    return pos, logd, nuts

