"""BruteForce.fit throughput on whatever device JAX uses (GPU when present), no downloaded data.

Usage:  python benchmarks/bench_fit_device.py [--nstars 1024 4096] [--batch-size 512] [--budget 300]
                                             [--group-bytes 0 2147483648]

Grid: the synthetic MIST-like grid of `brutus_jax.data.synthetic` at brutus scale
(100 x 100 x 63 lattice -> ~610k models x 8 bands), so the script runs on a
machine without the MIST wheels.  Stars as in bench_fit.py (d 0.2-3 kpc,
A_V 0-2, 2-3 % errors, parallaxes, random l, b), brutus defaults (Nmc_prior=50,
Ndraws=250, Galactic prior on), float32.  For each N: a first run (compiles
every bucket), then a timed second run; prints stars/s and the stage-1 share.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--group-bytes", type=int, nargs="+", default=[None],
                    help="BruteForce(group_bytes=...) values to compare (0: one star per call)")
    ap.add_argument("--n-feh", type=int, default=63, help="[Fe/H] nodes of the synthetic grid (63: ~525k models)")
    ap.add_argument("--budget", type=float, default=300.0, help="stop starting new sizes after this many s")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import jax
    import jax.numpy as jnp

    from bench_fit import env, simulate
    from brutus_jax.analysis import BruteForce
    from brutus_jax.analysis.bruteforce import _stage1
    from brutus_jax.core import StarGrid
    from brutus_jax.data.synthetic import make_synthetic_grid
    from brutus_jax.kernels.sedfit import to_band_major

    print(env(), flush=True)
    filters = ["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"]
    models, labels, params, filters = make_synthetic_grid(n_mini=100, n_eep=100, n_feh=args.n_feh, filters=filters)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    print(f"grid: {models.shape[0]:,} models x {len(filters)} bands (synthetic)", flush=True)
    runs = [(n, gb) for n in args.nstars for gb in args.group_bytes]
    for n, gb in runs:
        if time.perf_counter() - t_start > args.budget:
            print(f"budget reached: skipping N={n}")
            break
        bf = BruteForce(grid, verbose=False, group_bytes=gb)
        flux, err, msk, plx, pe, coords = simulate(np.asarray(models), n, seed=1)
        kw = dict(parallax=plx, parallax_err=pe, data_coords=coords, rstate=7, verbose=False, overwrite=True,
                  batch_size=min(args.batch_size, n))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            bf.fit(flux, err, msk, np.arange(n), f"{tmp}/a.h5", **kw)
            t_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            bf.fit(flux, err, msk, np.arange(n), f"{tmp}/b.h5", **kw)
            t = time.perf_counter() - t0
        # stage 1 alone on one batch (magnitude stage, per-star flux stage, final evaluation)
        B = min(args.batch_size, n)
        g = to_band_major(np.asarray(models), jnp.float32)
        f = lambda x: jnp.asarray(x[:B], jnp.float32)  # noqa: E731
        opts = tuple(jnp.asarray(x, jnp.float32) for x in ((0.0, 20.0), (0.0, 1e6), (1.0, 8.0), (3.32, 0.18),
                                                           0.03, 0.01, 0.005))
        lnp = jnp.zeros(models.shape[0], jnp.float32)
        run1 = lambda: _stage1(g, lnp, f(flux), f(err), jnp.asarray(msk[:B]), f(plx), f(pe), *opts,  # noqa: E731
                               wt_thresh=1e-3, cdf_thresh=None, dim_prior=True, no_init_thresh=False,
                               chunk=None if jax.default_backend() != "cpu" else 4, group_bytes=gb)
        jax.block_until_ready(run1())
        t1 = time.perf_counter()
        jax.block_until_ready(run1())
        s1 = (time.perf_counter() - t1) / B
        print(f"N={n} group_bytes={gb}: {n / t:.0f} stars/s ({1e3 * t / n:.2f} ms/star; first run incl. compilation "
              f"{t_first:.1f} s); stage 1 alone {1e3 * s1:.2f} ms/star (batch {B})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
