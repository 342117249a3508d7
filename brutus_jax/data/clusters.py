"""Real star-cluster members (Gaia DR3 + 2MASS) from the gyrointerp package data.

``load_cluster_members('pleiades')`` returns photometry in maggies with errors,
parallaxes [mas] and Galactic coordinates [deg], ready for ``BruteForce.fit``
on a grid with the bands ``Gaia_G_EDR3, Gaia_BP_EDR3, Gaia_RP_EDR3, 2MASS_Ks``.

* Gaia DR3 magnitudes: ``G``, ``BP = G + bp_g``, ``RP = G - g_rp``; errors
  ``1.0857 / flux_over_error`` with a calibration floor (default 0.01 mag)
  added in quadrature.
* 2MASS Ks: ``Ksmag``; the files carry no Ks errors, so ``ks_err`` (default
  0.03 mag, typical of 2MASS at these magnitudes) is assumed.
* Quality cuts: RUWE < ``max_ruwe``, parallax_over_error > ``min_parallax_snr``.

The data are read from the pinned gyrointerp 0.7 source distribution (see
``brutus_jax.data.sources``); nothing is committed to this repository.
"""

from __future__ import annotations

import csv

import numpy as np

from .sources import source_file

__all__ = ["CLUSTER_FILES", "CLUSTER_BANDS", "load_cluster_members"]

CLUSTER_FILES = {
    "pleiades": "pleiades/pleiades.csv",
    "praesepe": "praesepe_rampalli2021/praesepe.csv",
}
CLUSTER_BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks")


def _float(row, key):
    try:
        v = float(row.get(key, "") or "nan")
    except ValueError:
        return np.nan
    return v


def load_cluster_members(name="pleiades", max_ruwe=1.4, min_parallax_snr=10.0, mag_floor=0.01, ks_err=0.03,
                         verbose=True):
    """Members of a cluster as fit inputs (see module docstring).

    Returns
    -------
    dict with ``flux``, ``flux_err`` (N, 4) [maggies], ``mask`` (N, 4) bool,
    ``parallax``, ``parallax_err`` (N,) [mas], ``coords`` (N, 2) Galactic
    (l, b) [deg], ``source_id`` (N,) int64, ``mag`` (N, 4), ``filters``.
    """
    key = name.lower()
    if key not in CLUSTER_FILES:
        raise ValueError(f"name: unknown cluster {name!r}; available: {sorted(CLUSTER_FILES)}")
    path = source_file("gyrointerp_clusters", verbose=verbose) / CLUSTER_FILES[key]
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    g = np.array([_float(r, "phot_g_mean_mag") for r in rows])
    bp = g + np.array([_float(r, "bp_g") for r in rows])
    rp = g - np.array([_float(r, "g_rp") for r in rows])
    ks = np.array([_float(r, "Ksmag") for r in rows])
    foe = {b: np.array([_float(r, f"phot_{b}_mean_flux_over_error") for r in rows]) for b in ("g", "bp", "rp")}
    mag = np.stack([g, bp, rp, ks], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        emag = np.stack([1.0857 / foe["g"], 1.0857 / foe["bp"], 1.0857 / foe["rp"], np.full(len(rows), ks_err)], 1)
    emag = np.sqrt(emag**2 + np.array([mag_floor, mag_floor, mag_floor, 0.0]) ** 2)
    plx = np.array([_float(r, "parallax") for r in rows])
    plxe = np.array([_float(r, "parallax_error") for r in rows])
    ruwe = np.array([_float(r, "ruwe") for r in rows])
    keep = (ruwe < max_ruwe) & (plx / plxe > min_parallax_snr) & np.isfinite(g)
    mask = np.isfinite(mag) & np.isfinite(emag) & (emag > 0) & (mag > 0)
    mag, emag, mask = mag[keep], emag[keep], mask[keep]
    flux = np.where(mask, 10 ** (-0.4 * np.where(mask, mag, 0.0)), 1.0)
    flux_err = np.where(mask, emag * flux / 1.0857, 1.0)
    sid = np.array([int(float(r.get("dr3_source_id") or 0)) for r in rows], dtype=np.int64)[keep]
    coords = np.stack([[_float(r, "l") for r in rows], [_float(r, "b") for r in rows]], axis=1)[keep]
    return dict(flux=flux, flux_err=flux_err, mask=mask, parallax=plx[keep], parallax_err=plxe[keep],
                coords=coords, source_id=sid, mag=mag, filters=CLUSTER_BANDS)
