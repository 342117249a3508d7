"""Independence Metropolis-Hastings from a kernel density (brutus_jax.kernels.imh).

References: numerical integration of the proposal density, its analytic
moments, and a two-mode Gaussian mixture with known weights that the chains
must reach from a proposal built with the WRONG weights (IMH is exact for the
target whatever the proposal, as long as the Hastings correction is right).
"""

import jax
import jax.numpy as jnp
import numpy as np

import pytest

from brutus_jax.kernels.imh import imh_refit_run, imh_run, kde_logpdf, kde_proposal, kde_sample
from test_smc import MU1, MU2, SIG, W1, _mixture


def test_kde_density_is_normalised_and_matches_its_draws():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(40, 2)) @ np.array([[1.0, 0.0], [0.6, 0.5]]) + [1.0, -2.0])
    p = kde_proposal(z, defensive=0.2, wide=2.0)
    # the density integrates to 1 (Riemann sum on a fine, wide grid)
    g = np.linspace(-12, 14, 521)
    xx, yy = np.meshgrid(g, g - 3.0, indexing="ij")
    dens = np.exp(np.asarray(kde_logpdf(p, jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1))))).reshape(xx.shape)
    np.testing.assert_allclose(dens.sum() * (g[1] - g[0]) ** 2, 1.0, atol=2e-3)
    # draws follow it: mixture mean and covariance
    x = np.asarray(kde_sample(p, jax.random.key(1), 200_000))
    zn = np.asarray(z)
    cov = np.cov(zn.T)
    emp = np.cov(zn.T, bias=True)
    h = float(p.h)
    want = 0.8 * (emp + h**2 * cov) + 0.2 * 4.0 * cov
    np.testing.assert_allclose(x.mean(axis=0), zn.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), want, rtol=0.03, atol=0.01)


@pytest.mark.parametrize("refit", [False, True], ids=["one-stage", "refit"])
def test_imh_reaches_the_target_weights_from_a_wrong_proposal(refit):
    """Particles 50/50 between the modes (target 80/20): the chains' states after burn-in hold
    80 % in the first mode, with the right moments; acceptance is below 1 (the proposal is off).
    With the refit (`imh_refit_run`) the second stage's proposal comes from the first stage's states."""
    rng = np.random.default_rng(3)
    n = 400
    start = np.where((np.arange(n) % 2 == 0)[:, None], MU1, MU2) + SIG * rng.normal(size=(n, 2))
    z0 = jnp.asarray(start)
    lpb = jax.vmap(_mixture)

    @jax.jit
    def run(k, z):
        if refit:
            return imh_refit_run(k, lpb, z, lpb(z), 300, first_steps=10)
        return imh_run(k, lpb, kde_proposal(z), z, lpb(z), 300)

    zs, lps, acc = run(jax.random.key(4), z0)
    zs, lps = np.asarray(zs), np.asarray(lps)
    assert zs.shape == (n, 300, 2) and lps.shape == (n, 300)
    np.testing.assert_allclose(lps, np.asarray(lpb(jnp.asarray(zs.reshape(-1, 2)))).reshape(n, 300), atol=1e-10)
    kept = zs[:, 100:].reshape(-1, 2)
    in1 = kept[:, 0] < 0
    np.testing.assert_allclose(in1.mean(), W1, atol=0.02)
    for sel, mu in ((in1, MU1), (~in1, MU2)):
        np.testing.assert_allclose(kept[sel].mean(axis=0), mu, atol=0.03)
        np.testing.assert_allclose(kept[sel].std(axis=0), SIG, rtol=0.05)
    assert 0.1 < float(acc) < 0.95


def test_imh_keeps_nan_and_minus_inf_out():
    """A target that is -inf (or NaN) on half the plane: no draw lands there, none is NaN."""
    def lp(z):
        v = -0.5 * jnp.sum(z**2)
        return jnp.where(z[0] < 0, jnp.where(z[1] < 0, jnp.nan, -jnp.inf), v)

    lpb = jax.vmap(lp)
    z0 = jnp.abs(jax.random.normal(jax.random.key(0), (200, 2), jnp.float64))
    zs, lps, acc = jax.jit(lambda k, z: imh_run(k, lpb, kde_proposal(z), z, lpb(z), 50))(jax.random.key(5), z0)
    assert np.all(np.asarray(zs)[..., 0] >= 0) and np.all(np.isfinite(np.asarray(lps))) and 0 < float(acc) < 1
