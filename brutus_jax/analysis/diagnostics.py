"""MCMC convergence diagnostics (numpy, float64): split R-hat, bulk and tail ESS.

Rank-normalised split R-hat and effective sample sizes of Vehtari, Gelman,
Simpson, Carpenter & Buerkner (2021, Bayesian Analysis 16, 667), the
definitions Stan and ArviZ use:

* chains are split in halves; draws are replaced by normal scores of their
  pooled ranks (``Phi^-1((r - 3/8) / (S + 1/4))``); R-hat is the larger of the
  split R-hat of the normal scores and of the folded draws ``|x - median|``;
* bulk ESS is the ESS of the rank-normalised split chains; tail ESS is the
  smaller ESS of the indicators ``x <= q05`` and ``x <= q95``;
* ESS uses the multi-chain autocorrelation with Geyer's initial monotone
  sequence of pair sums.

Every function takes ``samples`` of shape (chains, draws).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["split_rhat", "ess_bulk", "ess_tail", "summarize"]


def _split(x):
    x = np.asarray(x, float)
    if x.ndim != 2:
        raise ValueError(f"samples: expected shape (chains, draws), got {x.shape}")
    n = x.shape[1] // 2
    if n < 2:
        raise ValueError(f"samples: need at least 4 draws per chain, got {x.shape[1]}")
    return np.concatenate([x[:, :n], x[:, x.shape[1] - n:]], axis=0)


def _z_scale(x):
    r = rankdata(x, method="average").reshape(x.shape)
    return ndtri((r - 0.375) / (x.size + 0.25))


def _rhat_raw(x):
    m, n = x.shape
    means = x.mean(axis=1)
    w = x.var(axis=1, ddof=1).mean()
    b = n * means.var(ddof=1)
    if not np.isfinite(w) or w <= 0:
        return np.nan if b > 0 else 1.0
    return float(np.sqrt(((n - 1) / n * w + b / n) / w))


def split_rhat(samples):
    """Rank-normalised split R-hat (max of bulk and folded); NaN if undefined."""
    x = _split(samples)
    if np.ptp(x) == 0:
        return np.nan
    bulk = _rhat_raw(_z_scale(x))
    folded = _rhat_raw(_z_scale(np.abs(x - np.median(x))))
    return float(max(bulk, folded))


def _autocov(x):
    n = x.shape[-1]
    f = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), n=2 * n)
    return np.fft.irfft(f * np.conj(f), n=2 * n)[..., :n] / n


def _ess_raw(x):
    """ESS of (chains, draws) samples (Geyer's initial monotone sequence)."""
    m, n = x.shape
    if np.ptp(x) == 0:
        return np.nan
    acov = _autocov(x)
    chain_var = acov[:, 0] * n / (n - 1)
    mean_var = chain_var.mean()
    var_plus = mean_var * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # pair sums P_k = rho_{2k} + rho_{2k+1}, positive and monotone
    npairs = n // 2
    p = rho[0:2 * npairs:2] + rho[1:2 * npairs:2]
    k = np.argmax(p <= 0) if np.any(p <= 0) else npairs
    p = np.minimum.accumulate(p[:max(k, 1)])
    tau = -1.0 + 2.0 * p.sum()
    tau = max(tau, 1.0 / np.log10(m * n))
    return float(m * n / tau)


def ess_bulk(samples):
    """Bulk effective sample size (rank-normalised split chains)."""
    return _ess_raw(_z_scale(_split(samples)))


def ess_tail(samples, prob=(0.05, 0.95)):
    """Tail effective sample size: min ESS of the 5 % and 95 % quantile indicators."""
    x = _split(samples)
    out = []
    for p in prob:
        q = np.quantile(x, p)
        out.append(_ess_raw((x <= q).astype(float)))
    return float(np.nanmin(out)) if not np.all(np.isnan(out)) else np.nan


def summarize(samples):
    """Per-parameter summary of a dict of (chains, draws) arrays: mean, sd,
    2.5 / 16 / 50 / 84 / 97.5 % quantiles, R-hat, bulk and tail ESS."""
    rows = {}
    for name, x in samples.items():
        x = np.asarray(x, float)
        q = np.quantile(x, [0.025, 0.16, 0.5, 0.84, 0.975])
        rows[name] = dict(mean=float(x.mean()), sd=float(x.std(ddof=1)), q2_5=q[0], q16=q[1], q50=q[2],
                          q84=q[3], q97_5=q[4], rhat=split_rhat(x), ess_bulk=ess_bulk(x), ess_tail=ess_tail(x))
    return rows
