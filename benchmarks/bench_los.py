"""Line-of-sight dust: JAX likelihood vs brutus, batched SMC fits, and coverage.

Usage:  python benchmarks/bench_los.py [--nsightlines 100] [--nstars 50] [--nsamps 25]
        [--repeats 7] [--dtype float64|float32] [--particles 256] [--steps 20] [--replicas 4]
        [--no-fit] [--evidence]

1. **Likelihood** on ``--nsightlines`` simulated 1-cloud sightlines (``--nstars`` stars x
   ``--nsamps`` samples each, Ndraws = 25, Gaussian kernel, brutus defaults):
   astro-brutus 1.2.0 ``los_clouds_loglike_samples`` (numpy, float64) called once per
   sightline in a Python loop, vs ``jit(vmap(los_clouds_loglike_samples))`` over all
   sightlines in one call, and the same with 64 parameter vectors per sightline (a
   sampler's batch of proposals).  Median (min, max) of ``--repeats`` timed calls, after a
   warm-up; evaluations per second = sightline-likelihoods per second.  Also the largest
   |difference| between the two on the same inputs.
2. **Fit**: ``fit_los_clouds(..., nclouds=1)`` on all sightlines in one batched call (one
   compilation): wall time including compilation, and the compilation alone (AOT).
3. **Coverage** over the same sightlines: injected cloud distance modulus ~ U(7, 12),
   A_V behind the cloud ~ U(0.6, 2.5), foreground A_V ~ U(0.05, 0.3); the fraction of
   sightlines whose central 68 % / 95 % intervals contain the truth, with binomial errors.
   ``--evidence`` also fits 0 clouds and reports how often ln Z prefers 1 cloud, and fits 0
   and 1 clouds to as many null sightlines (no A_V jump) and reports how often 0 is preferred.

Prints the environment (python, numpy, jax, backend, cores, load, XLA_FLAGS, threads).
"""

import argparse
import math
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _env  # noqa: E402  (benchmarks/_env.py)

from brutus_jax.analysis import los_fit  # noqa: E402
from brutus_jax.analysis.los_dust import los_clouds_loglike_samples  # noqa: E402
from brutus_jax.analysis.los_fit import fit_los_clouds  # noqa: E402
from brutus_jax.data.toy_los import simulate_los_samples  # noqa: E402


def env_summary():
    return _env.env_summary('')


def timed(fn, repeats):
    fn()  # warm-up (compilation)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def simulate(n, nstars, nsamps, seed):
    rng = np.random.default_rng(seed)
    truth = dict(dist=rng.uniform(7.0, 12.0, n), red=rng.uniform(0.6, 2.5, n), fred=rng.uniform(0.05, 0.3, n))
    ds, rs = [], []
    for b in range(n):
        d, r, _ = simulate_los_samples(rng.integers(2**31), nstars=nstars, nsamps=nsamps, dist_cloud=truth["dist"][b],
                                       red_cloud=truth["red"][b], fred=truth["fred"][b])
        ds.append(d)
        rs.append(r)
    return np.stack(ds), np.stack(rs), truth


def bench_loglike(ds, rs, truth, args, dtype):
    n = len(ds)
    theta = np.stack([np.full(n, 0.05), np.full(n, 0.04), np.full(n, 0.05), truth["fred"], truth["dist"],
                      truth["red"]], axis=1)
    print(f"\n== 1. likelihood: {n} sightlines x {ds.shape[1]} stars x {ds.shape[2]} samples (Ndraws 25, gauss)")
    f = jax.jit(jax.vmap(los_clouds_loglike_samples))
    th, d, r = (jnp.asarray(x, dtype) for x in (theta, ds, rs))
    t0 = time.perf_counter()
    jax.block_until_ready(f(th, d, r))
    print(f"jax compile (first call): {time.perf_counter() - t0:.2f} s")
    med, lo, hi = timed(lambda: f(th, d, r), args.repeats)
    jax_rate = n / med
    print(f"jax  {dtype.__name__}: {1e3 * med:8.2f} ms per {n} sightlines ({1e3 * lo:.2f}-{1e3 * hi:.2f}) "
          f"-> {jax_rate:10.0f} evaluations/s")
    k = 64
    rng = np.random.default_rng(1)
    thk = jnp.asarray(theta[:, None, :] * (1 + 0.01 * rng.standard_normal((n, k, 6))), dtype)
    fk = jax.jit(jax.vmap(jax.vmap(los_clouds_loglike_samples, in_axes=(0, None, None))))
    med_k, lo_k, hi_k = timed(lambda: fk(thk, d, r), args.repeats)
    print(f"jax  {dtype.__name__}, {k} thetas per sightline: {1e3 * med_k:8.2f} ms ({1e3 * lo_k:.2f}-"
          f"{1e3 * hi_k:.2f}) -> {n * k / med_k:10.0f} evaluations/s")
    try:
        from brutus.analysis import los_clouds_loglike_samples as ref
    except ImportError:
        return
    ref_vals = np.array([ref(theta[b], ds[b], rs[b]) for b in range(n)])
    ts = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for b in range(n):
            ref(theta[b], ds[b], rs[b])
        ts.append(time.perf_counter() - t0)
    med_b = statistics.median(ts)
    print(f"brutus numpy float64 (loop): {1e3 * med_b:8.2f} ms per {n} sightlines ({1e3 * min(ts):.2f}-"
          f"{1e3 * max(ts):.2f}) -> {n / med_b:10.0f} evaluations/s")
    print(f"speed-up jax/brutus: {med_b / med:.1f}x (one theta per sightline), "
          f"{(n * k / med_k) / (n / med_b):.1f}x (64 thetas per sightline)")
    diff = np.max(np.abs(np.asarray(f(th, d, r), float) - ref_vals))
    print(f"max |jax - brutus| = {diff:.3g} (values ~{np.median(ref_vals):.1f})")


def interval_cover(res, name, truth, prob):
    lo, hi = res.interval(name, prob)
    return (lo <= truth) & (truth <= hi)


def bench_fit(ds, rs, truth, args, dtype):
    n = len(ds)
    kw = dict(num_particles=args.particles, num_mcmc_steps=args.steps, num_replicas=args.replicas, seed=11,
              dtype=dtype)
    print(f"\n== 2. fit_los_clouds: {n} sightlines batched, 1 cloud, SMC {args.replicas} replicas x "
          f"{args.particles} particles x {args.steps} moves/stage")
    # compilation alone, ahead of time (jax.jit reuses the executable in the fit below)
    cfg = los_fit._make_config(1, "gauss", (0.0, 6.0), (4.0, 19.0), (-3.0, 0.7, -np.inf, 0.0),
                               (-3.0, 0.3, -np.inf, 0.0), False, (0.2, 2.0), 25, False, True)
    data, _, _ = los_fit._prepare_data(ds, rs, None, None, 25, dtype)
    cfg = cfg._replace(ndraws=int(data[0].shape[2]))
    seeds = np.zeros((n, args.replicas), np.uint32)
    t0 = time.perf_counter()
    los_fit._smc_batch.lower(seeds, data, cfg, args.particles, args.steps, 0.5, 200).compile()
    t_compile = time.perf_counter() - t0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        t0 = time.perf_counter()
        res = fit_los_clouds(ds, rs, 1, **kw)
        t_fit = time.perf_counter() - t0
    print(f"compilation {t_compile:.1f} s (ahead of time, reused by the fit); fit {t_fit:.1f} s -> "
          f"{t_fit / n:.2f} s per sightline")
    d = res.diagnostics
    rmax = np.max(np.stack([d["rhat"][k] for k in res.param_names]), axis=0)
    essb = np.min(np.stack([d["ess_bulk"][k] for k in res.param_names]), axis=0)
    print(f"converged {int(res.converged.sum())}/{n}; max R-hat median {np.median(rmax):.3f} (max {rmax.max():.3f}); "
          f"min bulk ESS median {np.median(essb):.0f}; stages median {np.median(d['stages']):.0f} "
          f"(max {d['stages'].max()}); acceptance {np.mean(d['acceptance']):.2f}; ln Z error median "
          f"{np.nanmedian(res.logz_err):.2f}" + (f"; warnings: {len(caught)}" if caught else ""))

    print(f"\n== 3. coverage over {n} sightlines (injected: d ~ U(7, 12) DM, A_V ~ U(0.6, 2.5), "
          f"fred ~ U(0.05, 0.3))")
    print(f"{'parameter':>10} {'68% cover':>14} {'95% cover':>14} {'median |err|/sd':>16}")
    for name, key in (("dist_1", "dist"), ("red_1", "red"), ("fred", "fred")):
        c68 = interval_cover(res, name, truth[key], 0.68)
        c95 = interval_cover(res, name, truth[key], 0.95)
        x = res.samples[name].reshape(n, -1)
        z = np.abs(x.mean(axis=1) - truth[key]) / x.std(axis=1)
        e68, e95 = (math.sqrt(p * (1 - p) / n) for p in (0.68, 0.95))
        print(f"{name:>10} {c68.mean():8.2f}+-{e68:.2f} {c95.mean():8.2f}+-{e95:.2f} {np.median(z):16.2f}")
    if args.evidence:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res0 = fit_los_clouds(ds, rs, 0, **kw)
        dlz = res.logz_monotone - res0.logz_monotone
        print(f"\nevidence (0-cloud fit {time.perf_counter() - t0:.1f} s): ln Z(1) - ln Z(0) median "
              f"{np.median(dlz):.1f}, min {dlz.min():.1f}; 1 cloud preferred in {int((dlz > 0).sum())}/{n}")
        # null sightlines: the same stars with no jump (A_V = fred everywhere)
        rng = np.random.default_rng(args.seed + 1)
        null = [simulate_los_samples(rng.integers(2**31), nstars=ds.shape[1], nsamps=ds.shape[2],
                                     dist_cloud=truth["dist"][b], red_cloud=truth["fred"][b], fred=truth["fred"][b])
                for b in range(n)]
        dn, rn = np.stack([x[0] for x in null]), np.stack([x[1] for x in null])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lz = [fit_los_clouds(dn, rn, k, **kw).logz_monotone for k in (0, 1)]
        dlz0 = lz[1] - lz[0]
        print(f"null sightlines (no cloud; fits {time.perf_counter() - t0:.1f} s): ln Z(1) - ln Z(0) median "
              f"{np.median(dlz0):.1f}, max {dlz0.max():.1f}; 0 clouds preferred in {int((dlz0 < 0).sum())}/{n}")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nsightlines", type=int, default=100)
    p.add_argument("--nstars", type=int, default=50)
    p.add_argument("--nsamps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--particles", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--no-fit", action="store_true", help="only the likelihood timing")
    p.add_argument("--evidence", action="store_true", help="also fit 0 clouds and compare evidences")
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    print(env_summary())
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    ds, rs, truth = simulate(args.nsightlines, args.nstars, args.nsamps, args.seed)
    bench_loglike(ds, rs, truth, args, dtype)
    if not args.no_fit:
        bench_fit(ds, rs, truth, args, dtype)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
