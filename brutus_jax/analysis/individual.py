"""brutus.analysis.individual (BruteForce)."""

from .bruteforce import BruteForce  # noqa: F401
