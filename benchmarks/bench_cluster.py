"""Cluster fits: how smooth the population posterior is, and how NUTS mixes on it.

Usage:  python benchmarks/bench_cluster.py [--nstars 60] [--ripple] [--fit]
        [--neep 250] [--nsmf 6] [--err-floor 0.1] [--warmup 150] [--samples 150] [--max-doublings 6]
        [--measure smooth|brutus] [--chains 2] [--seed 1] [--data-seed 3] [--transform logit|reflect]
        [--seeds N] [--float32] [--method nuts|smc] [--smc-steps 20] [--smc-reference prior|laplace|both]
        [--imh-steps 100]

Simulated cluster (``data.toy_population.simulate_cluster``: truth [Fe/H] 0, log age 9.6,
A_V 0.3, R_V 3.3, 800 pc, 10 % field, 30 % binaries, 0.3-1 % photometry, 0.02-0.1 mas parallaxes)
on the analytic toy population (4 bands), float64.

``--ripple``: the log-likelihood along log age, A_V and distance through the truth (401 points
over +-0.05 dex, +-0.05 mag, +-10 pc) for several EEP grids and error floors, with brutus's row
measure and the smooth one (``row_measure``); prints the number of local minima (a smooth
likelihood has none near its peak), the range, the largest step along log age and the largest
jump (a step minus the mean of its two neighbours: ~0 for a continuous likelihood); then the same for a cluster without stars beyond EEP 600, with the grid stopping
there (no terminal rows) and going on to 808.

``--fit``: `fit_cluster` (``--chains``, ``--measure``, data seed ``--data-seed``) with the given settings; prints the summary, step sizes,
mean leapfrog steps per draw, timing and min bulk ESS per second.

``--method smc``: tempered SMC instead of NUTS (``--chains`` independent runs of ``--samples``
particles, ``--smc-steps`` Metropolis steps per temperature, then ``--imh-steps``
independence-MH steps per particle, 0 for the particles themselves; ``--warmup`` unused).

``--seeds N``: the ``--fit`` settings on N simulated clusters (data seeds 0..N-1, same truth);
per seed the largest R-hat, divergences, smallest bulk ESS and the truth's posterior quantile per
parameter (its rank among the draws); then the coverage of the 68 % and 95 % central intervals
and a KS test of the quantiles against U(0, 1) (calibrated posteriors give uniform ranks).
"""

import argparse
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from brutus_jax.analysis import fit_cluster, isochrone_population_loglike  # noqa: E402
from brutus_jax.data.toy_population import ToyPopulation, simulate_cluster  # noqa: E402

TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
CLUSTER_PROB = 0.95  # fit_cluster's default prior membership probability


def ripple(pop, d, settings, eep_hi=808.0, measures=("brutus", "smooth")):
    print(f"EEP grid 202-{eep_hi:.0f}: local minima (range, nats) along log age, A_V, distance; "
          "largest log-age step between neighbouring points; largest log-age jump (step minus the "
          "mean of its two neighbours: ~0 where the likelihood is continuous)")
    print("EEP points  floor  measure | log age        A_V          distance     | max step  max jump")
    for (neep, floor), measure in ((s, m) for s in settings for m in measures):
        grids = dict(smf_grid=np.linspace(0, 1, 6), eep_grid=np.linspace(202, eep_hi, neep), row_measure=measure)
        err = np.sqrt(d["err"] ** 2 + (floor * np.log(10) / 2.5 * d["flux"]) ** 2)
        f = jax.jit(jax.vmap(lambda th: isochrone_population_loglike(
            th, pop, d["flux"], err, parallax=d["parallax"], parallax_err=d["parallax_err"], **grids)))
        row, step, jump = [], 0.0, 0.0
        for i, w in [(1, 0.05), (2, 0.05), (4, 10.0)]:
            ths = np.tile(TRUTH, (401, 1))
            ths[:, i] += np.linspace(-w, w, 401)
            v = np.asarray(f(jnp.asarray(ths)))
            dv = np.diff(v)
            row.append(f"{int(np.sum((dv[:-1] < 0) & (dv[1:] > 0))):3d} ({v.max() - v.min():6.1f})")
            if i == 1:
                step = np.abs(dv).max()
                jump = np.abs(dv[1:-1] - 0.5 * (dv[:-2] + dv[2:])).max()
        print(f"{neep:10d}  {floor:5.2f}  {measure:7s} | {'   '.join(row)} | {step:.4f}   {jump:.4f}", flush=True)


def fit(pop, d, a):
    grids = dict(smf_grid=np.linspace(0, 1, a.nsmf), eep_grid=np.linspace(202, 808, a.neep))
    return fit_cluster(pop, d["flux"], d["err"], d["parallax"], d["parallax_err"], num_chains=a.chains,
                       num_warmup=a.warmup, num_samples=a.samples, seed=a.seed, progress=False,
                       cluster_prob=CLUSTER_PROB, err_floor=a.err_floor, row_measure=a.measure,
                       max_num_doublings=a.max_doublings,
                       priors={"rv": 3.3}, transform=a.transform, dtype="float32" if a.float32 else "float64",
                       method=a.method, smc_mcmc_steps=a.smc_steps, smc_reference=a.smc_reference,
                       smc_imh_steps=a.imh_steps, **grids)


def _steps(dg):
    """Mean leapfrog steps per draw (NUTS) or tempering steps per run (SMC)."""
    return float(np.mean(dg["mean_num_steps"] if dg["method"] == "nuts" else dg["smc"]["n_steps"]))


def coverage(pop, a):
    """Injection-recovery over data seeds 0..a.seeds-1: convergence and rank statistics."""
    import warnings

    from scipy import stats

    names = ["feh", "loga", "av", "dist", "field_frac"]
    truth = dict(zip(["feh", "loga", "av", "rv", "dist", "field_frac"], TRUTH))
    print(f"{a.seeds} clusters ({a.nstars} stars), {a.method}: {a.chains} chains x {a.warmup}+{a.samples}, "
          f"floor {a.err_floor}, "
          f"{a.nsmf} SMF x {a.neep} EEP, transform {a.transform or 'default'}")
    print(f"field_frac truth: 1 - (member share) / cluster_prob {CLUSTER_PROB} (the simulation's 0.1 includes "
          "the 5 % outlier probability that cluster_prob already gives; its field count is fixed, not binomial)")
    print("seed  wall[s]  max R-hat  div  min ESS  steps | truth quantile: " + " ".join(f"{n:>10s}" for n in names))
    qs, ok_r, ok_d = [], 0, 0
    for k in range(a.first_seed, a.first_seed + a.seeds):
        d = simulate_cluster(pop, TRUTH, a.nstars, seed=k)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = fit(pop, d, a)
        dg = r.diagnostics
        rmax = max(dg["rhat"].values())
        ndiv = int(np.sum(dg.get("divergences", 0)))
        # The likelihood's outlier probability is 1 - cluster_prob * (1 - field_frac) (cluster_prob 0.95,
        # fit_cluster's default), so the field_frac that describes these data is the realised field share
        # with cluster_prob's 5 % taken out, not the simulation's 0.1.
        truth["field_frac"] = max(0.0, 1.0 - float(np.mean(d["member"])) / CLUSTER_PROB)
        q = [float(np.mean(r.samples[n] < truth[n])) for n in names]
        qs.append(q)
        ok_r += rmax < 1.01
        ok_d += ndiv == 0
        print(f"{k:4d}  {time.perf_counter() - t0:7.0f}  {rmax:9.3f}  {ndiv:3d}  {min(dg['ess_bulk'].values()):7.0f}  "
              f"{_steps(dg):5.1f} | " + " ".join(f"{x:10.3f}" for x in q), flush=True)
    qs = np.asarray(qs)
    in68 = np.mean((qs > 0.16) & (qs < 0.84), axis=0)
    in95 = np.mean((qs > 0.025) & (qs < 0.975), axis=0)
    print(f"R-hat < 1.01 in {ok_r}/{a.seeds} runs, no divergence in {ok_d}/{a.seeds}")
    print("coverage 68 %: " + ", ".join(f"{n} {c:.2f}" for n, c in zip(names, in68)))
    print("coverage 95 %: " + ", ".join(f"{n} {c:.2f}" for n, c in zip(names, in95)))
    print("KS p-value of the truth quantiles vs U(0,1): "
          + ", ".join(f"{n} {stats.kstest(qs[:, i], 'uniform').pvalue:.2f}" for i, n in enumerate(names)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars", type=int, default=60)
    ap.add_argument("--ripple", action="store_true")
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--neep", type=int, default=250)
    ap.add_argument("--nsmf", type=int, default=6)
    ap.add_argument("--err-floor", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--max-doublings", type=int, default=6)
    ap.add_argument("--measure", default="smooth", choices=["brutus", "smooth"], help="fit_cluster row_measure")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1, help="fit seed")
    ap.add_argument("--data-seed", type=int, default=3)
    ap.add_argument("--transform", default=None, choices=["logit", "reflect"],
                    help="fit_cluster transform for every parameter (default: fit_cluster's per-parameter defaults)")
    ap.add_argument("--seeds", type=int, default=0, help="fit data seeds 0..N-1 and report coverage")
    ap.add_argument("--first-seed", type=int, default=0, help="with --seeds: start at this data seed")
    ap.add_argument("--float32", action="store_true", help="fit in float32 (default float64)")
    ap.add_argument("--method", default="nuts", choices=["nuts", "smc"])
    ap.add_argument("--smc-steps", type=int, default=20, help="SMC: Metropolis steps per temperature")
    ap.add_argument("--imh-steps", type=int, default=100,
                    help="SMC: independence MH steps per particle after tempering (smc_imh_steps)")
    ap.add_argument("--smc-reference", default="prior", choices=["prior", "laplace", "both"],
                    help="SMC reference (fit_cluster smc_reference)")
    a = ap.parse_args()
    print(f"python {platform.python_version()}, jax {jax.__version__} ({jax.default_backend()}), "
          f"{os.cpu_count()} CPU cores")
    pop = ToyPopulation(4)
    d = simulate_cluster(pop, TRUTH, a.nstars, seed=a.data_seed)
    if a.ripple:
        ripple(pop, d, [(250, 0.0), (250, 0.02), (600, 0.0), (600, 0.03), (2000, 0.02), (600, 0.1)])
        # the same without the isochrone's terminal rows: a cluster with no star beyond EEP 600
        # and a grid that stops there, so no row switches between valid and invalid
        d600 = simulate_cluster(pop, TRUTH, a.nstars, seed=3, eep_max=600.0)
        ripple(pop, d600, [(600, 0.03), (2000, 0.02)], eep_hi=600.0)
        ripple(pop, d600, [(600, 0.03)])
    if a.seeds:
        coverage(pop, a)
    if a.fit:
        t0 = time.perf_counter()
        r = fit(pop, d, a)
        dg = r.diagnostics
        tm = ", ".join(f"{k} {v:.0f}" for k, v in dg["timing"].items())
        how = (f"warmup/samples {a.warmup}/{a.samples}, max_num_doublings {a.max_doublings}" if a.method == "nuts"
               else f"SMC {a.chains} runs x {a.samples} particles, {a.smc_steps} moves/temperature")
        print(f"fit_cluster ({a.measure} measure): {a.nstars} stars, {a.nsmf} SMF x {a.neep} EEP, err_floor {a.err_floor}, "
              f"{how}: {time.perf_counter() - t0:.0f} s ({tm}); steps {_steps(dg):.1f}, "
              f"min bulk ESS/s {dg['ess_per_s']:.3f}")
        print(r.summary())
        print("truth", TRUTH)
        if dg["init"] is not None:
            print("initialisation optima ([Fe/H], log age, A_V, R_V, d, f_field; ln p):")
            for th, lp in zip(dg["init"]["theta"], dg["init"]["logdensity"]):
                print("   ", np.array2string(th, precision=3, suppress_small=True), f"{lp:.2f}")
        if a.method == "smc" and dg["smc"]["reference_means"] is not None:
            print("SMC reference components (unconstrained means):", dg["smc"]["reference_means"].shape[0])


if __name__ == "__main__":
    main()
