"""Large catalogues: peak memory of `brutus-jax fit` versus catalogue size, stars/s versus batch
size and number of devices.

Usage:  python benchmarks/bench_large.py [--rss] [--scaling] [--sizes 10000 1000000] [--fit-rows 10000 100000]
        [--batch-sizes 8 16 32 64] [--devices 1 2 4] [--nstars 1024]

Grid: the synthetic grid of the tests (20 masses x 30 EEPs x 8 [Fe/H] = 3,960 models, 7 bands; written
once to a temporary file), so that 10^5 stars fit in minutes on 2 cores; stars drawn from it with
A_V in [0, 2], R_V ~ N(3.3, 0.2), d in [0.2, 3] kpc, 2-3 % errors, parallaxes, Galactic (l, b).

``--rss``: HDF5 catalogues of each ``--sizes`` rows are written, and ``brutus-jax fit`` runs under
``/usr/bin/time -v`` on the first ``--fit-rows`` rows (``--shard 0/N``) of each; prints peak RSS, wall
time and output size.  Flat memory means the peak does not grow with the catalogue or with the rows
fitted.

``--scaling``: stars/s of `BruteForce.fit` on ``--nstars`` stars (second run, after compilation) for
each batch size, then for each number of XLA CPU devices (``--xla_force_host_platform_device_count``,
one subprocess each, batch 16).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def grid_file(tmp):
    from brutus_jax.data import write_models
    from brutus_jax.data.synthetic import make_synthetic_grid

    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    return str(write_models(os.path.join(tmp, "grid.h5"), models, labels, params, filters=filters)), models, filters


def simulate_mags(models, n, seed, block=200_000):
    """(mag, err, plx, plxe, l, b) of n stars, generated in blocks (memory ~ one block)."""
    from bench_fit import simulate

    for s in range(0, n, block):
        flux, err, _, plx, pe, coords = simulate(models, min(block, n - s), seed + s)
        mag = -2.5 * np.log10(np.clip(flux, 1e-30, None))
        yield mag, 2.5 / np.log(10) * err / flux, plx, pe, coords


def write_catalog(path, models, filters, n, seed=1):
    import h5py

    with h5py.File(path, "w") as f:
        ds = {c: f.create_dataset(c, (n,), "f8") for c in list(filters) + [f"{x}_err" for x in filters] +
              ["parallax", "parallax_error", "l", "b"]}
        f.create_dataset("obj_id", data=np.arange(n, dtype=np.int64))
        at = 0
        for mag, merr, plx, pe, coords in simulate_mags(models, n, seed):
            m = mag.shape[0]
            for j, x in enumerate(filters):
                ds[x][at:at + m], ds[f"{x}_err"][at:at + m] = mag[:, j], merr[:, j]
            ds["parallax"][at:at + m], ds["parallax_error"][at:at + m] = plx, pe
            ds["l"][at:at + m], ds["b"][at:at + m] = coords[:, 0], coords[:, 1]
            at += m


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return rss / 1024, wall


def rss(args, tmp):
    gpath, models, filters = grid_file(tmp)
    print(f"{'catalogue rows':>15} {'fitted rows':>12} {'peak RSS [MB]':>14} {'wall [s]':>9} {'s/1000 stars':>13} "
          f"{'output [MB]':>12}")
    for n in args.sizes:
        cat = os.path.join(tmp, f"cat{n}.h5")
        write_catalog(cat, models, filters, n)
        for m in args.fit_rows:
            if m > n:
                continue
            out = os.path.join(tmp, f"out{n}_{m}.h5")
            cmd = [sys.executable, "-m", "brutus_jax.cli", "fit", cat, "--grid", gpath, "--out", out, "--quiet",
                   "--batch-size", str(args.batch_size), "--overwrite"]
            if m < n:
                cmd += ["--shard", f"0/{n // m}"]
            peak, wall = timed(cmd)
            outs = [f for f in os.listdir(tmp) if f.startswith(f"out{n}_{m}")]
            size = sum(os.path.getsize(os.path.join(tmp, f)) for f in outs) / 2**20
            print(f"{n:15,d} {m:12,d} {peak:14.0f} {wall:9.1f} {1000 * wall / m:13.2f} {size:12.0f}", flush=True)
            for f in outs:
                os.remove(os.path.join(tmp, f))
        os.remove(cat)


DEVICE_SCRIPT = """
import os, sys, time, json
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count={ndev}"
sys.path.insert(0, {here!r})
import jax
from brutus_jax.analysis import BruteForce
from brutus_jax.core import StarGrid
from brutus_jax.data import load_models
from bench_fit import simulate
models, labels, mask = load_models({grid!r}, verbose=False)
bf = BruteForce(StarGrid(models, labels, mask, verbose=False), verbose=False)
flux, err, m, plx, pe, coords = simulate(models, {n}, 7)
kw = dict(data=flux, data_err=err, data_mask=m, data_labels=range({n}), parallax=plx, parallax_err=pe,
          data_coords=coords, rstate=1, verbose=False, overwrite=True, batch_size={batch})
res = {{}}
for run in ("compile", "timed"):
    t0 = time.perf_counter()
    bf.fit(save_file=os.path.join({tmp!r}, "dev_{ndev}_{batch}_" + run), **kw)
    res[run] = time.perf_counter() - t0
print(json.dumps(res))
"""


def scaling(args, tmp):
    gpath, _, _ = grid_file(tmp)
    here = os.path.dirname(os.path.abspath(__file__))

    def run(ndev, batch):
        code = DEVICE_SCRIPT.format(ndev=ndev, here=here, grid=gpath, n=args.nstars, batch=batch, tmp=tmp)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        return json.loads(p.stdout.strip().splitlines()[-1])

    print(f"{args.nstars} stars; stars/s of a second fit (compilation in the first, excluded)")
    print(f"{'devices':>8} {'batch':>6} {'stars/s':>9} {'ms/star':>8} {'first run [s]':>14}")
    for ndev, batch in [(1, b) for b in args.batch_sizes] + [(d, 16) for d in args.devices if d > 1]:
        r = run(ndev, batch)
        print(f"{ndev:8d} {batch:6d} {args.nstars / r['timed']:9.1f} {1000 * r['timed'] / args.nstars:8.2f} "
              f"{r['compile']:14.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rss", action="store_true")
    ap.add_argument("--scaling", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--fit-rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of the --rss fits")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--nstars", type=int, default=1024)
    args = ap.parse_args()
    from _env import env_summary

    print(env_summary())
    with tempfile.TemporaryDirectory() as tmp:
        if args.rss:
            rss(args, tmp)
        if args.scaling:
            scaling(args, tmp)


if __name__ == "__main__":
    main()
