"""``BruteForce.fit_stream``: a catalogue fitted block by block into one output file.

Memory holds one block of ``chunk_size`` rows (inputs and their cleaned
copies) and one batch of stars in flight, whatever the catalogue's length.
Block ``c`` (rows ``c * chunk_size`` onwards) is read by the caller's
``read_rows(start, stop)``, validated by the same code as `BruteForce.fit`
and fitted with ``key_offset + start``, so the file equals one `fit` of all
rows.  The output is created complete (`fit_io.FitOutput`) with a
``chunk_keys`` dataset: each block's input fingerprint, recorded before its
first row is written.  Re-running resumes: blocks whose rows are all done
are skipped without being read, and a block whose inputs differ from the
recorded fingerprint is refused (the catalogue changed under the run).
"""

from __future__ import annotations

import inspect
import math
import sys

import numpy as np

from .fit_io import FitOutput, _labels_dtype, fingerprint

__all__ = ["run_stream"]

#: fit arguments supplied per block by ``read_rows``
_DATA = ("data", "data_err", "data_mask", "data_labels", "parallax", "parallax_err", "data_coords")


def _options(bf, fit_kwargs):
    """`fit`'s defaults updated with ``fit_kwargs`` (unknown or per-block names refused)."""
    sig = inspect.signature(type(bf).fit)
    opts = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    for k in fit_kwargs:
        if k not in opts or k in _DATA or k == "save_file":
            raise TypeError(f"fit_stream: unexpected argument '{k}' (data columns come from read_rows)")
    opts.update(fit_kwargs)
    return opts


def run_stream(bf, read_rows, nrows, save_file, chunk_size, rstate, key_offset, overwrite, verbose, mem_lim,
               batch_size, fit_kwargs, attrs=None):
    """See `BruteForce.fit_stream`; returns the output path."""
    from tqdm.auto import tqdm

    from .bruteforce import _as_key
    from .fit_runner import run_fit

    nrows, chunk_size = int(nrows), int(chunk_size)
    if nrows < 1:
        raise ValueError(f"nrows: expected at least one row, got {nrows}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive number of rows, got {chunk_size}")
    opts = _options(bf, fit_kwargs)
    job_args = [k for k in inspect.signature(bf._job).parameters if k not in ("key", "seed", "fresh_seed")]
    key, seed = _as_key(rstate)
    nchunks = math.ceil(nrows / chunk_size)
    verbose = verbose and bf.verbose
    out = None
    bar = tqdm(total=nrows, disable=not verbose, unit="star", desc="BruteForce.fit_stream", file=sys.stderr,
               smoothing=0.05)
    try:
        for c in range(nchunks):
            start, stop = c * chunk_size, min(nrows, (c + 1) * chunk_size)
            if out is not None and out["chunk_keys"][c] and out.rows(start, stop).done().all():
                bar.update(stop - start)  # a finished block of a resumed run: not read again
                continue
            data = dict(read_rows(start, stop))
            missing = [k for k in _DATA[:4] if k not in data]
            if missing:
                raise ValueError(f"read_rows: block {start}:{stop} lacks {', '.join(missing)}")
            if len(np.asarray(data["data"])) != stop - start:
                raise ValueError(f"read_rows: block {start}:{stop} returned {len(np.asarray(data['data']))} rows")
            args = {**opts, "parallax": None, "parallax_err": None, "data_coords": None, **data}
            args["key_offset"] = int(key_offset) + start
            job = bf._job(key, seed, rstate is None, **{k: args[k] for k in job_args})
            if out is None:
                same = {k: v for k, v in job.key_settings.items() if k != "key_offset"}
                skey = fingerprint(job.lnp_static, nrows=nrows, chunk_size=chunk_size, key_offset=int(key_offset),
                                   **same)
                # run key: what shards of one catalogue fit share (merge_fits checks it)
                run = dict(job.attrs, brutus_jax_chunk_size=chunk_size, brutus_jax_key_offset=int(key_offset),
                           brutus_jax_run_key=fingerprint(job.lnp_static, **same), **(attrs or {}))
                out = FitOutput(save_file, None, opts["Ndraws"], opts["save_dar_draws"], skey, overwrite=overwrite,
                                attrs=run, ndata=nrows,
                                labels_dtype=_labels_dtype(job.inp.labels),
                                extra={"chunk_keys": ((nchunks,), "S64", b"")})
                if out.resumed and rstate is None:
                    key, seed = _as_key(int(out.attrs["brutus_jax_seed"]))
                    job = bf._job(key, seed, True, **{k: args[k] for k in job_args})
            recorded = out["chunk_keys"][c]
            if recorded and recorded.decode() != job.fkey:
                raise ValueError(f"catalog: rows {start}:{stop} differ from those {out.path} was started with "
                                 "(the catalogue or the options changed); use another output or overwrite")
            if not recorded:
                out["chunk_keys"][c] = job.fkey.encode()
                labels = np.asarray(job.inp.labels)
                out["labels"][start:stop] = labels.astype(object) if labels.dtype.kind == "U" else labels
            run_fit(bf, out.rows(start, stop), job.inp, key, job.lnp_static, job.feh, job.loga, job.settings,
                    opts["av_gauss"], opts["rv_gauss"], mem_lim, batch_size, opts["running_io"], verbose,
                    bf.devices, bar=bar)
    finally:
        bar.close()
        if out is not None:
            out.close()
    return str(out.path)
