"""Stellar model containers (brutus.core).

``StarGrid`` holds a brute-force model grid (from ``brutus_jax.data.load_models``)
and interpolates SEDs and stellar parameters over it.  ``get_seds`` is the
forward model ``m = m0 + A_V (a + b R_V)``.
"""

from .stargrid import StarGrid  # noqa: F401
from ..kernels.seds import get_seds  # noqa: F401
from .isochrone import Isochrone  # noqa: F401
from .stellarpop import StellarPop  # noqa: F401

__all__ = ["StarGrid", "get_seds", "Isochrone", "StellarPop"]
