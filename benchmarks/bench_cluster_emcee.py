"""Cluster posteriors: effective samples per second of NUTS (`fit_cluster`) versus emcee.

Usage:  python benchmarks/bench_cluster_emcee.py [--nstars 60] [--neep 250] [--err-floor 0.1]
        [--data-seed 5] [--chains 4] [--warmup 400] [--samples 500] [--walkers 32] [--steps 4000]
        [--chain-method sequential|parallel|vectorized] [--method nuts|smc|both] [--float32]
        [--smc-particles 200] [--imh-steps 100] [--smc-reference prior|laplace|both]

One simulated cluster (``data.toy_population.simulate_cluster`` on the analytic toy population,
truth [Fe/H] 0, log age 9.6, A_V 0.3, 800 pc, 10 % field, 30 % binaries; R_V fixed at 3.3), float64,
the same log posterior for every sampler (`fit_cluster`'s: the population likelihood with the error
floor, the default priors and the unconstrained parametrisation with its Jacobian):

1. NUTS: `fit_cluster` (dense mass matrix, window adaptation); min bulk ESS over the parameters
   divided by the whole wall time (initialisation, warmup and sampling; compilation excluded by a
   short first call).
2. emcee 3 (``--walkers`` walkers, stretch move, ``vectorize=True`` over one jitted call of the
   same log density, walkers in ``lax.map`` batches as SMC's particles), started from NUTS
   posterior draws (so no burn-in is charged to it);
   the first 20 % of the steps are dropped; ESS = kept draws / the largest integrated
   autocorrelation time (``emcee.autocorr.integrated_time``) and, as a check, the rank-normalised
   bulk ESS with walkers as chains.
   With ``--method smc``/``both``: `fit_cluster(method="smc")` with its defaults (``--chains`` runs of
   ``--smc-particles`` particles, 20 moves per temperature, then ``--imh-steps`` independence-MH
   steps per particle; ESS: the min rank-normalised bulk ESS of its draws, as for NUTS) in the same way; emcee then starts from
   the SMC draws when NUTS is not run (SMC's wall time includes its compilation).  ``--float32``:
   every sampler on the float32 likelihood (`fit_cluster(dtype="float32")`; emcee on the same
   function cast to float32 and back).
3. emcee on astro-brutus's likelihood (what users run today): the same emcee run with brutus's row
   measure (``row_measure="brutus"``, equal to astro-brutus's value to 1e-15) gives ESS per
   log-density evaluation; astro-brutus's own time per evaluation (numpy, on the duck-typed toy
   population, median of 5) converts it to ESS per second.  A full emcee run on astro-brutus would
   take hours here, so this is computed, not run.
"""

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from brutus_jax.analysis import fit_cluster  # noqa: E402
from brutus_jax.analysis.cluster import _smc_batch, cluster_logdensity  # noqa: E402
from brutus_jax.analysis.cluster_params import build_specs, to_theta, to_z  # noqa: E402
from brutus_jax.analysis.diagnostics import ess_bulk  # noqa: E402
from brutus_jax.data.toy_population import ToyPopulation, simulate_cluster  # noqa: E402

TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])


def logposterior(pop, d, specs, floor, measure, grids, dtype=jnp.float64):
    """`fit_cluster`'s own log posterior (`cluster_logdensity`, likelihood in ``dtype``, float64
    in and out) and the floored errors."""
    obs = tuple(None if x is None else jnp.asarray(x, dtype)
                for x in (d["flux"], d["err"], d["parallax"], d["parallax_err"], None))
    err = np.sqrt(d["err"] ** 2 + (floor * np.log(10) / 2.5 * d["flux"]) ** 2)
    lp = cluster_logdensity(pop, specs, obs, floor, row_measure=measure, **grids)
    if dtype == jnp.float64:
        return lp, err
    return (lambda z: lp(z.astype(dtype)).astype(jnp.float64)), err


def run_emcee(lp, z0, steps, seed, batch):
    """emcee with the walkers evaluated ``batch`` at a time (``lax.map``, as `fit_cluster`'s SMC
    evaluates its particles: vmapping all 32 walkers of a 500-star cluster is 2.6x slower on CPU)."""
    import emcee

    f = jax.jit(lambda z: jax.lax.map(lp, z, batch_size=batch))
    f(jnp.asarray(z0)).block_until_ready()  # compile
    nw, nd = z0.shape
    s = emcee.EnsembleSampler(nw, nd, lambda z: np.asarray(f(jnp.asarray(z))), vectorize=True)
    s.random_state = np.random.RandomState(seed).get_state()  # explicit seed
    t0 = time.perf_counter()
    s.run_mcmc(z0, steps, progress=False)
    wall = time.perf_counter() - t0
    chain = s.get_chain()[steps // 5:]  # (kept, walkers, nd)
    tau = emcee.autocorr.integrated_time(chain, quiet=True)
    ess_tau = chain.shape[0] * nw / np.max(tau)
    return chain, wall, tau, ess_tau, float(np.mean(s.acceptance_fraction))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars", type=int, default=60)
    ap.add_argument("--neep", type=int, default=250)
    ap.add_argument("--nsmf", type=int, default=6)
    ap.add_argument("--err-floor", type=float, default=0.1)
    ap.add_argument("--data-seed", type=int, default=5)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--walkers", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--max-doublings", type=int, default=8)
    ap.add_argument("--method", default="nuts", choices=["nuts", "smc", "both"], help="fit_cluster sampler(s)")
    ap.add_argument("--smc-particles", type=int, default=200, help="SMC particles per run")
    ap.add_argument("--imh-steps", type=int, default=100,
                    help="SMC: independence MH steps per particle after tempering (fit_cluster smc_imh_steps)")
    ap.add_argument("--smc-reference", default="prior", choices=["prior", "laplace", "both"],
                    help="SMC reference (fit_cluster smc_reference)")
    ap.add_argument("--float32", action="store_true", help="float32 likelihood for every sampler")
    ap.add_argument("--chain-method", default=None, choices=["sequential", "parallel", "vectorized"],
                    help="fit_cluster chain_method (default: fit_cluster's)")
    a = ap.parse_args()
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from _env import env_summary

    print(env_summary())
    pop = ToyPopulation(4)
    d = simulate_cluster(pop, TRUTH, a.nstars, seed=a.data_seed)
    grids = dict(smf_grid=np.linspace(0, 1, a.nsmf), eep_grid=np.linspace(202, 808, a.neep))
    priors = {"rv": 3.3}
    # emcee samples the logit-mapped box (a bijection suits an affine-invariant ensemble; walkers
    # spread over several copies of fit_cluster's folded, periodic space would not); NUTS uses
    # fit_cluster's defaults.  The posterior in the physical parameters is the same.
    specs = build_specs(pop, priors, transform="logit")
    dtype = jnp.float32 if a.float32 else jnp.float64
    fit = dict(num_chains=a.chains, progress=False, err_floor=a.err_floor, priors=priors,
               max_num_doublings=a.max_doublings, chain_method=a.chain_method, dtype=jnp.dtype(dtype).name, **grids)
    print(f"{a.nstars} stars, {a.nsmf} SMF x {a.neep} EEP rows, error floor {a.err_floor} mag, data seed "
          f"{a.data_seed}, likelihood {jnp.dtype(dtype).name}")
    obs = (d["flux"], d["err"], d["parallax"], d["parallax_err"])
    ess_s = {}
    r = None
    for method in (("nuts", "smc") if a.method == "both" else (a.method,)):
        # NUTS: a short first call compiles everything; SMC compiles inside every fit_cluster call
        # (counted, as a user meets it)
        if method == "nuts":
            fit_cluster(pop, *obs, num_warmup=20, num_samples=4, num_starts=8, seed=99, **dict(fit, num_chains=1))
        t0 = time.perf_counter()
        if method == "nuts":
            r = fit_cluster(pop, *obs, num_warmup=a.warmup, num_samples=a.samples, seed=1, **fit)
        else:
            r = fit_cluster(pop, *obs, num_samples=a.smc_particles, seed=1, method="smc",
                            smc_imh_steps=a.imh_steps, smc_reference=a.smc_reference, **fit)
        t_m = time.perf_counter() - t0
        dg = r.diagnostics
        ess_m = min(dg["ess_bulk"].values())
        ess_s[method] = ess_m / t_m
        if method == "nuts":
            how = (f"NUTS ({a.chains} chains, {a.warmup}+{a.samples}): {t_m:.1f} s (init {dg['timing']['init']:.1f}, "
                   f"warmup {dg['timing']['warmup']:.1f}, sampling {dg['timing']['sampling']:.1f}); divergences "
                   f"{int(np.sum(dg['divergences']))}; leapfrog steps/draw {np.round(dg['mean_num_steps'], 1)}")
        else:
            sm = dg["smc"]
            how = (f"SMC ({a.chains} runs x {a.smc_particles} particles, {a.imh_steps} IMH steps): {t_m:.1f} s; "
                   f"tempering steps {sm['n_steps']}; draws per run {r.samples['dist'].shape[1]}"
                   + ("" if not a.imh_steps else f"; IMH acceptance {np.round(sm['imh_acceptance'], 3)}"))
        print(f"\n{how}; max R-hat {max(dg['rhat'].values()):.3f}; min bulk ESS {ess_m:.0f}; converged {r.converged}")
        print(f"  {method}: {ess_s[method]:.2f} ESS/s over the whole wall time")

    # 2./3. emcee on the same posterior, started from the last sampler's draws
    names = r.free
    draws = np.stack([r.samples[n].reshape(-1) for n in names], axis=-1)
    rng = np.random.default_rng(2)
    th0 = draws[rng.choice(draws.shape[0], a.walkers, replace=False)]
    z0 = np.asarray(to_z(jnp.asarray(th0), specs))
    res = {}
    for measure in ("smooth", "brutus"):
        lp, err = logposterior(pop, d, specs, a.err_floor, measure, grids, dtype)
        chain, wall, tau, ess_tau, acc = run_emcee(lp, z0, a.steps, seed=3, batch=_smc_batch(a.nstars))
        theta = np.asarray(to_theta(jnp.asarray(chain), specs)[0])
        free_idx = [i for i, s in enumerate(specs) if s.fixed is None]
        ess_rank = min(float(ess_bulk(np.swapaxes(theta[..., i], 0, 1))) for i in free_idx)
        nevals = a.steps * a.walkers
        res[measure] = (ess_tau, wall, nevals)
        print(f"\nemcee on the {measure} measure ({a.walkers} walkers x {a.steps} steps, acceptance {acc:.2f}): "
              f"{wall:.1f} s; tau {np.round(tau, 0)}; ESS (tau) {ess_tau:.0f}, min rank-normalised bulk ESS "
              f"{ess_rank:.0f}; {ess_tau / wall:.2f} ESS/s; {ess_tau / nevals * 1e3:.3f} ESS per 1000 evaluations")
    # astro-brutus's time per evaluation on the same data (value only)
    try:
        from brutus.analysis.populations import isochrone_population_loglike as bl
    except ImportError:
        print("astro-brutus not installed: no comparison with its likelihood")
        return
    npop = pop.numpy()
    err = logposterior(pop, d, specs, a.err_floor, "brutus", grids)[1]
    ts = []
    th = np.asarray(th0[0], float)
    theta_full = np.array([th[names.index("feh")], th[names.index("loga")], th[names.index("av")], 3.3,
                           th[names.index("dist")], th[names.index("field_frac")]])
    for _ in range(5):
        t0 = time.perf_counter()
        bl(theta_full, npop, d["flux"], err, parallax=d["parallax"], parallax_err=d["parallax_err"],
           smf_grid=grids["smf_grid"], eep_grid=grids["eep_grid"])
        ts.append(time.perf_counter() - t0)
    t_b = statistics.median(ts)
    ess_tau, _, nevals = res["brutus"]
    ess_s_b = ess_tau / (nevals * t_b)
    print(f"\nastro-brutus likelihood: {t_b * 1e3:.1f} ms per evaluation (median of 5) -> emcee on it: "
          f"{ess_s_b:.4f} ESS/s ({nevals * t_b / 3600:.1f} h for the same run)")
    for method, v in ess_s.items():
        print(f"\n{method} / emcee (same jitted likelihood): {v / (res['smooth'][0] / res['smooth'][1]):.1f}x; "
              f"{method} / emcee on astro-brutus's likelihood: {v / ess_s_b:.1f}x")


if __name__ == "__main__":
    main()
