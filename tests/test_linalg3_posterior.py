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


def test_hash_unit_interval_is_open_in_float32():
    """The extreme hash words map strictly inside (0, 1) in float32 (with 24 bits the top
    word rounded to u = 1: an infinite normal, a certain Gumbel pick) and to finite normals."""
    from brutus_jax.kernels.posterior import _hash_normals
    from brutus_jax.kernels.hashrng import unit_interval

    bits = jnp.array([0, 1, 0xFFFFFEFF, 0xFFFFFFFF], jnp.uint32)
    for dt in (jnp.float32, jnp.float64):
        u = np.asarray(unit_interval(bits, dt))
        assert np.all((u > 0) & (u < 1)), (dt, u)
    # counters 0..2^20 under random seeds: all finite, |z| < 5.3
    z = np.asarray(_hash_normals(jnp.array([12345, 678], jnp.uint32), jnp.arange(1 << 20, dtype=jnp.uint32),
                                 jnp.float32))
    assert np.all(np.isfinite(z)) and np.abs(z).max() < 5.3


def test_gumbel_top_k_samples_without_replacement_in_proportion():
    """'representative' capping keeps one of N models with probability w_i / sum w (K = 1),
    the law of weighted sampling without replacement, over 4000 keys (chi-square)."""
    from scipy import stats

    from brutus_jax.kernels.selection import gather_selected

    w = np.array([0.4, 0.25, 0.2, 0.1, 0.05])
    lnp = jnp.log(jnp.asarray(np.concatenate([w, [1.0, 1.0]])))  # two unselected models
    sel = jnp.asarray([True] * 5 + [False] * 2)
    keys = jax.random.split(jax.random.key(11), 4000)
    idx, _ = jax.vmap(lambda k: gather_selected(k, sel, lnp, 1, "representative", capped=True))(keys)
    counts = np.bincount(np.asarray(idx)[:, 0], minlength=7)
    assert counts[5:].sum() == 0
    assert stats.chisquare(counts[:5], 4000 * w).pvalue > 1e-3, counts


@pytest.mark.parametrize("nmc, block", [(21, None), (50, None), (1, None), (21, 60)])
def test_lean_integration_equals_full_integration_and_draws(rng, nmc, block, monkeypatch):
    """integrate_and_draw_lean (samples regenerated for the drawn models only; pass 1
    over the two antithetic halves separately, in blocks of models) gives
    mc_integrate + draw_posterior's lnp, ESS, draws and drawn samples.  nmc odd:
    antithetic pairs truncated; 1: no negative half; block 60: pass 1 in 5 blocks."""
    from brutus_jax.kernels import posterior
    from brutus_jax.kernels.posterior import draw_posterior, integrate_and_draw_lean, mc_integrate

    if block is not None:
        monkeypatch.setattr(posterior, "_mc_block", lambda K: block)

    K = 300
    scale = jnp.asarray(rng.uniform(0.3, 3.0, K))
    av, rv = jnp.asarray(rng.uniform(0, 2, K)), jnp.asarray(rng.uniform(2.8, 3.8, K))
    A = rng.normal(size=(K, 3, 3))
    icov = jnp.asarray(np.einsum("kij,klj->kil", A, A) + 3 * np.eye(3))
    base = jnp.asarray(rng.normal(0, 2, K))
    valid = jnp.arange(K) < 250
    aux = jnp.asarray(rng.normal(size=K))
    extra4 = lambda d, a, r, w: -0.5 * (1 / d - 1.0) ** 2 + 0.1 * w * (a - 1.0)  # noqa: E731
    k1, k2 = jax.random.split(jax.random.key(3))
    mc = mc_integrate(k1, valid, base, scale, av, rv, icov, lambda d, a, r: extra4(d, a, r, aux[:, None]), nmc=nmc,
                      avlim=(0.0, 20.0), rvlim=(1.0, 8.0))
    log_evid, di, dj = draw_posterior(k2, valid, mc, 400)
    post = integrate_and_draw_lean(k1, k2, valid, base, scale, av, rv, icov, extra4, aux, nmc=nmc, ndraws=400)
    np.testing.assert_allclose(post.lnp, mc.lnp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(post.mc_ess, mc.mc_ess, rtol=1e-12)
    np.testing.assert_allclose(post.log_evid, log_evid, rtol=1e-12)
    np.testing.assert_array_equal(post.draw_model, di)
    for got, full in ((post.draw_dist, mc.dist), (post.draw_av, mc.av), (post.draw_rv, mc.rv),
                      (post.draw_logp, mc.lnp_mc)):
        np.testing.assert_allclose(got, np.asarray(full)[np.asarray(di), np.asarray(dj)], rtol=1e-12)
    assert np.all(np.asarray(post.draw_model) < 250) and np.all(np.asarray(post.lnp)[250:] == -np.inf)
    # the draws follow exp(lnp): a wrong model/sample pairing would fail the comparisons above,
    # a wrong weighting this one
    p = np.exp(np.asarray(mc.lnp) - float(log_evid))
    top = np.argsort(p)[-3:]
    frac = np.bincount(np.asarray(post.draw_model), minlength=K)[top] / 400
    assert np.all(np.abs(frac - p[top]) < 5 * np.sqrt(p[top] * (1 - p[top]) / 400) + 0.01)


def test_mc_block_sizes():
    """Blocks of the lean pass 1: K up to 2048, else the largest multiple of 8 dividing K."""
    from brutus_jax.kernels.posterior import _mc_block

    assert [_mc_block(k) for k in (256, 2048, 6144, 12288, 50000, 3000)] == [256, 2048, 2048, 2048, 2000, 1000]
    assert _mc_block(16411) == 16411 and _mc_block(2 * 16411) == 2 * 16411  # no such divisor: one block
    assert _mc_block(120, largest=40) == 40 and _mc_block(100, largest=40) == 100


def test_gather_selected_branches_and_host_gather(rng):
    """The host-decided branches of gather_selected equal the in-kernel cond, under
    vmap too, and the numpy gather equals the device one."""
    from brutus_jax.kernels.selection import gather_selected, selected_indices_host

    n, K = 2000, 256
    lsel = jnp.asarray(rng.normal(0, 3, (2, n)))
    sel = jnp.stack([lsel[0] > 6.0, lsel[1] > 0.0])  # ~5 (uncapped) and ~1000 (capped) models
    nsel = np.asarray(sel.sum(axis=1))
    assert nsel[0] <= K < nsel[1]
    keys = jax.random.split(jax.random.key(0), 2)
    for mode in ("representative", "topk"):
        auto = jax.vmap(lambda k, s, l: gather_selected(k, s, l, K, mode))(keys, sel, lsel)
        for j, capped in enumerate((False, True)):
            got = gather_selected(keys[j], sel[j], lsel[j], K, mode, capped=capped)
            np.testing.assert_array_equal(got[0], auto[0][j])
            np.testing.assert_array_equal(got[1], auto[1][j])
    idx, valid = selected_indices_host(np.asarray(sel[0]), K)
    dev = gather_selected(keys[0], sel[0], lsel[0], K, capped=False)
    np.testing.assert_array_equal(idx, dev[0])
    np.testing.assert_array_equal(valid, dev[1])
    assert np.all(np.asarray(sel[0])[idx[valid]]) and valid.sum() == nsel[0]
    with pytest.raises(ValueError, match="K=256"):
        selected_indices_host(np.asarray(sel[1]), K)


def test_true_indices_equals_nonzero(rng):
    """The scatter-free static nonzero equals jnp.nonzero(size=, fill_value=) for sparse,
    dense, empty and full masks, with fewer and more slots than True entries."""
    from brutus_jax.kernels.selection import true_indices

    n = 5000
    masks = [rng.random(n) < p for p in (0.0, 0.001, 0.03, 0.5, 1.0)]
    masks.append(np.zeros(n, bool))
    masks[-1][[0, n - 1]] = True
    for m in masks:
        for size in (1, 7, 256, n):
            want = np.asarray(jnp.nonzero(jnp.asarray(m), size=size, fill_value=n)[0])
            got = np.asarray(jax.jit(true_indices, static_argnums=(1, 2))(jnp.asarray(m), size, n))
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_indices_equals_lax_top_k(rng, dtype):
    """The sort-free top-k returns lax.top_k's set (in index order) for mixed-sign scores with
    -inf entries, +-0, subnormals and ties (the tied K-th value taken in index order), for
    K = 1, a middle K, and K = N; and equals numpy's stable argsort in float64."""
    from brutus_jax.kernels.selection import top_k_indices

    n = 3000
    x = rng.normal(scale=50.0, size=n).astype(dtype)
    x[rng.random(n) < 0.3] = -np.inf
    x[:40] = np.round(x[:40])  # ties
    x[40:44] = [0.0, -0.0, np.finfo(dtype).tiny / 4, -np.finfo(dtype).tiny / 4]
    fn = jax.jit(top_k_indices, static_argnums=1)
    for k in (1, 17, 500, 2000, n):
        got = np.asarray(fn(jnp.asarray(x), k))
        assert got.dtype == np.int32 and np.all(np.diff(got) > 0)
        # numpy: stable descending order keeps the lower index first among ties
        want = np.sort(np.argsort(-x.astype(np.float64), kind="stable")[:k])
        np.testing.assert_array_equal(got, want)
        if k < n and x[want].min() > -np.inf and np.sum(x == np.sort(x)[::-1][k - 1]) == 1:  # no tie at the cut
            np.testing.assert_array_equal(got, np.sort(np.asarray(jax.lax.top_k(jnp.asarray(x), k)[1])))


def test_searchsorted_unrolled_equals_searchsorted(rng):
    """The loop-free binary search equals jnp.searchsorted on both sides, with ties,
    queries outside the range and arrays of length 1 and 2^k +- 1."""
    from brutus_jax.kernels.selection import searchsorted_unrolled

    for n in (1, 2, 255, 256, 257, 1000):
        a = np.sort(np.round(rng.uniform(0, 10, n), 1)).astype(np.float32)  # ties
        v = np.concatenate([a[rng.integers(0, n, 50)], rng.uniform(-1, 11, 50)]).astype(np.float32)
        for side in ("left", "right"):
            want = np.asarray(jnp.searchsorted(a, v, side=side))
            got = np.asarray(jax.jit(searchsorted_unrolled, static_argnums=2)(jnp.asarray(a), jnp.asarray(v), side))
            np.testing.assert_array_equal(got, want)
