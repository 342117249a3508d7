"""Statistical inference (brutus.analysis).

``BruteForce`` fits individual stars (see ``bruteforce``).  The population
likelihood (issue #4) is not implemented yet; importing it works, calling it
raises NotImplementedError.
"""

from ..core._pending import isochrone_population_loglike  # noqa: F401
from .bruteforce import BruteForce  # noqa: F401

__all__ = ["BruteForce", "isochrone_population_loglike"]
