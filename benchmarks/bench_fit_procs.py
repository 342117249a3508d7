"""Throughput of BruteForce.fit on a multi-core CPU: one process on all cores vs one
single-threaded process per core (each pinned, ``NPROC=1``), fitting at the same time.

Usage:  python benchmarks/bench_fit_procs.py [--nstars 64] [--procs 2] [--repeats 2]

Each worker loads the default MIST grid of `bench_fit.py` (built once and cached),
fits ``--nstars`` simulated stars once to compile every program, waits for the
others at a barrier, then times ``--repeats`` fits of the same stars.  Reports
ms/star per process and the combined throughput (ms per star of all processes
together).  ``--procs 1`` runs one unpinned process with XLA's own threads.
"""

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np


def worker(rank, nprocs, nstars, repeats, barrier, out):
    if nprocs > 1:  # before jax starts: one XLA thread, on one core
        os.environ["NPROC"] = "1"
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_fit import bench_grid, simulate

    from brutus_jax.analysis import BruteForce
    from brutus_jax.core import StarGrid

    models, labels, mask, _ = bench_grid()
    flux, err, msk, plx, pe, coords = simulate(models, nstars, seed=1)
    bf = BruteForce(StarGrid(models, labels, mask, verbose=False), verbose=False)
    kw = dict(parallax=plx, parallax_err=pe, data_coords=coords, rstate=7, verbose=False, batch_size=16)
    with tempfile.TemporaryDirectory() as tmp:
        bf.fit(flux, err, msk, np.arange(nstars), f"{tmp}/warm.h5", **kw)
        barrier.wait()
        for r in range(repeats):
            t0 = time.perf_counter()
            bf.fit(flux, err, msk, np.arange(nstars), f"{tmp}/run{r}.h5", **kw)
            out.put((rank, r, time.perf_counter() - t0))
            barrier.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(args.procs), ctx.Queue()
    ps = [ctx.Process(target=worker, args=(i, args.procs, args.nstars, args.repeats, barrier, out))
          for i in range(args.procs)]
    for p in ps:
        p.start()
    res = [out.get() for _ in range(args.procs * args.repeats)]
    for p in ps:
        p.join()
    print(f"{os.cpu_count()} CPU cores, {args.procs} process(es){' pinned, NPROC=1' if args.procs > 1 else ''}, "
          f"{args.nstars} stars each")
    for r in range(args.repeats):
        ts = [t for (_, rr, t) in res if rr == r]
        per = ", ".join(f"{1e3 * t / args.nstars:.1f}" for t in ts)
        print(f"repeat {r}: ms/star per process {per}; throughput {1e3 * max(ts) / (args.nstars * len(ts)):.1f} "
              f"ms/star ({args.nstars * len(ts) / max(ts):.1f} stars/s)")


if __name__ == "__main__":
    main()
