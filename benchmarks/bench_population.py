"""Population (cluster) likelihood: JAX value_and_grad vs astro-brutus's value.

Usage:  python benchmarks/bench_population.py [--nstar 500] [--nsmf 21] [--neep 1000]
        [--nfilt 8] [--repeats 5] [--brutus-repeats 3] [--dtype float64|float32] [--real]

Default problem: 500 stars x 21 SMF x 1000 EEP x 8 bands (21,000 grid rows), parallaxes,
chi-square (dim_prior) models.  The population is an analytic toy (mass monotone in EEP,
oldest EEPs dropping off with age, magnitudes analytic in mass / [Fe/H] / age plus
A_V (a + b (R_V - 3.1)) + 5 log10(d / 10), binaries by brutus's StellarPop rules)
offered both as ``get_seds_smf_grid_jax`` (PopSEDGrid) and as a brutus-style numpy
``get_seds_smf_grid``; ``--real`` uses ``brutus_jax.core.StellarPop`` (MIST, PS1 grizy +
2MASS JHKs) for the JAX side, with stars simulated from it (brutus is then timed on the
toy with the same shapes: it cannot use our MIST tables).

Reported: compile time of ``jax.jit(jax.value_and_grad(isochrone_population_loglike))``,
then median (min-max) over ``--repeats`` calls (each to ``block_until_ready``) at
different theta; astro-brutus 1.2.0 ``isochrone_population_loglike`` (value only,
numpy) median over ``--brutus-repeats`` on the same inputs; and the agreement of the
two values on the toy.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from brutus_jax.analysis import isochrone_population_loglike  # noqa: E402
from brutus_jax.data.toy_population import ToyPopulation  # noqa: E402

def _observe(mags, nfield, dist, rng):
    """Members' magnitudes + ``nfield`` uniform field stars -> noisy fluxes (3 %),
    errors, parallaxes [mas] and parallax errors (0.05 mas)."""
    field = rng.uniform(mags.min(0), mags.max(0), (nfield, mags.shape[1]))
    mags = np.vstack([mags, field])
    flux = 10 ** (-0.4 * mags)
    err = 0.03 * flux
    flux = flux + err * rng.normal(size=flux.shape)
    nstar = mags.shape[0]
    plx = np.concatenate([np.full(nstar - nfield, 1000.0 / dist), rng.uniform(0.2, 3, nfield)])
    perr = np.full(nstar, 0.05)
    return flux, err, plx + perr * rng.normal(size=nstar), perr


def simulate(pop, nstar, nfilt, rng, truth):
    feh, loga, av, rv, dist, ff = truth
    fine = np.linspace(202.0, 699.0, 2000)
    kw = dict(feh=feh, loga=loga, av=av, rv=rv, eep=fine, dist=dist, mini_bound=0.08)
    seds = {q: pop.get_seds(binary_fraction=q, **kw)[0] for q in (0.0, 0.6, 0.9)}
    nfield = int(round(ff * nstar))
    qs = rng.choice([0.0, 0.0, 0.0, 0.0, 0.6, 0.9], nstar - nfield)
    mags = np.array([seds[q][rng.integers(0, fine.size)] for q in qs])
    return _observe(mags, nfield, dist, rng)


def simulate_real(pop, nstar, rng, truth):
    """Members drawn from the real population's own SEDs (singles and q = 0.6, 0.9)."""
    feh, loga, av, rv, dist, ff = truth
    g = pop.get_seds_smf_grid_jax(np.array([0.0, 0.6, 0.9]), feh=feh, loga=loga, av=av, rv=rv,
                                  eep=np.linspace(202.0, 808.0, 2000), dist=dist, mini_bound=0.08)
    mags, ok = np.asarray(g.mags), np.asarray(g.sed_ok)
    nfield = int(round(ff * nstar))
    rows = []
    for q in rng.choice([0, 0, 0, 0, 1, 2], nstar - nfield):
        idx = np.flatnonzero(ok[q])
        rows.append(mags[q, rng.choice(idx)])
    return _observe(np.array(rows), nfield, dist, rng)


def env_summary():
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__}, "
             f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
             f"{platform.machine()} {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f}",
             f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} "
             f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')!r}"]
    try:
        import brutus  # noqa: F401
        from importlib.metadata import version
        lines.append(f"astro-brutus {version('astro-brutus')}")
    except Exception:
        lines.append("astro-brutus not installed")
    return "\n".join(lines)


def timed(fn, repeats):
    ts = []
    for k in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(k))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nstar", type=int, default=500)
    ap.add_argument("--nsmf", type=int, default=21)
    ap.add_argument("--neep", type=int, default=1000)
    ap.add_argument("--nfilt", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--brutus-repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--real", action="store_true", help="brutus_jax.core.StellarPop for the JAX side")
    a = ap.parse_args()
    print(env_summary())
    dt = np.float64 if a.dtype == "float64" else np.float32
    rng = np.random.default_rng(1)
    truth = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
    toy = ToyPopulation(a.nfilt)
    npop = toy.numpy()
    flux, err, plx, perr = simulate(npop, a.nstar, a.nfilt, rng, truth)
    smf = np.linspace(0.0, 1.0, a.nsmf).astype(dt)
    eep = np.linspace(202.0, 808.0, a.neep).astype(dt)
    jpop = toy
    if a.real:
        from brutus_jax.core import StellarPop
        bands = ["PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks"]
        jpop = StellarPop(filters=bands[:a.nfilt])
        flux, err, plx, perr = simulate_real(jpop, a.nstar, rng, truth)
    print(f"problem: {a.nstar} stars x {a.nsmf} SMF x {a.neep} EEP x {flux.shape[1]} bands "
          f"({a.nsmf * a.neep} grid rows), parallax, dim_prior=True, {a.dtype}, "
          f"{'real StellarPop' if a.real else 'toy population'}")
    data = [jnp.asarray(x, dtype=dt) for x in (flux, err, plx, perr)]

    def lnl(th, d):
        return isochrone_population_loglike(th, jpop, d[0], d[1], parallax=d[2], parallax_err=d[3],
                                            smf_grid=smf, eep_grid=eep)

    vg = jax.jit(jax.value_and_grad(lnl))
    thetas = [jnp.asarray(truth + np.array([0.02, 0.01, 0.01, 0.02, 5.0, 0.01]) * (k % 3 - 1), dtype=dt)
              for k in range(max(a.repeats, 3))]
    t0 = time.perf_counter()
    v0, g0 = jax.block_until_ready(vg(thetas[0], data))
    t_compile = time.perf_counter() - t0
    med, lo, hi = timed(lambda k: vg(thetas[k % len(thetas)], data), a.repeats)
    print(f"brutus_jax jit(value_and_grad): first call (compile + run) {t_compile:.2f} s; "
          f"median {med * 1e3:.0f} ms ({lo * 1e3:.0f}-{hi * 1e3:.0f}) over {a.repeats}; "
          f"cache size {getattr(vg, '_cache_size', lambda: '?')()}")
    print(f"  lnL = {float(v0):.6f}, grad = {np.asarray(g0)}")
    vj = jax.jit(lnl)
    jax.block_until_ready(vj(thetas[0], data))
    med_v, lo_v, hi_v = timed(lambda k: vj(thetas[k % len(thetas)], data), a.repeats)
    print(f"brutus_jax jit(value only): median {med_v * 1e3:.0f} ms ({lo_v * 1e3:.0f}-{hi_v * 1e3:.0f})")
    try:
        from brutus.analysis.populations import isochrone_population_loglike as bl
    except ImportError:
        print("astro-brutus not installed: no comparison")
        return
    th0 = np.asarray(thetas[0], dtype=float)
    kw = dict(parallax=plx, parallax_err=perr, smf_grid=smf.astype(float), eep_grid=eep.astype(float))
    ts = []
    for _ in range(a.brutus_repeats):
        t0 = time.perf_counter()
        ref = bl(th0, npop, flux, err, **kw)
        ts.append(time.perf_counter() - t0)
    print(f"astro-brutus 1.2.0 value only (numpy): median {statistics.median(ts) * 1e3:.0f} ms "
          f"({min(ts) * 1e3:.0f}-{max(ts) * 1e3:.0f}) over {a.brutus_repeats}")
    if not a.real:
        print(f"  brutus lnL = {ref:.6f}; relative difference {abs(float(v0) - ref) / abs(ref):.2e}")
        print(f"speed-up (brutus value / brutus_jax value_and_grad): {statistics.median(ts) / med:.1f}x")


if __name__ == "__main__":
    main()
