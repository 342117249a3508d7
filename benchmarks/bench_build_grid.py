"""Time and size of building the MIST grid, and of loading it (brutus_jax vs astro-brutus).

Usage:  python benchmarks/bench_build_grid.py [--preset default|small] [--repeats 3]

Builds the preset into a temporary file (a real rebuild, not the cache), then
loads it with ``brutus_jax.data.load_models`` and, when installed, with
astro-brutus 1.2.0's ``brutus.data.load_models`` (same file, same filters);
reports medians over repeats and the machine.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np


def env_summary():
    import jax

    return (f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__}, "
            f"{platform.machine()} {os.cpu_count()} cores, backend {jax.default_backend()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from brutus_jax.data import build_grid, load_models

    print(env_summary())
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grid.h5")
        t0 = time.perf_counter()
        build_grid(args.preset, output_file=out, rebuild=True, verbose=True)
        t_build = time.perf_counter() - t0
        size = os.path.getsize(out) / 2**20
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"build {args.preset}: {t_build:.1f} s wall (data already cached), file {size:.1f} MiB, "
              f"peak RSS {rss:.0f} MiB")

        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            models, labels, mask = load_models(out, verbose=False)
            times.append(time.perf_counter() - t0)
        print(f"brutus_jax load_models: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}) for {models.shape[0]:,} models x "
              f"{models.shape[1]} bands")
        try:
            from brutus.data import load_models as brutus_load
        except ImportError:
            print("astro-brutus not installed: no side-by-side load timing")
            return
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bm, bl, bk = brutus_load(out, filters=list(models.filters), verbose=False)
            times.append(time.perf_counter() - t0)
        same = np.array_equal(np.asarray(bm), np.asarray(models))
        print(f"astro-brutus load_models: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}); identical arrays: {same}")


if __name__ == "__main__":
    sys.exit(main())
