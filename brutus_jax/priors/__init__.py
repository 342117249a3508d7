"""Priors (brutus.priors). The prior kernels land with the BruteForce issue (#3)."""

__all__: list = []
