"""3x3 closed forms and the MC posterior kernel against numpy / analytic references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.kernels.linalg3 import cholesky3, det3, inv3, inverse3, min_eig_sym3
from brutus_jax.kernels.posterior import integrate_and_draw, laplace_draws, lnd_precision


def _random_spd(rng, n, cond=1e6):
    Q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    ev = np.exp(rng.uniform(0, np.log(cond), size=(n, 3)))
    return np.einsum("nij,nj,nkj->nik", Q, ev, Q)


def test_closed_forms_match_numpy(rng):
    A = _random_spd(rng, 200, cond=1e4) * rng.uniform(0.1, 10, size=(200, 1, 1))
    np.testing.assert_allclose(det3(jnp.asarray(A)), np.linalg.det(A), rtol=1e-9)
    np.testing.assert_allclose(inv3(jnp.asarray(A)), np.linalg.inv(A), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(min_eig_sym3(jnp.asarray(A)), np.linalg.eigvalsh(A)[:, 0], rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(cholesky3(jnp.asarray(A), eps=0.0), np.linalg.cholesky(A), rtol=1e-8, atol=1e-12)
    diag = np.stack([np.diag(d) for d in rng.uniform(1, 5, size=(5, 3))])
    np.testing.assert_allclose(min_eig_sym3(jnp.asarray(diag)), diag.min(axis=(1, 2)) * 0 + np.min(
        np.diagonal(diag, axis1=1, axis2=2), axis=1))


def test_inverse3_matches_brutus(rng, brutus_oracle):
    from brutus.utils.math import inverse3 as b_inverse3

    A = np.concatenate([_random_spd(rng, 100, cond=1e12), _random_spd(rng, 20, cond=10)])
    A[:5, 2, :] = A[:5, 1, :] * 0.999999  # nearly singular
    A[:5, :, 2] = A[:5, :, 1] * 0.999999
    A[5, 0, 0] = np.nan  # non-finite -> diagonal fallback
    ours = np.asarray(inverse3(jnp.asarray(A), regularize=True))
    ref = b_inverse3(A.copy(), regularize=True)
    ok = np.isfinite(ref).all(axis=(1, 2))
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-5, atol=1e-12)  # cond up to 1e12
    assert np.all(np.isfinite(ours[ok]))


def test_laplace_draws_moments():
    key = jax.random.key(0)
    K, nmc = 3, 20000
    scale = jnp.array([1.0, 0.25, 4.0])
    av = jnp.array([0.5, 1.0, 2.0])
    rv = jnp.array([3.3, 3.1, 3.5])
    icov = jnp.stack([jnp.diag(jnp.array([50.0, 100.0, 30.0]))] * K)
    d, a, r = jax.jit(lambda *x: laplace_draws(*x, nmc, avlim=(-10.0, 20.0), rvlim=(-10.0, 20.0)))(
        key, scale, av, rv, icov)
    lnd = np.log(np.asarray(d))
    # antithetic pairs: sample means are exact
    np.testing.assert_allclose(lnd.mean(1), -0.5 * np.log(np.asarray(scale)), atol=1e-10)
    np.testing.assert_allclose(np.asarray(a).mean(1), av, atol=1e-10)
    cov = np.linalg.inv(np.asarray(lnd_precision(icov, scale)))
    for k in range(K):
        emp = np.cov(np.stack([lnd[k], np.asarray(a)[k], np.asarray(r)[k]]))
        sd = np.sqrt(np.diag(cov[k]))
        # sampling error of a covariance element ~ sd_i sd_j / sqrt(n): allow 5 sigma
        np.testing.assert_array_less(np.abs(emp - cov[k]), 5 * np.outer(sd, sd) / np.sqrt(nmc) * np.sqrt(2))


def test_integrate_lognormal_analytic():
    """With only the ln d Jacobian, lnp = base + ln E[d] = base + mu + sigma^2/2 (lognormal)."""
    K, nmc = 4, 40000
    scale = jnp.array([1.0, 0.5, 2.0, 1.0])
    icov = jnp.stack([jnp.diag(jnp.array([s, 1e4, 1e4])) for s in (200.0, 400.0, 100.0, 200.0)])
    base = jnp.array([0.0, -1.0, -2.0, -3.0])
    valid = jnp.array([True, True, True, False])
    run = jax.jit(lambda *a: integrate_and_draw(*a, lambda d, a, r: jnp.zeros_like(d), nmc=nmc, ndraws=500))
    post = run(jax.random.key(1), valid, base, scale, jnp.ones(K), jnp.full(K, 3.3), icov)
    s = np.asarray(scale)
    var_lnd = 1.0 / (4 * s**2 * np.asarray(icov)[:, 0, 0])
    expect = np.asarray(base) - 0.5 * np.log(s) + 0.5 * var_lnd
    np.testing.assert_allclose(np.asarray(post.lnp)[:3], expect[:3], atol=2e-3)
    assert np.asarray(post.lnp)[3] == -np.inf  # padding
    np.testing.assert_allclose(float(post.log_evid), np.logaddexp.reduce(expect[:3]), atol=2e-3)
    assert np.all(np.asarray(post.draw_model) < 3)
    frac = np.bincount(np.asarray(post.draw_model), minlength=4)[:3] / 500
    p = np.exp(expect[:3] - np.logaddexp.reduce(expect[:3]))
    assert np.all(np.abs(frac - p) < 4 * np.sqrt(p * (1 - p) / 500) + 0.01)
    assert np.all(np.asarray(post.mc_ess)[:3] > 0.5 * nmc)


def test_standard_normals_distribution_and_streams():
    """Counter-hash normals: N(0,1) moments and KS, independent streams per key
    and per model offset, and a model's stream independent of its slot."""
    from scipy import stats

    from brutus_jax.kernels.posterior import standard_normals

    z = np.asarray(standard_normals(jax.random.key(7), (400, 3, 250), jnp.float64)).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.std() - 1) < 5 * np.sqrt(0.5 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n) and abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # lag-1 serial correlation and correlation between two keys: consistent with 0
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(n)
    z2 = np.asarray(standard_normals(jax.random.key(8), (400, 3, 250), jnp.float64)).ravel()
    assert abs(np.corrcoef(z, z2)[0, 1]) < 5 / np.sqrt(n)
    # with offsets (model ids) a row's normals depend only on its id
    ids = jnp.array([5, 17, 2])
    a = np.asarray(standard_normals(jax.random.key(1), (3, 3, 10), jnp.float64, ids))
    b = np.asarray(standard_normals(jax.random.key(1), (2, 3, 10), jnp.float64, ids[::-1][:2]))
    np.testing.assert_array_equal(a[2], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], a[1])
    f32 = np.asarray(standard_normals(jax.random.key(1), (3, 3, 10), jnp.float32, ids))
    np.testing.assert_allclose(f32, a, rtol=1e-5, atol=1e-5)
