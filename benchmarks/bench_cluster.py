"""Cluster fits: how smooth the population posterior is, and how NUTS mixes on it.

Usage:  python benchmarks/bench_cluster.py [--nstars 60] [--ripple] [--fit]
        [--neep 250] [--nsmf 6] [--err-floor 0.1] [--warmup 150] [--samples 150] [--max-doublings 6]
        [--measure smooth|brutus] [--chains 2] [--seed 1] [--data-seed 3]

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
    if a.fit:
        grids = dict(smf_grid=np.linspace(0, 1, a.nsmf), eep_grid=np.linspace(202, 808, a.neep))
        t0 = time.perf_counter()
        r = fit_cluster(pop, d["flux"], d["err"], d["parallax"], d["parallax_err"], num_chains=a.chains,
                        num_warmup=a.warmup, num_samples=a.samples, seed=a.seed, progress=False, err_floor=a.err_floor,
                        row_measure=a.measure,
                        max_num_doublings=a.max_doublings, priors={"rv": 3.3}, **grids)
        dg = r.diagnostics
        print(f"fit_cluster ({a.measure} measure): {a.nstars} stars, {a.nsmf} SMF x {a.neep} EEP, err_floor {a.err_floor}, "
              f"warmup/samples {a.warmup}/{a.samples}, max_num_doublings {a.max_doublings}: "
              f"{time.perf_counter() - t0:.0f} s (init {dg['timing']['init']:.0f}, warmup {dg['timing']['warmup']:.0f}, "
              f"sampling {dg['timing']['sampling']:.0f}); mean leapfrog steps {dg['mean_num_steps']}, "
              f"min bulk ESS/s {dg['ess_per_s']:.3f}")
        print(r.summary())
        print("truth", TRUTH)


if __name__ == "__main__":
    main()
