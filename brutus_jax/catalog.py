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

__all__ = ["CatalogReader", "read_catalog", "catalog_inputs", "shard_rows", "merge_fits"]

_MISSING = -99.0


class CatalogReader:
    """Lazy row access to a catalogue file: ``nrows``, ``names`` and ``read(start, stop)``.

    HDF5 (1-D datasets sliced in place, or compound tables concatenated in
    name order) and CSV (byte offsets of every ``_CSV_STRIDE``-th line are
    indexed in one pass, then each block is parsed on its own) are streamed:
    memory holds one block, not the catalogue.  Other formats go through
    ``astropy.table.Table.read`` (FITS memory-mapped) and are read whole.
    """

    _CSV_STRIDE = 4096

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"catalog: no such file '{path}'")
        self.path = path
        ext = pathlib.Path(path).suffix.lower()
        if ext in (".h5", ".hdf5", ".hdf"):
            self._open_hdf5()
        elif ext == ".csv":
            self._open_csv()
        else:
            self._open_astropy(ext)

    # -- HDF5
    def _open_hdf5(self):
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"catalog: '{self.path}' is not a readable HDF5 file ({exc})") from exc
        with f:
            grp = f["photometry"] if "photometry" in f and isinstance(f["photometry"], h5py.Group) else f
            self._group = grp.name
            compound = [k for k in sorted(grp) if isinstance(grp[k], h5py.Dataset) and grp[k].dtype.names]
            if compound:
                self._tables = compound
                self._bounds = np.cumsum([0] + [grp[k].shape[0] for k in compound])
                self.names = list(grp[compound[0]].dtype.names)
                self.nrows = int(self._bounds[-1])
                self._kind = "compound"
                return
            cols = [k for k in grp if isinstance(grp[k], h5py.Dataset) and grp[k].ndim >= 1]
            if not cols:
                raise ValueError(f"catalog: no table found in '{self.path}' (expected 1-D datasets or compound tables)")
            n = {grp[k].shape[0] for k in cols}
            if len(n) != 1:
                raise ValueError(f"catalog: datasets of '{self.path}' have different lengths {sorted(n)}")
            self.names, self.nrows, self._kind = cols, int(n.pop()), "columns"

    def _read_hdf5(self, start, stop):
        with h5py.File(self.path, "r") as f:
            grp = f[self._group]
            if self._kind == "columns":
                return {k: grp[k][start:stop] for k in self.names}
            parts = []
            for k, lo, hi in zip(self._tables, self._bounds[:-1], self._bounds[1:]):
                a, b = max(start, lo), min(stop, hi)
                if a < b:
                    parts.append(grp[k][a - lo:b - lo])
            return np.concatenate(parts) if parts else grp[self._tables[0]][:0]

    # -- CSV
    def _open_csv(self):
        offsets, n = [], 0
        with open(self.path, "rb") as fh:
            header = fh.readline()
            pos = fh.tell()
            for line in fh:
                if line.strip():
                    if n % self._CSV_STRIDE == 0:
                        offsets.append(pos)
                    n += 1
                pos += len(line)
        self.names = [c.strip() for c in header.decode("utf-8").strip().split(",")]
        if not self.names or not self.names[0]:
            raise ValueError(f"catalog: '{self.path}' has no header line")
        self.nrows, self._offsets, self._kind = n, offsets, "csv"

    def _read_csv(self, start, stop):
        import io
        import itertools

        if stop <= start:
            lines = []
        else:
            with open(self.path, "rb") as fh:
                fh.seek(self._offsets[start // self._CSV_STRIDE])
                body = (ln for ln in fh if ln.strip())
                lines = list(itertools.islice(body, start % self._CSV_STRIDE, start % self._CSV_STRIDE + stop - start))
        text = ",".join(self.names) + "\n" + b"".join(lines).decode("utf-8")
        tab = np.genfromtxt(io.StringIO(text), delimiter=",", names=True, dtype=None, encoding="utf-8",
                            deletechars="", case_sensitive=True)
        return np.atleast_1d(tab)

    # -- astropy
    def _open_astropy(self, ext):
        try:
            from astropy.table import Table
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(f"catalog: reading '{ext}' files needs astropy (pip install astropy); "
                             "HDF5 and CSV are read without it") from exc
        kw = {"memmap": True} if ext in (".fits", ".fit", ".fz") else {}
        tab = Table.read(self.path, **kw)
        self._table = {name: np.asarray(tab[name]) for name in tab.colnames}
        self.names, self.nrows, self._kind = list(tab.colnames), len(tab), "astropy"

    def read(self, start=0, stop=None):
        """Rows ``start:stop`` as a table (a numpy structured array or a dict of arrays)."""
        stop = self.nrows if stop is None else min(int(stop), self.nrows)
        start = max(0, int(start))
        if self._kind == "csv":
            return self._read_csv(start, stop)
        if self._kind == "astropy":
            return {k: v[start:stop] for k, v in self._table.items()}
        return self._read_hdf5(start, stop)


def read_catalog(path):
    """The catalogue at ``path`` as a mapping column name -> array (a numpy
    structured array or a dict of equal-length arrays); see `CatalogReader`
    for reading it in blocks."""
    return CatalogReader(path).read()


def _names(tab):
    return list(tab.dtype.names) if isinstance(tab, np.ndarray) else list(tab)


def _column(tab, logical, columns, required=True):
    name = columns.get(logical, logical)
    if name in _names(tab):
        return np.asarray(tab[name])
    if required:
        raise ValueError(f"catalog: no column '{name}' for {logical!r} (columns: {', '.join(_names(tab))}); "
                         f"map it with --columns {logical}=<column>")
    return None


def catalog_inputs(tab, filters, columns=None, fluxes=False, first_row=0):
    """``BruteForce.fit`` keyword arguments (data, data_err, data_mask,
    data_labels, parallax, parallax_err, data_coords) from a catalogue table.

    ``filters``: the grid's bands, in order; ``columns``: logical -> column
    name; ``fluxes``: the band columns hold fluxes in maggies instead of
    magnitudes; ``first_row``: catalogue row of ``tab``'s first row (default ``obj_id``
    values are catalogue row numbers).  Parallaxes and coordinates are None when their columns are absent.
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
    ids = np.arange(first_row, first_row + n) if ids is None else ids
    plx = _column(tab, "parallax", columns, required=False)
    plxe = _column(tab, "parallax_error", columns, required=False)
    if (plx is None) != (plxe is None):
        raise ValueError("catalog: 'parallax' and 'parallax_error' go together (map both with --columns)")
    ell, b = _column(tab, "l", columns, required=False), _column(tab, "b", columns, required=False)
    coords = None if ell is None or b is None else np.column_stack([ell, b]).astype(float)
    return dict(data=flux, data_err=ferr, data_mask=good, data_labels=ids,
                parallax=None if plx is None else np.asarray(plx, float),
                parallax_err=None if plxe is None else np.asarray(plxe, float), data_coords=coords)


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


#: per-file bookkeeping that is not concatenated by `merge_fits`
_NOT_MERGED = ("chunk_keys",)


def _check_shard_rows(files, sizes, runs):
    """Shards of one `fit_stream` run (``brutus_jax_run_key`` attributes): same run, put in
    row order, and together exactly rows 0..catalogue rows (no gap, no overlap).  Files
    without these attributes (e.g. `BruteForce.fit` outputs) are merged in the order given."""
    if not all(r["brutus_jax_run_key"] is not None for r in runs):
        return files, sizes
    if len({r["brutus_jax_run_key"] for r in runs}) != 1:
        raise ValueError("shards: the files are fits with different settings, seeds or grids")
    order = sorted(range(len(files)), key=lambda i: int(runs[i]["brutus_jax_key_offset"]))
    at = 0
    for i in order:
        start = int(runs[i]["brutus_jax_key_offset"])
        if start != at:
            what = f"rows {at}:{start} are missing" if start > at else f"'{files[i]}' overlaps the shard before it"
            raise ValueError(f"shards: {what} (all shards of the catalogue are needed, each once)")
        at = start + sizes[i]
    total = runs[0]["brutus_jax_catalog_rows"]
    if total is not None and at != int(total):
        raise ValueError(f"shards: rows {at}:{int(total)} of the catalogue are missing")
    return [files[i] for i in order], [sizes[i] for i in order]


def merge_fits(shard_files, out_file, overwrite=False, block=65536):
    """Concatenate complete shard outputs into one file (in row order; see below).

    Every shard must be a readable HDF5 file, complete (no ``obj_status ==
    0``) and have the same datasets, trailing shapes and dtypes; shards of
    ``brutus-jax fit`` must be one run's, and are put in row order and checked
    to cover the catalogue without gaps or overlaps.  Rows are
    copied ``block`` at a time (memory flat in the shards' size) into a file
    written under a temporary name and renamed into place; the first shard's
    attributes (seed, settings) are kept, without its fit fingerprint.
    Returns the path.
    """
    out_file = os.fspath(out_file)
    if os.path.exists(out_file) and not overwrite:
        raise FileExistsError(f"out: '{out_file}' exists (pass overwrite to replace it)")
    if not shard_files:
        raise ValueError("shards: no input files")
    layout, sizes, runs = None, [], []
    for p in shard_files:
        try:
            with h5py.File(p, "r") as f:
                lay = {k: (f[k].shape[1:], f[k].dtype) for k in f if k not in _NOT_MERGED}
                n = f["obj_status"].shape[0] if "obj_status" in f else None
                pending = 0 if n is None else sum(int(np.sum(f["obj_status"][s:s + block] == 0))
                                                  for s in range(0, n, block))
                runs.append({k: f.attrs.get(k) for k in ("brutus_jax_run_key", "brutus_jax_key_offset",
                                                         "brutus_jax_catalog_rows")})
        except OSError as exc:
            raise ValueError(f"shard '{p}' is not a readable HDF5 file ({exc})") from exc
        if n is None:
            raise ValueError(f"shard '{p}' is not a fit output (no obj_status)")
        if pending:
            raise ValueError(f"shard '{p}' is incomplete ({pending} rows pending): re-run its fit to resume it")
        if layout is not None and lay != layout:
            raise ValueError(f"shard '{p}' does not match '{shard_files[0]}' (different datasets or shapes)")
        layout = lay
        sizes.append(n)
    shard_files, sizes = _check_shard_rows(list(shard_files), sizes, runs)
    tmp = out_file + ".tmp"
    total = int(sum(sizes))
    with h5py.File(tmp, "w") as g:
        with h5py.File(shard_files[0], "r") as f:
            for k, v in f.attrs.items():
                if k not in ("brutus_jax_fit_key", "brutus_jax_key_offset"):
                    g.attrs[k] = v
        dsets = {k: g.create_dataset(k, shape=(total,) + shape, dtype=dt,
                                     chunks=(min(max(total, 1), 256),) + shape if total else None)
                 for k, (shape, dt) in layout.items()}
        at = 0
        for p, n in zip(shard_files, sizes):
            with h5py.File(p, "r") as f:
                for s in range(0, n, block):
                    e = min(n, s + block)
                    for k, d in dsets.items():
                        d[at + s:at + e] = f[k][s:e]
            at += n
    os.replace(tmp, out_file)
    return out_file
