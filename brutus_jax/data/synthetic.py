"""A small, smooth, MIST-like toy model grid generated in code (no data files).

Used by tests and examples.  The grid spans ``mini x eep x feh`` with
analytic, smooth (but not multilinear) stellar predictions and magnitudes:

* ``loga`` grows with EEP and falls with mass; lattice points older than
  ``loga_max = 10.14`` are invalid and dropped (as brutus's GridGenerator
  does), which truncates the low-mass tracks at high EEP, and a few further
  random lattice points are removed (holes), so the grid is an incomplete
  lattice like the real one;
* ``logl, logt, logg`` follow a crude mass-luminosity relation with EEP
  evolution; ``logg`` is consistent with ``g ~ M / R^2``;
* magnitudes at 1 kpc: ``m0 = 4.74 - 2.5 logl - BC(logt) + 10``;
* reddening ``a > 0`` (a ~ A_band / A_V at R_V = 0 and decreasing with
  wavelength), ``b`` small, both weakly temperature dependent.
"""

from __future__ import annotations

import numpy as np

from .gridio import GridModels

__all__ = ["make_synthetic_grid", "SYNTHETIC_FILTERS"]

SYNTHETIC_FILTERS = ("PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_Ks")

# rough effective wavelengths [micron] of known bands (others are spread evenly)
_WAVELENGTH = {
    "Gaia_G_MAW": 0.62, "Gaia_BP_MAWf": 0.51, "Gaia_RP_MAW": 0.78,
    "Gaia_G_EDR3": 0.62, "Gaia_BP_EDR3": 0.51, "Gaia_RP_EDR3": 0.78,
    "SDSS_u": 0.36, "SDSS_g": 0.47, "SDSS_r": 0.62, "SDSS_i": 0.75, "SDSS_z": 0.89,
    "PS_g": 0.48, "PS_r": 0.62, "PS_i": 0.75, "PS_z": 0.87, "PS_y": 0.96,
    "Bessell_U": 0.36, "Bessell_B": 0.44, "Bessell_V": 0.55, "Bessell_R": 0.64, "Bessell_I": 0.80,
    "2MASS_J": 1.24, "2MASS_H": 1.66, "2MASS_Ks": 2.16,
    "WISE_W1": 3.4, "WISE_W2": 4.6,
}

LOGA_MAX = 10.14


def make_synthetic_grid(
    n_mini=12,
    n_eep=16,
    n_feh=6,
    filters=SYNTHETIC_FILTERS,
    seed=0,
    hole_fraction=0.03,
    dtype=np.float32,
):
    """Generate a toy brutus-style model grid.

    Parameters
    ----------
    n_mini, n_eep, n_feh : int
        Lattice sizes: mini in [0.5, 2.0] Msun (log-spaced), eep in
        [202, 808] (both sides of the MS turn-off at 454), feh in [-2, 0.5].
    filters : sequence of str
        Band names.
    seed : int
        Seed for the random holes and per-band colour terms.
    hole_fraction : float
        Fraction of otherwise-valid lattice points removed at random.
    dtype : numpy float dtype
        dtype of ``models`` (float32 like ``load_models``, or float64).

    Returns
    -------
    models : GridModels (Nmodel, Nfilt, 3), with ``.filters``
    labels : structured float64 (Nmodel,) with ``mini, eep, feh``
    params : structured float64 (Nmodel,) with
        ``loga, logl, logt, logg, feh_surf, afe_surf, agewt``
    filters : tuple of str
    """
    filters = tuple(filters)
    rng = np.random.default_rng(seed)
    mini_ax = np.geomspace(0.5, 2.0, n_mini)
    eep_ax = np.linspace(202.0, 808.0, n_eep)
    feh_ax = np.linspace(-2.0, 0.5, n_feh)
    mini, eep, feh = np.meshgrid(mini_ax, eep_ax, feh_ax, indexing="ij")
    lm = np.log10(mini)
    phase = (eep - 202.0) / 606.0  # 0 .. 1

    loga = 9.0 + 1.1 * phase - 2.5 * lm + 0.05 * feh
    logl = 4.0 * lm + 1.6 * phase**1.5 - 0.2 * feh
    logt = 3.762 + 0.35 * lm - 0.12 * phase**2 - 0.04 * feh
    logg = 4.438 + lm + 4.0 * (logt - 3.7617) - logl
    feh_surf = feh - 0.05 * phase
    afe_surf = np.zeros_like(feh)
    # d(10^loga)/d(eep) of the analytic loga, in yr per EEP
    agewt = 10.0**loga * np.log(10.0) * 1.1 / 606.0

    nf = len(filters)
    lam = np.array([_WAVELENGTH.get(f, 0.4 + 0.25 * i) for i, f in enumerate(filters)])
    colour = rng.uniform(0.5, 1.5, nf)
    # bolometric correction: hotter stars are brighter in the blue
    x = (logt - 3.76)[..., None]
    bc = -0.1 + colour * x * (3.0 / lam) - 0.3 * (1.0 / lam - 1.0) ** 2 + 0.05 * feh[..., None] / lam
    m0 = 4.74 - 2.5 * logl[..., None] - bc + 10.0
    a_red = 0.85 * lam ** (-1.6) * (1.0 + 0.08 * x) + 0.01
    b_red = 0.02 * (lam - 0.7) / lam - 0.002 * x
    coeffs = np.stack([m0, a_red, b_red], axis=-1)  # (n_mini, n_eep, n_feh, nf, 3)

    valid = loga <= LOGA_MAX
    holes = rng.random(valid.shape) < hole_fraction
    valid &= ~holes

    labels = np.empty(int(valid.sum()), dtype=[("mini", "f8"), ("eep", "f8"), ("feh", "f8")])
    labels["mini"], labels["eep"], labels["feh"] = mini[valid], eep[valid], feh[valid]
    pnames = ("loga", "logl", "logt", "logg", "feh_surf", "afe_surf", "agewt")
    params = np.empty(len(labels), dtype=[(n, "f8") for n in pnames])
    for n, v in zip(pnames, (loga, logl, logt, logg, feh_surf, afe_surf, agewt)):
        params[n] = v[valid]
    models = GridModels(coeffs[valid].astype(dtype), filters=filters)
    return models, labels, params, filters
