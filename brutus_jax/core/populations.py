"""brutus.core.populations: ``Isochrone`` and ``StellarPop`` (see ``isochrone``, ``stellarpop``)."""

from .isochrone import Isochrone  # noqa: F401
from .stellarpop import StellarPop  # noqa: F401

__all__ = ["Isochrone", "StellarPop"]
