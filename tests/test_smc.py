"""Adaptive tempered SMC (brutus_jax.kernels.smc) against analytic targets, and
`fit_cluster(method="smc")` on a simulated cluster.

References: a two-component Gaussian mixture with known weights, moments and
normalisation (Metropolis moves started in one mode never find the other:
SMC must put 80/20 % of its particles in them and estimate ln Z = 0).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis import fit_cluster
from brutus_jax.kernels.smc import smc_run
from test_cluster import GRIDS, TRUTH, cluster, pop  # noqa: F401 (fixtures)

MU1, MU2, SIG, W1 = np.array([-4.0, 0.0]), np.array([4.0, 3.0]), 0.5, 0.8


def _mixture(z):
    a = jnp.log(W1) - 0.5 * jnp.sum((z - MU1) ** 2) / SIG**2
    b = jnp.log(1 - W1) - 0.5 * jnp.sum((z - MU2) ** 2) / SIG**2
    return jnp.logaddexp(a, b) - jnp.log(2 * jnp.pi * SIG**2)  # normalised: Z = 1


@pytest.fixture(scope="module", params=[False, True], ids=["rw", "rw+independence"])
def mixture_run(request):
    s0 = 10.0

    def ref(z):
        return -0.5 * jnp.sum(z**2) / s0**2 - jnp.log(2 * jnp.pi * s0**2)

    z0 = s0 * jax.random.normal(jax.random.key(1), (4, 1000, 2), jnp.float64)

    @jax.jit
    def run(keys, z):
        return jax.vmap(lambda k, q: smc_run(k, lambda x: _mixture(x) - ref(x), ref, q, 10, 0.5, 50, batch=256,
                                             independence=request.param))(keys, z)

    return run(jax.random.split(jax.random.key(2), 4), z0)


def test_mixture_weights_moments_and_evidence(mixture_run):
    z, ell, logz, stages, beta, acc = (np.asarray(x) for x in mixture_run)
    assert np.all(beta == 1.0) and np.all(stages >= 2) and np.all((acc > 0.05) & (acc < 0.9))
    in1 = z[..., 0] < 0
    # mode shares: binomial sd 0.013 for 1000 particles; resampling noise roughly doubles it
    np.testing.assert_allclose(in1.mean(axis=1), W1, atol=0.06)
    for r_ in range(z.shape[0]):
        for sel, mu in ((in1[r_], MU1), (~in1[r_], MU2)):
            np.testing.assert_allclose(z[r_][sel].mean(axis=0), mu, atol=0.12)
            np.testing.assert_allclose(z[r_][sel].std(axis=0), SIG, rtol=0.2)
    # ln Z = ln of the integral of q0 exp(ell) = ln of the (normalised) target's integral = 0
    np.testing.assert_allclose(logz, 0.0, atol=0.25)
    assert np.all(np.isfinite(ell))


@pytest.mark.parametrize("reference,imh", [("prior", 20), ("laplace", 0), ("both", 10)])
def test_fit_cluster_smc(pop, cluster, reference, imh):  # noqa: F811
    """method="smc" on the 60-star simulated cluster (short CI run) from each reference, with
    independence-MH chains after tempering or the particles themselves (Laplace reference): the
    truth lies in the 95 % intervals, the runs agree, and the result has the documented structure."""
    c = cluster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = fit_cluster(pop, c["flux"], c["err"], c["parallax"], c["parallax_err"], num_chains=2, num_samples=96,
                        seed=1, progress=False, err_floor=0.1, priors={"rv": 3.3}, method="smc",
                        smc_mcmc_steps=8, smc_reference=reference, smc_imh_steps=imh, **GRIDS)
    sm = r.diagnostics["smc"]
    assert r.diagnostics["method"] == "smc" and r.samples["dist"].shape == (2, 96 * max(imh, 1))
    assert np.all(sm["finished"]) and np.all(sm["n_steps"] >= 1) and np.all(sm["unique_fraction"] > 0.5)
    if imh:  # the chains move (acceptance ~0.4 on this cluster) and give far more ESS than 2 x 96 particles
        assert np.all(sm["imh_acceptance"] > 0.15) and min(r.diagnostics["ess_bulk"].values()) > 400
        assert "independence-MH" in r.summary()
    assert np.all(np.isfinite(sm["log_evidence"])) and max(r.diagnostics["rhat"].values()) < 1.1
    for i, name in enumerate(["feh", "loga", "av", "rv", "dist", "field_frac"]):
        if name == "rv":
            continue
        lo, hi = np.quantile(r.samples[name], [0.025, 0.975])
        assert lo < TRUTH[i] < hi, (name, lo, hi)
    assert "SMC" in r.summary() and set(r.diagnostics["rhat"]) == set(r.free)
    assert (r.diagnostics["init"] is None) == (reference == "prior")
    assert abs(r.map_theta[4] / TRUTH[4] - 1) < 0.03 and r.map_theta[3] == 3.3
    if reference != "prior":
        return
    with pytest.raises(ValueError, match="transform"):
        fit_cluster(pop, c["flux"], c["err"], method="smc", transform="reflect", progress=False)
    with pytest.raises(ValueError, match="method"):
        fit_cluster(pop, c["flux"], c["err"], method="emcee", progress=False)
    with pytest.raises(ValueError, match="smc_reference"):
        fit_cluster(pop, c["flux"], c["err"], method="smc", smc_reference="grid", progress=False)
    with pytest.raises(ValueError, match="smc_imh_steps"):
        fit_cluster(pop, c["flux"], c["err"], method="smc", smc_imh_steps=-1, progress=False)


def test_field_fraction_flag():
    """A posterior that sends almost every star to the field (the real Pleiades from the prior
    reference: median 0.991) is flagged; a plausible one is not; nothing when field_frac is fixed."""
    from brutus_jax.analysis.cluster import _field_flag

    high = {"field_frac": np.full((2, 50), 0.991)}
    assert "median field fraction 0.991 > 0.9" in _field_flag(high, ["feh", "field_frac"])[0]
    assert _field_flag({"field_frac": np.full((2, 50), 0.6)}, ["field_frac"]) == []
    assert _field_flag(high, ["feh", "dist"]) == []
