"""Result containers of the line-of-sight dust fits (`los_fit`)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

__all__ = ["LOSFitResult", "NCloudsComparison"]


@dataclasses.dataclass
class LOSFitResult:
    """Posterior (and evidence) of an n-cloud LOS fit.

    Arrays carry a leading sightline axis ``B`` only when the input was a batch.

    Attributes
    ----------
    nclouds : int
    param_names : tuple of str
        ``pb, s0, s, fred, dist_1, red_1, ...`` (`los_param_names`).
    samples : dict name -> array (B, replicas, particles)
        Posterior draws: ``pb`` and ``s0, s`` (fractions of the reddening
        range), ``fred`` and ``red_i`` [rlims units, A_V mag; template
        rescalings with a template], ``dist_i`` [dlims units, distance modulus].
        Also available as attributes (``result.dist_1``).
    theta : array (B, replicas, particles, 4 + 2n)
        The same draws as brutus theta vectors.
    loglike : array (B, replicas, particles)
        `los_clouds_loglike_samples` at each draw (stars dropped or masked
        excluded).
    logz, logz_monotone, logz_err : array (B,)
        Evidence under brutus's prior transform (what dynesty would report
        with `los_clouds_priortransform` and the likelihood), under the prior
        renormalised to the monotone region (compare models with this one),
        and the Monte-Carlo error of both (sd across SMC replicas / sqrt(R);
        NaN with one replica).
    diagnostics : dict
        ``rhat``, ``ess_bulk``, ``ess_tail``: dicts name -> (B,);
        ``acceptance``, ``stages``, ``beta``, ``logz_replicas`` (B, replicas);
        ``n_stars`` (B,) stars used; ``timing`` [s].
    converged : array (B,) of bool
        Every replica reached beta = 1 and R-hat < ``rhat_threshold`` for every
        parameter.
    """

    nclouds: int
    param_names: tuple
    samples: dict
    theta: np.ndarray
    loglike: np.ndarray
    logz: np.ndarray
    logz_monotone: np.ndarray
    logz_err: np.ndarray
    diagnostics: dict
    converged: np.ndarray

    def __getattr__(self, name):
        samples = self.__dict__.get("samples", {})
        if name in samples:
            return samples[name]
        raise AttributeError(name)

    def quantiles(self, name, q):
        """Posterior quantiles ``q`` (sequence) of parameter ``name``: array (len(q), B) or (len(q),)."""
        x = np.asarray(self.samples[name])
        return np.quantile(x.reshape(x.shape[:-2] + (-1,)), q, axis=-1)

    def interval(self, name, prob=0.95):
        """Central credible interval ``(lo, hi)`` of ``name`` with probability ``prob``."""
        lo, hi = self.quantiles(name, [0.5 - prob / 2, 0.5 + prob / 2])
        return lo, hi


class NCloudsComparison(NamedTuple):
    """Evidence comparison across numbers of clouds.

    nclouds : tuple of int
    logz : array (K, B) or (K,)
        ``logz_monotone`` of each model (brutus's recipe: evidence with the
        monotone-renormalised prior).
    logz_err : array like ``logz``
    best : array (B,) or int
        the fewest clouds whose ``logz`` is within ``min_gain`` of the largest
        (`compare_nclouds`).
    log_bayes : array like ``logz``
        ``logz`` minus the largest ``logz`` (<= 0).
    results : tuple of LOSFitResult
    """

    nclouds: tuple
    logz: np.ndarray
    logz_err: np.ndarray
    best: Any
    log_bayes: np.ndarray
    results: tuple
