"""brutus_jax: a JAX rewrite of brutus (astro-brutus 1.2.0).

Brute-force Bayesian inference of distances, dust extinction (A_V, R_V) and
stellar properties from multi-band photometry and parallaxes, on grids of
real stellar models (MIST isochrones + MIST/C3K bolometric corrections).

Public modules mirror brutus: ``brutus_jax.analysis``, ``.core``, ``.data``,
``.utils``, ``.priors``, ``.dust``.  Pure JAX kernels live in
``brutus_jax.kernels`` (one module per concept).
"""

__version__ = "0.1.0"

from .utils import magnitude, inv_magnitude  # noqa: E402,F401
from .data import load_models  # noqa: E402,F401
from .core import StarGrid  # noqa: E402,F401

__all__ = ["magnitude", "inv_magnitude", "load_models", "StarGrid", "__version__"]
