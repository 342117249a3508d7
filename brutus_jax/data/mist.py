"""MIST isochrones (lachesis-grids "sparse_v1" HDF5) and their conversion to tracks.

The lachesis file stores EEP-aligned isochrones on a (feh, logAge, EEP) lattice.
A brutus grid is indexed by (initial mass, EEP, [Fe/H]) instead.  At fixed
([Fe/H] node, EEP) the initial mass decreases strictly with age, so every
quantity can be re-sampled at the requested initial masses by linear
interpolation in log10(initial mass) across the isochrones; [Fe/H] between the
0.25-dex MIST nodes is then interpolated linearly at fixed (mass, EEP).  This is
the standard EEP-based interpolation of Dotter (2016).
"""

from __future__ import annotations

import h5py
import numpy as np

__all__ = ["read_lachesis_isochrones", "isochrones_to_tracks", "TRACK_COLUMNS"]

#: lachesis column -> our name
TRACK_COLUMNS = {
    "age": "loga",
    "log_L": "logl",
    "log_Teff": "logt",
    "log_g": "logg",
    "log_R": "logr",
    "star_mass": "mass",
    "Mbol": "mbol",
}


def read_lachesis_isochrones(path, columns=("initial_mass",) + tuple(TRACK_COLUMNS), max_eep=None):
    """Read a lachesis-grids sparse isochrone file into dense arrays.

    Parameters
    ----------
    path : str or Path
        e.g. ``mist_v2.5_vvcrit0.4.h5``.
    columns : sequence of str
        lachesis column names to keep.
    max_eep : int, optional
        drop EEPs above this (saves memory).

    Returns
    -------
    dict with ``feh`` (n_feh,), ``loga`` (n_age,) [log10 yr], ``eep`` (n_eep,)
    and ``data`` {column: (n_feh, n_age, n_eep) float64, NaN where missing}.
    """
    with h5py.File(path, "r") as f:
        if f.attrs.get("storage") != "sparse_v1":
            raise ValueError(f"{path}: not a lachesis 'sparse_v1' isochrone file")
        cols = [str(c) for c in f.attrs["columns"]]
        shape = tuple(int(x) for x in f.attrs["shape"])
        if len(shape) != 4:
            raise ValueError(f"{path}: expected (feh, age, eep, col) storage, got shape {shape}")
        missing = [c for c in columns if c not in cols]
        if missing:
            raise ValueError(f"{path}: columns {missing} not in file (has {cols})")
        feh, age, eep = f["feh_values"][:], f["age_values"][:], f["eep_values"][:]
        offsets, lengths = f["offsets"][:], f["lengths"][:]
        idx = [cols.index(c) for c in columns]
        values = f["values"][:][:, idx].astype(np.float64)
    n_feh, n_age, n_eep, _ = shape
    n_keep = n_eep if max_eep is None else min(n_eep, int(max_eep) + 1)
    dense = np.full((n_feh * n_age, n_keep, len(columns)), np.nan)
    start = np.concatenate([[0], np.cumsum(lengths)])
    for k in range(len(offsets)):
        o, n = int(offsets[k]), int(lengths[k])
        n_use = max(0, min(n, n_keep - o))
        if n_use:
            dense[k, o:o + n_use] = values[start[k]:start[k] + n_use]
    dense = dense.reshape(n_feh, n_age, n_keep, len(columns))
    # sort axes defensively
    fo, ao = np.argsort(feh), np.argsort(age)
    dense = dense[fo][:, ao]
    return {
        "feh": feh[fo].astype(float),
        "loga": age[ao].astype(float),
        "eep": eep[:n_keep].astype(float),
        "data": {c: dense[..., i] for i, c in enumerate(columns)},
    }


def _interp_in_mass(logm_nodes, values, logm_query):
    """Interpolate values(logm) at logm_query along the last axis; NaN outside.

    logm_nodes: (n_age,) for one (feh, eep); values: (n_col, n_age).
    """
    ok = np.isfinite(logm_nodes) & np.all(np.isfinite(values), axis=0)
    out = np.full((values.shape[0], logm_query.size), np.nan)
    if ok.sum() < 2:
        return out
    x = logm_nodes[ok]
    v = values[:, ok]
    order = np.argsort(x)
    x, v = x[order], v[:, order]
    keep = np.concatenate([[True], np.diff(x) > 0])  # strictly increasing
    x, v = x[keep], v[:, keep]
    inside = (logm_query >= x[0]) & (logm_query <= x[-1])
    for i in range(v.shape[0]):
        out[i, inside] = np.interp(logm_query[inside], x, v[i])
    return out


def isochrones_to_tracks(iso, mini_grid, eep_grid, feh_grid):
    """Re-sample isochrones onto a (mini, eep, feh) lattice.

    Parameters
    ----------
    iso : dict from :func:`read_lachesis_isochrones` (must hold ``initial_mass``).
    mini_grid : (n_mini,) initial masses [Msun].
    eep_grid : (n_eep,) integer EEPs (MIST primary-EEP numbering).
    feh_grid : (n_feh,) initial [Fe/H]; must lie inside the node range.

    Returns
    -------
    dict {name: (n_mini, n_eep, n_feh) float64} for the renamed columns of
    ``TRACK_COLUMNS`` present in ``iso``; NaN where the star does not exist in
    the isochrone set (too old, or beyond the file's EEP coverage).
    """
    mini_grid = np.asarray(mini_grid, float)
    eep_grid = np.asarray(eep_grid, float)
    feh_grid = np.asarray(feh_grid, float)
    fnodes = iso["feh"]
    if feh_grid.min() < fnodes[0] - 1e-9 or feh_grid.max() > fnodes[-1] + 1e-9:
        raise ValueError(f"feh_grid must lie within the isochrone [Fe/H] nodes [{fnodes[0]}, {fnodes[-1]}]")
    eep_nodes = iso["eep"]
    eidx = np.searchsorted(eep_nodes, eep_grid)
    if np.any(eidx >= eep_nodes.size) or np.any(eep_nodes[np.minimum(eidx, eep_nodes.size - 1)] != eep_grid):
        raise ValueError("eep_grid must be integer EEPs present in the isochrone file")
    cols = [c for c in TRACK_COLUMNS if c in iso["data"]]
    # bracketing [Fe/H] nodes and weights
    j = np.clip(np.searchsorted(fnodes, feh_grid, side="right") - 1, 0, fnodes.size - 2)
    w = (feh_grid - fnodes[j]) / (fnodes[j + 1] - fnodes[j])
    w = np.clip(w, 0.0, 1.0)
    used = np.unique(np.concatenate([j, j + 1]))
    logm_q = np.log10(mini_grid)
    per_node = {}
    for jn in used:
        arr = np.full((len(cols), mini_grid.size, eep_grid.size), np.nan)
        for ke, ei in enumerate(eidx):
            logm = np.log10(iso["data"]["initial_mass"][jn, :, ei])
            vals = np.stack([iso["data"][c][jn, :, ei] for c in cols])
            arr[:, :, ke] = _interp_in_mass(logm, vals, logm_q)
        per_node[jn] = arr
    out = np.full((len(cols), mini_grid.size, eep_grid.size, feh_grid.size), np.nan)
    for kf in range(feh_grid.size):
        lo, hi, wk = per_node[j[kf]], per_node[j[kf] + 1], w[kf]
        if wk == 0.0:
            out[..., kf] = lo
        elif wk == 1.0:
            out[..., kf] = hi
        else:
            out[..., kf] = (1.0 - wk) * lo + wk * hi
    return {TRACK_COLUMNS[c]: out[i] for i, c in enumerate(cols)}


def age_weights(loga, eep_grid):
    """agewt = d(age [yr]) / d(EEP) along each track (axis 1 of ``loga``).

    Central differences where both neighbours exist, one-sided at the ends of
    a track's valid segment; NaN where the model itself is missing.
    """
    age = 10.0 ** np.asarray(loga, float)
    e = np.asarray(eep_grid, float)
    shape = [1] * age.ndim
    shape[1] = e.size
    e = e.reshape(shape)
    fwd = np.full(age.shape, np.nan)
    bwd = np.full(age.shape, np.nan)
    fwd[:, :-1] = (age[:, 1:] - age[:, :-1]) / (e[:, 1:] - e[:, :-1])
    bwd[:, 1:] = (age[:, 1:] - age[:, :-1]) / (e[:, 1:] - e[:, :-1])
    both = np.isfinite(fwd) & np.isfinite(bwd)
    out = np.where(both, 0.5 * (fwd + bwd), np.where(np.isfinite(fwd), fwd, bwd))
    return np.where(np.isfinite(age), out, np.nan)
