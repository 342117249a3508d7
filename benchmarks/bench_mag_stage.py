"""The magnitude stage of a batch of stars (`bruteforce._stage1_mag`) in its layouts, timed side by side.

Usage:  python benchmarks/bench_mag_stage.py [--n-feh 72] [--batch 512 1024] [--layouts vmap minor serial]
                                             [--repeats 5] [--trace DIR]

Layouts (same values, checked against the first one):
* ``vmap``: the batch vmapped, per-model arrays (B, Nmodel): every star streams the whole grid;
* ``minor``: `fit_stars_mag`, per-model arrays (Nmodel, B): each model's coefficients read once per batch;
* ``serial``: one star after another (``lax.map``, the CPU default).

Grid: the synthetic brutus-scale grid (``--n-feh 72``: 600,287 models x 8 bands) and stars of
`bench_fit.simulate`, float32, lazy scale errors as `BruteForce.fit`.  Prints the median of
``--repeats`` timed calls after one compiling call, ms per batch and per star.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-feh", type=int, default=72)
    ap.add_argument("--batch", type=int, nargs="+", default=[512])
    ap.add_argument("--layouts", nargs="+", default=["vmap", "minor"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--trace", default=None, help="a device trace of one call per layout, summarised (DIR)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from bench_fit import env, simulate
    from brutus_jax.analysis.bruteforce import _stage1_mag
    from brutus_jax.data.synthetic import make_synthetic_grid
    from brutus_jax.kernels.sedfit import to_band_major

    print(env(), flush=True)
    filters = ["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"]
    models, *_ = make_synthetic_grid(n_mini=100, n_eep=100, n_feh=args.n_feh, filters=filters)
    dt = jnp.float32
    grid = to_band_major(models, dtype=dt)
    f = lambda x: jnp.asarray(x, dt)  # noqa: E731
    opts = [f(x) for x in ((0.0, 20.0), (0.0, 1e6), (1.0, 8.0), (3.32, 0.18), 0.03, 0.01, 0.005)]
    for batch in args.batch:
        flux, err, msk, plx, pe, _ = simulate(np.asarray(models), batch, seed=1)
        data = (f(flux), f(err), jnp.asarray(msk, bool), f(plx), f(pe))
        print(f"grid: {models.shape[0]:,} models x {len(filters)} bands, batch {batch}, float32", flush=True)
        compare(args, grid, data, opts, batch, _stage1_mag)


def compare(args, grid, data, opts, batch, _stage1_mag):
    """Time each layout on one batch; differences against the first layout."""
    import jax
    import jax.numpy as jnp

    runs = list(args.layouts)
    ref = None
    for lay in runs:
        kw = dict(no_init_thresh=False, lazy=True)
        if lay == "vmap":
            kw.update(chunk=None)
        elif lay == "serial":
            kw.update(chunk=1)
        elif lay == "minor":
            kw.update(chunk=None, star_minor=True)
        else:
            raise SystemExit(f"unknown layout {lay!r}")

        def call():
            return jax.block_until_ready(_stage1_mag(grid, *data, *opts, **kw))

        t0 = time.perf_counter()
        out = call()
        t_c = time.perf_counter() - t0
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
        t = float(np.median(ts))
        same = ""
        if ref is None:
            ref = out
        else:
            dav = float(jnp.max(jnp.abs(out.av - ref.av)))
            nact = int(jnp.sum(out.active != ref.active))
            same = f"; vs {runs[0]}: max|dA_V| {dav:.2e}, active differs for {nact} star-models"
        if args.trace:
            import glob

            from bench_fit_device import summarize_trace

            d = f"{args.trace}/{lay}_{batch}"
            with jax.profiler.trace(d, create_perfetto_trace=True):
                call()
            paths = sorted(glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True))
            print(summarize_trace(paths[-1], top=15) if paths else "no trace", flush=True)
        print(f"{lay:>9}: {1e3 * t:9.2f} ms/batch  {1e3 * t / batch:8.3f} ms/star  (first call {t_c:.1f} s; "
              f"iterations max {int(jnp.max(out.n_iter_mag))}, mean {float(jnp.mean(out.n_iter_mag)):.2f}){same}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
