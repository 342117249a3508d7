"""``photometric_offsets``: astro-brutus 1.2.0 vs brutus_jax, side by side on the same inputs.

Usage:  python benchmarks/bench_offsets.py [--sizes 1000x8x100,10000x8x250] [--repeats 3]
        [--brutus-repeats 2] [--n-bootstrap 300] [--gauss]

For each size ``Nobj x Nfilt x Nsamp``: a synthetic grid (``make_synthetic_grid``
with Nfilt bands), stars drawn from it (A_V 0.1-1.5, R_V ~ N(3.3, 0.1),
d 0.3-3 kpc, 2 % flux errors, 5 % of the bands missing, per-band offsets of a
few per cent injected) and posterior draws (proposals of the true model around the truth, resampled by
likelihood; see ``problem``).  Both implementations get identical inputs, default configuration
(300 bootstrap replicates, all bands fitted, dim_prior=True unless --gauss) and
verbose=False.  Reported: the median (min-max) wall time over the repeats (brutus
after nothing - it is plain numpy; brutus_jax after a first call that compiles,
whose time is shown apart), and the agreement (|offset difference| in units of the
brutus error; identical n_objects_used).  Timings include everything the call
does (model fluxes, weights, bootstrap, summaries); brutus_jax results are numpy
arrays, so the time is to completion.

Prints the environment (versions, backend, cores, load, XLA_FLAGS).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import _env  # noqa: E402  (benchmarks/_env.py)

FILTERS = ("PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks", "WISE_W1", "WISE_W2")


def env_summary():
    return _env.env_summary('(photometric_offsets is plain numpy)')


def problem(nobj, nfilt, nsamp, seed=0, nprop=4):
    """Inputs (phot, err, mask, models, idxs, reds, dreds, dists) and the injected offsets.

    Posterior draws: ``nprop * nsamp`` proposals per star around the truth (A_V +- 0.05,
    R_V +- 0.1, distance +- 2 %), resampled to ``nsamp`` draws by likelihood / proposal
    density (equally weighted, like BruteForce's draws)."""
    from brutus_jax.data.synthetic import make_synthetic_grid

    models = np.asarray(make_synthetic_grid(n_mini=16, n_eep=24, n_feh=6, filters=FILTERS[:nfilt])[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(models), nobj)
    av, rv, d = rng.uniform(0.1, 1.5, nobj), rng.normal(3.3, 0.1, nobj), rng.uniform(0.3, 3.0, nobj)
    coeffs = models[idx].astype(float)  # (nobj, nfilt, 3)

    def flux(c, a, r, dist):
        return 10 ** (-0.4 * (c[..., 0] + a[..., None] * (c[..., 1] + r[..., None] * c[..., 2]))) / dist[..., None] ** 2

    f0 = flux(coeffs, av, rv, d)
    offsets = rng.uniform(0.95, 1.05, nfilt)
    err = 0.02 * f0 / offsets
    phot = (f0 + 0.02 * f0 * rng.standard_normal(f0.shape)) / offsets
    mask = rng.random((nobj, nfilt)) > 0.05
    draws = np.empty((3, nobj, nsamp))
    npr = nprop * nsamp
    for lo in range(0, nobj, 500):
        sl = slice(lo, min(lo + 500, nobj))
        z = rng.standard_normal((3, sl.stop - lo, npr))
        prop = np.stack([np.abs(av[sl, None] + 0.05 * z[0]), rv[sl, None] + 0.1 * z[1],
                         d[sl, None] * np.exp(0.02 * z[2])])
        f = flux(coeffs[sl, None], prop[0], prop[1], prop[2])
        chi2 = np.sum(np.where(mask[sl, None], (phot[sl, None] - f) ** 2 / err[sl, None] ** 2, 0.0), axis=-1)
        lw = -0.5 * chi2 + 0.5 * np.sum(z**2, axis=0)
        cdf = np.cumsum(np.exp(lw - lw.max(1, keepdims=True)), axis=1)
        u = rng.random((sl.stop - lo, nsamp)) * cdf[:, -1:]
        pick = np.minimum(np.array([np.searchsorted(c, x) for c, x in zip(cdf, u)]), npr - 1)
        draws[:, sl] = np.take_along_axis(prop, np.broadcast_to(pick, (3,) + pick.shape), axis=2)
    idxs = np.repeat(idx[:, None], nsamp, axis=1)
    return (phot, err, mask.astype(int), models, idxs, draws[0], draws[1], draws[2]), offsets


def timed(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def fmt(times):
    return f"{statistics.median(times):8.3f} s ({min(times):.3f}-{max(times):.3f}, n={len(times)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000x8x100,10000x8x250")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--brutus-repeats", type=int, default=2)
    ap.add_argument("--n-bootstrap", type=int, default=300)
    ap.add_argument("--gauss", action="store_true", help="dim_prior=False")
    opt = ap.parse_args()

    from brutus.analysis.offsets import PhotometricOffsetsConfig as BConfig
    from brutus.analysis.offsets import photometric_offsets as brutus_po

    from brutus_jax.analysis.offsets import PhotometricOffsetsConfig, photometric_offsets

    print(env_summary())
    print(f"n_bootstrap {opt.n_bootstrap}, dim_prior {not opt.gauss}\n")
    for size in opt.sizes.split(","):
        nobj, nfilt, nsamp = (int(x) for x in size.split("x"))
        args, injected = problem(nobj, nfilt, nsamp)
        kw = dict(dim_prior=not opt.gauss, verbose=False)
        ref, t_b = timed(lambda: brutus_po(*args, config=BConfig(n_bootstrap=opt.n_bootstrap),
                                           rng=np.random.default_rng(1), **kw), opt.brutus_repeats)
        cfg = PhotometricOffsetsConfig(n_bootstrap=opt.n_bootstrap)
        _, t_first = timed(lambda: photometric_offsets(*args, config=cfg, rng=0, **kw), 1)
        ours, t_j = timed(lambda: photometric_offsets(*args, config=cfg, rng=1, **kw), opt.repeats)
        z = np.abs(ours[0] - ref[0]) / ref[1]
        print(f"== {nobj} objects x {nfilt} bands x {nsamp} draws")
        print(f"  astro-brutus 1.2.0    {fmt(t_b)}")
        print(f"  brutus_jax            {fmt(t_j)}   first call (compile) {t_first[0]:.2f} s")
        print(f"  speed-up (medians)    {statistics.median(t_b) / statistics.median(t_j):.1f}x")
        print(f"  n_objects_used equal: {np.array_equal(ours[2], ref[2])};  |offset diff| / brutus error: "
              f"max {z.max():.2f}, median {np.median(z):.2f};  error ratio jax/brutus "
              f"{np.min(ours[1] / ref[1]):.2f}-{np.max(ours[1] / ref[1]):.2f}")
        print(f"  offsets (jax)   {np.array2string(ours[0], precision=4)}")
        print(f"  offsets (brutus){np.array2string(ref[0], precision=4)}")
        print(f"  injected        {np.array2string(injected, precision=4)}\n", flush=True)


if __name__ == "__main__":
    main()
