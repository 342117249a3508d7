"""Smoothness of isochrone interpolation in log age and [Fe/H]: multilinear vs cubic Hermite.

Usage:  python benchmarks/bench_isochrone_smoothness.py [--npts 401] [--nstars 150] [--neep 300,1200]

On the default MIST isochrones (lachesis-grids, real data) it scans, for
``interp='linear'`` (brutus's multilinear rule) and ``interp='cubic'`` (our
default: cubic Hermite in loga and feh, linear in EEP):

1. logt and logl at fixed EEP vs loga (feh = 0) and vs [Fe/H] (loga = 9.5),
   with ``jax.grad`` along the scan; at every node inside the scan the
   derivative just left and right of the node (x -/+ 1e-7) gives the
   *derivative jump*; also the scan's largest change of the derivative
   between neighbouring scan points (``max |d2|``).
2. the same for a simple chi-square of a fixed synthetic CMD (``--nstars``
   single stars drawn from the *cubic* isochrone at loga = 9.23, feh = 0.07,
   d = 500 pc, A_V = 0.1, Gaia EDR3 G, BP, RP with 0.01 mag errors) against
   the isochrone: ``chi2(theta) = -2 sum_stars log mean_eep exp(-chi2_star,eep / 2)``
   over ``--neep`` EEPs (202-454), the model magnitudes from ``StellarPop``;
   besides the jumps, the number of local minima along the scan (sign changes
   of the gradient) measures how rippled the surface is.

Prints the environment and a table per scan.  Nothing here runs under pytest.
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from brutus_jax.core import Isochrone, StellarPop  # noqa: E402
from brutus_jax.kernels.isochrone_interp import isochrone_predictions  # noqa: E402

BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3")


def env():
    print(f"python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
          f"devices {jax.devices()}, cores {os.cpu_count()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def scan_param(which, lo, hi, npts, fixed):
    x = np.linspace(lo, hi, npts)
    return x, [dict(fixed, **{which: v}) for v in x]


def node_jumps(nodes, lo, hi, grad_at):
    """|g(node + 1e-7) - g(node - 1e-7)| for nodes strictly inside (lo, hi)."""
    inner = nodes[(nodes > lo + 1e-6) & (nodes < hi - 1e-6)]
    eps = 1e-7
    gl = grad_at(inner - eps)
    gr = grad_at(inner + eps)
    return inner, np.abs(gr - gl), np.maximum(np.abs(gl), np.abs(gr))


def iso_scans(isos, npts):
    rows = []
    eeps = np.array([300.0, 400.0, 480.0])
    for axis, lo, hi, fixed in (("loga", 9.0, 9.3, dict(feh=0.0)), ("feh", -0.6, 0.3, dict(loga=9.5))):
        for name, iso in isos.items():
            table = iso.jax_table(jnp.float64)
            for col in ("logt", "logl"):
                c = iso.column(col)

                def f(v, t, c=c):
                    kw = dict(fixed, **{axis: v})
                    p, ok = isochrone_predictions(t, kw["feh"], 0.0, kw["loga"], jnp.asarray(eeps), iso.corr_cols,
                                                  iso.interp, True)
                    return p[:, c]

                g = jax.jit(jax.vmap(jax.jacfwd(f), in_axes=(0, None)))
                x = np.linspace(lo, hi, npts)
                d = np.asarray(g(jnp.asarray(x), table))  # (npts, n_eep)
                nodes = iso.loga_u if axis == "loga" else iso.feh_u
                inner, jump, scale = node_jumps(nodes, lo, hi, lambda v: np.asarray(g(jnp.asarray(v), table)))
                d2 = np.abs(np.diff(d, axis=0)).max()
                rows.append((axis, col, name, inner.size, jump.max(), np.median(jump), np.abs(d).max(), d2))
    print("\n1. isochrone columns at EEP 300/400/480: derivative jumps at nodes (x -/+ 1e-7)")
    print(f"{'scan':>5} {'col':>5} {'interp':>7} {'nodes':>5} {'max jump':>10} {'median jump':>12} "
          f"{'max |deriv|':>11} {'max |d2|':>10}")
    for r in rows:
        print(f"{r[0]:>5} {r[1]:>5} {r[2]:>7} {r[3]:>5d} {r[4]:10.3e} {r[5]:12.3e} {r[6]:11.3e} {r[7]:10.3e}")


def cmd_scans(pops, nstars, neep, npts):
    truth = dict(feh=0.07, loga=9.23, av=0.1, rv=3.3, dist=500.0)
    rng = np.random.default_rng(42)
    eep = np.linspace(202.0, 454.0, neep)
    cub = pops["cubic"]
    g0 = cub.get_seds_smf_grid_jax(np.array([0.0]), eep=eep, **truth)
    ok = np.asarray(g0.sed_ok[0])
    pick = rng.choice(np.nonzero(ok)[0], nstars)
    obs = np.asarray(g0.mags[0])[pick] + rng.normal(0, 0.01, (nstars, len(BANDS)))
    obs = jnp.asarray(obs)
    err = 0.01

    def chi2(theta, data, pop):
        g = pop.get_seds_smf_grid_jax(np.array([0.0]), feh=theta[0], loga=theta[1], eep=eep, av=truth["av"],
                                      rv=truth["rv"], dist=truth["dist"], data=data)
        m, okm = g.mags[0], g.sed_ok[0]
        c = jnp.sum(((obs[:, None, :] - m[None]) / err) ** 2, axis=-1)  # (nstars, neep)
        lnl = jax.scipy.special.logsumexp(jnp.where(okm[None], -0.5 * c, -jnp.inf), axis=1) - jnp.log(okm.sum())
        return -2.0 * jnp.sum(lnl)

    print(f"\n2. CMD chi-square: {nstars} stars (G, BP, RP +- 0.01), truth feh={truth['feh']}, "
          f"loga={truth['loga']}; {neep} EEPs; scans of {npts} points")
    print(f"{'scan':>5} {'interp':>7} {'nodes':>5} {'max jump':>10} {'median jump':>12} {'max |grad|':>10} "
          f"{'max |d2|':>10} {'local minima':>12} {'argmin':>8} {'time/grad [ms]':>14}")
    for axis, lo, hi in (("loga", 9.08, 9.38), ("feh", -0.3, 0.4)):
        for name, pop in pops.items():
            data = pop.jax_data(jnp.float64)

            def th(v):
                return jnp.stack([v, jnp.asarray(truth["loga"])]) if axis == "feh" else \
                    jnp.stack([jnp.asarray(truth["feh"]), v])

            vg = jax.jit(jax.value_and_grad(lambda v, d: chi2(th(v), d, pop)))
            x = np.linspace(lo, hi, npts)
            vals, grads = zip(*[vg(jnp.asarray(v), data) for v in x])
            vals, grads = np.array(vals), np.array(grads)
            t0 = time.perf_counter()
            for v in x[:10]:
                jax.block_until_ready(vg(jnp.asarray(v), data))
            dt = (time.perf_counter() - t0) / 10 * 1e3
            nodes = pop.isochrone.loga_u if axis == "loga" else pop.isochrone.feh_u
            inner, jump, scale = node_jumps(nodes, lo, hi,
                                            lambda vv: np.array([float(vg(jnp.asarray(v), data)[1]) for v in vv]))
            minima = int(np.sum((grads[:-1] < 0) & (grads[1:] >= 0)))
            d2 = np.abs(np.diff(grads)).max()
            print(f"{axis:>5} {name:>7} {inner.size:>5d} {jump.max():10.3e} {np.median(jump):12.3e} "
                  f"{np.abs(grads).max():10.3e} {d2:10.3e} {minima:>12d} {x[np.argmin(vals)]:8.4f} {dt:14.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npts", type=int, default=401)
    ap.add_argument("--nstars", type=int, default=150)
    ap.add_argument("--neep", default="300,1200", help="comma-separated EEP grid sizes for the CMD scans")
    args = ap.parse_args()
    env()
    t0 = time.perf_counter()
    isos = {"linear": Isochrone(verbose=False, interp="linear"), "cubic": Isochrone(verbose=False, interp="cubic")}
    pops = {k: StellarPop(v, filters=BANDS, verbose=False) for k, v in isos.items()}
    print(f"setup {time.perf_counter() - t0:.1f} s; loga nodes every {np.diff(isos['cubic'].loga_u)[0]:.2f} dex, "
          f"[Fe/H] nodes {isos['cubic'].feh_u.tolist()}")
    iso_scans(isos, args.npts)
    for neep in (int(v) for v in args.neep.split(",")):
        cmd_scans(pops, args.nstars, neep, args.npts)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
