"""Command line: ``brutus-jax build-grid``, ``brutus-jax demo`` (model SEDs, then a BruteForce
fit of real Pleiades members), ``brutus-jax fit CATALOG`` (a catalogue, optionally one shard of it)
and ``brutus-jax merge`` (shard outputs into one file)."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _build(args):
    from .data import build_grid

    t0 = time.perf_counter()
    path = build_grid(preset=args.preset, filters=args.filters, output_file=args.output,
                      rebuild=args.rebuild, verbose=not args.quiet)
    print(path)
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


#: (label, mini [Msun], feh) stars whose SEDs the demo prints at a few ages
DEMO_STARS = (
    ("0.5 Msun dwarf", 0.5, 0.0, 9.0),
    ("0.8 Msun dwarf", 0.8, 0.0, 9.0),
    ("Sun (4.57 Gyr)", 1.0, 0.0, np.log10(4.57e9)),
    ("1.2 Msun", 1.2, 0.0, np.log10(4.57e9)),
    ("1.5 Msun", 1.5, 0.0, 9.0),
    ("2.0 Msun", 2.0, 0.0, 9.0),
    ("1.0 Msun, [Fe/H]=-1", 1.0, -1.0, 9.7),
    ("1.2 Msun red giant", 1.2, 0.0, None),
)


def demo_table(grid, stars=DEMO_STARS):
    """Rows (label, mini, eep, feh, loga, Teff, logg, M_G, BP-RP, M_Ks) from a StarGrid.

    The EEP of a star of given mass and age is found on the grid's own track
    (linear interpolation of loga along the models of that mass and [Fe/H]
    node); a ``None`` age picks EEP 550 (lower red-giant branch).  Stars whose
    mass or [Fe/H] is not a grid node, or whose age is outside the track, are
    skipped.
    """
    rows = []
    want = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks")
    idx = [grid.filters.index(f) if f in grid.filters else None for f in want]
    lab = grid.labels
    for label, mini, feh, loga in stars:
        on = np.isclose(lab["mini"], mini) & np.isclose(lab["feh"], feh)  # the track's own models
        order = np.argsort(lab["eep"][on])
        y, x = lab["eep"][on][order], lab["loga"][on][order]
        if loga is None:
            eep = 550.0
            if y.size == 0 or y.max() < eep:
                continue
        else:
            if x.size < 2 or loga < x.min() or loga > x.max():
                continue
            eep = float(np.interp(loga, x, y))
        sed, p, _ = grid.get_seds(mini=mini, eep=eep, feh=feh, dist=10.0)
        sed = np.asarray(sed)
        g = [sed[i] if i is not None else np.nan for i in idx]
        rows.append((label, mini, eep, feh, float(p["loga"]), 10 ** float(p["logt"]), float(p["logg"]),
                     g[0], g[1] - g[2], g[3]))
    return rows


def _demo(args):
    from .core import StarGrid
    from .data import build_grid, load_models

    t0 = time.perf_counter()
    path = args.grid or build_grid(preset=args.preset, verbose=True)
    models, labels, mask = load_models(path, verbose=True)
    grid = StarGrid(models, labels, mask, verbose=False)
    print(f"grid: {path}\n{grid!r}")
    print(f"bands: {', '.join(grid.filters)}")
    rows = demo_table(grid)
    print("\nAbsolute magnitudes (10 pc, A_V = 0) from the MIST grid:")
    print(f"{'star':<22} {'mini':>5} {'eep':>6} {'[Fe/H]':>6} {'logAge':>6} {'Teff':>6} {'logg':>5} "
          f"{'M_G':>6} {'BP-RP':>6} {'M_Ks':>6}")
    for r in rows:
        print(f"{r[0]:<22} {r[1]:5.2f} {r[2]:6.1f} {r[3]:6.2f} {r[4]:6.3f} {r[5]:6.0f} {r[6]:5.2f} "
              f"{r[7]:6.3f} {r[8]:6.3f} {r[9]:6.3f}")
    # reddening vector of the Sun-like model
    sun = grid.get_seds(mini=1.0, eep=rows[2][2] if len(rows) > 2 else 350, feh=0.0, dist=10.0, av=1.0, rv=3.1)[0]
    sun0 = grid.get_seds(mini=1.0, eep=rows[2][2] if len(rows) > 2 else 350, feh=0.0, dist=10.0)[0]
    ext = np.asarray(sun) - np.asarray(sun0)
    print("\nA_band / A_V for the solar model at A_V = 1, R_V = 3.1:")
    print("  " + "  ".join(f"{f}={e:.3f}" for f, e in zip(grid.filters, ext)))
    if args.nstars > 0:
        fit_cluster_demo(path, args.cluster, args.nstars, args.out, seed=args.seed)
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


def fit_cluster_demo(grid_path, cluster="pleiades", nstars=12, out=None, seed=1):
    """Fit real cluster members (Gaia DR3 G/BP/RP + 2MASS Ks + parallax) with BruteForce
    and print distance and A_V with 68 % intervals next to 1/parallax.

    Members with 0.4 < BP-RP < 2.0 (F, G, K dwarfs) are used: below ~0.4 Msun
    the MIST/C3K models are too blue (see README) and the fit absorbs the
    mismatch into A_V.
    """
    import h5py

    from .analysis import BruteForce
    from .core import StarGrid
    from .data import data_dir, load_models
    from .data.clusters import CLUSTER_BANDS, load_cluster_members

    models, labels, mask = load_models(grid_path, filters=list(CLUSTER_BANDS), verbose=False)
    fitter = BruteForce(StarGrid(models, labels, mask, verbose=False), verbose=True)
    d = load_cluster_members(cluster, verbose=True)
    color = d["mag"][:, 1] - d["mag"][:, 2]
    ok = np.flatnonzero((color > 0.4) & (color < 2.0) & d["mask"].all(axis=1))
    sel = ok[np.argsort(d["mag"][ok, 0])][np.linspace(0, ok.size - 1, min(nstars, ok.size)).astype(int)]
    out = out or str(data_dir() / "demo" / f"{cluster}_fit.h5")
    import os

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    t0 = time.perf_counter()
    path = fitter.fit(d["flux"][sel], d["flux_err"][sel], d["mask"][sel], d["source_id"][sel], out,
                      parallax=d["parallax"][sel], parallax_err=d["parallax_err"][sel],
                      data_coords=d["coords"][sel], rstate=seed, overwrite=True)
    dt = time.perf_counter() - t0
    print(f"\nBruteForce fit of {sel.size} {cluster} members ({', '.join(CLUSTER_BANDS)} + parallax) "
          f"on {fitter.nmodels:,} models: {dt:.1f} s incl. compilation -> {path}")
    print(f"{'Gaia DR3 source_id':>20} {'G':>6} {'BP-RP':>6} {'1/plx':>7} {'d [pc] (16-84%)':>24} "
          f"{'A_V (16-84%)':>20} {'chi2':>6}")
    with h5py.File(path, "r") as f:
        dist, av = f["samps_dist"][()] * 1000.0, f["samps_red"][()]
        chi2 = f["obj_chi2min"][()]
    for i, j in enumerate(sel):
        q = np.percentile(dist[i], [16, 50, 84])
        a = np.percentile(av[i], [16, 50, 84])
        print(f"{d['source_id'][j]:>20d} {d['mag'][j, 0]:6.2f} {color[j]:6.2f} {1000 / d['parallax'][j]:7.1f} "
              f"{q[1]:8.1f} ({q[0]:6.1f}-{q[2]:6.1f}) {a[1]:6.2f} ({a[0]:5.2f}-{a[2]:5.2f}) {chi2[i]:6.1f}")
    dm = np.median(np.median(dist, axis=1))
    print(f"median distance {dm:.1f} pc vs 1000/median(parallax) {1000 / np.median(d['parallax'][sel]):.1f} pc; "
          f"median A_V {np.median(np.median(av, axis=1)):.2f} mag")


def resolve_shard(shard, environ=None):
    """``--shard`` value -> "i/N" or None.

    ``slurm``: from ``SLURM_ARRAY_TASK_ID`` (minus ``SLURM_ARRAY_TASK_MIN``)
    and ``SLURM_ARRAY_TASK_COUNT``; ``jax``: this process of a
    ``jax.distributed`` job (``jax.process_index()`` / ``jax.process_count()``,
    after ``jax.distributed.initialize()``); anything else is used as is.
    """
    env = os.environ if environ is None else environ
    if shard == "slurm":
        try:
            i = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            return f"{i}/{int(env['SLURM_ARRAY_TASK_COUNT'])}"
        except KeyError as exc:
            raise ValueError(f"shard: --shard slurm needs {exc.args[0]} (run it inside a Slurm job array)") from exc
    if shard == "jax":
        import jax

        jax.distributed.initialize()
        return f"{jax.process_index()}/{jax.process_count()}"
    return shard


def use_compilation_cache(path):
    """Keep compiled executables in ``path`` (JAX's persistent cache; "none": off), so a
    resumed or resubmitted fit, or the next shard on the same file system, skips most
    compilation.  Default: ``<data cache>/jax_cache``."""
    if path == "none":
        return None
    import jax

    from .data import data_dir

    path = path or str(data_dir() / "jax_cache")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


def _fit(args):
    from .analysis import BruteForce
    from .catalog import CatalogReader, catalog_inputs, shard_rows
    from .core import StarGrid
    from .data import build_grid, load_models

    columns = {}
    for item in args.columns or []:
        if "=" not in item:
            raise ValueError(f"columns: expected name=column, got {item!r}")
        k, v = item.split("=", 1)
        columns[k] = v
    shard = resolve_shard(args.shard)
    reader = CatalogReader(args.catalog)  # before the grid: a bad catalogue fails fast
    rows = shard_rows(reader.nrows, shard) if shard else slice(0, reader.nrows)
    out = args.out
    if shard:
        i, n = shard.split("/")
        out = f"{os.path.splitext(out)[0]}.shard{int(i):04d}of{int(n):04d}.h5"
    if args.resume and not os.path.exists(out):
        raise ValueError(f"out: --resume given but there is no output '{out}' to resume")
    grid_path = args.grid or build_grid(verbose=not args.quiet)
    models, labels, mask = load_models(grid_path, filters=args.filters, verbose=not args.quiet)
    grid = StarGrid(models, labels, mask, verbose=False)
    use_compilation_cache(args.jax_cache)
    first = catalog_inputs(reader.read(rows.start, rows.start + 1), grid.filters, columns, fluxes=args.fluxes)
    if first["data_coords"] is None and not args.no_galactic_prior:
        raise ValueError("catalog: no 'l'/'b' columns for the Galactic prior (map them with --columns "
                         "l=<col> b=<col>, or pass --no-galactic-prior)")
    if not args.quiet:
        print(f"brutus-jax fit: {rows.stop - rows.start:,} of {reader.nrows:,} stars ({shard or 'all'}) x "
              f"{len(grid.filters)} bands, blocks of {args.chunk_size:,} -> {out}", file=sys.stderr)

    def read_rows(start, stop):  # rows of this shard -> catalogue rows
        a = rows.start + start
        return catalog_inputs(reader.read(a, rows.start + stop), grid.filters, columns, fluxes=args.fluxes,
                              first_row=a)

    fitter = BruteForce(grid, verbose=not args.quiet)
    path = fitter.fit_stream(read_rows, rows.stop - rows.start, out, chunk_size=args.chunk_size, rstate=args.seed,
                             key_offset=rows.start, overwrite=args.overwrite, verbose=not args.quiet,
                             mem_lim=args.mem_lim, batch_size=args.batch_size, Ndraws=args.ndraws,
                             Nmc_prior=args.nmc, lngalprior=False if args.no_galactic_prior else None,
                             attrs={"brutus_jax_catalog_rows": reader.nrows,
                                    "brutus_jax_catalog": os.path.abspath(args.catalog)})
    print(path)
    return 0


def _merge(args):
    from .catalog import merge_fits

    print(merge_fits(args.shards, args.out, overwrite=args.overwrite))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="brutus-jax", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-grid", help="build (or find cached) a brutus-format grid from MIST models")
    b.add_argument("--preset", default="default", help="lattice preset: default | small")
    b.add_argument("--filters", nargs="+", default=None, help="band names (default: DEFAULT_FILTERS)")
    b.add_argument("--output", default=None, help="output HDF5 path (default: the data cache)")
    b.add_argument("--rebuild", action="store_true", help="rebuild even if a cached grid exists")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_build)
    d = sub.add_parser("demo", help="build/load the default grid and print model SEDs")
    d.add_argument("--preset", default="default", help="grid preset when --grid is not given")
    d.add_argument("--grid", default=None, help="a brutus-format grid file to use instead")
    d.add_argument("--cluster", default="pleiades", help="cluster whose members are fitted: pleiades | praesepe")
    d.add_argument("--nstars", type=int, default=12, help="members to fit (0: only print model SEDs)")
    d.add_argument("--out", default=None, help="output HDF5 of the fit (default: <data cache>/demo/)")
    d.add_argument("--seed", type=int, default=1, help="PRNG seed of the fit")
    d.set_defaults(func=_demo)
    f = sub.add_parser("fit", help="fit every star of a catalogue (HDF5, CSV; FITS/Parquet with astropy)")
    f.add_argument("catalog", help="catalogue file (see brutus_jax.catalog for the columns)")
    f.add_argument("--grid", default=None, help="brutus-format grid file (default: the default MIST grid)")
    f.add_argument("--out", required=True, help="output HDF5 (brutus's datasets; re-running resumes it)")
    f.add_argument("--filters", nargs="+", default=None, help="grid bands to fit (default: all of the grid's)")
    f.add_argument("--columns", nargs="+", default=None,
                   help="logical=column mappings, e.g. parallax=plx l=glon PS_g=gmag PS_g_err=e_gmag")
    f.add_argument("--fluxes", action="store_true", help="band columns are fluxes [maggies], not magnitudes")
    f.add_argument("--batch-size", type=int, default=None, help="stars per compiled batch (default: from --mem-lim)")
    f.add_argument("--mem-lim", type=float, default=8000.0, help="memory budget [MB] (default 8000)")
    f.add_argument("--shard", default=None,
                   help="i/N: fit the i-th of N contiguous row blocks (job arrays); 'slurm': i/N of this Slurm "
                        "array task; 'jax': this process of a jax.distributed job")
    f.add_argument("--chunk-size", type=int, default=65536,
                   help="catalogue rows read and validated at a time (memory is flat in catalogue size)")
    f.add_argument("--ndraws", type=int, default=250, help="posterior draws saved per star (brutus's Ndraws)")
    f.add_argument("--nmc", type=int, default=50, help="Monte-Carlo points per model (brutus's Nmc_prior)")
    f.add_argument("--seed", type=int, default=1, help="PRNG seed (the same for every shard)")
    f.add_argument("--no-galactic-prior", action="store_true", help="switch the Galactic prior off")
    f.add_argument("--overwrite", action="store_true", help="replace an existing output of a different fit")
    f.add_argument("--jax-cache", default=None,
                   help="directory of JAX's persistent compilation cache (default <data cache>/jax_cache; "
                        "'none': off): restarts and later shards skip most compilation")
    f.add_argument("--resume", action="store_true",
                   help="require an existing output to resume (re-running resumes anyway; this guards typos)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=_fit)
    m = sub.add_parser("merge", help="concatenate complete shard outputs into one brutus-format file")
    m.add_argument("shards", nargs="+", help="shard files, in shard order")
    m.add_argument("--out", required=True)
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=_merge)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"brutus-jax: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
