"""Toy line-of-sight data: per-star (distance modulus, A_V) posterior samples around one cloud.

Used by the tests and benchmarks of `brutus_jax.analysis.los_fit`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_los_samples"]


def simulate_los_samples(rng, nstars=60, nsamps=25, dist_cloud=9.0, red_cloud=1.5, fred=0.2, dist_range=(5.5, 13.5),
                         sigma_dist=0.3, sigma_red=0.1, sigma_int=0.2):
    """Toy per-star posterior samples in front of / behind one cloud (for tests and benchmarks).

    True distance moduli are uniform on ``dist_range``; the true A_V is drawn from a normal
    with mean ``fred`` in front of ``dist_cloud`` and ``red_cloud`` behind it and standard
    deviation ``sigma_int`` [mag], truncated to A_V >= 0 (the model's kernel, renormalised to
    ``rlims = (0, 6)``; the fitted width ``s`` should come out near ``sigma_int / 6``).  Each
    star is "observed" with errors ``sigma_dist`` [mag of distance modulus] and ``sigma_red``
    [mag A_V]; its posterior samples are normal around the observed values with those widths,
    A_V truncated to >= 0 (a flat prior on A_V >= 0, as in BruteForce).

    Parameters
    ----------
    rng : int or numpy Generator

    Returns
    -------
    dsamps, rsamps : arrays (nstars, nsamps)
    truth : dict with the true ``dist`` and ``av`` of every star
    """
    from scipy.special import ndtr, ndtri

    rng = np.random.default_rng(rng)

    def trunc_normal(mu, sd, size):  # N(mu, sd) truncated to >= 0, by the inverse CDF
        lo = ndtr(-mu / sd)
        return mu + sd * ndtri(lo + (1.0 - lo) * rng.uniform(size=size))

    d = rng.uniform(*dist_range, nstars)
    av = trunc_normal(np.where(d < dist_cloud, fred, red_cloud), sigma_int, nstars)
    d_obs = d + sigma_dist * rng.normal(size=nstars)
    av_obs = av + sigma_red * rng.normal(size=nstars)
    dsamps = d_obs[:, None] + sigma_dist * rng.normal(size=(nstars, nsamps))
    rsamps = trunc_normal(av_obs[:, None], sigma_red, (nstars, nsamps))
    return dsamps, rsamps, {"dist": d, "av": av}
