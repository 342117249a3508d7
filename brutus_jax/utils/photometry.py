"""brutus.utils.photometry: the photometry kernels (see ``brutus_jax.kernels.photometry``)."""

from ..kernels.photometry import add_mag, inv_luptitude, inv_magnitude, luptitude, magnitude, phot_loglike  # noqa: F401
