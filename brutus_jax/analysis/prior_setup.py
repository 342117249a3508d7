"""The one way brutus_jax assembles the static (per-model) prior and the
Galactic-prior labels of a grid.

brutus 1.2 plumbs grid labels into priors three inconsistent ways
(ALGORITHMS.md §3.11, gotcha 1).  brutus_jax reproduces the paper-era (v0.8)
semantics, always:

* static prior per model = ``lnprior`` (default: Kroupa IMF in ``mini``; PS1
  r-band luminosity function for grids with ``Mr``; else 0)
  ``+ ln|agewt|`` (``apply_agewt``; converts the EEP measure into age)
  ``+ sum over GRID AXES of ln(cell width)`` (``apply_grad``; the grid axes
  are the fields marked True in ``labels_mask``: mini, eep, feh, ... --
  never the predictions loga/logl/logt/logg/agewt);
* the Galactic prior sees ``feh`` and ``loga`` of every model, from whichever
  of the grid labels or predictions holds them.

`StarGrid` keeps all fields (axes and predictions) in one structured array
and the axes in ``labels_mask``, so every calling form of StarGrid ends here
with the same numbers (tests/test_bruteforce.py checks the v0.8 equality).
"""

from __future__ import annotations

import numpy as np

from ..kernels.priors import logp_imf

__all__ = ["grid_lnprior", "galactic_labels"]


def grid_lnprior(labels, labels_mask, lnprior=None, apply_agewt=True, apply_grad=True):
    """Static log-prior per model, (Nmodel,) float64 (see module docstring)."""
    names = labels.dtype.names
    n = labels.shape[0]
    if lnprior is not None:
        out = np.array(lnprior, dtype=np.float64, copy=True)
        if out.shape != (n,):
            raise ValueError(f"lnprior: expected shape ({n},) (one value per model), got {out.shape}")
    elif "mini" in names:
        out = np.asarray(logp_imf(np.asarray(labels["mini"], np.float64)), np.float64)
    elif "Mr" in names:
        from ..priors import logp_ps1_luminosity_function

        out = np.asarray(logp_ps1_luminosity_function(np.asarray(labels["Mr"], np.float64)), np.float64)
    else:
        out = np.zeros(n)
    if apply_agewt and "agewt" in names:
        with np.errstate(divide="ignore"):
            out = out + np.log(np.abs(np.asarray(labels["agewt"], np.float64)))
    if apply_grad:
        mask_names = labels_mask.dtype.names or ()
        for name in mask_names:
            if not bool(np.asarray(labels_mask[name]).ravel()[0]) or name not in names:
                continue
            vals = np.asarray(labels[name], np.float64)
            u = np.unique(vals)
            if u.size > 1:
                out = out + np.interp(vals, u, np.log(np.gradient(u)))
    return out


def galactic_labels(labels):
    """(feh, loga) arrays of the grid for the Galactic prior (None where absent)."""
    names = labels.dtype.names
    feh = np.asarray(labels["feh"], np.float64) if "feh" in names else None
    loga = np.asarray(labels["loga"], np.float64) if "loga" in names else None
    return feh, loga
