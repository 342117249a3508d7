"""Catalogues in, BruteForce inputs out; shards and their merge (host layer of ``brutus-jax fit``).

A catalogue is a table with, by default, one magnitude column per grid
filter named exactly like the filter, ``<filter>_err``, ``parallax`` and
``parallax_error`` [mas], ``l`` and ``b`` [deg] and ``obj_id``; ``columns``
maps these logical names to other column names.  Readers:

* HDF5: a group (or the root) of equal-length 1-D datasets, one per column,
  or compound datasets (structured tables); brutus's example photometry
  layout (group ``photometry`` of compound tables, one per pixel, with vector
  fields ``mag`` and ``err`` in the order of ``filters``) is read by
  concatenating the tables in name order;
* CSV (header line, comma-separated) with numpy;
* FITS, Parquet, VOTable, ECSV ... through ``astropy.table.Table.read``
  (astropy is optional: a clear error says to install it).

Magnitudes become fluxes in maggies (`utils.inv_magnitude`); NaN, +-inf,
values <= -99 (brutus's -999) and errors <= 0 mark a band missing for that
star.  Shards (``--shard i/N``) are contiguous row blocks, fitted with
``key_offset`` = their first row, so merged shards equal a whole-catalogue fit.
"""

from __future__ import annotations

import os
import pathlib

import h5py
import numpy as np

__all__ = ["read_catalog", "catalog_length", "catalog_inputs", "shard_rows", "merge_fits"]

_MISSING = -99.0


def _table_from_hdf5(path):
    with h5py.File(path, "r") as f:
        grp = f["photometry"] if "photometry" in f and isinstance(f["photometry"], h5py.Group) else f
        compound = [k for k in sorted(grp) if isinstance(grp[k], h5py.Dataset) and grp[k].dtype.names]
        if compound:
            return np.concatenate([grp[k][()] for k in compound])
        cols = {k: grp[k][()] for k in grp if isinstance(grp[k], h5py.Dataset) and grp[k].ndim >= 1}
    if not cols:
        raise ValueError(f"catalog: no table found in '{path}' (expected 1-D datasets or compound tables)")
    n = {len(v) for v in cols.values()}
    if len(n) != 1:
        raise ValueError(f"catalog: datasets of '{path}' have different lengths {sorted(n)}")
    return cols


def read_catalog(path):
    """The catalogue at ``path`` as a mapping column name -> array (a numpy
    structured array or a dict of equal-length arrays)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"catalog: no such file '{path}'")
    ext = pathlib.Path(path).suffix.lower()
    if ext in (".h5", ".hdf5", ".hdf"):
        return _table_from_hdf5(path)
    if ext == ".csv":
        tab = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8", deletechars="",
                            case_sensitive=True)
        return np.atleast_1d(tab)
    try:
        from astropy.table import Table
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(f"catalog: reading '{ext}' files needs astropy (pip install astropy); "
                         "HDF5 and CSV are read without it") from exc
    tab = Table.read(path)
    return {name: np.asarray(tab[name]) for name in tab.colnames}


def _names(tab):
    return list(tab.dtype.names) if isinstance(tab, np.ndarray) else list(tab)


def catalog_length(tab):
    """Number of rows of a table from `read_catalog`."""
    return len(tab[_names(tab)[0]])


def _column(tab, logical, columns, required=True):
    name = columns.get(logical, logical)
    if name in _names(tab):
        return np.asarray(tab[name])
    if required:
        raise ValueError(f"catalog: no column '{name}' for {logical!r} (columns: {', '.join(_names(tab))}); "
                         f"map it with --columns {logical}=<column>")
    return None


def catalog_inputs(tab, filters, columns=None, fluxes=False, rows=None):
    """``BruteForce.fit`` keyword arguments (data, data_err, data_mask,
    data_labels, parallax, parallax_err, data_coords) from a catalogue table.

    ``filters``: the grid's bands, in order; ``columns``: logical -> column
    name; ``fluxes``: the band columns hold fluxes in maggies instead of
    magnitudes; ``rows``: a slice or index array of the rows to use.
    Parallaxes and coordinates are None when their columns are absent.
    """
    from .utils import inv_magnitude

    columns = dict(columns or {})
    names = _names(tab)
    if "mag" in names and "err" in names and not any(columns.get(f, f) in names for f in filters):
        vals, errs = np.asarray(tab["mag"], float), np.asarray(tab["err"], float)  # brutus's layout
        if vals.ndim != 2 or vals.shape[1] != len(filters):
            raise ValueError(f"filters: the table's vector 'mag' column has {vals.shape[1:]} bands, "
                             f"got {len(filters)} filters")
    else:
        vals = np.column_stack([_column(tab, f, columns).astype(float) for f in filters])
        errs = np.column_stack([_column(tab, f"{f}_err", columns).astype(float) for f in filters])
    sel = slice(None) if rows is None else rows
    vals, errs = vals[sel], errs[sel]
    good = np.isfinite(vals) & np.isfinite(errs) & (errs > 0)
    if not fluxes:
        good &= vals > _MISSING
        flux, ferr = inv_magnitude(np.where(good, vals, 0.0), np.where(good, errs, 1.0))
        flux, ferr = np.asarray(flux, float), np.asarray(ferr, float)
    else:
        good &= vals > 0
        flux, ferr = vals, errs
    flux, ferr = np.where(good, flux, 1.0), np.where(good, ferr, 1.0)
    n = flux.shape[0]
    ids = _column(tab, "obj_id", columns, required=False)
    ids = np.arange(n) if ids is None else ids[sel]
    plx = _column(tab, "parallax", columns, required=False)
    plxe = _column(tab, "parallax_error", columns, required=False)
    if (plx is None) != (plxe is None):
        raise ValueError("catalog: 'parallax' and 'parallax_error' go together (map both with --columns)")
    ell, b = _column(tab, "l", columns, required=False), _column(tab, "b", columns, required=False)
    coords = None if ell is None or b is None else np.column_stack([ell, b]).astype(float)[sel]
    return dict(data=flux, data_err=ferr, data_mask=good, data_labels=ids,
                parallax=None if plx is None else np.asarray(plx, float)[sel],
                parallax_err=None if plxe is None else np.asarray(plxe, float)[sel], data_coords=coords)


def shard_rows(nrows, shard):
    """Rows of shard ``"i/N"`` (0 <= i < N) of a catalogue of ``nrows``: a
    contiguous block, so the shards partition the catalogue deterministically."""
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError as exc:
        raise ValueError(f"shard: expected 'i/N', got {shard!r}") from exc
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard: expected 0 <= i < N, got {shard!r}")
    return slice(i * nrows // n, (i + 1) * nrows // n)


def merge_fits(shard_files, out_file, overwrite=False):
    """Concatenate complete shard outputs (in the given order) into one file.

    Every shard must be complete (no ``obj_status == 0``) and have the same
    datasets, trailing shapes and dtypes; the merged file is written under a
    temporary name and renamed into place.  Returns the path.
    """
    out_file = os.fspath(out_file)
    if os.path.exists(out_file) and not overwrite:
        raise FileExistsError(f"out: '{out_file}' exists (pass overwrite to replace it)")
    parts = []
    for p in shard_files:
        with h5py.File(p, "r") as f:
            d = {k: f[k][()] for k in f}
        if "obj_status" in d and np.any(d["obj_status"] == 0):
            raise ValueError(f"shard '{p}' is incomplete ({int(np.sum(d['obj_status'] == 0))} rows pending): "
                             "re-run its fit to resume it")
        if parts and (set(d) != set(parts[0]) or any(d[k].shape[1:] != parts[0][k].shape[1:] or
                                                      d[k].dtype != parts[0][k].dtype for k in d)):
            raise ValueError(f"shard '{p}' does not match '{shard_files[0]}' (different datasets or shapes)")
        parts.append(d)
    if not parts:
        raise ValueError("shards: no input files")
    tmp = out_file + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k in parts[0]:
            f.create_dataset(k, data=np.concatenate([d[k] for d in parts]))
    os.replace(tmp, out_file)
    return out_file
