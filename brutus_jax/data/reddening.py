"""Reddening coefficients (m0, a, b) of a brutus grid from real tables.

brutus writes each model's reddened magnitude as ``m(A_V, R_V) = m0 + A_V (a + b R_V)``.
We take

* the **A_V dependence** from the MIST/C3K BC table's own A_V axis (computed
  through the star's own C3K spectrum, at R_V = 3.1): with brutus's lattice
  ``A_V in {0, 0.3, 0.6, 0.9, 1.2, 1.5}`` and polyfit weights ``1/(1e-5 + A_V)``
  a weighted straight line gives the slope ``k31 = dm/dA_V`` at R_V = 3.1, and
  ``m0`` is the unreddened magnitude;
* the **R_V dependence** from the Gordon et al. (2023, ApJ 950, 86; "G23")
  R_V-dependent average extinction law (package ``dust-extinction``), averaged
  over each band: the band-averaged law ``<k_RV>_S = int S k_RV dlam / int S dlam``
  with photon weights ``S = F_lam T lam``, where ``T`` is the filter curve
  (``speclite``) and ``F_lam`` the star's own spectral energy distribution,
  rebuilt from its C3K magnitudes in SDSS u, PS1 grizy, 2MASS JHKs and WISE
  W1-W4 (piecewise power law between band centres).  With brutus's R_V lattice
  ``{2.4, 2.7, ..., 4.2}`` and weights ``exp(-|R_V - 3.3|/0.5)`` a weighted line
  gives the relative slope ``s = d<k_RV>/dR_V / <k_3.1>``; then ``b = s k31`` and
  ``a = k31 - 3.1 b``, so that the R_V = 3.1 reddening is exactly the BC
  table's.  ``s`` is tabulated on the BC table's (Teff, logg, [Fe/H]) nodes and
  interpolated per model.  Bands without a filter curve (Tycho, Hipparcos,
  Kepler, TESS, PS_open) use G23 at the *extinction-equivalent wavelength*
  where G23(R_V = 3.1) equals ``k31`` (``rv_coefficients``).

Validated against dustapprox's Kurucz+G23 polynomials (tests/test_reddening_mist.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["AV_LATTICE", "AV_WEIGHTS", "RV_LATTICE", "RV_WEIGHTS", "weighted_line",
           "av_slope", "g23_rv_slope_table", "rv_coefficients", "SPECLITE_NAMES",
           "band_relative_rv_slopes"]

#: our band name -> speclite filter name
SPECLITE_NAMES = {
    "Gaia_G_EDR3": "gaiadr3-G", "Gaia_BP_EDR3": "gaiadr3-BP", "Gaia_RP_EDR3": "gaiadr3-RP",
    "Gaia_G_MAW": "gaiadr2-G", "Gaia_BP_MAWf": "gaiadr2-BP", "Gaia_BP_MAWb": "gaiadr2-BP",
    "Gaia_RP_MAW": "gaiadr2-RP",
    "SDSS_u": "sdss2010-u", "SDSS_g": "sdss2010-g", "SDSS_r": "sdss2010-r",
    "SDSS_i": "sdss2010-i", "SDSS_z": "sdss2010-z",
    "PS_g": "panstarrs-g", "PS_r": "panstarrs-r", "PS_i": "panstarrs-i",
    "PS_z": "panstarrs-z", "PS_y": "panstarrs-y", "PS_w": "panstarrs-w",
    "Bessell_U": "bessell-U", "Bessell_B": "bessell-B", "Bessell_V": "bessell-V",
    "Bessell_R": "bessell-R", "Bessell_I": "bessell-I",
    "2MASS_J": "twomass-J", "2MASS_H": "twomass-H", "2MASS_Ks": "twomass-Ks",
    "WISE_W1": "wise2010-W1", "WISE_W2": "wise2010-W2", "WISE_W3": "wise2010-W3",
    "WISE_W4": "wise2010-W4",
}

# bands that sample the stellar SED: (name, effective wavelength [micron], AB - native mag)
# Vega->AB offsets: 2MASS from Blanton & Roweis (2007), WISE from Jarrett et al. (2011).
SED_BANDS = (
    ("SDSS_u", 0.3551, 0.0), ("PS_g", 0.4810, 0.0), ("PS_r", 0.6170, 0.0),
    ("PS_i", 0.7520, 0.0), ("PS_z", 0.8660, 0.0), ("PS_y", 0.9620, 0.0),
    ("2MASS_J", 1.235, 0.91), ("2MASS_H", 1.662, 1.39), ("2MASS_Ks", 2.159, 1.85),
    ("WISE_W1", 3.353, 2.699), ("WISE_W2", 4.603, 3.339), ("WISE_W3", 11.56, 5.174),
    ("WISE_W4", 22.09, 6.620),
)

AV_LATTICE = np.array([0.0, 0.3, 0.6, 0.9, 1.2, 1.5 - 1e-5])
AV_WEIGHTS = 1.0 / (1e-5 + AV_LATTICE)
RV_LATTICE = np.arange(2.4, 4.2 + 1e-9, 0.3)
RV_WEIGHTS = np.exp(-np.abs(RV_LATTICE - 3.3) / 0.5)
RV_REF = 3.1


def weighted_line(x, y, w):
    """Weighted straight-line fit along the last axis (numpy.polyfit convention:
    the weights multiply the residuals).  Returns (slope, intercept)."""
    W = np.asarray(w, float) ** 2
    x = np.asarray(x, float)
    sw = W.sum()
    xm = (W * x).sum() / sw
    ym = (W * y).sum(axis=-1) / sw
    sxx = (W * (x - xm) ** 2).sum()
    sxy = (W * (x - xm) * (y - ym[..., None])).sum(axis=-1)
    slope = sxy / sxx
    return slope, ym - slope * xm


def av_slope(mags_on_lattice):
    """dm/dA_V from magnitudes on AV_LATTICE (last axis)."""
    slope, _ = weighted_line(AV_LATTICE, mags_on_lattice, AV_WEIGHTS)
    return slope


def g23_rv_slope_table(lam_min=0.25, lam_max=6.0, n=2000):
    """Tabulate G23 on a wavelength grid.

    Returns (k31, beta, lam) with k31 = A(lam)/A(V) at R_V = 3.1 (decreasing in
    lam) and beta = d[A(lam)/A(V)]/dR_V from the weighted line over RV_LATTICE.
    """
    import astropy.units as u
    from dust_extinction.parameter_averages import G23

    lam = np.geomspace(lam_min, lam_max, n)
    curves = np.stack([np.asarray(G23(Rv=float(r))(lam * u.micron)) for r in RV_LATTICE])  # (n_rv, n)
    beta, _ = weighted_line(RV_LATTICE, curves.T, RV_WEIGHTS)
    k31 = np.asarray(G23(Rv=RV_REF)(lam * u.micron))
    if np.any(np.diff(k31) >= 0):
        raise RuntimeError("G23(R_V=3.1) is not monotonic over the tabulated range")
    return k31, beta, lam


def rv_coefficients(k31, table=None):
    """(a, b) such that a + b R_V reproduces k31 at R_V = 3.1 with the G23 R_V slope.

    k31 : array of dm/dA_V at R_V = 3.1 (any shape).
    Returns a, b (same shape) and the extinction-equivalent wavelength [micron].
    """
    if table is None:
        table = g23_rv_slope_table()
    kt, beta, lam = table
    k = np.asarray(k31, float)
    # kt decreasing in lam -> reverse for np.interp; clamp to the tabulated range
    kc = np.clip(k, kt[-1], kt[0])
    lam_eq = np.interp(kc, kt[::-1], lam[::-1])
    b = np.interp(lam_eq, lam, beta)
    a = k - RV_REF * b
    return a, b, lam_eq


def _g23_curves(lam_um):
    """A(lam)/A(V) of G23 for every R_V of RV_LATTICE: (n_rv, n_lam)."""
    import astropy.units as u
    from dust_extinction.parameter_averages import G23

    lam = np.clip(lam_um, 0.0912, 32.0)
    return np.stack([np.asarray(G23(Rv=float(r))(lam * u.micron)) for r in RV_LATTICE])


def band_relative_rv_slopes(bands, sed_mags):
    """Relative R_V slope ``s = d ln A_band / dR_V`` of band-averaged G23.

    Parameters
    ----------
    bands : band names (each must be in SPECLITE_NAMES).
    sed_mags : (..., len(SED_BANDS)) absolute magnitudes in the SED_BANDS
        (native systems, as from the BC table) describing each star's SED.

    Returns
    -------
    (..., n_band) relative slopes.
    """
    import astropy.units as u
    import speclite.filters as sf
    from dust_extinction.parameter_averages import G23

    sed_mags = np.asarray(sed_mags, float)
    lam_nodes = np.log(np.array([b[1] for b in SED_BANDS]))
    ab = sed_mags + np.array([b[2] for b in SED_BANDS])
    # log F_lam at the nodes (up to a constant): F_nu ~ 10^(-0.4 m_AB), F_lam ~ F_nu / lam^2
    logf_nodes = -0.4 * np.log(10.0) * ab - 2.0 * lam_nodes
    flat = logf_nodes.reshape(-1, lam_nodes.size)
    out = np.empty((flat.shape[0], len(bands)))
    for j, band in enumerate(bands):
        filt = sf.load_filter(SPECLITE_NAMES[band])
        lam = np.asarray(filt.wavelength, float) / 1e4  # micron
        lam = np.linspace(lam.min(), lam.max(), 400)
        resp = np.interp(lam, np.asarray(filt.wavelength, float) / 1e4, np.asarray(filt.response, float))
        curves = _g23_curves(lam)  # (n_rv, n_lam)
        x = np.log(lam)
        # piecewise-linear log F_lam in log lam, flat beyond the end nodes
        idx = np.clip(np.searchsorted(lam_nodes, x) - 1, 0, lam_nodes.size - 2)
        t = np.clip((x - lam_nodes[idx]) / (lam_nodes[idx + 1] - lam_nodes[idx]), 0.0, 1.0)
        logf = flat[:, idx] * (1 - t) + flat[:, idx + 1] * t  # (n_star, n_lam)
        logf -= logf.max(axis=1, keepdims=True)
        S = np.exp(logf) * resp * lam  # photon weights
        dl = np.gradient(lam)
        kavg = (S * dl) @ curves.T / (S @ dl)[:, None]  # (n_star, n_rv)
        slope, _ = weighted_line(RV_LATTICE, kavg, RV_WEIGHTS)
        g31 = np.asarray(G23(Rv=RV_REF)(np.clip(lam, 0.0912, 32.0) * u.micron))
        k31 = (S * dl) @ g31 / (S @ dl)  # <k> at R_V = 3.1 exactly
        out[:, j] = slope / k31
    return out.reshape(sed_mags.shape[:-1] + (len(bands),))
