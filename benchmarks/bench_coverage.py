"""Injection-recovery: coverage of BruteForce posteriors for stars simulated from a MIST grid.

Usage:  python benchmarks/bench_coverage.py [--preset small] [--nstars 200] [--matched]

Stars are drawn from grid models (uniform over the grid's models, i.e. NOT from
brutus's Galactic prior unless --matched), reddened with A_V ~ U(0, 1.5),
R_V ~ N(3.3, 0.15), placed at d ~ U(0.2, 2) kpc at random (l, b) with
|b| < 60 deg, observed in PS1 grizy + 2MASS JHKs with 2-3 % errors and
parallaxes with 0.1 mas errors.  With --matched the fit uses no Galactic
prior (lngalprior=False) and a flat A_V prior, so the simulation follows the
fit's prior more closely.  Reports median bias, median |error| and the
fraction of stars whose 68 % / 95 % intervals contain the truth.
"""

import argparse
import sys
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--nstars", type=int, default=200)
    ap.add_argument("--matched", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    import h5py

    from brutus_jax.analysis import BruteForce
    from brutus_jax.core import StarGrid
    from brutus_jax.data import build_grid, load_models
    from brutus_jax.kernels.seds import get_seds

    filters = ["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"]
    models, labels, mask = load_models(build_grid(args.preset), filters=filters, verbose=False)
    rng = np.random.default_rng(args.seed)
    n = args.nstars
    idx = rng.integers(0, models.shape[0], n)
    av, rv, d = rng.uniform(0, 1.5, n), rng.normal(3.3, 0.15, n), rng.uniform(0.2, 2.0, n)
    m = np.asarray(get_seds(np.asarray(models)[idx].astype(float), av=av, rv=rv)) + 5 * np.log10(d)[:, None]
    flux = 10 ** (-0.4 * m)
    err = rng.uniform(0.02, 0.03, flux.shape) * flux
    flux = flux + err * rng.normal(size=flux.shape)
    plx = 1 / d + 0.1 * rng.normal(size=n)
    coords = np.column_stack([rng.uniform(0, 360, n), rng.uniform(-60, 60, n)])
    bf = BruteForce(StarGrid(models, labels, mask, verbose=False), verbose=False)
    extra = dict(lngalprior=False) if args.matched else {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = bf.fit(flux, err, np.ones_like(flux, bool), np.arange(n), f"{tmp}/cov.h5", parallax=plx,
                      parallax_err=np.full(n, 0.1), data_coords=coords, rstate=args.seed, verbose=True, **extra)
        dt = time.perf_counter() - t0
        with h5py.File(path) as f:
            dist, red = f["samps_dist"][()], f["samps_red"][()]
    print(f"{args.preset} grid ({models.shape[0]:,} models), {n} stars, {'matched priors' if args.matched else 'default priors'}"
          f", fit {dt:.1f} s")
    print(f"{'quantity':<8} {'median bias':>12} {'median |err|':>13} {'68% half-width':>15} {'68% cov':>8} {'95% cov':>8}")
    for name, s, truth, rel in (("d", dist, d, True), ("A_V", red, av, False)):
        q = np.percentile(s, [2.5, 16, 50, 84, 97.5], axis=1)
        e = q[2] / truth - 1 if rel else q[2] - truth
        hw = 0.5 * (q[3] - q[1]) / (truth if rel else 1)
        c68 = np.mean((truth >= q[1]) & (truth <= q[3]))
        c95 = np.mean((truth >= q[0]) & (truth <= q[4]))
        print(f"{name:<8} {np.median(e):12.3f} {np.median(np.abs(e)):13.3f} {np.median(hw):15.3f} {c68:8.2f} {c95:8.2f}")
    print("(d errors relative; binomial sd of a coverage fraction: "
          f"{np.sqrt(0.68 * 0.32 / n):.2f} at 68 %, {np.sqrt(0.95 * 0.05 / n):.2f} at 95 %)")


if __name__ == "__main__":
    sys.exit(main())
