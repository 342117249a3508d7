"""Per-star time of the (scale, A_V, R_V) grid fit: brutus ``loglike_grid`` vs JAX ``fit_stars``.

Usage:  python benchmarks/bench_loglike.py [--nstar 32] [--repeats 5] [--grid 36,64,56]
        [--dtype float32|float64|both] [--brutus-stars 12]

A synthetic grid (``make_synthetic_grid``; 36 x 64 x 56 lattice = 107,125
models x 7 bands by default) and simulated stars (model drawn from the grid,
A_V in [0, 2], R_V ~ N(3.3, 0.2), d in 0.3-3 kpc, 3 % flux errors, parallax
sigma 0.1 mas).  Reports, per star:

* astro-brutus 1.2.0 ``BruteForce.loglike_grid(..., return_vals=True)``
  (float64, numba; one star at a time as brutus's ``fit`` does), median over
  ``--brutus-stars`` stars after a warm-up call;
* ``brutus_jax.kernels.sedfit.fit_stars`` with ``batch_size=None``
  (jit(vmap(fit_star)) over all ``--nstar`` stars), float32 and/or float64:
  compile time, then the median (min, max) over ``--repeats`` calls divided
  by the number of stars, each call timed to ``jax.block_until_ready``;
* the same stars with ``batch_size`` 1 and 4 (``--batch-sizes``; stars
  vectorised together inside the compiled call, ``lax.map`` over chunks) and
  one star per ``jit(fit_star)`` call: on a CPU the intermediates of a large
  vectorised batch (~20 arrays of Nstar x Nmodel) fall out of cache, so
  small chunks are faster per star;
* the agreement of the float64 JAX result with brutus on the first star.

Set ``NUMBA_NUM_THREADS`` (brutus) and ``XLA_FLAGS`` as wanted before running;
both are printed.  ``OPENBLAS_NUM_THREADS=1`` is set (BLAS is unused, but
avoids thread oversubscription noise).
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import _env  # noqa: E402  (benchmarks/_env.py)


def env_summary():
    try:
        import numba

        note = f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads)"
    except ImportError:
        note = ""
    return _env.env_summary(note)


def simulate(coeffs, rng, n):
    nf = coeffs.shape[1]
    idx = rng.integers(len(coeffs), size=n)
    av = rng.uniform(0.0, 2.0, n)
    rv = rng.normal(3.3, 0.2, n)
    dist = rng.uniform(0.3, 3.0, n)
    c = coeffs[idx]
    mag = c[..., 0] + av[:, None] * (c[..., 1] + rv[:, None] * c[..., 2]) + 5.0 * np.log10(dist)[:, None]
    f0 = 10.0 ** (-0.4 * mag)
    err = 0.03 * f0
    flux = f0 + err * rng.standard_normal((n, nf))
    plx_err = np.full(n, 0.1)
    plx = 1.0 / dist + plx_err * rng.standard_normal(n)
    return flux, err, np.ones((n, nf), bool), plx, plx_err


def fmt(ts, per=1):
    ts = [t / per * 1e3 for t in ts]
    return f"{statistics.median(ts):8.2f} ms  (min {min(ts):.2f}, max {max(ts):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstar", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--grid", default="36,64,56", help="n_mini,n_eep,n_feh of make_synthetic_grid")
    ap.add_argument("--dtype", default="both", choices=["float32", "float64", "both"])
    ap.add_argument("--brutus-stars", type=int, default=12)
    ap.add_argument("--batch-sizes", default="1,4", help="fit_stars batch_size values timed besides None")
    args = ap.parse_args()

    from brutus_jax.data.synthetic import make_synthetic_grid
    from brutus_jax.kernels.sedfit import fit_star, fit_stars, to_band_major

    print(env_summary())
    n_mini, n_eep, n_feh = (int(x) for x in args.grid.split(","))
    models, labels, params, _ = make_synthetic_grid(n_mini, n_eep, n_feh, dtype=np.float64)
    coeffs = np.asarray(models)
    print(f"grid: {coeffs.shape[0]:,} models x {coeffs.shape[1]} bands; batch {args.nstar} stars; "
          f"{args.repeats} repeats")  # fmt: skip
    rng = np.random.default_rng(2026)
    flux, err, mask, plx, plx_err = simulate(coeffs, rng, args.nstar)

    # ---- astro-brutus ----------------------------------------------------
    ref0 = None
    try:
        from brutus.analysis import BruteForce
        from brutus.core import StarGrid
    except ImportError:
        BruteForce = None
    if BruteForce is not None:
        with contextlib.redirect_stdout(io.StringIO()):
            bf = BruteForce(StarGrid(coeffs, labels, params))
        t0 = time.perf_counter()
        bf.loglike_grid(flux[0].copy(), err[0], mask[0].copy(), parallax=plx[0], parallax_err=plx_err[0],
                        return_vals=True)  # fmt: skip
        print(f"astro-brutus first call (numba JIT / cache load): {time.perf_counter() - t0:.2f} s")
        ts = []
        nb = min(args.brutus_stars, args.nstar)
        for i in range(nb):
            t0 = time.perf_counter()
            out = bf.loglike_grid(flux[i].copy(), err[i], mask[i].copy(), parallax=plx[i],
                                  parallax_err=plx_err[i], return_vals=True)  # fmt: skip
            ts.append(time.perf_counter() - t0)
            if i == 0:
                ref0 = out
        print(f"astro-brutus loglike_grid (float64), per star over {nb} stars: {fmt(ts)}")

    # ---- brutus_jax ------------------------------------------------------
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    sizes = [None] + [int(x) for x in args.batch_sizes.split(",") if x]
    for dt in dtypes:
        grid = to_band_major(coeffs, dt)
        f, e, p, pe = (np.asarray(x, dt) for x in (flux, err, plx, plx_err))
        for bs in sizes:
            label = f"batch_size={bs}" + (" (jax.vmap of all)" if bs is None else " (lax.map chunks)")
            t0 = time.perf_counter()
            out = jax.block_until_ready(fit_stars(grid, f, e, mask, p, pe, batch_size=bs))
            t_first = time.perf_counter() - t0
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                o = jax.block_until_ready(fit_stars(grid, f, e, mask, p, pe, batch_size=bs))
                ts.append(time.perf_counter() - t0)
            if bs is None:
                out = o
            print(f"brutus_jax fit_stars ({dt}, {args.nstar} stars, {label}): per star {fmt(ts, args.nstar)}; "
                  f"first call (compile + run) {t_first:.2f} s")  # fmt: skip
        it_m, it_f = np.asarray(out.n_iter_mag), np.asarray(out.n_iter_flux)
        print(f"  iterations: magnitude stage {it_m.min()}-{it_m.max()}, flux stage {it_f.min()}-{it_f.max()}, "
              f"all converged {bool(np.all(out.converged))}")  # fmt: skip
        one = jax.jit(fit_star)
        jax.block_until_ready(one(grid, f[0], e[0], mask[0], p[0], pe[0]))
        ts1 = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.nstar):
                o = one(grid, f[i], e[i], mask[i], p[i], pe[i])
            jax.block_until_ready(o)
            ts1.append(time.perf_counter() - t0)
        print(f"brutus_jax jit(fit_star) ({dt}), one star per call: per star {fmt(ts1, args.nstar)}")
        if ref0 is not None and dt == "float64":
            lnl = ref0[0]
            keep = lnl > lnl.max() - 10.0
            dev = max(
                np.max(np.abs(np.asarray(getattr(out, k)[0]) - r)[keep] / np.abs(r)[keep].clip(1e-12))
                for k, r in zip(("lnl", "chi2", "scale", "av", "rv"), (ref0[0], ref0[2], ref0[3], ref0[4], ref0[5]))
            )
            print(f"  float64 vs astro-brutus, star 0, {keep.sum()} models within 10 of the best lnl: "
                  f"max relative deviation {dev:.1e}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
