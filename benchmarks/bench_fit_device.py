"""BruteForce.fit throughput on whatever device JAX uses (GPU when present), no downloaded data.

Usage:  python benchmarks/bench_fit_device.py [--nstars 1024 4096] [--batch-size 512|auto] [--budget 300]
                                             [--group-bytes 0 2147483648] [--n-feh 72]
                                             [--threads 1 2 auto] [--stages] [--trace DIR]

Grid: the synthetic MIST-like grid of `brutus_jax.data.synthetic` at brutus scale
(100 x 100 x n_feh lattice; n_feh 63 -> ~525k, 72 -> ~600k models x 8 bands), so the script runs on a
machine without the MIST wheels.  Stars as in bench_fit.py (d 0.2-3 kpc,
A_V 0-2, 2-3 % errors, parallaxes, random l, b), brutus defaults (Nmc_prior=50,
Ndraws=250, Galactic prior on), float32.  For each N: a first run (compiles
every bucket), then a timed second run; prints stars/s.  ``--stages``: a third
run with every stage call blocked on, per-stage ms/star and the host remainder.
``--trace DIR``: a device trace of one batch (jax.profiler, perfetto JSON in DIR)
summarised as device time per jitted function and the top kernels.  ``--threads N``:
N host threads fitting batches concurrently on the one device
(``BruteForce(threads_per_device=N)``, auto: its default, 2 on accelerators), so one
thread's dispatch and host syncs overlap another's device work; ``--stages`` and
``--trace`` use one thread, for the first configuration of each N.  ``--batch-size
auto``: `fit`'s default (from the device's memory on accelerators).  Each
configuration runs in its own try block (an out-of-memory error is printed and the
next one runs); the device's peak memory is printed after each, and every later
configuration's results are compared with the first's.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def summarize_trace(path, top=40):
    """Device busy time per jitted module and per kernel from a perfetto trace (``path``: .json.gz)."""
    with gzip.open(path) as fh:
        d = json.load(fh)
    ev = d["traceEvents"] if isinstance(d, dict) else d
    pname = {e["pid"]: e["args"]["name"] for e in ev if e.get("ph") == "M" and e.get("name") == "process_name"}
    dev = {p for p, n in pname.items() if "/device:" in n and "CPU" not in n}
    xs = [e for e in ev if e.get("ph") == "X" and e.get("pid") in dev]
    if not xs:
        return "no device events in the trace (processes: %s)" % sorted(set(pname.values()))
    by_mod, by_kernel = collections.Counter(), collections.Counter()
    for e in xs:
        a = e.get("args", {})
        mod = a.get("hlo_module", a.get("hlo_module_name", "?"))
        by_mod[mod] += e["dur"]
        by_kernel[(mod, e["name"])] += e["dur"]
    t0 = min(e["ts"] for e in xs)
    t1 = max(e["ts"] + e["dur"] for e in xs)
    busy = sum(by_mod.values())
    lines = [f"device events {len(xs)}, span {1e-3 * (t1 - t0):.1f} ms, busy {1e-3 * busy:.1f} ms "
             f"({busy / max(t1 - t0, 1e-9):.0%} of the span; streams may overlap)"]
    lines += [f"  {1e-3 * v:9.2f} ms  {k}" for k, v in by_mod.most_common(20)]
    lines.append("top kernels:")
    lines += [f"  {1e-3 * v:9.2f} ms  {m} :: {k[:120]}" for (m, k), v in by_kernel.most_common(top)]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--batch-size", default="512", help="stars per batch, or auto (fit's default)")
    ap.add_argument("--group-bytes", nargs="+", default=["auto"],
                    help="BruteForce(group_bytes=...) values to compare (0: one star per call; auto: the "
                         "device's default, bruteforce.default_group_bytes)")
    ap.add_argument("--serial", nargs="+", default=["auto"], choices=["auto", "on", "off"],
                    help="stars of a group through the flux stage and stage 2 one by one (on: lax.map, the CPU "
                         "default), vmapped (off: the accelerator default) or by platform (auto); compared in turn")
    ap.add_argument("--threads", nargs="+", default=["1"],
                    help="host threads per device fitting batches concurrently; compared in turn")
    ap.add_argument("--n-feh", type=int, default=63, help="[Fe/H] nodes of the synthetic grid (63: ~525k models)")
    ap.add_argument("--budget", type=float, default=300.0, help="stop starting new sizes after this many s")
    ap.add_argument("--stages", action="store_true", help="a third run timing each stage (blocked on)")
    ap.add_argument("--trace", default=None, help="write and summarise a device trace of one batch here")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import jax

    from bench_fit import _time_stages, env, simulate
    from brutus_jax.analysis import BruteForce
    from brutus_jax.analysis import bruteforce as bfm
    from brutus_jax.core import StarGrid
    from brutus_jax.data.synthetic import make_synthetic_grid

    print(env(), flush=True)
    filters = ["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"]
    models, labels, params, filters = make_synthetic_grid(n_mini=100, n_eep=100, n_feh=args.n_feh, filters=filters)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    print(f"grid: {models.shape[0]:,} models x {len(filters)} bands (synthetic)", flush=True)
    runs = [(n, None if gb == "auto" else int(gb), sr, nt) for n in args.nstars for gb in args.group_bytes
            for sr in args.serial for nt in args.threads]
    dev = jax.devices()[0]
    first = {}  # N -> the first configuration's results, which the others must reproduce
    for n, gb, sr, nt in runs:
        if time.perf_counter() - t_start > args.budget:
            print(f"budget reached: skipping N={n} group_bytes={gb} serial={sr} threads={nt}")
            continue
        try:
            run_one(args, bfm, BruteForce, grid, models, n, gb, sr, nt, _time_stages, simulate, first)
        except Exception as exc:  # e.g. out of device memory: report, go on with the next configuration
            print(f"N={n} group_bytes={gb} serial={sr} threads={nt}: FAILED {type(exc).__name__}: "
                  f"{str(exc)[:400]}", flush=True)
        try:
            st = dev.memory_stats() or {}
            print(f"  device memory: peak {st.get('peak_bytes_in_use', 0) / 2**30:.1f} GiB of "
                  f"{st.get('bytes_limit', 0) / 2**30:.1f} GiB", flush=True)
        except Exception:
            pass


def run_one(args, bfm, BruteForce, grid, models, n, gb, sr, nt, _time_stages, simulate, first):
    """First run (compiles), timed run, optional trace and per-stage timing of one configuration;
    its results compared with those of the first configuration of the same N (``first``)."""
    import h5py
    import jax

    from brutus_jax.analysis.fit_runner import batch_size_for, threads_for

    def make(threads):
        bf = BruteForce(grid, verbose=False, group_bytes=gb, devices=jax.devices()[:1], threads_per_device=threads)
        bf._serial_stars = {"auto": None, "on": True, "off": False}[sr]
        return bf

    bf = make(None if nt == "auto" else int(nt))
    dev = jax.devices()[0]
    nthreads = threads_for(bf, dev)
    flux, err, msk, plx, pe, coords = simulate(np.asarray(models), n, seed=1)
    B = (batch_size_for(bf.nmodels, bf.nfilters, np.dtype(bf.dtype).itemsize, 8000.0, n, dev, nthreads)
         if args.batch_size == "auto" else min(int(args.batch_size), n))
    kw = dict(parallax=plx, parallax_err=pe, data_coords=coords, rstate=7, verbose=False, overwrite=True,
              batch_size=B)
    tag = (f"N={n} batch={B}{' (auto)' if args.batch_size == 'auto' else ''} "
           f"group_bytes={gb if gb is not None else 'auto'} serial={sr} threads={nthreads}"
           f"{' (auto)' if nt == 'auto' else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bf.fit(flux, err, msk, np.arange(n), f"{tmp}/a.h5", **kw)
        t_first = time.perf_counter() - t0
        print(f"{tag}: first run incl. compilation {t_first:.1f} s", flush=True)
        t0 = time.perf_counter()
        bf.fit(flux, err, msk, np.arange(n), f"{tmp}/b.h5", **kw)
        t = time.perf_counter() - t0
        print(f"{tag}: {n / t:.0f} stars/s ({1e3 * t / n:.3f} ms/star; first run "
              f"incl. compilation {t_first:.1f} s; compiled stage1_mag x{bfm._stage1_mag._cache_size()}, "
              f"flux x{bfm._stage1_flux._cache_size()}, finish x{bfm._stage1_finish._cache_size()}, "
              f"stage2 x{bfm._stage2._cache_size()})", flush=True)
        with h5py.File(f"{tmp}/b.h5", "r") as fh:
            res = {k: fh[k][()] for k in ("samps_dist", "samps_red", "obj_log_evid", "model_idx")}
        if n not in first:
            first[n] = res
        else:  # batch size, threads and groups must not change any result; stages and trace once per N
            diff = {k: float(np.nanmax(np.abs(res[k].astype(float) - first[n][k].astype(float))))
                    for k in res}
            print("  vs the first configuration: max |difference| " + ", ".join(
                f"{k} {v:.2g}" for k, v in diff.items()), flush=True)
            return
        bf = make(1)  # per-stage times and the trace: one thread
        if args.trace:
            sub = dict(kw, parallax=plx[:B], parallax_err=pe[:B], data_coords=coords[:B])
            with jax.profiler.trace(args.trace, create_perfetto_trace=True):
                bf.fit(flux[:B], err[:B], msk[:B], np.arange(B), f"{tmp}/t.h5", **sub)
            paths = sorted(glob.glob(f"{args.trace}/**/perfetto_trace.json.gz", recursive=True))
            print(f"trace of one batch ({B} stars):\n" + (summarize_trace(paths[-1]) if paths else "none"),
                  flush=True)
        if args.stages:
            acc = _time_stages()
            try:
                t0 = time.perf_counter()
                bf.fit(flux, err, msk, np.arange(n), f"{tmp}/c.h5", **kw)
                t = time.perf_counter() - t0
            finally:
                for name in acc:  # unwrap
                    setattr(bfm, name, getattr(bfm, name).__wrapped__)
            rest = t - sum(acc.values())
            print("  per stage (ms/star, blocked): " + ", ".join(
                f"{k} {1e3 * v / n:.3f}" for k, v in acc.items()) + f", host/other {1e3 * rest / n:.3f} "
                f"(total {1e3 * t / n:.3f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
