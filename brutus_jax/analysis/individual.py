"""brutus.analysis.individual (BruteForce; pending: issue #3)."""

from .bruteforce import BruteForce  # noqa: F401
