"""BruteForce.fit: astro-brutus 1.2.0 vs brutus_jax side by side, same grid, stars and settings.

Usage:  python benchmarks/bench_fit.py [--nstars-jax 256] [--nstars-brutus 16] [--bands 8] [--host-devices N]
        [--stages] [--no-brutus]

Grid: the MIST grid extended to 0.3-2.3 Msun (>= 600k models; built once and
cached).  Stars: drawn from grid models with A_V in [0, 2], R_V ~ N(3.3, 0.2),
d in [0.2, 3] kpc, 2-3 % flux errors, 0.05-0.1 mas parallax errors, random
Galactic positions.  Settings: brutus defaults (Nmc_prior=50, Ndraws=250,
Galactic prior on).  Reports the per-star time of the whole fit for both
codes (brutus: median over stars after numba warm-up; brutus_jax: a second
batched run of all stars, after a first run that compiled every stage and
K bucket; compilation reported separately) and the ratio.  ``--host-devices N``
(N > 1) splits the CPU into N XLA devices and times brutus_jax on one device
and on all N (one host thread per device) in the same run.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np


def env():
    import jax

    return (f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__} "
            f"({jax.default_backend()}, {jax.devices()[0].device_kind}), {os.cpu_count()} CPU cores, "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def bench_grid(bands=8, verbose=False):
    """The benchmark grid: MIST extended to 0.3-2.3 Msun (built once, cached) with
    8 bands (PS1 grizy + 2MASS JHKs) or 4 (Gaia G/BP/RP + Ks) -> models, labels, mask, filters."""
    from brutus_jax.data import build_grid, load_models

    filters = (["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"] if bands == 8
               else ["Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks"])
    mini = np.round(np.arange(0.3, 2.3 + 1e-9, 0.025), 4)
    path = build_grid("default", mini_grid=mini, verbose=verbose)
    models, labels, mask = load_models(path, filters=filters, verbose=False)
    return models, labels, mask, filters


def simulate(models, n, seed):
    from brutus_jax.kernels.seds import get_seds

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, models.shape[0], n)
    av, rv, d = rng.uniform(0, 2, n), rng.normal(3.3, 0.2, n), rng.uniform(0.2, 3.0, n)
    m = np.asarray(get_seds(np.asarray(models)[idx].astype(float), av=av, rv=rv)) + 5 * np.log10(d)[:, None]
    flux = 10 ** (-0.4 * m)
    err = rng.uniform(0.02, 0.03, flux.shape) * flux
    flux = flux + err * rng.normal(size=flux.shape)
    pe = rng.uniform(0.05, 0.1, n)
    plx = 1 / d + pe * rng.normal(size=n)
    coords = np.column_stack([rng.uniform(0, 360, n), rng.uniform(-60, 60, n)])
    return flux, err, np.ones_like(flux, bool), plx, pe, coords


def _time_stages():
    """Wrap BruteForce's stage functions to accumulate their wall time (dict name -> s)."""
    import jax

    from brutus_jax.analysis import bruteforce as bfm

    acc = {}

    def wrap(name, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(*a, **k))
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
            return out

        timed._cache_size = fn._cache_size
        timed.__wrapped__ = fn
        return timed

    for name in ("_stage1_mag", "_stage1_flux", "_stage1_finish", "_stage2"):
        setattr(bfm, name, wrap(name, getattr(bfm, name)))
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nstars-jax", type=int, default=256)
    ap.add_argument("--nstars-brutus", type=int, default=16)
    ap.add_argument("--bands", type=int, default=8, choices=(4, 8))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--host-devices", type=int, default=1, help="XLA CPU devices (sets XLA_FLAGS before jax loads)")
    ap.add_argument("--stages", action="store_true", help="also time each stage function (blocks after each call)")
    ap.add_argument("--no-brutus", action="store_true", help="skip the astro-brutus side")
    args = ap.parse_args()
    if args.host_devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.host_devices}").strip()
    import jax

    import h5py

    from brutus_jax.analysis import BruteForce
    from brutus_jax.analysis.bruteforce import _stage1_flux, _stage1_mag, _stage2
    from brutus_jax.core import StarGrid

    print(env())
    stage_t = _time_stages() if args.stages else None
    models, labels, mask, filters = bench_grid(args.bands, verbose=True)
    print(f"grid: {models.shape[0]:,} models x {len(filters)} bands ({', '.join(filters)})")
    flux, err, msk, plx, pe, coords = simulate(models, args.nstars_jax, seed=1)
    grid = StarGrid(models, labels, mask, verbose=False)
    kw = dict(parallax=plx, parallax_err=pe, data_coords=coords, rstate=7, verbose=False, overwrite=True,
              batch_size=args.batch_size)
    ndevs = sorted({1, len(jax.devices())})
    with tempfile.TemporaryDirectory() as tmp:
        B = args.batch_size
        for nd in ndevs:
            bf = BruteForce(grid, verbose=False, devices=jax.devices()[:nd])
            t0 = time.perf_counter()
            bf.fit(flux[:B], err[:B], msk[:B], np.arange(B), f"{tmp}/warm{nd}.h5", **{**kw, "parallax": plx[:B],
                   "parallax_err": pe[:B], "data_coords": coords[:B]})
            t_warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            bf.fit(flux, err, msk, np.arange(len(flux)), f"{tmp}/jax0_{nd}.h5", **kw)  # compiles every K bucket
            t_first = time.perf_counter() - t0
            if stage_t is not None:
                stage_t.clear()
            t0 = time.perf_counter()
            out = bf.fit(flux, err, msk, np.arange(len(flux)), f"{tmp}/jax_{nd}.h5", **kw)
            t_jax = time.perf_counter() - t0
            if stage_t is not None:
                print("  per stage (ms/star, each call blocked on): " + ", ".join(
                    f"{k} {1e3 * v / len(flux):.1f}" for k, v in stage_t.items()))
            with h5py.File(out) as f:
                ok = np.mean(f["obj_status"][()] == 1)
            print(f"brutus_jax fit on {nd} device(s): {len(flux)} stars in {t_jax:.2f} s -> "
                  f"{1e3 * t_jax / len(flux):.1f} ms/star, {len(flux) / t_jax:.1f} stars/s (batch {B}; first batch "
                  f"incl. compilation {t_warm:.1f} s, first full run {t_first:.1f} s; {ok:.0%} ok; compiled stage1 "
                  f"x{_stage1_mag._cache_size()} (flux stage x{_stage1_flux._cache_size()}), "
                  f"stage2 x{_stage2._cache_size()})")
            jax_ms = 1e3 * t_jax / len(flux)

        if args.no_brutus:
            return
        try:
            import brutus.analysis
            import brutus.core
            import numpy.lib.recfunctions as rfn
        except ImportError:
            print("astro-brutus not installed: no side-by-side comparison")
            return
        names = [n for n in labels.dtype.names if mask[n][0]]
        params = [n for n in labels.dtype.names if not mask[n][0]]
        bg = brutus.core.StarGrid(np.asarray(models), rfn.repack_fields(labels[names]),
                                  rfn.repack_fields(labels[params]), filters=filters, verbose=False)
        bb = brutus.analysis.BruteForce(bg, verbose=False)
        bb.models_labels = labels  # v0.8 semantics, as brutus_jax
        nb = args.nstars_brutus
        bkw = dict(parallax=plx[:nb], parallax_err=pe[:nb], data_coords=coords[:nb], verbose=False)
        bb.fit(flux[:2], err[:2], msk[:2], np.arange(2), f"{tmp}/bwarm.h5", rstate=np.random.RandomState(0),
               **{**bkw, "parallax": plx[:2], "parallax_err": pe[:2], "data_coords": coords[:2]})  # numba warm-up
        per = []
        for i in range(nb):
            t0 = time.perf_counter()
            bb.fit(flux[i:i + 1], err[i:i + 1], msk[i:i + 1], np.arange(1), f"{tmp}/b{i}.h5",
                   rstate=np.random.RandomState(i), parallax=plx[i:i + 1], parallax_err=pe[i:i + 1],
                   data_coords=coords[i:i + 1], verbose=False)
            per.append(time.perf_counter() - t0)
        b_ms, b_mean = 1e3 * statistics.median(per), 1e3 * statistics.mean(per)
        print(f"astro-brutus fit: median {b_ms:.0f} ms/star, mean {b_mean:.0f} (min {1e3 * min(per):.0f}, max "
              f"{1e3 * max(per):.0f}) over {nb} stars, NUMBA_NUM_THREADS="
              f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}")
        # brutus's per-star times are skewed (selection sizes); brutus_jax's is the mean over its stars
        print(f"speed-up (brutus median per star / brutus_jax per star on {ndevs[-1]} device(s)): "
              f"{b_ms / jax_ms:.1f}x; with brutus's mean: {b_mean / jax_ms:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
