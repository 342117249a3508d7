"""Photometric bands that brutus_jax grids can carry.

Names follow brutus's filter list where brutus has the band (``PS_g``,
``2MASS_Ks``, ``WISE_W1``, ``Gaia_G_MAW`` ...).  Gaia (E)DR3 passbands, which
brutus lacks, are named as in the MIST bolometric-correction tables:
``Gaia_G_EDR3``, ``Gaia_BP_EDR3``, ``Gaia_RP_EDR3`` (use these for Gaia DR3
photometry).  Magnitude systems: Gaia, 2MASS, WISE, Bessell, Tycho, Hipparcos,
Kepler, TESS are Vega; PS1 and SDSS are AB.
"""

# band name -> group in the MIST/C3K bolometric-correction file (bc_tables.h5)
FILTER_GROUPS = {
    "Gaia_G_EDR3": "UBVRIplus",
    "Gaia_BP_EDR3": "UBVRIplus",
    "Gaia_RP_EDR3": "UBVRIplus",
    "Gaia_G_MAW": "UBVRIplus",
    "Gaia_BP_MAWf": "UBVRIplus",
    "Gaia_BP_MAWb": "UBVRIplus",
    "Gaia_RP_MAW": "UBVRIplus",
    "SDSS_u": "SDSSugriz",
    "SDSS_g": "SDSSugriz",
    "SDSS_r": "SDSSugriz",
    "SDSS_i": "SDSSugriz",
    "SDSS_z": "SDSSugriz",
    "PS_g": "PanSTARRS",
    "PS_r": "PanSTARRS",
    "PS_i": "PanSTARRS",
    "PS_z": "PanSTARRS",
    "PS_y": "PanSTARRS",
    "PS_w": "PanSTARRS",
    "PS_open": "PanSTARRS",
    "Bessell_U": "UBVRIplus",
    "Bessell_B": "UBVRIplus",
    "Bessell_V": "UBVRIplus",
    "Bessell_R": "UBVRIplus",
    "Bessell_I": "UBVRIplus",
    "2MASS_J": "UBVRIplus",
    "2MASS_H": "UBVRIplus",
    "2MASS_Ks": "UBVRIplus",
    "WISE_W1": "WISE",
    "WISE_W2": "WISE",
    "WISE_W3": "WISE",
    "WISE_W4": "WISE",
    "Tycho_B": "UBVRIplus",
    "Tycho_V": "UBVRIplus",
    "Hipparcos_Hp": "UBVRIplus",
    "Kepler_D51": "UBVRIplus",
    "Kepler_Kp": "UBVRIplus",
    "TESS": "UBVRIplus",
}

#: every band a grid can be built with
FILTERS = tuple(FILTER_GROUPS)

#: bands of the default grid: Gaia EDR3 and DR2 (MAW), Pan-STARRS grizy, 2MASS, WISE W1/W2
DEFAULT_FILTERS = (
    "Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3",
    "Gaia_G_MAW", "Gaia_BP_MAWf", "Gaia_RP_MAW",
    "PS_g", "PS_r", "PS_i", "PS_z", "PS_y",
    "2MASS_J", "2MASS_H", "2MASS_Ks",
    "WISE_W1", "WISE_W2",
)


def check_filters(filters, available=FILTERS, argname="filters"):
    """Return ``filters`` as a tuple, raising ValueError for unknown names."""
    if isinstance(filters, str):
        filters = (filters,)
    filters = tuple(filters)
    unknown = [f for f in filters if f not in available]
    if unknown:
        raise ValueError(
            f"{argname}: unknown filter name(s) {unknown}; available: {', '.join(available)}"
        )
    if len(set(filters)) != len(filters):
        raise ValueError(f"{argname}: duplicate filter names in {filters}")
    return filters
