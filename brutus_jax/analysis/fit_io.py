"""The HDF5 output of ``BruteForce.fit``: brutus's datasets, written incrementally, resumable.

Datasets (ALGORITHMS.md §3.9): ``labels``, ``model_idx`` (int32, -99 until
written), ``ml_scale``, ``ml_av``, ``ml_rv``, ``ml_cov_sar``, ``obj_log_post``,
``obj_log_evid``, ``obj_chi2min``, ``obj_Nbands`` (int16), ``mc_ess`` and, with
``save_dar_draws``, ``samps_dist``, ``samps_red``, ``samps_dred``,
``samps_logp``.  brutus_jax adds ``obj_status`` (int8, see ``STATUS``) and
records a fingerprint of the inputs and settings in the attributes.

A file is created complete (every dataset allocated) under a temporary name
and renamed into place, so a half-created file never appears.  Rows are
written batch by batch; ``obj_status`` is set after a row's results, so a
run killed mid-batch redoes that batch.  Re-running with the same inputs and
settings resumes; an existing file with a different fingerprint is refused
unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import h5py
import numpy as np

__all__ = ["STATUS", "FitOutput", "fingerprint"]

#: obj_status codes
STATUS = {"pending": 0, "ok": 1, "no_bands": 2, "no_valid_model": 3}


def fingerprint(*arrays, **settings):
    """SHA256 of the input arrays and settings (repr), to recognise a resumable run."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"None")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()


def _layout(ndata, ndraws, save_dar_draws):
    f4 = "f4"
    spec = {
        "model_idx": ((ndata, ndraws), "i4", -99),
        "ml_scale": ((ndata, ndraws), f4, np.nan),
        "ml_av": ((ndata, ndraws), f4, np.nan),
        "ml_rv": ((ndata, ndraws), f4, np.nan),
        "ml_cov_sar": ((ndata, ndraws, 3, 3), f4, np.nan),
        "obj_log_post": ((ndata, ndraws), f4, np.nan),
        "obj_log_evid": ((ndata,), f4, np.nan),
        "obj_chi2min": ((ndata,), f4, np.nan),
        "obj_Nbands": ((ndata,), "i2", 0),
        "mc_ess": ((ndata, ndraws), f4, np.nan),
        "obj_status": ((ndata,), "i1", 0),
    }
    if save_dar_draws:
        for k in ("samps_dist", "samps_red", "samps_dred", "samps_logp"):
            spec[k] = ((ndata, ndraws), f4, np.nan)
    return spec


def _create(path, labels, ndata, labels_dtype, spec, key, attrs):
    """Write a complete, fully allocated output under a temporary name, then rename it.

    Every chunk is allocated at creation (``ALLOC_TIME_EARLY``), so writing
    rows later changes raw data only, never the file's metadata: a process
    killed in the middle of a write leaves a readable file whose unfinished
    rows still have ``obj_status == 0`` (tested by killing fits).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def dcpl():
        p = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        p.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        return p

    def make(f, name, shape, dtype, fill=None):
        chunks = (min(shape[0], 256),) + tuple(shape[1:]) if shape[0] else None
        return f.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill, chunks=chunks,
                                dcpl=dcpl() if chunks else None)

    with h5py.File(tmp, "w") as f:
        lab = make(f, "labels", (ndata,), labels_dtype)
        if labels is not None and ndata:
            lab[...] = labels.astype(object) if labels.dtype.kind == "U" else labels
        for name, (shape, dtype, fill) in spec.items():
            make(f, name, shape, dtype, fill)
        f.attrs["brutus_jax_fit_key"] = key
        f.attrs["obj_status_codes"] = repr(STATUS)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    os.replace(tmp, path)


def _labels_dtype(labels):
    """HDF5-storable dtype of a labels array (text becomes variable-length UTF-8)."""
    labels = np.asarray(labels)
    return h5py.string_dtype() if labels.dtype.kind in "UO" else labels.dtype


class FitOutput:
    """Open (create or resume) the output file of a fit.

    ``labels``: the objects' labels (written at creation), or None with
    ``ndata`` rows and ``labels_dtype`` for a file filled block by block
    (`rows`); ``extra``: more datasets, name -> (shape, dtype, fill).  An
    existing file is resumed when its fingerprint ``key`` and layout match;
    otherwise a clear ``ValueError`` says whether it is not HDF5 (truncated or
    corrupt), not a brutus_jax output, damaged, or a fit of other data or
    settings, and it is never overwritten unless ``overwrite=True``.
    """

    def __init__(self, save_file, labels, ndraws, save_dar_draws, key, overwrite=False, attrs=None, ndata=None,
                 labels_dtype=None, extra=None):
        path = pathlib.Path(os.fspath(save_file))
        if path.suffix != ".h5":
            path = path.with_name(path.name + ".h5")
        self.path = path
        if labels is not None:
            labels = np.asarray(labels)
            ndata, labels_dtype = labels.shape[0], _labels_dtype(labels)
        self.spec = dict(_layout(ndata, ndraws, save_dar_draws), **(extra or {}))
        self.resumed = False
        if path.exists():
            problem = self._check(path, key)
            if problem is None:
                self.resumed = True
            elif not overwrite:
                raise ValueError(f"save_file: {path} {problem}; choose another save_file or pass overwrite=True "
                                 "(the existing file is left untouched)")
        if not self.resumed:
            _create(path, labels, ndata, labels_dtype, self.spec, key, attrs)
        self._f = h5py.File(path, "r+")

    def _check(self, path, key):
        """None if ``path`` is a resumable output of this fit, else what is wrong with it."""
        try:
            with h5py.File(path, "r") as f:
                if "brutus_jax_fit_key" not in f.attrs:
                    return "exists and is not a brutus_jax fit output"
                if f.attrs["brutus_jax_fit_key"] != key:
                    return "exists and holds a fit of other data or settings"
                shapes = {name: shape for name, (shape, _, _) in self.spec.items()}
                shapes["labels"] = shapes["obj_status"]
                for name, shape in shapes.items():
                    if name not in f or f[name].shape != shape:
                        return f"is damaged: dataset '{name}' is missing or has the wrong shape"
                f["obj_status"][:1]
        except OSError as exc:
            return f"exists but is not a readable HDF5 file (truncated or corrupt? {exc})"
        return None

    @property
    def attrs(self):
        return self._f.attrs

    def __getitem__(self, name):
        return self._f[name]

    def rows(self, start, stop):
        """A view of rows ``start:stop`` (``done`` / ``write`` relative to ``start``)."""
        return _Rows(self, start, stop)

    def done(self):
        """(Ndata,) bool: rows already written (status != pending)."""
        return self._f["obj_status"][:] != STATUS["pending"]

    def write(self, rows, results, offset=0):
        """Write ``results`` (dict name -> (len(rows), ...) arrays) for ``rows`` (+ ``offset``),
        then the status."""
        rows = np.asarray(rows) + offset
        if rows.size == 0:
            return
        order = np.argsort(rows)
        rows = rows[order]
        sl = slice(rows[0], rows[-1] + 1) if np.all(np.diff(rows) == 1) else rows
        for name, value in results.items():
            if name == "obj_status":
                continue
            self._f[name][sl] = np.asarray(value)[order]
        self._f["obj_status"][sl] = np.asarray(results["obj_status"])[order]
        self._f.flush()

    def close(self):
        if self._f:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Rows:
    """Rows ``start:stop`` of a `FitOutput` (what `fit_runner.run_fit` writes to)."""

    def __init__(self, out, start, stop):
        self.out, self.start, self.stop = out, int(start), int(stop)

    def done(self):
        return self.out["obj_status"][self.start:self.stop] != STATUS["pending"]

    def write(self, rows, results):
        self.out.write(rows, results, offset=self.start)
