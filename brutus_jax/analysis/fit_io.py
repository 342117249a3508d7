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


class FitOutput:
    """Open (create or resume) the output file of a fit."""

    def __init__(self, save_file, labels, ndraws, save_dar_draws, key, overwrite=False, attrs=None):
        path = pathlib.Path(os.fspath(save_file))
        if path.suffix != ".h5":
            path = path.with_name(path.name + ".h5")
        self.path = path
        labels = np.asarray(labels)
        ndata = labels.shape[0]
        self.spec = _layout(ndata, ndraws, save_dar_draws)
        self.resumed = False
        if path.exists():
            try:
                with h5py.File(path, "r") as f:
                    same = f.attrs.get("brutus_jax_fit_key") == key
                    complete = all(name in f and f[name].shape == shape for name, (shape, _, _) in self.spec.items())
            except OSError as exc:
                if not overwrite:
                    raise ValueError(f"save_file: {path} exists but is not a readable HDF5 file ({exc}); "
                                     "remove it or pass overwrite=True") from exc
                same = complete = False
            if same and complete:
                self.resumed = True
            elif not overwrite:
                raise ValueError(f"save_file: {path} exists and holds a fit of other data or settings; "
                                 "choose another save_file or pass overwrite=True")
        if not self.resumed:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with h5py.File(tmp, "w") as f:
                f.create_dataset("labels", data=labels)
                for name, (shape, dtype, fill) in self.spec.items():
                    chunks = (min(shape[0], 256),) + shape[1:] if shape[0] else None
                    f.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill, chunks=chunks)
                f.attrs["brutus_jax_fit_key"] = key
                f.attrs["obj_status_codes"] = repr(STATUS)
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
            os.replace(tmp, path)
        self._f = h5py.File(path, "r+")

    @property
    def attrs(self):
        return self._f.attrs

    def done(self):
        """(Ndata,) bool: rows already written (status != pending)."""
        return self._f["obj_status"][:] != STATUS["pending"]

    def write(self, rows, results):
        """Write ``results`` (dict name -> (len(rows), ...) arrays) for ``rows``, then the status."""
        rows = np.asarray(rows)
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
