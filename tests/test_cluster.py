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


@pytest.fixture(scope="module")
def pop():
    return ToyPopulation(4)


@pytest.fixture(scope="module")
def cluster(pop):
    return simulate_cluster(pop, TRUTH, 60, seed=3)


def test_bijection_roundtrip_and_jacobian(pop):
    specs = build_specs(pop)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6)) * 2)
    theta, logjac = to_theta(z, specs)
    np.testing.assert_allclose(to_z(np.asarray(theta), specs), np.asarray(z), atol=1e-8)
    # ln|dx/dz| equals the log of the (diagonal) autodiff Jacobian
    jac = jax.vmap(jax.jacfwd(lambda q: to_theta(q, specs)[0]))(z)
    np.testing.assert_allclose(np.asarray(logjac), np.log(np.abs(np.diagonal(jac, axis1=1, axis2=2))).sum(-1),
                               rtol=1e-10)
    lo, hi = np.array([s.lo for s in specs]), np.array([s.hi for s in specs])
    assert np.all((np.asarray(theta) > lo) & (np.asarray(theta) < hi))


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


@pytest.fixture(scope="module")
def fit(pop, cluster):
    c = cluster
    return fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], num_chains=2, num_warmup=200,
                       num_samples=200, seed=1, progress=False, min_ess=50, priors={"rv": 3.3}, **GRIDS)


def test_recovers_the_injected_cluster(fit):
    """Truth inside the central 99 % of the posterior for every free parameter,
    chains mixed (split R-hat), no divergences."""
    for k, name in enumerate(PARAMS):
        x = fit.samples[name]
        assert x.shape == (2, 200)
        if name in fit.fixed:
            assert np.all(x == fit.fixed[name])
            continue
        lo, hi = np.quantile(x, [0.005, 0.995])
        assert lo < TRUTH[k] < hi, (name, lo, hi, TRUTH[k])
        assert fit.diagnostics["rhat"][name] < 1.05, name
    assert fit.free == ["feh", "loga", "av", "dist", "field_frac"]
    assert int(np.sum(fit.diagnostics["divergences"])) == 0
    # the distance is pinned by the members' parallaxes (sigma ~ 0.5 %)
    assert abs(np.median(fit.samples["dist"]) / TRUTH[4] - 1) < 0.03
    assert np.all(np.isfinite(fit.logdensity))


def test_result_api(fit):
    t = fit.theta()
    assert t.shape == (400, 6) and np.all(t[:, 3] == 3.3)
    text = fit.summary()
    assert "loga" in text and "R-hat" in text and "(fixed)" in text
    tab = fit.summary_table()
    assert set(tab) == set(fit.free)
    assert fit.diagnostics["step_size"].shape == (2,)
    assert fit.diagnostics["inverse_mass_matrix"].shape == (2, 5, 5)  # dense mass matrix
    try:
        import arviz  # noqa: F401
    except ImportError:
        return
    idata = fit.to_arviz()
    assert idata.posterior["dist"].shape == (2, 200)


def test_unconverged_run_is_flagged(pop, cluster):
    """Far too short a run: a warning, converged False, reasons in flags."""
    c = cluster
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], num_chains=2, num_warmup=20,
                        num_samples=8, seed=2, progress=False, num_starts=8, opt_steps=10, **GRIDS)
    assert not r.converged and r.flags
    assert any("not converged" in str(x.message) for x in w)
