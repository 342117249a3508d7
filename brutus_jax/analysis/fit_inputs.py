"""Validation and cleaning of ``BruteForce.fit`` inputs (host side).

Bad arguments raise ``ValueError`` naming the argument; bad values per star
(NaN/inf, err <= 0, non-positive flux, magnitudes beyond ``mag_max`` or errors
beyond ``merr_max``) are masked band by band, and a star left with no band is
flagged in the output, never fitted and never allowed to stop the batch.
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

__all__ = ["FitInputs", "prepare_inputs"]


class FitInputs(NamedTuple):
    flux: np.ndarray  # (Ndata, Nfilt), offsets applied
    err: np.ndarray
    mask: np.ndarray  # bool, cleaned
    plx: np.ndarray  # (Ndata,) NaN = none
    plxe: np.ndarray
    coords: np.ndarray  # (Ndata, 2) Galactic l, b [deg] (zeros if absent)
    labels: np.ndarray
    nbands: np.ndarray  # (Ndata,) usable photometric bands
    use_gal: bool
    use_dust: bool
    dust_d: np.ndarray  # (Ndist,) kpc
    dust_mu: np.ndarray  # (Ndata, Ndist)
    dust_sd: np.ndarray
    dust_avlim: tuple


def _pair(x, name):
    try:
        lo, hi = (float(v) for v in x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a (min, max) pair, got {x!r}") from exc
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}: expected finite min < max, got {x!r}")
    return lo, hi


def _coords_array(data_coords, ndata):
    try:
        from astropy.coordinates import SkyCoord
    except ImportError:  # pragma: no cover
        SkyCoord = ()
    if SkyCoord and isinstance(data_coords, SkyCoord):
        gal = data_coords.galactic
        arr = np.stack([np.atleast_1d(gal.l.deg), np.atleast_1d(gal.b.deg)], axis=-1)
    else:
        arr = np.asarray(data_coords, dtype=float)
    if arr.shape != (ndata, 2):
        raise ValueError(f"data_coords: expected Galactic (l, b) in degrees with shape ({ndata}, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("data_coords: contains non-finite values")
    return arr


def prepare_inputs(fitter, data, data_err, data_mask, data_labels, phot_offsets, parallax, parallax_err, avlim,
                   rvlim, data_coords, dustfile, lngalprior, lndustprior, mag_max, merr_max, subsample_mode,
                   Nmc_prior, Ndraws, max_models):
    nfilt = fitter.nfilters
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] != nfilt:
        raise ValueError(f"data: expected shape (Ndata, {nfilt}) fluxes in maggies, got {data.shape}")
    ndata = data.shape[0]
    err = np.asarray(data_err, dtype=float)
    if err.shape != data.shape:
        raise ValueError(f"data_err: expected shape {data.shape}, got {err.shape}")
    mask = np.asarray(data_mask)
    if mask.shape != data.shape:
        raise ValueError(f"data_mask: expected shape {data.shape}, got {mask.shape}")
    labels = np.asarray(data_labels)
    if labels.shape[:1] != (ndata,):
        raise ValueError(f"data_labels: expected {ndata} rows, got shape {labels.shape}")
    _pair(avlim, "avlim")
    _pair(rvlim, "rvlim")
    if int(Nmc_prior) < 1:
        raise ValueError("Nmc_prior: must be >= 1")
    if int(Ndraws) < 1:
        raise ValueError("Ndraws: must be >= 1")
    if int(max_models) < 1:
        raise ValueError("max_models: must be >= 1")
    if subsample_mode not in ("representative", "topk"):
        raise ValueError(f"subsample_mode: expected 'representative' or 'topk', got {subsample_mode!r}")
    if phot_offsets is not None:
        off = np.asarray(phot_offsets, dtype=float)
        if off.shape != (nfilt,) or not np.all(np.isfinite(off) & (off > 0)):
            raise ValueError(f"phot_offsets: expected {nfilt} finite positive multiplicative offsets")
        data, err = data * off, err * off
    # parallaxes
    if parallax is None:
        if parallax_err is not None:
            raise ValueError("parallax: parallax_err given without parallax")
        plx = np.full(ndata, np.nan)
        plxe = np.full(ndata, np.nan)
    else:
        if parallax_err is None:
            raise ValueError("parallax_err: required when parallax is given")
        plx = np.asarray(parallax, dtype=float).reshape(-1)
        plxe = np.asarray(parallax_err, dtype=float).reshape(-1)
        if plx.shape != (ndata,):
            raise ValueError(f"parallax: expected shape ({ndata},), got {np.shape(parallax)}")
        if plxe.shape != (ndata,):
            raise ValueError(f"parallax_err: expected shape ({ndata},), got {np.shape(parallax_err)}")
        bad = ~(np.isfinite(plx) & np.isfinite(plxe) & (plxe > 0))
        plx, plxe = np.where(bad, np.nan, plx), np.where(bad, np.nan, plxe)
    # priors needing coordinates
    if lngalprior is None:
        use_gal = True
    elif lngalprior is False:
        use_gal = False
    else:
        raise ValueError("lngalprior: custom callables are not supported by the compiled kernels; "
                         "use None (default Galactic prior) or False (none)")
    if lndustprior is not None:
        raise ValueError("lndustprior: custom callables are not supported; pass dustfile= for the 3-D dust prior")
    if data_coords is None:
        if use_gal:
            # brutus 1.2's fit() raises here while its logpost_grid silently skips the prior
            # (ALGORITHMS.md gotcha 6); we skip it and say so, so brutus's own example runs.
            warnings.warn("data_coords not given: fitting without the Galactic prior (pass Galactic (l, b) "
                          "in degrees to use it, or lngalprior=False to silence this warning)", UserWarning,
                          stacklevel=3)
            use_gal = False
        if dustfile is not None:
            raise ValueError("data_coords: required when dustfile is given")
        coords = np.zeros((ndata, 2))
    else:
        coords = _coords_array(data_coords, ndata)
    use_dust = dustfile is not None
    dust_d, dust_mu, dust_sd = np.zeros(1), np.zeros((ndata, 1)), np.ones((ndata, 1))
    if use_dust:
        from ..dust import Bayestar

        if isinstance(dustfile, (str, os.PathLike)):
            if not os.path.exists(dustfile):
                raise ValueError(f"dustfile: {dustfile} not found")
            dustfile = Bayestar(dustfile)
        if not hasattr(dustfile, "query"):
            raise ValueError("dustfile: expected a path to a Bayestar-format HDF5 map or a Bayestar object")
        dust_d, dust_mu, dust_sd = (np.asarray(x, float) for x in dustfile.query(coords))
    # per-band cleaning
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = -2.5 * np.log10(data)
        merr = 2.5 / np.log(10.0) * err / data
    clean = (np.isfinite(data) & np.isfinite(err) & (err > 0) & (data > 0)
             & (mags < mag_max) & (merr < merr_max))
    mask = mask.astype(bool) & clean
    data = np.where(mask, data, 1.0)
    err = np.where(mask, err, 1.0)
    return FitInputs(data, err, mask, plx, plxe, coords, labels, mask.sum(axis=1), use_gal, use_dust, dust_d,
                     dust_mu, dust_sd, (0.0, 20.0))
