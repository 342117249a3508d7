"""Reading and writing brutus model grids and photometric-offset files (host side).

Grid file layout (astro-brutus 1.2.0, written by ``GridGenerator``)::

    /mag_coeffs   (Nmodel,) compound: one field per filter, each (float, (3,))
                  = [m0, a, b] (magnitude at 1 kpc, reddening vector at
                  R_V = 0, its R_V derivative); '<f4' + gzip in 1.2.0,
                  '<f8' uncompressed in the published grids
    /labels       (Nmodel,) compound '<f8': grid inputs mini, eep, feh, afe, smf
    /parameters   (Nmodel,) compound '<f8': predictions loga, logl, logt, logg,
                  feh_surf, afe_surf, agewt (or e.g. Mr)
    attrs         reference_distance_pc = 1000.0, creation_date, filters, ...

Deliberate deviations from brutus's ``load_models`` (everything else matches):

* ``filters=None`` loads every filter of the file, in file order (brutus loads
  the intersection with its own 49-name ``FILTERS`` list, in that list's
  order: the same thing for the published grids, but brutus silently drops
  bands it does not know).
* Unknown filter names raise ``ValueError`` listing the available ones
  (brutus warns and skips them, which shifts the band columns silently).
* Missing / unreadable / non-grid files raise ``FileNotFoundError`` /
  ``ValueError`` naming the path (brutus: raw h5py ``OSError``/``KeyError``).
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile

import numpy as np

__all__ = [
    "GridModels",
    "load_models",
    "write_models",
    "load_offsets",
    "write_offsets",
    "GRID_INPUTS",
    "DEFAULT_LABELS",
]

#: names of the grid-input labels (the lattice axes of a brutus grid)
GRID_INPUTS = ("mini", "eep", "feh", "afe", "smf")

#: brutus 1.2.0's default label list for ``load_models``
DEFAULT_LABELS = ("mini", "feh", "eep", "smf", "afe", "loga", "logl", "logt", "logg", "Mr", "agewt")

#: main-sequence / post-main-sequence split (MIST EEP of the terminal-age MS)
EEP_TAMS = 454.0


class GridModels(np.ndarray):
    """float32 ``(Nmodel, Nfilt, 3)`` coefficient array that knows its band names.

    A plain ``numpy.ndarray`` in every respect, plus ``.filters`` (tuple of
    band names, one per column of axis 1).  ``.filters`` survives row
    selection (``models[sel]``), copies and arithmetic; it follows band
    indexing (``models[:, [0, 2]]``) and becomes ``None`` whenever the result
    no longer has one entry per band.
    """

    def __new__(cls, array, filters=None):
        obj = np.asarray(array).view(cls)
        obj.filters = None if filters is None else tuple(str(f) for f in filters)
        obj._check_filters()
        return obj

    def _check_filters(self):
        f = getattr(self, "filters", None)
        if f is not None and (self.ndim != 3 or self.shape[1] != len(f)):
            self.filters = None

    def __array_finalize__(self, obj):
        self.filters = getattr(obj, "filters", None)
        self._check_filters()

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        if return_scalar:
            return arr[()]
        return super().__array_wrap__(arr, context)

    def __getitem__(self, key):
        out = super().__getitem__(key)
        if isinstance(out, GridModels) and self.filters is not None:
            band_key = None
            if isinstance(key, tuple) and len(key) >= 2 and not any(
                k is None or k is Ellipsis for k in key
            ):
                band_key = key[1]
            if band_key is not None and not (isinstance(band_key, slice) and band_key == slice(None)):
                try:
                    names = np.asarray(self.filters, dtype=object)[band_key]
                    names = tuple(names) if np.ndim(names) == 1 else None
                except (IndexError, TypeError, ValueError):
                    names = None
                out.filters = names
            out._check_filters()
        return out

    def __reduce__(self):
        fn, args, state = super().__reduce__()
        return fn, args, (state, self.filters)

    def __setstate__(self, state):
        base, filters = state
        super().__setstate__(base)
        self.filters = filters

    def __repr__(self):
        return f"GridModels({np.asarray(self)!r}, filters={self.filters!r})"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _h5py():
    import h5py

    return h5py


def _open_grid(filepath):
    """Open an HDF5 grid file read-only with clear errors."""
    h5py = _h5py()
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model grid file not found: '{path}'")
    if os.path.isdir(path):
        raise ValueError(f"model grid path '{path}' is a directory, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(
            f"cannot read model grid '{path}': not a readable HDF5 file "
            f"(corrupt, truncated or another format) [{exc}]"
        ) from None


def _read(f, name, path):
    try:
        return f[name][()]
    except (OSError, RuntimeError, ValueError) as exc:
        raise ValueError(
            f"cannot read dataset '/{name}' of model grid '{path}': file corrupt or truncated [{exc}]"
        ) from None


def _as_name_list(names, argname):
    if isinstance(names, (str, bytes)):
        names = [names]
    try:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except TypeError:
        raise TypeError(f"{argname} must be a list of names, got {type(names).__name__}") from None
    return names


# ---------------------------------------------------------------------------
# load_models
# ---------------------------------------------------------------------------


def load_models(
    filepath,
    filters=None,
    labels=None,
    include_ms=True,
    include_postms=True,
    include_binaries=False,
    verbose=True,
):
    """Load a brutus model grid.

    Parameters
    ----------
    filepath : str or path-like
        HDF5 grid file (layout in the module docstring).
    filters : list of str, optional
        Bands to load, in this order.  Default: every band of the file, in
        file order.  Unknown names raise ``ValueError``.
    labels : list of str, optional
        Label columns to return.  Default ``DEFAULT_LABELS``
        (mini, feh, eep, smf, afe, loga, logl, logt, logg, Mr, agewt).
        Names absent from the file (or all-NaN) are dropped.  With the
        default list a constant ``afe`` column is dropped too.
    include_ms, include_postms : bool
        Keep models with ``eep <= 454`` / ``eep > 454`` (only applied when
        ``eep`` is among the returned labels).
    include_binaries : bool
        Keep models with ``smf != 0`` and the ``smf`` label (default: only
        ``smf == 0`` rows, ``smf`` label dropped).
    verbose : bool
        Print a one-line summary to stderr.

    Returns
    -------
    models : GridModels, float32 (Nmodel, Nfilt, 3)
        ``(m0, a, b)`` per band at 1 kpc; ``models.filters`` names the bands.
        Rows with any non-finite coefficient are dropped.
    labels : structured float64 array (Nmodel,)
    label_mask : structured bool array (1,)
        True for labels read from ``/labels`` (grid inputs), False for
        predictions from ``/parameters``.
    """
    if not include_ms and not include_postms:
        raise ValueError(
            "include_ms and include_postms are both False: no models would be left"
        )
    labels_defaulted = labels is None
    label_list = list(DEFAULT_LABELS) if labels_defaulted else _as_name_list(labels, "labels")
    path = os.fspath(filepath)

    f = _open_grid(path)
    with f:
        if "mag_coeffs" not in f:
            raise ValueError(
                f"'{path}' is not a brutus model grid: it has no '/mag_coeffs' dataset "
                f"(top-level entries: {sorted(f.keys())})"
            )
        dset = f["mag_coeffs"]
        available = list(dset.dtype.names or ())
        if not available:
            raise ValueError(
                f"'{path}': '/mag_coeffs' is not a compound dataset with one field per filter"
            )
        if filters is None:
            filt_list = available
        else:
            filt_list = _as_name_list(filters, "filters")
            unknown = [x for x in filt_list if x not in available]
            if unknown or not filt_list:
                raise ValueError(
                    f"filters: {unknown if unknown else 'empty list'} not in model grid '{path}'; "
                    f"available filters: {available}"
                )
        coeffs = _read(f, "mag_coeffs", path)
        nrow = len(coeffs)
        models = np.empty((nrow, len(filt_list), 3), dtype=np.float32)
        for i, name in enumerate(filt_list):
            col = coeffs[name]
            if col.shape != (nrow, 3):
                raise ValueError(
                    f"'{path}': '/mag_coeffs' field '{name}' has shape {col.shape[1:]} per model, expected (3,)"
                )
            models[:, i] = col
        del coeffs

        table = np.full(nrow, np.nan, dtype=[(n, np.float64) for n in label_list])
        mask = np.zeros(1, dtype=[(n, np.bool_) for n in label_list])
        for group, is_input in (("labels", True), ("parameters", False)):
            if group not in f:
                continue
            data = _read(f, group, path)
            if data.dtype.names is None or len(data) != nrow:
                raise ValueError(
                    f"'{path}': '/{group}' must be a compound dataset with {nrow} rows "
                    f"(one per model), got shape {data.shape} dtype {data.dtype}"
                )
            for name in data.dtype.names:
                if name in table.dtype.names:
                    table[name] = data[name]
                    if is_input:
                        mask[name] = True

    # columns that are absent (all NaN) are dropped
    kept = [n for n in label_list if not np.all(np.isnan(table[n]))]

    sel = np.all(np.isfinite(models), axis=(1, 2))
    n_nonfinite = nrow - int(sel.sum())
    if "eep" in kept:
        if not include_ms:
            sel &= table["eep"] > EEP_TAMS
        elif not include_postms:
            sel &= table["eep"] <= EEP_TAMS
    if not include_binaries and "smf" in kept:
        sel &= table["smf"] == 0.0
        kept.remove("smf")
    if labels_defaulted and "afe" in kept:
        afe = table["afe"][np.isfinite(table["afe"])]
        if afe.size and np.all(afe == afe[0]):
            kept.remove("afe")

    # structured multi-field selection gives a packed copy with `kept` fields
    out_labels = np.empty(int(sel.sum()), dtype=[(n, np.float64) for n in kept])
    out_mask = np.zeros(1, dtype=[(n, np.bool_) for n in kept])
    for n in kept:
        out_labels[n] = table[n][sel]
        out_mask[n] = mask[n]
    out_models = GridModels(models[sel], filters=filt_list)

    if verbose:
        grid_in = [n for n in kept if out_mask[n][0]]
        preds = [n for n in kept if not out_mask[n][0]]
        sys.stderr.write(
            f"load_models: {len(out_models):,} of {nrow:,} models "
            f"({n_nonfinite:,} non-finite dropped), {len(filt_list)} filters, "
            f"grid labels {grid_in}, predictions {preds} from '{path}'\n"
        )
    return out_models, out_labels, out_mask


# ---------------------------------------------------------------------------
# write_models
# ---------------------------------------------------------------------------


def _fields(arr, argname, nrow):
    arr = np.asarray(arr)
    if arr.dtype.names is None:
        raise ValueError(f"{argname} must be a structured array with named fields, got dtype {arr.dtype}")
    if arr.shape != (nrow,):
        raise ValueError(f"{argname} must have shape ({nrow},) (one row per model), got {arr.shape}")
    return arr


def _compound(columns, nrow):
    out = np.empty(nrow, dtype=[(n, "<f8") for n in columns])
    for n, v in columns.items():
        out[n] = v
    return out


def _atomic_h5(path, write):
    """Run ``write(h5file)`` on a temp file next to ``path``, then rename it."""
    h5py = _h5py()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_models(
    path,
    models,
    labels,
    params=None,
    filters=None,
    dtype="f4",
    compression="gzip",
    attrs=None,
):
    """Write a model grid in brutus's format (readable by brutus's ``load_models``).

    Parameters
    ----------
    path : str or path-like
        Output file; written atomically (temp file in the same directory,
        then ``os.replace``).
    models : array (Nmodel, Nfilt, 3)
        ``(m0, a, b)`` per band at 1 kpc.
    labels : structured array (Nmodel,)
        Grid inputs (``mini, eep, feh, afe, smf``; missing ``afe``/``smf`` are
        written as 0).  If ``params`` is None, any other fields are taken as
        predictions and go to ``/parameters``.
    params : structured array (Nmodel,), optional
        Predictions (loga, logl, logt, logg, feh_surf, afe_surf, agewt, ...).
    filters : list of str, optional
        Band names (default ``models.filters`` for a ``GridModels``).
    dtype : {"f4", "f8"}
        On-disk float type of ``/mag_coeffs`` (labels are always '<f8').
    compression : "gzip" (level 4), None, or any h5py compression name.
    attrs : dict, optional
        Extra file attributes (override the defaults).
    """
    models_arr = np.asarray(models)
    if models_arr.ndim != 3 or models_arr.shape[2] != 3:
        raise ValueError(f"models must have shape (Nmodel, Nfilt, 3), got {models_arr.shape}")
    nrow, nfilt, _ = models_arr.shape
    if filters is None:
        filters = getattr(models, "filters", None)
        if filters is None:
            raise ValueError("filters must be given (models carries no .filters band names)")
    filters = _as_name_list(filters, "filters")
    if len(filters) != nfilt:
        raise ValueError(f"filters has {len(filters)} names but models has {nfilt} bands")
    if len(set(filters)) != nfilt:
        raise ValueError(f"filters contains duplicate names: {filters}")
    labels = _fields(labels, "labels", nrow)

    if params is None:
        inputs = {n: labels[n] for n in labels.dtype.names if n in GRID_INPUTS}
        preds = {n: labels[n] for n in labels.dtype.names if n not in GRID_INPUTS}
    else:
        params = _fields(params, "params", nrow)
        inputs = {n: labels[n] for n in labels.dtype.names}
        preds = {n: params[n] for n in params.dtype.names}
        clash = sorted(set(inputs) & set(preds))
        if clash:
            raise ValueError(f"fields {clash} appear in both labels and params")
    # canonical order for the grid inputs; afe/smf default to 0
    ordered = {n: inputs[n] for n in GRID_INPUTS if n in inputs}
    for n in ("afe", "smf"):
        ordered.setdefault(n, np.zeros(nrow))
    ordered.update({n: v for n, v in inputs.items() if n not in GRID_INPUTS})

    if dtype not in ("f4", "f8", "<f4", "<f8", np.float32, np.float64):
        raise ValueError(f"dtype must be 'f4' or 'f8', got {dtype!r}")
    ftype = np.dtype(dtype).newbyteorder("<")
    coeffs = np.empty(nrow, dtype=[(name, ftype, (3,)) for name in filters])
    for i, name in enumerate(filters):
        coeffs[name] = models_arr[:, i, :]
    n_valid = int(np.all(np.isfinite(models_arr), axis=(1, 2)).sum())

    from .. import __version__

    file_attrs = {
        "reference_distance_pc": 1000.0,
        "reference_distance_note": "mag_coeffs are magnitudes at a reference distance of 1 kpc",
        "creation_date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "n_models_total": nrow,
        "n_models_valid": n_valid,
        "filters": np.array([s.encode() for s in filters], dtype=f"S{max(len(s) for s in filters)}"),
        "brutus_jax_version": __version__,
    }
    file_attrs.update(attrs or {})
    kw = {}
    if compression is not None:
        kw["compression"] = compression
        if compression == "gzip":
            kw["compression_opts"] = 4

    def write(f):
        f.create_dataset("mag_coeffs", data=coeffs, **kw)
        f.create_dataset("labels", data=_compound(ordered, nrow), **kw)
        if preds:
            f.create_dataset("parameters", data=_compound(preds, nrow), **kw)
        for k, v in file_attrs.items():
            f.attrs[k] = v

    _atomic_h5(path, write)
    return os.fspath(path)


# ---------------------------------------------------------------------------
# offsets
# ---------------------------------------------------------------------------


def load_offsets(filepath, filters=None, verbose=True):
    """Multiplicative photometric offsets from a 2-column text file.

    The file has one ``<filter name> <offset>`` pair per line (whitespace
    separated; ``#`` starts a comment).  Offsets multiply the *data* fluxes.

    Parameters
    ----------
    filepath : str or path-like
    filters : list of str, optional
        Bands to return, in this order; bands not listed in the file get 1.0.
        Default: the bands of the file in file order (brutus defaults to its
        49-band ``FILTERS`` list instead).
    verbose : bool
        Print a one-line summary to stderr.

    Returns
    -------
    offsets : float64 array (Nfilt,)
    """
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"offsets file not found: '{path}'")
    names, values = [], []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"'{path}' line {lineno}: expected '<filter> <offset>', got {line!r}")
            try:
                values.append(float(parts[1]))
            except ValueError:
                raise ValueError(f"'{path}' line {lineno}: offset {parts[1]!r} is not a number") from None
            names.append(parts[0])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"'{path}': filters listed more than once: {dup}")
    table = dict(zip(names, values))
    filt_list = names if filters is None else _as_name_list(filters, "filters")
    offsets = np.array([table.get(n, 1.0) for n in filt_list], dtype=np.float64)
    if verbose:
        summary = ", ".join(f"{n} {100.0 * (o - 1.0):+.2f}%" for n, o in zip(filt_list, offsets))
        sys.stderr.write(f"load_offsets: {summary}\n")
    return offsets


def write_offsets(path, filters, offsets):
    """Write offsets in brutus's 2-column text format (``<filter> <offset>`` per line), atomically.

    Read back by `load_offsets` and brutus's ``load_offsets``.  Offsets must be
    finite and > 0; names unique, non-empty, without whitespace.  Returns the path.
    """
    filters = _as_name_list(filters, "filters")
    offsets = np.atleast_1d(np.asarray(offsets, dtype=np.float64))
    if offsets.shape != (len(filters),):
        raise ValueError(f"offsets: expected {len(filters)} values (one per filter), got shape {offsets.shape}")
    if not np.all(np.isfinite(offsets) & (offsets > 0)):
        raise ValueError("offsets: must be finite and > 0")
    for n in filters:
        if not n or any(c.isspace() for c in n) or n.startswith("#"):
            raise ValueError(f"filters: invalid filter name {n!r}")
    if len(set(filters)) != len(filters):
        raise ValueError("filters: names must be unique")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            for n, o in zip(filters, offsets):
                fh.write(f"{n} {float(o)!r}\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
