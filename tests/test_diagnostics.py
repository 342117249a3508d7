"""MCMC diagnostics (brutus_jax.analysis.diagnostics) against analytic cases and blackjax."""

import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis import diagnostics as D


def _ar1(rng, phi, shape):
    e = rng.normal(size=shape)
    x = np.zeros(shape)
    x[:, 0] = e[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_iid_chains_are_converged():
    x = np.random.default_rng(0).normal(size=(4, 2000))
    assert abs(D.split_rhat(x) - 1.0) < 0.005
    assert 6000 < D.ess_bulk(x) < 10000  # ~ the number of draws (8000)
    assert 5000 < D.ess_tail(x) < 11000


def test_ar1_ess_matches_theory():
    """ESS of an AR(1) chain is N (1 - phi) / (1 + phi)."""
    phi, shape = 0.9, (4, 5000)
    x = _ar1(np.random.default_rng(1), phi, shape)
    expect = shape[0] * shape[1] * (1 - phi) / (1 + phi)
    assert abs(D.ess_bulk(x) / expect - 1) < 0.15


def test_ess_equals_blackjax_on_raw_draws():
    """Our autocorrelation/Geyer estimator equals blackjax's (independent code)."""
    import blackjax.diagnostics as bd

    x = _ar1(np.random.default_rng(2), 0.7, (4, 3000))
    ours = D._ess_raw(x)
    theirs = float(bd.effective_sample_size(jnp.asarray(x), chain_axis=0, sample_axis=1))
    assert abs(ours / theirs - 1) < 1e-3


@pytest.mark.parametrize("shift, scale", [(1.0, 1.0), (0.0, 3.0)])
def test_unmixed_chains_are_flagged(shift, scale):
    """A shifted chain (location) or a wider chain (folded R-hat) gives R-hat >> 1.01."""
    x = np.random.default_rng(3).normal(size=(4, 1000))
    x[0] = x[0] * scale + shift
    assert D.split_rhat(x) > 1.05


def test_within_chain_drift_is_flagged():
    """Split R-hat sees a trend inside every chain (halves disagree)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 1000)) + np.linspace(0, 2, 1000)
    assert D.split_rhat(x) > 1.1


def test_summary_and_bad_shapes():
    x = np.random.default_rng(5).normal(size=(2, 400))
    s = D.summarize({"a": x})["a"]
    assert abs(s["q50"] - np.median(x)) < 1e-12 and abs(s["sd"] - x.std(ddof=1)) < 1e-12
    with pytest.raises(ValueError, match="samples"):
        D.split_rhat(np.zeros(10))
    assert np.isnan(D.split_rhat(np.ones((2, 10))))
