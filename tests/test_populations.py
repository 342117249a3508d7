"""Population (cluster) likelihood: brutus_jax.analysis.populations.

The package's toy stellar population (`brutus_jax.data.toy_population`: analytic
isochrone, brutus 1.2.0's StellarPop binary rules), with this file's band constants, offers both the JAX contract
(``get_seds_smf_grid_jax`` -> PopSEDGrid) and brutus's numpy conventions
(``get_seds`` / ``get_seds_smf_grid``, NaN where invalid).  References:
astro-brutus 1.2.0 fed the numpy toy (oracle), central finite differences,
and analytic expectations for the SMF measure.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis import populations as P
from brutus_jax.data.toy_population import ToyPopulation

NF = 4
OFF = np.array([0.9, 0.3, 0.0, -0.2])
SLOPE = np.array([1.2, 0.6, 0.2, -0.1])
EXT_A = np.array([1.25, 1.0, 0.75, 0.55])
EXT_B = np.array([0.10, 0.05, -0.02, -0.05])
TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
SMF = np.linspace(0.0, 1.0, 6)
EEP = np.linspace(202.0, 808.0, 300)
BINARIES = tuple(range(0, 54, 5))  # member indices simulated as binaries


class JaxToyPop(ToyPopulation):
    """The package's analytic toy population with this file's band constants
    (JAX face: PopSEDGrid; ``.numpy()``: brutus's numpy conventions)."""

    def __init__(self):
        super().__init__(NF)
        self.off, self.slope, self.ea, self.eb = OFF, SLOPE, EXT_A, EXT_B
        self.b = np.arange(NF) / NF


def NumpyToyPop():
    return JaxToyPop().numpy()


def _simulate(n_mem=54, n_field=6, seed=7):
    """Toy cluster at TRUTH: members on the isochrone (20% binaries), field stars."""
    rng = np.random.default_rng(seed)
    pop = NumpyToyPop()
    feh, loga, av, rv, dist, _ = TRUTH
    fine = np.linspace(202.0, 699.0, 800)
    kw = dict(feh=feh, loga=loga, av=av, rv=rv, eep=fine, dist=dist, mini_bound=0.08)
    single = pop.get_seds(**kw)[0]
    binq = {q: pop.get_seds(binary_fraction=q, **kw)[0] for q in (0.7, 0.9)}
    mags = []
    for k in range(n_mem):
        if k in BINARIES:  # main-sequence binaries with a bright companion
            j = rng.integers(200, np.searchsorted(fine, 470.0))
            mags.append(binq[(0.7, 0.9)[k % 2]][j])
        else:
            mags.append(single[rng.integers(0, fine.size)])
    mags = np.array(mags)
    field = rng.uniform(mags.min(0), mags.max(0), (n_field, NF)) + rng.normal(0, 1.0, (n_field, NF))
    mags = np.vstack([mags, field])
    flux = 10 ** (-0.4 * mags)
    err = 0.03 * flux
    flux = flux + err * rng.normal(size=flux.shape)
    plx = np.concatenate([np.full(n_mem, 1000.0 / dist), rng.uniform(0.2, 3.0, n_field)])
    plx_err = np.full(plx.shape, 0.05)
    plx = plx + plx_err * rng.normal(size=plx.shape)
    return flux, err, plx, plx_err


@pytest.fixture(scope="module")
def data():
    return _simulate()


@pytest.fixture(scope="module")
def mask(data):
    rng = np.random.default_rng(3)
    m = (rng.uniform(size=data[0].shape) > 0.2).astype(float)
    m[:, 0] = 1.0
    return m


def _kw(parallax, data):
    if not parallax:
        return {}
    return {"parallax": data[2], "parallax_err": data[3]}


@pytest.fixture(scope="module")
def jit_vg(data):
    flux, err, plx, perr = data
    pop = JaxToyPop()

    def f(th, flux, err, plx, perr):
        return P.isochrone_population_loglike(th, pop, flux, err, parallax=plx, parallax_err=perr,
                                              smf_grid=SMF, eep_grid=EEP)

    return jax.jit(jax.value_and_grad(f))


# ---------------------------------------------------------------------------
# Oracle: astro-brutus 1.2.0 on the same (numpy) toy population
# ---------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("parallax,dim_prior,use_mask,ffrac", [
    (True, True, False, 0.1), (False, True, True, 0.1), (True, False, True, 0.4),
    (False, False, False, 0.02), (True, True, True, 0.7),
])
def test_matches_brutus_per_object(brutus_oracle, data, mask, parallax, dim_prior, use_mask, ffrac):
    from brutus.analysis.populations import isochrone_population_loglike as bl

    theta = TRUTH.copy()
    theta[5] = ffrac
    theta[1] = 9.62
    kw = dict(dim_prior=dim_prior, smf_grid=SMF, eep_grid=EEP, mask=mask if use_mask else None,
              return_components=True, **_kw(parallax, data))
    ref_tot, ref = bl(theta, NumpyToyPop(), data[0], data[1], **kw)
    tot, comp = P.isochrone_population_loglike(theta, NumpyToyPop(), data[0], data[1], **kw)
    ref_obj = ref["lnl_per_object"]
    assert np.all(np.isfinite(ref_obj))
    np.testing.assert_allclose(np.asarray(comp["lnl_per_object"]), ref_obj, rtol=1e-6, atol=0)
    np.testing.assert_allclose(float(tot), ref_tot, rtol=1e-9)
    # JAX path == numpy path
    tot_j, comp_j = P.isochrone_population_loglike(theta, JaxToyPop(), data[0], data[1], **kw)
    np.testing.assert_allclose(np.asarray(comp_j["lnl_per_object"]), ref_obj, rtol=1e-6)
    # The static grid's kept rows are brutus's grid, in brutus's order.
    g, rg = comp_j["isochrone_grid"], ref["isochrone_grid"]
    keep = np.asarray(g["mass_jacobians"]) > 0
    np.testing.assert_allclose(np.asarray(g["mass_jacobians"])[keep], rg["mass_jacobians"], rtol=1e-9)
    np.testing.assert_allclose(np.asarray(g["smf_jacobians"])[keep], rg["smf_jacobians"], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g["masses"])[keep], rg["masses"], rtol=1e-12)
    fin = np.all(np.isfinite(rg["photometry"]), axis=1)
    np.testing.assert_array_equal(np.asarray(g["sed_ok"])[keep], fin)
    np.testing.assert_allclose(np.asarray(g["photometry"])[keep][fin], rg["photometry"][fin], rtol=1e-9)


@pytest.mark.oracle
def test_step_functions_match_brutus(brutus_oracle, data):
    """Each public step on brutus's own grid dict (compact rows, NaN photometry)."""
    import brutus.analysis.populations as B

    flux, err, plx, perr = data
    rg = B.generate_isochrone_population_grid(NumpyToyPop(), 0.0, 9.7, 0.3, 3.3, 800.0,
                                              smf_grid=SMF, eep_grid=EEP)
    for dp in (True, False):
        rc = B.compute_isochrone_cluster_loglike(flux, err, rg, plx, perr, 800.0, dim_prior=dp)
        c = np.asarray(P.compute_isochrone_cluster_loglike(flux, err, rg, plx, perr, 800.0, dim_prior=dp))
        np.testing.assert_array_equal(np.isnan(c), np.isnan(rc))
        np.testing.assert_allclose(c[~np.isnan(c)], rc[~np.isnan(rc)], rtol=1e-9)
        ro = B.compute_isochrone_outlier_loglike(flux, err, rg, plx, perr, dim_prior=dp)
        o = np.asarray(P.compute_isochrone_outlier_loglike(flux, err, rg, plx, perr, dim_prior=dp))
        np.testing.assert_allclose(o, ro, rtol=1e-10)
        rm = B.apply_isochrone_mixture_model(rc, ro, 0.95, 0.3)
        m = np.asarray(P.apply_isochrone_mixture_model(c, o, 0.95, 0.3))
        np.testing.assert_array_equal(np.isnan(m), np.isnan(rm))
        np.testing.assert_allclose(m[~np.isnan(m)], rm[~np.isnan(rm)], rtol=1e-10)
        r = B.marginalize_isochrone_grid(rm, rg["mass_jacobians"], rg["smf_jacobians"])
        got = P.marginalize_isochrone_grid(m, rg["mass_jacobians"], rg["smf_jacobians"])
        np.testing.assert_allclose(np.asarray(got), r, rtol=1e-10)


# ---------------------------------------------------------------------------
# Gradients, compile count, invalid theta
# ---------------------------------------------------------------------------


def _fd_grad(f, th, rel=1e-6):
    g = np.zeros(6)
    for i in range(6):
        h = rel * max(abs(th[i]), 1.0)
        tp, tm = th.copy(), th.copy()
        tp[i] += h
        tm[i] -= h
        g[i] = (float(f(tp)) - float(f(tm))) / (2 * h)
    return g


@pytest.mark.parametrize("theta", [
    [0.05, 9.6, 0.3, 3.3, 800.0, 0.1],      # typical
    [-0.2, 9.93, 0.5, 3.0, 760.0, 1e-3],    # older: more EEPs off the isochrone, ff ~ 0
    [0.1, 9.45, 0.2, 3.6, 850.0, 0.999],    # ff ~ 1
])
def test_gradient_matches_finite_differences(jit_vg, data, theta):
    th = np.array(theta, dtype=float)
    val, g = jit_vg(jnp.asarray(th), *data)
    g = np.asarray(g)
    assert np.isfinite(float(val)) and np.all(np.isfinite(g))
    fd = _fd_grad(lambda t: jit_vg(jnp.asarray(t), *data)[0], th)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-6 * np.max(np.abs(fd)))


def test_single_compile_and_no_nan_gradients(jit_vg, data):
    thetas = [TRUTH, [0.1, 9.9, 0.1, 3.1, 700.0, 0.5], [0.0, 9.6, 0.3, 3.3, 800.0, 0.0],
              [0.0, 9.6, 0.3, 3.3, 800.0, 1.0], [0.0, 10.6, 0.3, 3.3, 800.0, 0.2],
              [0.0, 14.0, 0.3, 3.3, 800.0, 0.2],  # every EEP off the isochrone: no valid row
              [0.0, 9.6, 0.3, 3.3, -5.0, 0.2], [0.0, 9.6, 0.3, 3.3, 800.0, 1.5],
              [np.nan, 9.6, 0.3, 3.3, 800.0, 0.2]]
    before = jit_vg._cache_size()
    out = [jit_vg(jnp.asarray(np.asarray(t, float)), *data) for t in thetas]
    assert jit_vg._cache_size() - before <= 1 and jit_vg._cache_size() == 1
    for (v, g), t in zip(out, thetas):
        assert not np.isnan(float(v)), t
        assert np.all(np.isfinite(np.asarray(g))), t
    assert np.isfinite(float(out[2][0])) and np.isfinite(float(out[3][0]))  # ff exactly 0 / 1
    for v, _ in out[5:]:
        assert float(v) == -np.inf


@pytest.mark.parametrize("bad", [[0, 9.6, 0.3, 3.3, 0.0, 0.1], [0, 9.6, 0.3, 3.3, 800.0, -0.1],
                                 [0, 9.6, 0.3, 3.3, 800.0, 1.2]])
def test_invalid_theta_eager_is_minus_inf(data, bad):
    for pop in (NumpyToyPop(), JaxToyPop()):
        v = P.isochrone_population_loglike(np.array(bad, float), pop, data[0], data[1],
                                           smf_grid=SMF, eep_grid=EEP)
        assert float(v) == -np.inf


def test_argument_validation(data):
    flux, err = data[0], data[1]
    with pytest.raises(ValueError, match="obs_err"):
        P.isochrone_population_loglike(TRUTH, JaxToyPop(), flux, err[:, :2])
    with pytest.raises(ValueError, match="mask"):
        P.isochrone_population_loglike(TRUTH, JaxToyPop(), flux, err, mask=np.ones((2, NF)))
    with pytest.raises(ValueError, match="parallax"):
        P.isochrone_population_loglike(TRUTH, JaxToyPop(), flux, err, parallax=np.ones(3),
                                       parallax_err=np.ones(3))
    with pytest.raises(ValueError, match="theta"):
        P.isochrone_population_loglike(TRUTH[:5], JaxToyPop(), flux, err)


def test_float32_stays_float32(data):
    th = jnp.asarray(TRUTH, dtype=jnp.float32)
    f32 = [jnp.asarray(x, dtype=jnp.float32) for x in data]
    v, g = jax.jit(jax.value_and_grad(lambda t, d: P.isochrone_population_loglike(
        t, JaxToyPop(), d[0], d[1], parallax=d[2], parallax_err=d[3],
        smf_grid=SMF.astype(np.float32), eep_grid=EEP.astype(np.float32))))(th, f32)
    assert v.dtype == jnp.float32 and g.dtype == jnp.float32
    ref = P.isochrone_population_loglike(TRUTH, JaxToyPop(), *data[:2], parallax=data[2],
                                         parallax_err=data[3], smf_grid=SMF, eep_grid=EEP)
    np.testing.assert_allclose(float(v), float(ref), rtol=2e-3)
    assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------------------
# Regression tests for brutus 1.2.0's audit findings
# ---------------------------------------------------------------------------


def test_binaries_reach_the_population():
    """Audit finding "binaries silently disabled (the smf keyword)": every SMF
    value must reach get_seds as ``binary_fraction`` and change the models."""
    pop = PerSlicePop()  # brutus's get_seds signature: an smf= keyword would raise TypeError
    g = P.generate_isochrone_population_grid(pop, 0.0, 9.6, 0.3, 3.3, 800.0, smf_grid=SMF,
                                             eep_grid=EEP)
    assert pop.toy.calls == list(SMF)
    for gg in (g, P.generate_isochrone_population_grid(JaxToyPop(), 0.0, 9.6, 0.3, 3.3, 800.0,
                                                        smf_grid=SMF, eep_grid=EEP)):
        ph = np.asarray(gg["photometry"]).reshape(SMF.size, EEP.size, NF)
        ok = np.asarray(gg["sed_ok"]).reshape(SMF.size, EEP.size)
        ms = (EEP <= 480.0) & ok[0]
        np.testing.assert_allclose(ph[-1][ms] / ph[0][ms], 2.0, rtol=1e-12)  # q = 1: twice the flux
        m0 = np.asarray(gg["masses"]).reshape(SMF.size, EEP.size)[0]
        comp = ms & (SMF[3] * m0 >= m0[0])  # a companion on the isochrone exists
        assert comp.sum() > 20
        assert np.all(ph[3][comp] > ph[0][comp] * (1 + 1e-6))  # q = 0.6 brightens them all
        np.testing.assert_array_equal(ph[3][ms & ~comp], ph[0][ms & ~comp])  # primary kept
        np.testing.assert_array_equal(ph[3][~(EEP <= 480.0) & ok[0]], ph[0][~(EEP <= 480.0) & ok[0]])


class PerSlicePop:
    """Only brutus's per-slice ``get_seds`` (no SMF-grid method)."""

    def __init__(self):
        self.toy = NumpyToyPop()  # .calls records each get_seds's binary_fraction

    def get_seds(self, **kw):
        return self.toy.get_seds(**kw)


def test_binaries_change_the_likelihood(data):
    """Binary members are better fit with the SMF grid than with single stars only."""
    kw = dict(parallax=data[2], parallax_err=data[3], eep_grid=EEP)
    with_bin = P.isochrone_population_loglike(TRUTH, NumpyToyPop(), *data[:2], smf_grid=SMF,
                                              return_components=True, **kw)[1]["lnl_per_object"]
    single = P.isochrone_population_loglike(TRUTH, NumpyToyPop(), *data[:2], smf_grid=[0.0],
                                            return_components=True, **kw)[1]["lnl_per_object"]
    b = np.array(BINARIES)
    gain = np.asarray(with_bin)[b] - np.asarray(single)[b]
    assert np.all(gain > 0.1) and gain.sum() > 20.0, gain


def test_post_main_sequence_smf_measure():
    """Audit finding "post-MS under-weighting of the SMF measure": post-MS rows
    enter once, with weight sum(Delta smf), like an MS mass summed over slices."""
    g = P.generate_isochrone_population_grid(JaxToyPop(), 0.0, 9.6, 0.3, 3.3, 800.0,
                                             smf_grid=SMF, eep_grid=EEP)
    mj = np.asarray(g["mass_jacobians"]).reshape(SMF.size, EEP.size)
    sj = np.asarray(g["smf_jacobians"]).reshape(SMF.size, EEP.size)
    total = np.sum(np.gradient(SMF))
    post = (EEP > 480.0) & (mj[0] > 0)
    ms = (EEP <= 480.0) & (mj[0] > 0)
    assert post.sum() > 10 and ms.sum() > 10
    np.testing.assert_array_equal((mj[:, post] > 0).sum(axis=0), 1)  # once, not n_smf times
    np.testing.assert_allclose(sj[0, post], total, rtol=1e-14)       # not one Delta smf
    np.testing.assert_allclose(sj[:, ms].sum(axis=0), total, rtol=1e-14)
    w = mj * sj
    np.testing.assert_allclose(w[:, post].sum(0), mj[0, post] * total, rtol=1e-14)
    # A giant's marginal likelihood does not depend on the SMF resolution.
    flux = np.asarray(g["photometry"])[np.flatnonzero(post)[30]][None] * 1.01
    kw = dict(eep_grid=EEP, cluster_prob=1.0)
    l_a = P.isochrone_population_loglike([0, 9.6, 0.3, 3.3, 800, 0], NumpyToyPop(), flux,
                                         0.02 * flux, smf_grid=np.linspace(0, 1, 3), **kw)
    l_b = P.isochrone_population_loglike([0, 9.6, 0.3, 3.3, 800, 0], NumpyToyPop(), flux,
                                         0.02 * flux, smf_grid=np.linspace(0, 1, 11), **kw)
    # Post-MS integrand and the (normalised) measure do not depend on the SMF grid:
    # the giant's likelihood is the same for 3 or 11 SMF values (MS rows add ~0).
    assert np.isfinite(float(l_a))
    assert abs(float(l_a) - float(l_b)) < 1e-8


# ---------------------------------------------------------------------------
# Physical sanity
# ---------------------------------------------------------------------------


def test_likelihood_peaks_at_truth(jit_vg, data):
    scans = {1: [9.4, 9.5, 9.6, 9.7, 9.8], 2: [0.1, 0.2, 0.3, 0.4, 0.5],
             4: [700.0, 750.0, 800.0, 850.0, 900.0], 0: [-0.3, -0.15, 0.0, 0.15, 0.3]}
    for i, vals in scans.items():
        lnl = []
        for v in vals:
            th = TRUTH.copy()
            th[i] = v
            lnl.append(float(jit_vg(jnp.asarray(th), *data)[0]))
        assert int(np.argmax(lnl)) == 2, (i, lnl)
        assert lnl[2] - min(lnl) > 5.0


def test_fused_path_equals_general_path(data, mask):
    """Row-independent outlier models use the fused mixture+marginalisation; a
    custom (N_grid, N_obj) outlier model takes brutus's two-step path: same result."""
    seen = {}

    def custom(flux, err, stellar_params=None, parallax=None, parallax_err=None, mask=None,
               p_value_cut=1e-5):
        seen["n"] = stellar_params["masses"].shape[0]
        lo = P.chisquare_outlier_loglike(flux, err, parallax=parallax, parallax_err=parallax_err,
                                         mask=mask, p_value_cut=p_value_cut)
        return jnp.broadcast_to(lo[None, :], (seen["n"], flux.shape[0]))

    th = np.array([0.02, 9.58, 0.32, 3.2, 790.0, 0.3])
    kw = dict(parallax=data[2], parallax_err=data[3], smf_grid=SMF, eep_grid=EEP, mask=mask,
              return_components=True, p_value_cut=1e-3)
    _, fused = P.isochrone_population_loglike(th, JaxToyPop(), *data[:2], **kw)
    _, general = P.isochrone_population_loglike(th, JaxToyPop(), *data[:2],
                                                outlier_model_func=custom, **kw)
    assert seen["n"] == SMF.size * EEP.size
    np.testing.assert_allclose(np.asarray(fused["lnl_per_object"]),
                               np.asarray(general["lnl_per_object"]), rtol=1e-11)
    brutus = pytest.importorskip("brutus.analysis.populations")
    _, ref = brutus.isochrone_population_loglike(th, NumpyToyPop(), *data[:2], **kw)
    np.testing.assert_allclose(np.asarray(fused["lnl_per_object"]), ref["lnl_per_object"], rtol=1e-6)


def test_chi2_custom_vjp_matches_autodiff():
    """The float32 chi-square kernel's hand-written backward pass (GEMMs) equals
    autodiff of the naive broadcast sum (float64 inputs, random cotangent)."""
    from brutus_jax.kernels.population import _chi2_direct

    rng = np.random.default_rng(0)
    m, f, iv = rng.uniform(1, 2, (7, 3)), rng.uniform(1, 2, (5, 3)), rng.uniform(1, 3, (5, 3))
    cot = rng.normal(size=(7, 5))

    def naive(m, f, iv):
        return jnp.sum(iv[None] * (f[None] - m[:, None]) ** 2, axis=-1)

    np.testing.assert_allclose(_chi2_direct(m, f, iv), naive(m, f, iv), rtol=1e-14)
    for a, b in zip(jax.vjp(_chi2_direct, m, f, iv)[1](cot), jax.vjp(naive, m, f, iv)[1](cot)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
