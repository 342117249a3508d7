"""Cluster fits (`fit_cluster`, blackjax NUTS) of the real Pleiades and Praesepe members.

Usage:  python benchmarks/bench_real_clusters.py [--clusters pleiades praesepe] [--members 80]
        [--chains 2] [--warmup 150] [--samples 150] [--seed 1] [--color-min -0.3] [--color-max 1.5]
        [--feh-prior-sd 0.05] [--err-floor 0.03] [--neep 500] [--eep-min 150] [--eep-max 500]
        [--nsmf 4] [--rv 3.3] [--field-max 1.0] [--max-doublings 6] [--json PATH]
        [--selection] [--imf flat|kroupa] [--random-members] [--method nuts|smc] [--float32]
        [--smc-reference prior|laplace|both]

Data: Gaia DR3 G/BP/RP + 2MASS Ks members (``data.clusters.load_cluster_members``: RUWE < 1.4,
parallax S/N > 10); model: the MIST ``StellarPop`` (MIST v1.2 isochrones, C3K bolometric
corrections), float64.

Default settings (the ones chosen in benchmarks/README.md, "Real clusters"):

* members: every star with all four bands and ``--color-min < BP-RP < --color-max`` (-0.3..1.5:
  the B/A/F upper main sequence down to early-M dwarfs, leaving out the M dwarfs whose MIST
  colours are 0.05-0.13 mag too blue); at most ``--members``, keeping all stars bluer than
  BP-RP 0.5 (the stars near the turn-off that constrain the age) and filling the rest evenly in G;
* [Fe/H]: a spectroscopic Gaussian prior N(lit, ``--feh-prior-sd``) on [-1, 0.5] (0: uniform
  over the isochrone's range), with lit = +0.03 (Pleiades) and +0.15 (Praesepe).  The
  posterior [Fe/H] is then not an independent check of the literature;
* R_V fixed at ``--rv``; A_V uniform 0-6 mag; log age uniform over the isochrone's range;
  distance uniform 10-20,000 pc; field fraction uniform 0-1;
* ``--err-floor`` [mag] added in quadrature to every band (isochrone/BC systematics);
* ``--neep`` EEP rows from ``--eep-min`` to ``--eep-max`` (150-500: the main sequence of both
  clusters, where G changes by 0.04-0.13 mag per EEP, at ~0.7 EEP per row; 300 rows over 100-808
  are 0.1-0.3 mag apart there, far coarser than the errors), ``--nsmf`` secondary-mass
  fractions 0..1.

What the fits give and why the ages are not measurements (the brightest fitted member sets
them: the population likelihood's uniform-in-initial-mass measure, normalised over the whole
isochrone, favours the oldest isochrone whose turn-off still reaches the brightest member):
benchmarks/README.md, "Real clusters".

Prints per cluster: median, 95 % interval, split R-hat, bulk ESS and the literature value of each
free parameter; 1000 / mean parallax; divergences; wall times (initialisation, warmup,
sampling).  ``--json`` appends one JSON line per cluster (settings and results).

Literature (approximate): Pleiades 135.2 pc (Gaia Collaboration 2018; Abramson 2018 VLBI 136.2),
log age 8.05-8.13 (Stauffer+ 1998 lithium depletion boundary 125 Myr; Dahm 2015 112 Myr),
[Fe/H] +0.03 (Soderblom+ 2009), A_V ~0.12 (E(B-V) 0.04); Praesepe ~186 pc (Gaia Collaboration 2018:
186.2 pc), log age 8.8-8.9 (590-750 Myr; Gossage+ 2018, Douglas+ 2019), [Fe/H] +0.15
(Boesgaard+ 2013: +0.12 to +0.16), A_V 0.03-0.08 (E(B-V) 0.01-0.027).
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _env import env_summary  # noqa: E402

BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks")
# literature values: (value or (lo, hi)) per parameter; dist in pc
LIT = {
    "pleiades": dict(feh=0.03, loga=(8.05, 8.13), av=0.12, dist=135.2, field_frac=None),
    "praesepe": dict(feh=0.15, loga=(8.8, 8.9), av=(0.03, 0.08), dist=186.0, field_frac=None),
}


def select_members(d, nmax, color_min, color_max, blue=0.5, random_seed=None):
    """Indices of the members used: all four bands, color_min < BP-RP < color_max; at most nmax,
    all stars bluer than ``blue`` kept (up to nmax // 3) and the rest evenly spaced in G; or, with
    ``random_seed``, a random subset (which keeps the sample's mass function)."""
    color = d["mag"][:, 1] - d["mag"][:, 2]
    ok = np.flatnonzero((color > color_min) & (color < color_max) & d["mask"].all(axis=1))
    if ok.size <= nmax:
        return ok
    if random_seed is not None:
        return np.sort(np.random.default_rng(random_seed).choice(ok, nmax, replace=False))
    hot = ok[color[ok] < blue]
    hot = hot[np.argsort(d["mag"][hot, 0])][: nmax // 3]
    rest = np.setdiff1d(ok, hot)
    rest = rest[np.argsort(d["mag"][rest, 0])]
    k = nmax - hot.size
    return np.sort(np.concatenate([hot, rest[np.linspace(0, rest.size - 1, k).astype(int)]]))


def cluster_priors(name, feh_prior_sd=0.05, rv=3.3, field_max=1.0):
    """The priors of the chosen settings (see module docstring)."""
    priors = {"rv": float(rv)}
    if field_max < 1.0:
        priors["field_frac"] = (0.0, float(field_max))
    if feh_prior_sd > 0:
        mu, sd = LIT[name]["feh"], float(feh_prior_sd)
        priors["feh"] = (-1.0, 0.5, lambda x: -0.5 * ((x - mu) / sd) ** 2)
    return priors


def _lit_str(v):
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return f"{v[0]:g}-{v[1]:g}"
    return f"{v:g}"


def fit_one(pop, name, a):
    from brutus_jax.analysis import fit_cluster
    from brutus_jax.data.clusters import load_cluster_members

    d = load_cluster_members(name, verbose=False)
    sel = select_members(d, a.members, a.color_min, a.color_max,
                         random_seed=a.seed if a.random_members else None)
    extra = {}
    if a.selection:
        # the catalogue's cuts: the colour box and the brightest member in the box (nothing brighter
        # was observed); edges as soft as the likelihood's errors at the cut
        from brutus_jax.analysis import box_selection

        color_all = d["mag"][:, 1] - d["mag"][:, 2]
        box = (color_all > a.color_min) & (color_all < a.color_max) & d["mask"].all(axis=1)
        gmin = float(d["mag"][box, 0].min())
        extra["selection"] = box_selection(mag={0: (gmin - 0.05, None)}, colour={(1, 2): (a.color_min, a.color_max)},
                                           width=float(np.hypot(a.err_floor, 0.01)))
        print(f"selection function: G > {gmin - 0.05:.2f}, {a.color_min} < BP-RP < {a.color_max}")
    if a.imf != "flat":
        extra["imf"] = a.imf
    color = d["mag"][sel, 1] - d["mag"][sel, 2]
    inv_plx = 1000.0 / np.mean(d["parallax"][sel])
    print(f"\n== {name}: {sel.size} of {len(d['flux'])} members ({int(np.sum(color < 0.5))} with BP-RP < 0.5; "
          f"BP-RP {color.min():.2f}..{color.max():.2f}, G {d['mag'][sel, 0].min():.2f}..{d['mag'][sel, 0].max():.2f}); "
          f"1000/mean parallax {inv_plx:.1f} pc", flush=True)
    t0 = time.perf_counter()
    r = fit_cluster(pop, d["flux"][sel], d["flux_err"][sel], d["parallax"][sel], d["parallax_err"][sel],
                    mask=d["mask"][sel], num_chains=a.chains, num_warmup=a.warmup,
                    num_samples=a.samples if a.method == "nuts" else None, method=a.method,
                    **({} if a.smc_reference is None else dict(smc_reference=a.smc_reference)),
                    dtype="float32" if a.float32 else None,
                    seed=a.seed, progress=False, priors=cluster_priors(name, a.feh_prior_sd, a.rv, a.field_max),
                    err_floor=a.err_floor, max_num_doublings=a.max_doublings, row_measure="smooth",
                    smf_grid=np.linspace(0.0, 1.0, a.nsmf), eep_grid=np.linspace(a.eep_min, a.eep_max, a.neep),
                    **extra)
    wall = time.perf_counter() - t0
    tab = r.summary_table()
    print(f"{'param':>10} {'median':>9} {'2.5%':>9} {'97.5%':>9} {'R-hat':>6} {'ESS_bulk':>8}  literature")
    out = {}
    for n in r.free:
        s = tab[n]
        lit = LIT[name].get(n)
        print(f"{n:>10} {s['q50']:9.4g} {s['q2_5']:9.4g} {s['q97_5']:9.4g} {s['rhat']:6.3f} {s['ess_bulk']:8.0f}  "
              f"{_lit_str(lit)}")
        out[n] = dict(q50=float(s["q50"]), q2_5=float(s["q2_5"]), q97_5=float(s["q97_5"]), rhat=float(s["rhat"]),
                      ess_bulk=float(s["ess_bulk"]))
    for n, v in r.fixed.items():
        print(f"{n:>10} {v:9.4g} (fixed)")
    dg = r.diagnostics
    tm = dg["timing"]
    ndiv = int(np.sum(dg.get("divergences", 0)))
    if dg["method"] == "nuts":
        how = (f"divergences {ndiv}; step sizes {np.round(dg['step_size'], 3)}; mean leapfrog steps "
               f"{np.round(dg['mean_num_steps'], 1)}")
        when = (f"init {tm['init']:.0f} s, warmup {tm['warmup']:.0f} s, sampling {tm['sampling']:.0f} s; "
                f"init optima (feh, loga, av, dist) best: {np.round(dg['init']['theta'][0][[0, 1, 2, 4]], 3)}")
    else:
        sm = dg["smc"]
        how = (f"SMC tempering steps {sm['n_steps'].tolist()}, ln Z {np.round(sm['log_evidence'], 1)}, "
               f"IMH acceptance {np.round(sm['imh_acceptance'], 3) if sm['imh_steps'] else '-'}")
        when = f"SMC {tm['smc']:.0f} s"
    print(f"1000/mean parallax {inv_plx:.1f} pc; posterior median distance {np.median(r.samples['dist']):.1f} pc; "
          + how)
    print(f"wall {wall:.0f} s ({when}); " + ("converged" if r.converged else "NOT converged: " + "; ".join(r.flags)),
          flush=True)
    return dict(cluster=name, nstars=int(sel.size), inv_plx=float(inv_plx), params=out, divergences=ndiv,
                wall=wall, timing={k: float(v) for k, v in tm.items()}, converged=bool(r.converged))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", nargs="+", default=["pleiades", "praesepe"], choices=sorted(LIT))
    ap.add_argument("--selection", action="store_true",
                    help="selection function: the colour box and the brightest member in it (README)")
    ap.add_argument("--imf", default="flat", choices=["flat", "kroupa"], help="members' mass function")
    ap.add_argument("--random-members", action="store_true", help="a random subset instead of blue + even in G")
    ap.add_argument("--members", type=int, default=80, help="at most this many members per cluster")
    ap.add_argument("--method", default="nuts", choices=["nuts", "smc"],
                    help="fit_cluster method (smc: its defaults, --warmup/--samples unused)")
    ap.add_argument("--float32", action="store_true", help="float32 likelihood (fit_cluster dtype)")
    ap.add_argument("--smc-reference", default=None, choices=["prior", "laplace", "both"],
                    help="fit_cluster smc_reference (default: fit_cluster's)")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--color-min", type=float, default=-0.3)
    ap.add_argument("--color-max", type=float, default=1.5)
    ap.add_argument("--feh-prior-sd", type=float, default=0.05, help="0: uniform [Fe/H] prior")
    ap.add_argument("--err-floor", type=float, default=0.03)
    ap.add_argument("--neep", type=int, default=500)
    ap.add_argument("--eep-min", type=float, default=150.0)
    ap.add_argument("--eep-max", type=float, default=500.0)
    ap.add_argument("--nsmf", type=int, default=4)
    ap.add_argument("--rv", type=float, default=3.3)
    ap.add_argument("--field-max", type=float, default=1.0, help="upper bound of the uniform field-fraction prior")
    ap.add_argument("--max-doublings", type=int, default=6)
    ap.add_argument("--json", default=None, help="append one JSON line per cluster to this file")
    a = ap.parse_args()

    from brutus_jax.core import StellarPop

    print(env_summary())
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, affinity "
          f"{sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")
    try:
        import blackjax
        print(f"blackjax {blackjax.__version__}")
    except Exception:  # pragma: no cover
        pass
    print("settings:", vars(a))
    t0 = time.perf_counter()
    pop = StellarPop(filters=list(BANDS), verbose=False)
    print(f"MIST StellarPop setup {time.perf_counter() - t0:.1f} s")
    jnp.zeros(1).block_until_ready()
    for name in a.clusters:
        res = fit_one(pop, name, a)
        if a.json:
            with open(a.json, "a") as fh:
                fh.write(json.dumps(dict(settings=vars(a), **res)) + "\n")


if __name__ == "__main__":
    main()
