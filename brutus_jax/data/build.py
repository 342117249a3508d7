"""Build brutus-format model grids from real MIST models.

``build_grid()`` with no arguments returns the path of the default grid,
building it once (a few minutes on 2 cores) and caching it under
``<data_dir>/grids/``.  Rebuilding is explicit (``rebuild=True`` or
``brutus-jax build-grid --rebuild``).

Pipeline (see ``mist``, ``bolometric``, ``reddening``):

1. MIST v1.2 isochrones (lachesis-grids) -> tracks on a (mini, eep, feh)
   lattice; models older than ``loga_max`` or outside the isochrone set dropped.
2. ``agewt`` = d(age)/d(EEP) along each track [yr / EEP].
3. Magnitudes at 1 kpc: ``m0 = Mbol - BC(Teff, logg, [Fe/H], A_V = 0) + 10``
   from the MIST/C3K BC tables (astroLACHESIS).
4. Reddening ``m = m0 + A_V (a + b R_V)``: A_V slope from the BC table's A_V
   axis (R_V = 3.1), R_V slope from band-averaged G23.

Labels ``mini, eep, feh, afe, smf`` (afe = smf = 0); parameters ``loga, logl,
logt, logg, feh_surf, afe_surf, agewt, mass, logr``.  ``feh_surf`` is the
initial [Fe/H] (the isochrone files carry no surface abundances) and
``afe_surf`` = 0.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import sys
import time

import numpy as np

from .bolometric import BCTable
from .filters import DEFAULT_FILTERS, check_filters
from .gridio import write_models
from .mist import age_weights, isochrones_to_tracks, read_lachesis_isochrones
from .reddening import (AV_LATTICE, SED_BANDS, SPECLITE_NAMES, av_slope,
                        band_relative_rv_slopes, rv_coefficients)
from .sources import SOURCES, data_dir, source_file

__all__ = ["build_grid", "default_grid_path", "GRID_PRESETS", "grid_lattice"]

GRID_VERSION = 1


def _eeps(lo_ms, hi_ms, step_ms, lo_post, hi_post, step_post):
    return np.concatenate([np.arange(lo_ms, hi_ms + 1, step_ms), np.arange(lo_post, hi_post + 1, step_post)])


#: named lattices: mini [Msun], eep (MIST primary EEPs), feh [dex]
GRID_PRESETS = {
    # comparable to brutus's grid_mist_v9 (61 x 220 x 61), [Fe/H] -2..+0.5 and
    # extended to 0.3 Msun for K/M dwarfs
    "default": dict(
        mini=np.round(np.arange(0.3, 2.0 + 1e-9, 0.025), 4),
        eep=_eeps(202, 448, 6, 454, 808, 2),
        feh=np.round(np.arange(-2.0, 0.5 + 1e-9, 0.05), 4),
    ),
    # a few thousand models, for tests and demos (built in seconds)
    "small": dict(
        mini=np.round(np.arange(0.5, 2.0 + 1e-9, 0.1), 4),
        eep=_eeps(202, 442, 24, 454, 808, 12),
        feh=np.round(np.arange(-1.0, 0.5 + 1e-9, 0.25), 4),
    ),
}


def grid_lattice(preset="default", mini_grid=None, eep_grid=None, feh_grid=None):
    if preset not in GRID_PRESETS:
        raise ValueError(f"preset: unknown grid preset {preset!r}; known: {sorted(GRID_PRESETS)}")
    p = GRID_PRESETS[preset]
    mini = np.asarray(p["mini"] if mini_grid is None else mini_grid, float)
    eep = np.asarray(p["eep"] if eep_grid is None else eep_grid, float)
    feh = np.asarray(p["feh"] if feh_grid is None else feh_grid, float)
    for name, arr in (("mini_grid", mini), ("eep_grid", eep), ("feh_grid", feh)):
        if arr.ndim != 1 or arr.size == 0 or np.any(np.diff(arr) <= 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: must be a non-empty, strictly increasing 1-D array")
    if mini.min() <= 0:
        raise ValueError("mini_grid: initial masses must be positive")
    if np.any(eep != np.round(eep)) or eep.min() < 0 or eep.max() > 1721:
        raise ValueError("eep_grid: must be integer MIST EEPs in [0, 1721]")
    if feh.min() < -4.0 or feh.max() > 0.5:
        raise ValueError("feh_grid: MIST isochrones cover [Fe/H] in [-4, +0.5]")
    return mini, eep, feh


def _settings_key(mini, eep, feh, filters, loga_max):
    blob = json.dumps(dict(v=GRID_VERSION, mini=mini.tolist(), eep=eep.tolist(), feh=feh.tolist(),
                           filters=list(filters), loga_max=loga_max,
                           sources={k: s.sha256 for k, s in SOURCES.items() if k != "dustapprox"}),
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_grid_path(preset="default"):
    """Where ``build_grid(preset)`` caches its grid (the file may not exist yet)."""
    return data_dir() / "grids" / f"grid_mist_lachesis_{preset}_v{GRID_VERSION}.h5"


def _log(verbose, msg):
    if verbose:
        print(f"brutus_jax: {msg}", file=sys.stderr, flush=True)


def build_grid(preset="default", filters=None, mini_grid=None, eep_grid=None, feh_grid=None,
               loga_max=10.14, output_file=None, rebuild=False, verbose=True):
    """Build (or find cached) a brutus-format grid from MIST models; return its path.

    Parameters
    ----------
    preset : {'default', 'small'}
        named (mini, eep, feh) lattice (``GRID_PRESETS``).
    filters : sequence of str, optional
        bands (default ``DEFAULT_FILTERS``: Gaia EDR3 + DR2, PS1 grizy, 2MASS, WISE W1/W2).
    mini_grid, eep_grid, feh_grid : 1-D arrays, optional
        override the preset's initial masses [Msun], EEPs and [Fe/H] [dex].
    loga_max : float
        drop models older than 10**loga_max yr (brutus: 10.14).
    output_file : path, optional
        where to write; default ``default_grid_path(preset)`` (custom lattices
        or filters get a settings hash in the name).
    rebuild : bool
        rebuild even if a grid with the same settings exists.
    verbose : bool
        print progress, timing and size to stderr.

    Returns
    -------
    pathlib.Path of the HDF5 grid (``/mag_coeffs``, ``/labels``, ``/parameters``).
    """
    filters = check_filters(DEFAULT_FILTERS if filters is None else filters)
    mini, eep, feh = grid_lattice(preset, mini_grid, eep_grid, feh_grid)
    key = _settings_key(mini, eep, feh, filters, float(loga_max))
    custom = not (mini_grid is None and eep_grid is None and feh_grid is None and tuple(filters) == DEFAULT_FILTERS
                  and loga_max == 10.14)
    if output_file is None:
        path = default_grid_path(preset)
        if custom:
            path = path.with_name(path.stem + f"_{key}.h5")
    else:
        path = pathlib.Path(output_file)
        if path.suffix != ".h5":
            path = path.with_name(path.name + ".h5")
    if path.exists() and not rebuild:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("brutus_jax_settings") == key:
                    _log(verbose, f"using cached grid {path}")
                    return path
        except OSError:
            pass
        if output_file is None:
            _log(verbose, f"{path} has other settings or is unreadable: rebuilding")
        else:
            raise FileExistsError(f"output_file: {path} exists with other settings; pass rebuild=True to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models, labels, params = make_grid_arrays(mini, eep, feh, filters, loga_max, verbose=verbose)
    t1 = time.perf_counter()
    attrs = {
        "brutus_jax_settings": key,
        "brutus_jax_grid_version": GRID_VERSION,
        "preset": preset,
        "n_models_total": int(mini.size * eep.size * feh.size),
        "sources": json.dumps({k: f"{s.project}=={s.version} sha256:{s.sha256}" for k, s in SOURCES.items()
                               if k != "dustapprox"}),
        "citation": "; ".join(s.citation for k, s in SOURCES.items() if k != "dustapprox"),
        "reddening": "A_V slope from MIST/C3K BC tables (R_V=3.1); R_V slope from band-averaged "
                     "G23 (Gordon et al. 2023)",
    }
    write_models(path, models, labels, params=params, filters=filters, dtype="f4",
                 compression="gzip", attrs=attrs)
    t2 = time.perf_counter()
    size = os.path.getsize(path) / 2**20
    _log(verbose, f"wrote {path}: {models.shape[0]:,} models x {len(filters)} bands, {size:.1f} MiB; "
                  f"build {t1 - t0:.1f} s, write {t2 - t1:.1f} s")
    return path


@functools.lru_cache(maxsize=4)
def _relative_slope_interpolator(bc_path, bands):
    """Band-averaged G23 relative R_V slopes on the BC table's (feh, logt, logg)
    nodes, weighted by each node's C3K SED; returns an interpolator (cached)."""
    from scipy.interpolate import RegularGridInterpolator

    sed = BCTable(bc_path, [s[0] for s in SED_BANDS])
    Fn, Tn, Gn = np.meshgrid(sed.feh_nodes, sed.logt_nodes, sed.logg_nodes, indexing="ij")
    sed_mags = -sed.bc(Tn, Gn, Fn, 0.0)  # Mbol cancels in the SED shape
    rel = band_relative_rv_slopes(bands, sed_mags)  # (nf, nt, ng, nb)
    rgi = RegularGridInterpolator((sed.feh_nodes, sed.logt_nodes, sed.logg_nodes), rel,
                                  bounds_error=False, fill_value=None)
    return rgi, (sed.feh_range, sed.logt_range, sed.logg_range)


def make_grid_arrays(mini, eep, feh, filters, loga_max=10.14, verbose=True):
    """The arrays of a grid: models (N, Nfilt, 3), labels and params (structured)."""
    t0 = time.perf_counter()
    iso_path = source_file("mist_isochrones", verbose=verbose)
    bc_path = source_file("mist_bc_tables", verbose=verbose)
    iso = read_lachesis_isochrones(iso_path, max_eep=int(eep.max()))
    _log(verbose, f"read MIST isochrones ({time.perf_counter() - t0:.1f} s)")
    tr = isochrones_to_tracks(iso, mini, eep, feh)
    del iso
    agewt = age_weights(tr["loga"], eep)
    _log(verbose, f"re-sampled tracks on {mini.size} x {eep.size} x {feh.size} lattice "
                  f"({time.perf_counter() - t0:.1f} s)")
    M, E, F = np.meshgrid(mini, eep, feh, indexing="ij")
    valid = (np.isfinite(tr["loga"]) & (tr["loga"] <= loga_max) & np.isfinite(agewt) & (agewt > 0)
             & np.isfinite(tr["logt"]) & np.isfinite(tr["logg"]) & np.isfinite(tr["mbol"]))
    sel = np.nonzero(valid.ravel())[0]  # C order = (mini, eep, feh), last axis fastest
    get = {k: v.ravel()[sel] for k, v in tr.items()}
    n = sel.size
    _log(verbose, f"{n:,} valid models of {valid.size:,}")

    bc = BCTable(bc_path, filters)
    logt, logg, fehv = get["logt"], get["logg"], F.ravel()[sel]
    chunk = 200_000
    m_lat = np.empty((n, AV_LATTICE.size, len(filters)))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        m_lat[s:e] = -bc.bc(logt[s:e, None], logg[s:e, None], fehv[s:e, None], AV_LATTICE[None, :])
    m_lat += get["mbol"][:, None, None] + 10.0  # absolute -> 1 kpc
    m0 = m_lat[:, 0, :]
    k31 = av_slope(np.moveaxis(m_lat, 1, -1))  # (n, nfilt)
    _log(verbose, f"bolometric corrections and A_V slopes ({time.perf_counter() - t0:.1f} s)")

    # relative R_V slopes: band-averaged G23 weighted by each node's C3K SED
    b = np.empty_like(k31)
    curve_bands = tuple(f for f in filters if f in SPECLITE_NAMES)
    if curve_bands:
        rgi, franges = _relative_slope_interpolator(str(bc_path), curve_bands)
        pts = np.stack([np.clip(fehv, *franges[0]), np.clip(logt, *franges[1]),
                        np.clip(logg, *franges[2])], axis=-1)
        rel_models = rgi(pts)
        for j, f in enumerate(curve_bands):
            i = filters.index(f)
            b[:, i] = rel_models[:, j] * k31[:, i]
    for i, f in enumerate(filters):
        if f not in SPECLITE_NAMES:
            _, b[:, i], _ = rv_coefficients(k31[:, i])
    a = k31 - 3.1 * b
    _log(verbose, f"R_V slopes from G23 ({time.perf_counter() - t0:.1f} s)")
    models = np.stack([m0, a, b], axis=-1).astype(np.float32)

    labels = np.zeros(n, dtype=[(k, "f8") for k in ("mini", "eep", "feh", "afe", "smf")])
    labels["mini"], labels["eep"], labels["feh"] = M.ravel()[sel], E.ravel()[sel], fehv
    pnames = ("loga", "logl", "logt", "logg", "feh_surf", "afe_surf", "agewt", "mass", "logr")
    params = np.zeros(n, dtype=[(k, "f8") for k in pnames])
    for k in ("loga", "logl", "logt", "logg", "mass", "logr"):
        params[k] = get[k]
    params["feh_surf"] = fehv
    params["agewt"] = agewt.ravel()[sel]
    return models, labels, params
