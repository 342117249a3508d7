"""BruteForce output files to photometric offsets and back (see `analysis.offsets`)."""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np

from ..data.gridio import write_offsets  # noqa: F401  (the one writer; re-exported here)
from .offsets import photometric_offsets

__all__ = ["read_fit_draws", "offsets_from_fit", "write_offsets"]


def read_fit_draws(fit_file):
    """Posterior draws of a ``BruteForce.fit`` output file (brutus or brutus_jax).

    Returns
    -------
    idxs (int, Nobj x Ndraws), reds, dreds, dists [kpc] (float64, Nobj x Ndraws) and
    ok (bool, Nobj): rows with ``obj_status == 1`` (brutus_jax files) or, for
    files without ``obj_status`` (brutus), rows whose draws are all valid.
    """
    path = os.fspath(fit_file)
    with h5py.File(path, "r") as f:
        missing = [k for k in ("model_idx", "samps_red", "samps_dred", "samps_dist") if k not in f]
        if missing:
            raise ValueError(f"fit_file: '{path}' lacks {missing} (fit with save_dar_draws=True)")
        idxs = f["model_idx"][()].astype(np.int64)
        reds, dreds, dists = (f[k][()].astype(np.float64) for k in ("samps_red", "samps_dred", "samps_dist"))
        status = f["obj_status"][()] if "obj_status" in f else None
    with np.errstate(invalid="ignore"):
        valid = np.all((idxs >= 0) & np.isfinite(reds) & np.isfinite(dreds) & np.isfinite(dists) & (dists > 0), axis=1)
    ok = valid if status is None else (status == 1) & valid
    return idxs, reds, dreds, dists, ok


def offsets_from_fit(fit_file, models, phot, err, mask, sel=None, weights=None, mask_fit=None, old_offsets=None,
                     dim_prior=False, prior_mean=None, prior_std=None, verbose=True, config=None, rng=None):
    """:func:`photometric_offsets` from the output file of ``BruteForce.fit(..., save_dar_draws=True)``.

    Reads ``model_idx``, ``samps_red``, ``samps_dred``, ``samps_dist`` and leaves
    out objects whose fit did not succeed (``obj_status != 1``, or placeholder
    draws in a brutus file).  ``phot, err, mask`` are the RAW inputs of that fit
    (rows in the file's order) and ``old_offsets`` the ``phot_offsets`` it was run
    with.  The result goes back into ``fit(..., phot_offsets=offsets)``.

    ``models`` is the grid's coefficient array (Nmodel, Nfilt, 3) or any object
    with a ``.models`` attribute (``StarGrid``, ``BruteForce``).  ``dim_prior``
    defaults to False here: ``BruteForce`` draws (brutus >= 1.0, brutus_jax) come
    from the Gaussian likelihood (their dimensionality term is a per-object
    constant), for which the exact leave-one-out ratio is ``exp(chi2_i / 2)``.
    Other arguments and the returns are those of :func:`photometric_offsets`.
    """
    models = getattr(models, "models", models)
    idxs, reds, dreds, dists, ok = read_fit_draws(fit_file)
    nobj = np.shape(phot)[0] if np.ndim(phot) == 2 else None
    if nobj != idxs.shape[0]:
        raise ValueError(f"phot: expected {idxs.shape[0]} rows (the objects of fit_file), got shape {np.shape(phot)}")
    if verbose and not ok.all():
        print(f"offsets_from_fit: {int((~ok).sum())} objects without a successful fit left out", file=sys.stderr)
    if sel is not None:
        sel = np.asarray(sel)
        if sel.shape != ok.shape:
            raise ValueError(f"sel: expected shape {ok.shape}, got {sel.shape}")
        ok = ok & sel.astype(bool)
    return photometric_offsets(phot, err, mask, models, np.where(ok[:, None], idxs, 0), reds, dreds, dists, sel=ok,
                               weights=weights, mask_fit=mask_fit, old_offsets=old_offsets, dim_prior=dim_prior,
                               prior_mean=prior_mean, prior_std=prior_std, verbose=verbose, config=config, rng=rng)
