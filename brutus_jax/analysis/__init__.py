"""Statistical inference (brutus.analysis).

``BruteForce`` (issue #3) and the population likelihood (issue #4) are not
implemented yet; importing them works, using them raises NotImplementedError.
"""

from ..core._pending import isochrone_population_loglike  # noqa: F401
from .bruteforce import BruteForce  # noqa: F401

__all__ = ["BruteForce", "isochrone_population_loglike"]
