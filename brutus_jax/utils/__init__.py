"""Photometry utilities (brutus.utils): magnitudes, luptitudes, likelihoods.

All functions are pure ``jax.numpy`` functions (jit/vmap/grad friendly).
Fluxes are in "maggies" (10**(-0.4 mag)) unless a zeropoint says otherwise.
"""

from ..kernels.photometry import (  # noqa: F401
    magnitude,
    inv_magnitude,
    luptitude,
    inv_luptitude,
    add_mag,
    phot_loglike,
)

__all__ = ["magnitude", "inv_magnitude", "luptitude", "inv_luptitude", "add_mag", "phot_loglike"]
