"""Line-of-sight dust: kernels, prior transform, likelihood (brutus_jax.analysis.los_dust) and
the SMC fitter (brutus_jax.analysis.los_fit).

References: astro-brutus 1.2.0 on identical inputs (oracle), brute-force Monte-Carlo
evidences over brutus's prior, finite differences, the injected truth of simulated
sightlines.
"""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import ks_2samp

from brutus_jax.analysis import los_fit
from brutus_jax.analysis.los_dust import (kernel_gauss, kernel_lorentz, kernel_tophat, los_clouds_loglike_samples,
                                          los_clouds_priortransform)
from brutus_jax.analysis.los_fit import compare_nclouds, fit_los_clouds
from brutus_jax.data.toy_los import simulate_los_samples

KERNELS = {"gauss": kernel_gauss, "lorentz": kernel_lorentz, "tophat": kernel_tophat}


def _close(a, b, rtol=1e-10, atol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    same_inf = np.isinf(a) & (a == b)
    np.testing.assert_allclose(np.where(same_inf, 0.0, a), np.where(same_inf, 0.0, b), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def los_data():
    """30 stars x 40 samples with invalid samples of every kind."""
    rng = np.random.default_rng(7)
    ds = rng.uniform(4.0, 16.0, (30, 40))
    rs = rng.uniform(0.0, 3.0, (30, 40))
    ds[0, :3] = -1.0          # negative distance
    ds[1, 4] = 2e10           # beyond 1e10
    ds[2, 5] = np.nan         # NaN distance
    rs[3, :2] = np.nan        # NaN reddening
    rs[4, 6] = np.inf
    ds[5, :] = np.nan         # a star without any valid sample
    return ds, rs, rng.uniform(0.5, 2.0, 30)


# ---------------------------------------------------------------------------- kernels
@pytest.mark.oracle
@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("rlims", [None, (0.0, 6.0), (-1.0, 2.0)])
def test_kernels_match_brutus(brutus_oracle, name, rlims):
    ref = getattr(brutus_oracle.analysis, f"kernel_{name}")
    rng = np.random.default_rng(1)
    reds = rng.uniform(-1.5, 7.0, (20, 30))
    mu = rng.uniform(-3.0, 9.0, (20, 1))
    mu[0] = 40.0                                        # mass inside rlims underflows -> -inf
    width = rng.uniform(0.05, 1.5, (20, 1))
    reds[1, :3] = mu[1, 0] + np.array([-1.0, 1.0, 0.0]) * width[1, 0]   # tophat edges [lo, hi)
    got = KERNELS[name](jnp.asarray(reds), (jnp.asarray(mu), jnp.asarray(width)), rlims=rlims)
    want = ref(reds, (mu, width), rlims=rlims) if rlims is not None else ref(reds, (mu, width))
    _close(got, want)
    # scalar kernel parameters, 1-D samples (the documented call)
    _close(KERNELS[name](reds[2], (0.5, 0.2), rlims=rlims), ref(reds[2], (0.5, 0.2), **({} if rlims is None else
                                                                                      {"rlims": rlims})))


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernels_nonpositive_width_is_minus_inf(name):
    """brutus raises on width <= 0; a traceable kernel returns -inf instead (never NaN)."""
    out = np.asarray(KERNELS[name](jnp.linspace(0.0, 1.0, 5), (0.5, jnp.array([[0.0], [-1.0]])), rlims=(0.0, 6.0)))
    assert np.all(np.isneginf(out))


def test_kernels_are_normalised_over_rlims():
    r = jnp.linspace(0.0, 6.0, 600001)
    for name, fn in KERNELS.items():
        for mu, w in [(0.1, 0.3), (3.0, 0.5), (5.9, 1.0)]:
            val = float(jnp.trapezoid(jnp.exp(fn(r, (mu, w), rlims=(0.0, 6.0))), r))
            assert abs(val - 1.0) < 2e-4, (name, mu, w, val)


# ---------------------------------------------------------------------------- prior transform
@pytest.mark.oracle
@pytest.mark.parametrize("nclouds,template", [(0, False), (1, True), (2, False), (3, True)])
def test_priortransform_matches_brutus(brutus_oracle, nclouds, template):
    rng = np.random.default_rng(nclouds + 10 * template)
    kw = dict(rlims=(-0.5, 4.0), dlims=(5.0, 15.0), pb_params=(-2.5, 0.5, -6.0, -0.5),
              s_params=(-3.0, 0.3, -np.inf, 0.0),
              dust_template=template, nlims=(0.3, 1.7))
    u = rng.uniform(size=(12, 4 + 2 * nclouds))
    u[0, 0], u[1, 0], u[2, 1] = 0.0, 1.0, 1.0           # the clipped edges
    want = np.stack([brutus_oracle.analysis.los_clouds_priortransform(x, **kw) for x in u])
    _close(los_clouds_priortransform(u, **kw), want, rtol=1e-12, atol=1e-12)   # batched call
    if nclouds == 2:
        _close(los_clouds_priortransform(u[3], **kw), want[3], rtol=1e-12, atol=1e-12)
        _close(jax.jit(jax.vmap(lambda q: los_clouds_priortransform(q, **kw)))(u), want, rtol=1e-12, atol=1e-12)
        _close(los_clouds_priortransform(u[4]), brutus_oracle.analysis.los_clouds_priortransform(u[4]), rtol=1e-12)


@pytest.mark.parametrize("kw,arg", [
    (dict(u=[0.5] * 5), "u"), (dict(u=[0.5, 0.5, 1.5, 0.5]), "u"), (dict(rlims=(2.0, 1.0)), "rlims"),
    (dict(dlims=(4.0, 4.0)), "dlims"), (dict(pb_params=(-3.0, 0.0, -np.inf, 0.0)), "pb_params"),
    (dict(s_params=(-3.0, 0.3, 0.0, -1.0)), "s_params"), (dict(dust_template=True, nlims=(2.0, 0.2)), "nlims"),
])
def test_priortransform_errors_name_the_argument(kw, arg):
    kw = {"u": [0.5] * 6, **kw}
    with pytest.raises(ValueError, match=arg):
        los_clouds_priortransform(**kw)


# ---------------------------------------------------------------------------- likelihood vs brutus
def _thetas(rng, nclouds, rlims, template):
    """Prior draws (many non-monotone) plus hand-made monotone ones."""
    out = []
    for k in range(4):
        u = rng.uniform(size=4 + 2 * nclouds)
        th = np.array(los_clouds_priortransform(u, rlims=rlims, dust_template=template, dlims=(5.0, 14.0)))
        th[0] = rng.uniform(0.0, 0.4) if k else 0.0     # pb = 0 exercised once
        th[1:3] = rng.uniform(0.01, 0.3, 2)
        if k >= 2:  # monotone levels in every mode
            th[3] = rlims[0] + 0.1 * (rlims[1] - rlims[0]) * rng.uniform()
            lo = 0.2 if template else max(th[3], 0.0)
            th[5::2] = np.sort(rng.uniform(lo, lo + 1.5, nclouds))
        out.append(th)
    return out


@pytest.mark.oracle
@pytest.mark.parametrize("nclouds", [1, 2])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_loglike_matches_brutus(brutus_oracle, los_data, nclouds, kernel):
    """Every option combination (template, additive foreground, monotonic, rlims, Ndraws),
    -inf cases included (flags and rlims are traced: one compilation per kernel and nclouds)."""
    ref = brutus_oracle.analysis.los_clouds_loglike_samples
    ds, rs, tmpl = los_data
    rng = np.random.default_rng(nclouds * 3 + len(kernel))
    n_finite = n_inf = 0
    for template, additive, mono, rlims in itertools.product([None, tmpl], [False, True], [False, True],
                                                             [(0.0, 6.0), (-0.5, 4.0)]):
        for th in _thetas(rng, nclouds, rlims, template is not None):
            kw = dict(kernel=kernel, rlims=rlims, template_reds=template, additive_foreground=additive,
                      monotonic=mono)
            want = ref(th, ds, rs, **kw)
            _close(los_clouds_loglike_samples(th, ds, rs, **kw), want)
            n_finite += np.isfinite(want)
            n_inf += np.isneginf(want)
    assert n_finite >= 20 and n_inf >= 5


@pytest.mark.oracle
def test_loglike_jitted_default_path_and_ndraws(brutus_oracle, los_data):
    ref = brutus_oracle.analysis.los_clouds_loglike_samples
    ds, rs, tmpl = los_data
    th = np.array([0.05, 0.04, 0.06, 0.3, 8.0, 1.1, 11.0, 1.7])
    for ndraws in (1, 25, 40, 100):
        _close(los_clouds_loglike_samples(th, ds, rs, Ndraws=ndraws), ref(th, ds, rs, Ndraws=ndraws))
    _close(los_clouds_loglike_samples(th, ds, rs, template_reds=tmpl, kernel="lorentz"),
           ref(th, ds, rs, template_reds=tmpl, kernel="lorentz"))


@pytest.mark.oracle
def test_loglike_custom_kernel(brutus_oracle, los_data):
    ds, rs, _ = los_data
    th = np.array([0.1, 0.05, 0.05, 0.2, 8.0, 0.9])

    def laplace_np(r, kp):
        return -np.abs(r - kp[0]) / kp[1] - np.log(2 * kp[1])

    def laplace_jnp(r, kp):
        return -jnp.abs(r - kp[0]) / kp[1] - jnp.log(2 * kp[1])

    _close(los_clouds_loglike_samples(th, ds, rs, kernel=laplace_jnp),
           brutus_oracle.analysis.los_clouds_loglike_samples(th, ds, rs, kernel=laplace_np))


@pytest.mark.oracle
def test_zero_clouds_equals_a_cloud_behind_every_star(brutus_oracle, los_data):
    """n = 0 (not accepted by brutus) equals brutus's 1-cloud model with the cloud beyond all samples."""
    ds, rs, _ = los_data
    for kernel in KERNELS:
        got = los_clouds_loglike_samples([0.1, 0.05, 0.07, 0.8], ds, rs, kernel=kernel)
        want = brutus_oracle.analysis.los_clouds_loglike_samples([0.1, 0.05, 0.07, 0.8, 1e9, 0.8], ds, rs,
                                                                 kernel=kernel)
        _close(got, want)


@pytest.mark.oracle
@pytest.mark.parametrize("theta", [
    [1.2, 0.05, 0.05, 0.2, 8.0, 0.9],           # pb > 1
    [-0.1, 0.05, 0.05, 0.2, 8.0, 0.9],          # pb < 0
    [0.1, -0.05, 0.05, 0.2, 8.0, 0.9],          # s0 < 0
    [0.1, 0.0, 0.05, 0.2, 8.0, 0.9],            # zero foreground width with foreground samples
    [0.1, 0.05, 0.05, 0.2, 9.0, 0.9, 8.0, 1.2],  # unsorted distances
])
def test_where_brutus_raises_we_return_minus_inf(brutus_oracle, los_data, theta):
    ds, rs, _ = los_data
    with pytest.raises(ValueError):
        brutus_oracle.analysis.los_clouds_loglike_samples(theta, ds, rs)
    assert np.isneginf(float(los_clouds_loglike_samples(theta, ds, rs)))


def test_nan_theta_gives_minus_inf_not_nan(los_data):
    ds, rs, tmpl = los_data
    for th in ([np.nan, 0.05, 0.05, 0.2, 8.0, 0.9], [0.1, 0.05, np.nan, 0.2, 8.0, 0.9],
               [0.1, 0.05, 0.05, 0.2, 8.0, np.nan], [0.1, 0.05, 0.05, 0.2, np.nan, 0.9]):
        assert np.isneginf(float(los_clouds_loglike_samples(th, ds, rs, monotonic=False)))
    nan_tmpl = tmpl.copy()
    nan_tmpl[0] = np.nan
    assert np.isneginf(float(los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], ds, rs,
                                                        template_reds=nan_tmpl)))


@pytest.mark.parametrize("call,arg", [
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0], d, r), "theta"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d, r[:, :-1]), "rsamps"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d[0], r[0]), "dsamps"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d, r, kernel="box"), "kernel"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d, r, rlims=(6, 0)), "rlims"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d, r, Ndraws=0), "Ndraws"),
    (lambda d, r: los_clouds_loglike_samples([0.1, 0.05, 0.05, 0.2, 8.0, 0.9], d, r,
                                             template_reds=np.ones(3)), "template_reds"),
])
def test_loglike_errors_name_the_argument(los_data, call, arg):
    ds, rs, _ = los_data
    with pytest.raises(ValueError, match=arg):
        call(ds, rs)


# ---------------------------------------------------------------------------- jax transformations
def test_vmap_over_sightlines_equals_loop(los_data):
    ds, rs, tmpl = los_data
    rng = np.random.default_rng(3)
    dsb = ds[None] + rng.normal(0, 0.2, (5,) + ds.shape)
    rsb = np.abs(rs[None] + rng.normal(0, 0.1, (5,) + rs.shape))
    th = np.tile([0.05, 0.04, 0.06, 0.3, 8.0, 1.1, 11.0, 1.7], (5, 1))
    th[:, 4] += np.linspace(-1, 1, 5)
    th[:, 5] += np.linspace(0, 0.3, 5)
    tb = np.tile(tmpl, (5, 1))
    for kw in (dict(kernel="gauss"), dict(kernel="tophat", additive_foreground=True)):
        f = jax.jit(jax.vmap(lambda t, d, r, tt: los_clouds_loglike_samples(t, d, r, template_reds=tt, **kw)))
        loop = [float(los_clouds_loglike_samples(th[b], dsb[b], rsb[b], template_reds=tb[b], **kw)) for b in range(5)]
        _close(f(th, dsb, rsb, tb), loop, rtol=1e-12)


def test_gradient_matches_finite_differences(los_data):
    """d lnL / d theta by central differences; the distances enter through step functions
    (gradient exactly 0)."""
    ds, rs, tmpl = los_data
    th0 = jnp.array([0.07, 0.05, 0.06, 0.3, 8.0, 1.1, 11.0, 1.7])
    for kw in (dict(kernel="gauss"),
               dict(kernel="lorentz", template_reds=tmpl, additive_foreground=True, rlims=(-0.5, 4.0))):
        def f(t):
            return los_clouds_loglike_samples(t, ds, rs, **kw)

        g = np.asarray(jax.jit(jax.grad(f))(th0))
        f = jax.jit(f)
        assert np.isfinite(float(f(th0)))
        h = 1e-6
        free = [0, 1, 2, 3, 5, 7]
        fd = [(float(f(th0.at[i].add(h))) - float(f(th0.at[i].add(-h)))) / (2 * h) for i in free]
        np.testing.assert_allclose(g[free], fd, rtol=1e-6, atol=1e-5)
        assert g[4] == 0.0 and g[6] == 0.0


def test_gradient_is_finite_where_loglike_is_minus_inf(los_data):
    ds, rs, _ = los_data
    grad = jax.jit(jax.grad(lambda t: los_clouds_loglike_samples(t, ds, rs)))
    for th in ([0.07, 0.05, 0.06, 1.5, 8.0, 1.1], [1.5, 0.05, 0.06, 0.3, 8.0, 1.1], [0.0, 0.05, 0.06, 0.3, 8.0, 1.1]):
        assert np.all(np.isfinite(np.asarray(grad(jnp.array(th)))))


def test_float32_agrees_with_float64(los_data):
    ds, rs, tmpl = los_data
    th = np.array([0.05, 0.04, 0.06, 0.3, 8.0, 1.1, 11.0, 1.7])
    for kw in (dict(kernel="gauss"), dict(kernel="lorentz", template_reds=tmpl), dict(kernel="tophat")):
        v64 = float(los_clouds_loglike_samples(th, ds, rs, **kw))
        kw32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        v32 = los_clouds_loglike_samples(th.astype(np.float32), ds.astype(np.float32), rs.astype(np.float32), **kw32)
        assert v32.dtype == jnp.float32
        assert abs(float(v32) - v64) <= 2e-5 * abs(v64) + 1e-3, (kw, float(v32), v64)


# ---------------------------------------------------------------------------- fitter: sampled space
@pytest.mark.parametrize("mode", [dict(), dict(additive=True), dict(template=True), dict(monotonic=False)])
def test_sampled_prior_is_brutus_prior_on_the_monotone_region(mode):
    """z ~ logistic -> theta has the distribution of brutus's prior transform conditioned on
    the likelihood being finite (rejection of non-monotone draws); and the prior fraction."""
    n = 2
    template, additive, mono = mode.get("template", False), mode.get("additive", False), mode.get("monotonic", True)
    rlims = (-1.0, 5.0)
    cfg = los_fit._make_config(n, "gauss", rlims, (4.0, 19.0), (-3.0, 0.7, -np.inf, 0.0), (-3.0, 0.3, -np.inf, 0.0),
                               template, (0.2, 2.0), 25, additive, mono)
    rng = np.random.default_rng(11)
    z = jnp.asarray(rng.logistic(size=(20000, 4 + 2 * n)))
    ours = np.asarray(los_fit._z_to_theta_jit(z, cfg))
    ref = np.asarray(los_clouds_priortransform(rng.uniform(size=(120000, 4 + 2 * n)), rlims=rlims,
                                               dust_template=template))
    if mono:
        keep = np.all(np.diff(ref[:, 5::2], axis=1) >= 0, axis=1)
        if additive:
            keep &= ref[:, 5] >= 0
        elif not template:
            keep &= ref[:, 3] <= ref[:, 5]
        ref = ref[keep]
        assert abs(np.log(keep.mean()) - los_fit._log_prior_fraction(cfg)) < 0.03
    assert np.all(np.diff(ours[:, 4::2], axis=1) >= 0)
    for k in range(ours.shape[1]):
        assert ks_2samp(ours[:, k], ref[:, k]).pvalue > 1e-3, k


# ---------------------------------------------------------------------------- fitter: simulations
TRUTH = [dict(dist_cloud=8.0, red_cloud=1.2, fred=0.2), dict(dist_cloud=10.0, red_cloud=2.0, fred=0.1)]
SMC = dict(num_particles=128, num_mcmc_steps=10, num_replicas=4, seed=3)


@pytest.fixture(scope="module")
def sightlines():
    """Ragged batch: sightline 0 has 5 stars (evidence checked by brute force), 1 and 2 carry a
    clear cloud (40 and 34 stars)."""
    d0, r0, _ = simulate_los_samples(0, nstars=5, **TRUTH[0])
    d1, r1, _ = simulate_los_samples(1, nstars=40, **TRUTH[0])
    d2, r2, _ = simulate_los_samples(2, nstars=34, **TRUTH[1])
    return [d0, d1, d2], [r0, r1, r2]


@pytest.fixture(scope="module")
def comparison(sightlines):
    before = los_fit._smc_batch._cache_size()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = compare_nclouds(*sightlines, nclouds=(0, 1), **SMC)
    out_compiles = los_fit._smc_batch._cache_size() - before
    return out, out_compiles


def test_batch_compiles_once_per_model(comparison):
    assert comparison[1] == 2   # nclouds 0 and 1, each one compilation for the whole batch


def test_injection_recovery(comparison):
    cmp, _ = comparison
    res = cmp.results[1]
    assert res.samples["dist_1"].shape == (3, 4, 128)
    np.testing.assert_array_equal(res.diagnostics["n_stars"], [5, 40, 34])
    for b, truth in zip((1, 2), TRUTH):
        # replicas agree (short runs: a loose bound; the default criterion is 1.05)
        assert max(res.diagnostics["rhat"][n][b] for n in res.param_names) < 1.1
        assert np.all(res.diagnostics["beta"][b] == 1.0)
        for name, key, max_width in (("dist_1", "dist_cloud", 2.0), ("red_1", "red_cloud", 0.4)):
            lo, hi = res.interval(name, 0.95)
            assert lo[b] <= truth[key] <= hi[b], (b, name, lo[b], hi[b], truth[key])
            assert hi[b] - lo[b] < max_width, (b, name, lo[b], hi[b])
            # the test has power: a truth shifted by 1 mag in distance / 0.5 mag in A_V is excluded
            shift = 1.0 if name == "dist_1" else 0.5
            assert not (lo[b] <= truth[key] + shift <= hi[b])
        assert res.samples["red_1"][b].mean() > res.samples["fred"][b].mean()


def test_fewest_clouds_within_min_gain():
    """compare_nclouds' rule: the fewest clouds whose ln Z is within min_gain of the largest
    (a 0.1-nat edge of a second cloud, SMC noise, does not buy it), in any order of nclouds."""
    from brutus_jax.analysis.los_fit import _fewest_within

    logz = np.array([[-79.8, 3.0, 0.0], [18.6, 1.0, 0.5], [18.7, 9.0, 2.0]])  # (K=3 models, B=3)
    np.testing.assert_array_equal(_fewest_within((0, 1, 2), logz, 1.0), [1, 2, 2])
    np.testing.assert_array_equal(_fewest_within((0, 1, 2), logz, 0.0), [2, 2, 2])
    np.testing.assert_array_equal(_fewest_within((0, 1, 2), logz, 2.0), [1, 2, 0])
    assert _fewest_within((2, 0, 1), logz[[2, 0, 1], 0], 1.0) == 1
    with pytest.raises(ValueError, match="min_gain"):
        compare_nclouds(np.zeros((3, 10)), np.zeros((3, 10)), nclouds=(0,), min_gain=-1.0)


def test_evidence_prefers_a_cloud(comparison):
    cmp, _ = comparison
    assert cmp.logz.shape == (2, 3)
    assert np.all(cmp.best[1:] == 1)
    assert np.all(cmp.logz[1, 1:] - cmp.logz[0, 1:] > 10.0)
    assert np.all(cmp.log_bayes <= 0.0)


def test_evidence_matches_brute_force_over_brutus_prior(comparison, sightlines):
    """Sightline 0 (5 stars): ln Z = ln mean L over brutus's prior transform (the dynesty
    evidence, -inf likelihoods included) for 0 and 1 clouds."""
    cmp, _ = comparison
    ds, rs = sightlines[0][0], sightlines[1][0]
    rng = np.random.default_rng(5)
    for res in cmp.results:
        n = res.nclouds
        theta = los_clouds_priortransform(jnp.asarray(rng.uniform(size=(200000, 4 + 2 * n))))
        ll = np.asarray(jax.jit(jax.vmap(lambda t: los_clouds_loglike_samples(t, ds, rs)))(theta))
        mc = logsumexp(ll) - math.log(ll.size)
        w = np.exp(ll - ll.max())
        mc_err = w.std() / w.mean() / math.sqrt(ll.size)
        err = math.hypot(mc_err, res.logz_err[0])
        assert abs(res.logz[0] - mc) < 4 * err + 0.1, (n, res.logz[0], mc, err)
        assert res.logz_monotone[0] - res.logz[0] == pytest.approx(math.lgamma(n + 2))


def test_single_sightline_and_input_errors(sightlines):
    ds, rs = sightlines
    for kw, arg in ((dict(nclouds=-1), "nclouds"), (dict(rlims=(6.0, 0.0)), "rlims"), (dict(dlims=(19, 4)), "dlims"),
                    (dict(star_mask=np.ones(3, bool)), "star_mask"), (dict(template_reds=np.ones(2)), "template_reds"),
                    (dict(kernel="box"), "kernel"), (dict(num_particles=2), "num_particles"),
                    (dict(additive_foreground=True, rlims=(-2.0, -1.0)), "rlims")):
        with pytest.raises(ValueError, match=arg):
            fit_los_clouds(ds[1], rs[1], **{"nclouds": 1, **kw})
    with pytest.raises(ValueError, match="rsamps"):
        fit_los_clouds(ds[1], rs[1][:, :-1])
    with pytest.raises(ValueError, match="rsamps"):
        fit_los_clouds(ds, np.stack([rs[1], rs[1]]))          # a list and an array
    with pytest.raises(ValueError, match="dsamps"):
        fit_los_clouds(ds[1][0], rs[1][0])                     # 1-D



def test_single_sightline_result_shapes(monkeypatch, sightlines):
    """The unbatched path of fit_los_clouds (post-processing only: the SMC is replaced by a stub
    returning particles of the right shapes, to avoid another compilation)."""
    captured = {}

    def fake_smc(seeds, data, cfg, num_particles, num_mcmc_steps, target_ess, max_stages):
        nb, nr = seeds.shape
        captured["shape"] = data[0].shape
        z = jax.random.logistic(jax.random.key(0), (nb, nr, num_particles, cfg.ndim))
        ll = jnp.zeros((nb, nr, num_particles))
        return z, ll, jnp.zeros((nb, nr)), jnp.full((nb, nr), 5), jnp.ones((nb, nr)), jnp.full((nb, nr), 0.3)

    monkeypatch.setattr(los_fit, "_smc_batch", fake_smc)
    ds, rs = sightlines[0][1], sightlines[1][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_los_clouds(ds, rs, 2, num_particles=32, num_replicas=3, Ndraws=10)
    assert captured["shape"] == (1, 40, 10)
    assert res.param_names == ("pb", "s0", "s", "fred", "dist_1", "red_1", "dist_2", "red_2")
    assert res.samples["dist_2"].shape == (3, 32) and res.theta.shape == (3, 32, 8)
    assert np.ndim(res.logz) == 0 and np.ndim(res.converged) == 0 and np.ndim(res.diagnostics["n_stars"]) == 0
    assert res.diagnostics["rhat"]["pb"].shape == () and res.diagnostics["stages"].shape == (3,)
    np.testing.assert_array_equal(res.dist_1, res.samples["dist_1"])
    lo, hi = res.interval("red_1", 0.68)
    assert np.ndim(lo) == 0 and lo < hi
    assert np.all(np.diff(res.theta[..., 4::2], axis=-1) >= 0)                  # sorted distances
    assert np.all(np.diff(res.theta[..., 3::2], axis=-1) >= 0)                  # monotone chain
    assert res.logz_monotone - res.logz == pytest.approx(math.lgamma(4))        # ln 3!
