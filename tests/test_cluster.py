"""Cluster fits with NUTS (brutus_jax.analysis.fit_cluster) on simulated clusters.

References: the simulation's truth (injection-recovery), analytic Jacobians of
the bijections, and the documented prior/argument rules.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis import fit_cluster
from brutus_jax.analysis.cluster_params import PARAMS, build_specs, log_prior_jacobian, to_theta, to_z
from brutus_jax.data.toy_population import ToyPopulation, simulate_cluster

TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
GRIDS = dict(smf_grid=np.linspace(0.0, 1.0, 6), eep_grid=np.linspace(202.0, 808.0, 250))
#: the short CI-sized run shared by the fit fixture and the chain-method / dtype tests
SHORT = dict(num_chains=2, num_warmup=40, num_samples=20, seed=1, progress=False, err_floor=0.1, max_num_doublings=4,
             priors={"rv": 3.3}, **GRIDS)


@pytest.fixture(scope="module")
def pop():
    return ToyPopulation(4)


@pytest.fixture(scope="module")
def cluster(pop):
    return simulate_cluster(pop, TRUTH, 60, seed=3)


def test_bijection_roundtrip_and_jacobian(pop):
    specs = build_specs(pop, transform="logit")
    z = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6)) * 2)
    theta, logjac = to_theta(z, specs)
    np.testing.assert_allclose(to_z(np.asarray(theta), specs), np.asarray(z), atol=1e-8)
    # ln|dx/dz| equals the log of the (diagonal) autodiff Jacobian
    jac = jax.vmap(jax.jacfwd(lambda q: to_theta(q, specs)[0]))(z)
    np.testing.assert_allclose(np.asarray(logjac), np.log(np.abs(np.diagonal(jac, axis1=1, axis2=2))).sum(-1),
                               rtol=1e-10)
    lo, hi = np.array([s.lo for s in specs]), np.array([s.hi for s in specs])
    assert np.all((np.asarray(theta) > lo) & (np.asarray(theta) < hi))


def test_reflect_transform_folds_with_unit_jacobian(pop):
    specs = build_specs(pop)  # default: dist logit, the others reflected
    assert [s.transform for s in specs] == ["reflect"] * 4 + ["logit", "reflect"]
    free = [s for s in specs if s.fixed is None]
    lo, hi = np.array([s.lo for s in free]), np.array([s.hi for s in free])
    x = lo + (hi - lo) * np.random.default_rng(1).uniform(0.05, 0.95, size=(7, 6))
    z = to_z(x, specs)
    theta, logjac = to_theta(jnp.asarray(z), specs)
    np.testing.assert_allclose(np.asarray(theta), x, rtol=1e-12)
    refl = np.array([s.transform == "reflect" for s in free])
    np.testing.assert_allclose(z[:, refl], x[:, refl])  # principal copy z = x
    # mirror images at both bounds and the period 2 (hi - lo) give the same theta
    d = 0.3 * (x - lo)
    for zz in (2 * lo - z, 2 * hi - z, z + 2 * (hi - lo), z - 4 * (hi - lo)):
        zz = np.where(refl, zz, z)
        np.testing.assert_allclose(np.asarray(to_theta(jnp.asarray(zz), specs)[0]), x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(to_theta(jnp.asarray(np.where(refl, lo - d, z)), specs)[0])[:, refl],
                               (lo + d)[:, refl], rtol=1e-12)
    # |dx/dz| = 1 on the reflected coordinates, so ln|J| is the logit terms alone
    jac = jax.vmap(jax.jacfwd(lambda q: to_theta(q, specs)[0]))(jnp.asarray(np.where(refl, lo - d, z)))
    dj = np.abs(np.diagonal(jac, axis1=1, axis2=2))
    np.testing.assert_allclose(dj[:, [0, 1, 2, 3, 5]], 1.0)
    np.testing.assert_allclose(np.asarray(logjac), np.log(dj).sum(-1), rtol=1e-10)
    with pytest.raises(ValueError, match="transform"):
        build_specs(pop, transform="probit")
    with pytest.raises(ValueError, match="age"):
        build_specs(pop, transform={"age": "logit"})


def test_reflect_transform_nuts_marginals(pop):
    """NUTS on the folded density samples the stated posterior: a Gaussian truncated at
    A_V = 0 (density at the bound ~0.9 x peak) and an exponential field fraction truncated to
    [0, 1] (maximum at the lower bound), compared with their analytic moments and by KS tests."""
    import blackjax
    from scipy import stats

    specs = build_specs(pop, {"feh": 0.0, "loga": 9.6, "rv": 3.3, "dist": 800.0,
                              "av": lambda x: -0.5 * ((x - 0.1) / 0.2) ** 2,
                              "field_frac": lambda x: -x / 0.2})

    def logdensity(z):
        return log_prior_jacobian(z, specs)[1]

    def chain(key, z0):
        (state, params), _ = blackjax.window_adaptation(blackjax.nuts, logdensity).run(key, z0, num_steps=300)
        kern = blackjax.nuts(logdensity, **params)

        def step(st, k):
            st, info = kern.step(k, st)
            return st, (st.position, info.is_divergent)

        return jax.lax.scan(step, state, jax.random.split(jax.random.fold_in(key, 1), 1500))[1]

    keys = jax.random.split(jax.random.key(0), 4)
    pos, div = jax.jit(jax.vmap(chain))(keys, jnp.asarray([[0.3, 0.2]] * 4))
    x = np.asarray(to_theta(pos, specs)[0]).reshape(-1, 6)
    assert int(np.sum(div)) == 0
    av, ff = x[:, 2], x[:, 5]
    tn = stats.truncnorm(-0.5, np.inf, loc=0.1, scale=0.2)
    be = stats.truncexpon(5.0, scale=0.2)
    for v, dist in ((av, tn), (ff, be)):
        assert np.all(v >= 0)
        se = dist.std() / np.sqrt(v.size / 4)  # ESS >= N/4
        assert abs(v.mean() - dist.mean()) < 4 * se, (v.mean(), dist.mean())
        assert abs(v.std() - dist.std()) < 0.08 * dist.std()
        assert stats.kstest(v[::4], dist.cdf).pvalue > 1e-3


def test_priors_spec_rules(pop):
    specs = build_specs(pop, {"rv": 3.1, "feh": (-0.5, 0.5), "av": lambda x: -x / 0.1})
    assert specs[3].fixed == 3.1 and (specs[0].lo, specs[0].hi) == (-0.5, 0.5)
    z = jnp.zeros(5)
    theta, lp = log_prior_jacobian(z, specs)
    assert float(theta[3]) == 3.1
    # the R_V prior is gone (fixed); the A_V prior is the user's: exp(-A_V / 0.1) at the box centre
    _, lj = to_theta(z, specs)
    np.testing.assert_allclose(float(lp - lj), -float(theta[2]) / 0.1, rtol=1e-12)
    for bad, name in [({"age": 1.0}, "age"), ({"feh": (1.0, 0.0)}, "feh"), ({"dist": (0.0, 10.0)}, "dist"),
                      ({"field_frac": (0.0, 2.0)}, "field_frac"), ({"av": "x"}, "av")]:
        with pytest.raises(ValueError, match=name):
            build_specs(pop, bad)


def test_argument_errors(pop, cluster):
    c = cluster
    with pytest.raises(ValueError, match="parallax_err"):
        fit_cluster(pop, c["flux"], c["err"], parallax=c["parallax"], progress=False)
    with pytest.raises(ValueError, match="obs_err"):
        fit_cluster(pop, c["flux"], c["err"][:, :3], progress=False)
    with pytest.raises(ValueError, match="priors"):
        fit_cluster(pop, c["flux"], c["err"], priors={k: 0.0 for k in PARAMS}, progress=False)
    with pytest.raises(ValueError, match="err_floor"):
        fit_cluster(pop, c["flux"], c["err"], err_floor=-1.0, progress=False)
    with pytest.raises(ValueError, match="row_measure"):
        fit_cluster(pop, c["flux"], c["err"], row_measure="exact", progress=False)


@pytest.fixture(scope="module")
def fit(pop, cluster):
    """A short run (CI budget): the initialisation must find the injected mode; the
    sampler is far too short to converge and must say so."""
    c = cluster
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], **SHORT)
    return r, w


def test_initialisation_finds_the_injected_cluster(fit):
    """The L-BFGS continuation from stratified starts lands on the injected
    cluster (the age-[Fe/H]-A_V-distance degeneracy leaves many poorer optima)."""
    r, _ = fit
    th = r.map_theta
    assert abs(th[4] / TRUTH[4] - 1) < 0.03  # distance, pinned by parallaxes
    assert abs(th[1] - TRUTH[1]) < 0.1  # log age
    assert abs(th[2] - TRUTH[2]) < 0.3 and abs(th[0] - TRUTH[0]) < 0.4  # A_V, [Fe/H] (degenerate)
    assert 0.0 < th[5] < 0.3  # field fraction (truth 0.1)
    assert th[3] == 3.3
    lp = r.diagnostics["init"]["logdensity"]
    assert np.all(np.diff(lp) <= 0) and np.isfinite(lp[0])


def test_draws_stay_in_the_prior_box_and_are_finite(fit, pop):
    r, _ = fit
    specs = build_specs(pop, {"rv": 3.3})
    for k, s in enumerate(specs):
        x = r.samples[s.name]
        assert x.shape == (2, 20) and np.all(np.isfinite(x))
        if s.fixed is None:
            assert np.all((x > s.lo) & (x < s.hi))
    assert np.all(np.isfinite(r.logdensity))
    assert r.free == ["feh", "loga", "av", "dist", "field_frac"]


def test_float32_likelihood_with_x64_sampler(fit, pop, cluster):
    """dtype="float32" under x64: the likelihood runs in float32, the sampler in float64
    (mixing them used to fail inside blackjax's NUTS); same optimum as float64."""
    c = cluster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], **SHORT, dtype="float32")
    assert all(np.all(np.isfinite(v)) for v in r.samples.values()) and np.all(np.isfinite(r.logdensity))
    th32, th64 = r.map_theta, fit[0].map_theta
    assert abs(th32[4] / th64[4] - 1) < 0.005 and abs(th32[1] - th64[1]) < 0.02, (th32, th64)
    assert abs(float(r.diagnostics["init"]["logdensity"][0] - fit[0].diagnostics["init"]["logdensity"][0])) < 0.5


def test_short_run_is_flagged_not_converged(fit):
    """Too short a run: a warning, converged False, the reasons in flags."""
    r, w = fit
    assert not r.converged and r.flags
    assert any("not converged" in str(x.message) for x in w)
    assert any("ESS" in f or "R-hat" in f for f in r.flags)


def test_result_api(fit):
    r, _ = fit
    t = r.theta()
    assert t.shape == (40, 6) and np.all(t[:, 3] == 3.3)
    text = r.summary()
    assert "loga" in text and "R-hat" in text and "(fixed)" in text and "NOT converged" in text
    assert set(r.summary_table()) == set(r.free)
    assert r.diagnostics["step_size"].shape == (2,)
    assert r.diagnostics["inverse_mass_matrix"].shape == (2, 5, 5)  # dense mass matrix
    assert set(r.diagnostics["rhat"]) == set(r.free)
    try:
        import arviz  # noqa: F401
    except ImportError:
        return
    idata = r.to_arviz()
    assert idata.posterior["dist"].shape == (2, 20)


@pytest.mark.parametrize("method", ["vectorized", "sequential"])
def test_other_chain_methods_against_the_cpu_default(pop, cluster, fit, method):
    """The fixture runs the CPU default (one host thread per chain).  "sequential" (one chain
    at a time) gives exactly its draws: each chain has its own key and runs the same compiled
    program.  "vectorized" (the accelerator default) runs the same initialisation and returns
    the same structure."""
    c = cluster
    par, _ = fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], **SHORT, chain_method=method)
    if method == "sequential":
        for name in PARAMS:
            np.testing.assert_array_equal(other.samples[name], par.samples[name])
        np.testing.assert_array_equal(other.diagnostics["step_size"], par.diagnostics["step_size"])
        return
    np.testing.assert_allclose(other.map_theta, par.map_theta, rtol=1e-8)
    for name in PARAMS:
        assert other.samples[name].shape == (2, 20) and np.all(np.isfinite(other.samples[name]))
    assert other.diagnostics["step_size"].shape == (2,)
    assert other.diagnostics["inverse_mass_matrix"].shape == (2, 5, 5)
