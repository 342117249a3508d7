"""brutus.core.populations (pending: issue #4)."""

from ._pending import Isochrone, StellarPop  # noqa: F401
