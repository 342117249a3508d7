"""brutus.analysis.individual (BruteForce; pending: issue #3)."""

from ..core._pending import BruteForce  # noqa: F401
