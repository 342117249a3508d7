"""Tests for brutus_jax.kernels.priors and the brutus_jax.priors face.

References: astro-brutus 1.2.0 itself (``oracle`` tests, same random inputs,
~1e-10), and independent float64 numpy/scipy computations (quadrature of the
IMF and age densities, scipy distributions, asymptotic tail expansions, the
mixture identities of the Galactic prior).  The dust prior is tested in
test_dust.py.

Speed: kernels are called through module-level jitted wrappers with a small
set of shapes; the structured-``labels`` path (host-side) runs eagerly.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate, special, stats

import brutus_jax.priors as face
from brutus_jax.kernels import galactic
from brutus_jax.kernels import priors as kp

IMF = jax.jit(kp.logp_imf, static_argnames=("alpha_low", "alpha_high", "mass_break", "mass_min", "mass_max"))
PLX = jax.jit(kp.logp_parallax)
P2S = jax.jit(kp.convert_parallax_to_scale)
PSCALE = jax.jit(kp.logp_parallax_scale)
GAL = kp.logp_galactic_structure  # jits internally (parameters folded as constants)
AGE = jax.jit(kp.logp_age_from_feh)
CYL = jax.jit(kp.galactic_to_galactocentric_cyl)
DISK = jax.jit(kp.logn_disk)
HALO = jax.jit(kp.logn_halo)
FEH = jax.jit(kp.logp_feh)
LNMASS = jax.jit(kp.log_normal_mass)

IMF_PARAMS = [
    {},
    dict(alpha_low=1.0),  # flat-in-log low-mass slope (log-form normalisation)
    dict(alpha_low=0.7, alpha_high=2.7, mass_break=1.0, mass_min=0.1, mass_max=50.0),
    dict(mass_min=0.6),  # whole range above the break
    dict(alpha_high=1.0, mass_min=0.6, mass_max=30.0),
    dict(mass_min=0.1, mass_max=0.4),  # whole range below the break
]


def _masses(rng, n=400):
    m = 10 ** rng.uniform(-2.2, 2.2, n)
    m[:8] = [0.08, 0.5, 100.0, 0.0, -1.0, np.nan, 1.0, 0.6]
    return m


def _close(got, want, rtol=1e-10, atol=1e-10):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# oracle: brutus 1.2.0
# ---------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("params", IMF_PARAMS)
def test_imf_equals_brutus(brutus_oracle, rng, params):
    m1, m2 = _masses(rng), _masses(rng)[::-1].copy()
    ref = brutus_oracle.priors.logp_imf
    _close(IMF(m1, **params), ref(m1, **params))
    _close(IMF(m1, mgrid2=m2, **params), ref(m1, mgrid2=m2, **params))
    assert np.isneginf(ref(m1, **params)).any()


PLX_CASES = [(2.5, 0.1), (0.3, 0.2), (-0.9, 0.2), (1.0, 0.25), (1.0, 0.2501), (np.nan, 0.1),
             (1.0, np.nan), (1.0, 0.0), (1.0, -0.1), (0.02, 0.004), (10.0, 2.0)]


@pytest.mark.oracle
def test_parallax_priors_equal_brutus(brutus_oracle, rng):
    bp = brutus_oracle.priors
    plx = rng.uniform(-1.0, 5.0, 300)
    scales = plx**2
    scale_errs = rng.uniform(0.0, 0.5, 300)
    for p, e in PLX_CASES:
        _close(PLX(plx, p, e), bp.logp_parallax(plx, p, e))
        _close(PSCALE(scales, scale_errs, p, e), bp.logp_parallax_scale(scales, scale_errs, p, e))
        _close(P2S(p, e), bp.convert_parallax_to_scale(p, e), rtol=1e-14, atol=0.0)
        got = kp.convert_parallax_to_scale(p, e, snr_lim=2.0)
        _close(got, bp.convert_parallax_to_scale(p, e, snr_lim=2.0), rtol=1e-14, atol=0.0)


@pytest.mark.oracle
def test_structure_pieces_equal_brutus(brutus_oracle, rng):
    from brutus.utils.math import galactic_to_galactocentric_cyl as ref_cyl

    bp = brutus_oracle.priors
    d = 10 ** rng.uniform(-2, 1.7, 500)
    ell, b = rng.uniform(-180, 540, 500), rng.uniform(-90, 90, 500)
    R, Z = CYL(d, ell, b, R_solar=8.3, Z_solar=0.02)
    Rw, Zw = ref_cyl(d, ell, b, R_solar=8.3, Z_solar=0.02)
    _close(R, Rw, rtol=1e-13)
    _close(Z, Zw, rtol=1e-13, atol=1e-14)
    _close(DISK(Rw, Zw), bp.logn_disk(Rw, Zw))
    kw = dict(R_solar=8.0, Z_solar=0.1, R_scale=3.0, Z_scale=0.5, R_smooth=0.5)
    _close(DISK(Rw, Zw, **kw), bp.logn_disk(Rw, Zw, **kw))
    _close(HALO(Rw, Zw), bp.logn_halo(Rw, Zw))
    kw = dict(R_solar=8.0, Z_solar=0.1, R_smooth=1.0, eta=3.0, q_ctr=0.4, q_inf=0.9, r_q=4.0)
    _close(HALO(Rw, Zw, **kw), bp.logn_halo(Rw, Zw, **kw))
    feh = rng.uniform(-3, 1, 500)
    _close(FEH(feh), bp.logp_feh(feh))
    _close(FEH(feh, -1.6, 0.5), bp.logp_feh(feh, -1.6, 0.5))
    age = rng.uniform(-1.0, 15.0, 500)
    for fm in (-0.2, -0.7, -1.6, 0.5, -3.0):
        _close(AGE(age, fm), bp.logp_age_from_feh(age, fm))
    kw = dict(max_age=12.0, min_age=1.0, feh_age_ctr=-0.3, feh_age_scale=0.3, nsigma_from_max_age=1.5,
              max_sigma=3.0, min_sigma=0.5)
    _close(AGE(age, -0.4, **kw), bp.logp_age_from_feh(age, -0.4, **kw))


def _labels(feh, loga, extra=True):
    fields = [("mini", "f8")] if extra else []
    fields += [("feh", "f8"), ("loga", "f8")]
    lab = np.zeros(feh.size, dtype=fields)
    lab["feh"], lab["loga"] = feh, loga
    return lab


def _gal_inputs(rng, n):
    d = 10 ** rng.uniform(-2.0, 1.8, n)
    feh = rng.uniform(-3.0, 0.6, n)
    loga = rng.uniform(7.0, 10.2, n)  # includes ages beyond 13.8 Gyr (-inf)
    return d, feh, loga


GAL_PARAMS = dict(R_solar=8.3, Z_solar=0.02, R_thin=3.0, Z_thin=0.25, Rs_thin=1.0, R_thick=2.2, Z_thick=1.0,
                  f_thick=0.1, Rs_thick=1.5, Rs_halo=1.0, q_halo_ctr=0.3, q_halo_inf=0.7, r_q_halo=5.0,
                  eta_halo=3.5, f_halo=0.01, feh_thin=-0.1, feh_thin_sigma=0.2, feh_thick=-0.6,
                  feh_thick_sigma=0.3, feh_halo=-1.5, feh_halo_sigma=0.4, max_age=13.5, min_age=0.5,
                  feh_age_ctr=-0.4, feh_age_scale=0.4, nsigma_from_max_age=2.5, max_sigma=3.5, min_sigma=0.8)


def _compare_components(got, want):
    assert set(got) == set(want)
    for key in want:
        assert len(got[key]) == len(want[key]) == 3
        for g, w in zip(got[key], want[key]):
            _close(g, w)


NGAL = 1200  # > 1000: brutus uses its numba kernel for scalar (l, b) without components


def _close_gal(got, want):
    """brutus's numba kernel writes -1e300 where the age is outside [min_age, max_age]; we give -inf."""
    want = np.asarray(want)
    _close(got, np.where(want <= -1e299, -np.inf, want))


@pytest.mark.oracle
@pytest.mark.parametrize("coord", [(30.0, 20.0), (200.0, -3.0), (0.0, 90.0)])
def test_galactic_structure_equals_brutus(brutus_oracle, rng, coord):
    ref = brutus_oracle.priors.logp_galactic_structure
    d, feh, loga = _gal_inputs(rng, NGAL)
    for f, a in ((None, None), (feh, None), (None, loga), (feh, loga)):
        want, wc = ref(d, coord, feh=f, loga=a, return_components=True)  # brutus's numpy path
        got, gc = GAL(d, coord, feh=f, loga=a, return_components=True)
        _close(got, want)
        _compare_components(gc, wc)
        _close_gal(GAL(d, coord, feh=f, loga=a), ref(d, coord, feh=f, loga=a))  # brutus's numba path
        if a is not None:
            assert np.isneginf(want).any() and np.isfinite(want).any()
    # structured labels: same numbers, with or without plain-array overrides
    lab = _labels(feh, loga)
    want = ref(d, coord, labels=lab, return_components=True)[0]
    _close(GAL(d, coord, labels=lab), want)
    _close(GAL(d, coord, labels=_labels(feh * 0 + 9.0, loga), feh=feh), want)
    _close(GAL(d, coord, feh=feh, loga=loga), want)
    _close_gal(GAL(d, coord, labels=lab), ref(d, coord, labels=lab))
    only_feh = np.zeros(d.size, dtype=[("feh", "f8")])
    only_feh["feh"] = feh
    _close(GAL(d, coord, labels=only_feh), ref(d, coord, labels=only_feh))
    # non-default parameters
    want, wc = ref(d, coord, feh=feh, loga=loga, return_components=True, **GAL_PARAMS)
    got, gc = GAL(d, coord, feh=feh, loga=loga, return_components=True, **GAL_PARAMS)
    _close(got, want)
    _compare_components(gc, wc)


@pytest.mark.oracle
def test_galactic_structure_equals_brutus_array_coords(brutus_oracle, rng):
    """One (l, b) per point."""
    ref = brutus_oracle.priors.logp_galactic_structure
    d, feh, loga = _gal_inputs(rng, NGAL)
    ell, b = rng.uniform(0, 360, NGAL), rng.uniform(-90, 90, NGAL)
    _close(GAL(d, (ell, b), feh=feh, loga=loga), ref(d, (ell, b), feh=feh, loga=loga))


@pytest.mark.oracle
def test_ps1_luminosity_function_equals_brutus(brutus_oracle, rng):
    Mr = rng.uniform(-3.0, 23.0, 500)
    Mr[:4] = [-1.0, 20.0, 5.0, 5.025]
    _close(face.logp_ps1_luminosity_function(Mr), brutus_oracle.priors.logp_ps1_luminosity_function(Mr),
           rtol=1e-12, atol=1e-12)


def test_face_has_every_brutus_name():
    names = ["logp_imf", "logp_ps1_luminosity_function", "logp_parallax", "logp_parallax_scale",
             "convert_parallax_to_scale", "logp_galactic_structure", "logn_disk", "logn_halo", "logp_feh",
             "logp_age_from_feh", "logp_extinction"]
    assert sorted(face.__all__) == sorted(names)
    assert all(callable(getattr(face, n)) for n in names)
    assert face.logp_imf is kp.logp_imf and face.logp_galactic_structure is kp.logp_galactic_structure


# ---------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", IMF_PARAMS)
def test_imf_is_normalised(params):
    p = dict(alpha_low=1.3, alpha_high=2.3, mass_break=0.5, mass_min=0.08, mass_max=100.0) | params
    f = jax.jit(lambda m: jnp.exp(kp.logp_imf(m, **params)))
    pts = [x for x in (p["mass_break"],) if p["mass_min"] < x < p["mass_max"]]
    total, err = integrate.quad(lambda m: float(f(m)), p["mass_min"], p["mass_max"], points=pts or None, limit=200)
    assert abs(total - 1.0) < 1e-7
    # zero outside the support, continuous at the break
    assert float(f(p["mass_min"] * 0.99)) == 0.0 and float(f(p["mass_max"] * 1.01)) == 0.0
    mb = p["mass_break"]
    if p["mass_min"] < mb < p["mass_max"]:
        assert abs(float(f(mb * (1 - 1e-9))) / float(f(mb * (1 + 1e-9))) - 1.0) < 1e-7
    # defaults: ln Z = 1.37463 (analytic); ln xi(1) = (2.3 - 1.3) ln 0.5
    if not params:
        assert abs(float(kp.logp_imf(1.0)) - (math.log(0.5) - 1.37463)) < 1e-5


def test_imf_binaries_are_independent_draws(rng):
    m1, m2 = 10 ** rng.uniform(-1, 1.9, 50), 10 ** rng.uniform(-1, 0.3, 50)
    _close(IMF(m1, mgrid2=m2), np.asarray(IMF(m1)) + np.asarray(IMF(m2)), rtol=1e-14)


def test_imf_rejects_empty_range():
    with pytest.raises(ValueError, match="mass range"):
        kp.logp_imf(1.0, mass_min=2.0, mass_max=1.0)
    with pytest.raises(ValueError, match="mass range"):
        kp.logp_imf(1.0, mass_min=0.0)


def test_parallax_priors_independent(rng):
    plx = rng.uniform(-1.0, 5.0, 100)
    _close(PLX(plx, 2.0, 0.3), stats.norm.logpdf(plx, 2.0, 0.3), rtol=1e-13)
    assert np.all(np.asarray(PLX(plx, 2.0, -0.3)) == 0.0) and np.all(np.asarray(PLX(plx, np.inf, 0.3)) == 0.0)
    # scale of a 10-sigma parallax: moments of (p + e N)^2 for p >> e
    p, e = 2.0, 0.2
    s_mean, s_std = (float(x) for x in P2S(p, e))
    assert s_mean == pytest.approx(p**2 + e**2, rel=1e-14)
    assert s_std == pytest.approx(math.sqrt(2 * e**4 + 4 * p**2 * e**2), rel=1e-14)
    s, se = plx**2, np.full(100, 0.1)
    _close(PSCALE(s, se, p, e), stats.norm.logpdf(s, s_mean, math.hypot(s_std, 0.1)), rtol=1e-13)
    # SNR exactly at / below the limit: flat prior, uninformative scale
    assert np.all(np.asarray(PSCALE(s, se, 0.8, 0.2)) == 0.0)
    assert tuple(float(x) for x in P2S(0.8, 0.2)) == (1e-20, 1e20)
    # vectorised over stars: per-star measurements broadcast against models
    pm, pe = np.array([2.0, 0.8, np.nan]), np.array([0.2, 0.2, 0.2])
    out = np.asarray(PLX(plx[:, None], pm, pe))
    _close(out[:, 0], stats.norm.logpdf(plx, 2.0, 0.2), rtol=1e-13)
    assert np.all(out[:, 2] == 0.0)


def test_galactocentric_geometry():
    R, Z = (np.asarray(x) for x in kp.galactic_to_galactocentric_cyl(np.array([0.0, 8.2, 1.0, 2.0]),
                                                                      np.array([10.0, 0.0, 180.0, 90.0]),
                                                                      np.array([5.0, 0.0, 0.0, 90.0])))
    _close(R, [8.2, 0.0, 9.2, 8.2], atol=1e-12)
    _close(Z, [0.025, 0.025, 0.025, 2.025], atol=1e-12)
    # densities are 0 at the Sun
    assert abs(float(kp.logn_disk(8.2, 0.025))) < 1e-14 and abs(float(kp.logn_halo(8.2, 0.025))) < 1e-14


def test_age_prior_normalised_and_matches_scipy(rng):
    for fm in (-0.2, -0.7, -1.6):
        mean = 13.8 / (1 + math.exp((fm + 0.5) / 0.5))
        sig = min(max((13.8 - mean) / 2.0, 1.0), 4.0)
        t = rng.uniform(0.0, 13.8, 200)
        _close(AGE(t, fm), stats.truncnorm.logpdf(t, -mean / sig, (13.8 - mean) / sig, mean, sig), rtol=1e-12)
        total, _ = integrate.quad(lambda x: math.exp(float(AGE(x, fm))), 0.0, 13.8)
        assert abs(total - 1.0) < 1e-8
    # the documented (mean, sigma) of the three components
    for fm, (mean, sig) in ((-0.2, (4.890, 4.000)), (-0.7, (8.262, 2.769)), (-1.6, (12.423, 1.000))):
        got = galactic._age_mean_sigma(fm, 13.8, 0.0, -0.5, 0.5, 2.0, 4.0, 1.0)
        assert abs(float(got[0]) - mean) < 1e-3 and abs(float(got[1]) - sig) < 1e-3
    assert np.isneginf(np.asarray(AGE(np.array([-0.1, 13.9]), -0.2))).all()


def test_log_normal_mass_tails():
    a = np.array([-1.0, -3.0, 0.5, 2.0, -np.inf, -40.0, -np.inf])
    b = np.array([1.0, 2.0, 3.0, np.inf, 0.0, -39.0, np.inf])
    want = np.log(special.ndtr(b[:5]) - special.ndtr(a[:5]))
    _close(np.asarray(LNMASS(a, b))[:5], want, rtol=1e-13)
    got = np.asarray(LNMASS(np.array([40.0, -np.inf, 30.0]), np.array([np.inf, -40.0, 30.0])))

    def log_mills(x):  # log Phi(-x) for large x
        return -0.5 * x * x - 0.5 * math.log(2 * math.pi) - math.log(x) + math.log1p(-1 / x**2 + 3 / x**4 - 15 / x**6)

    assert abs(got[0] - log_mills(40.0)) < 1e-12 * abs(log_mills(40.0))
    assert abs(got[1] - log_mills(40.0)) < 1e-12 * abs(log_mills(40.0))
    assert got[2] == -np.inf
    # [-40, -39]: essentially Phi(-39)
    assert abs(float(LNMASS(-40.0, -39.0)) - log_mills(39.0)) < 1e-10 * abs(log_mills(39.0))


def test_galactic_structure_mixture_identities(rng):
    d, feh, loga = _gal_inputs(rng, NGAL)
    loga = np.minimum(loga, 10.13)
    coord = (75.0, -12.0)
    total, comps = (jax.tree.map(np.asarray, x) for x in GAL(d, coord, feh=feh, loga=loga, return_components=True))
    nd = np.stack(comps["number_density"])
    lnp_pos = special.logsumexp(nd, axis=0)
    # membership probabilities P(c | pos) sum to 1
    _close(np.exp(nd - lnp_pos).sum(0), 1.0, rtol=1e-13)
    # [Fe/H] terms = N(feh | c) P(c | pos)
    sig = {-0.2: 0.3, -0.7: 0.4, -1.6: 0.5}
    for comp, n, (mu, s) in zip(comps["feh"], nd, sig.items()):
        _close(comp, stats.norm.logpdf(feh, mu, s) + n - lnp_pos, rtol=1e-12)
    lnp_feh = special.logsumexp(np.stack(comps["feh"]), axis=0)
    # age terms = TN(age | c) P(c | pos, feh): weights sum to 1
    age = 10**loga / 1e9
    w = []
    for comp, mu in zip(comps["age"], sig):
        w.append(comp - np.asarray(AGE(age, mu)))
    _close(np.exp(np.stack(w)).sum(0), 1.0, rtol=1e-12)
    _close(np.stack(w), np.stack(comps["feh"]) - lnp_feh, rtol=1e-12)
    lnp_age = special.logsumexp(np.stack(comps["age"]), axis=0)
    _close(total, lnp_pos + lnp_feh + lnp_age, rtol=1e-12)
    # position-only form and volume factor: thin disk = exponential disk (numpy) + 2 ln d
    lr, br = np.radians(coord[0]), np.radians(coord[1])
    R = np.hypot(d * np.cos(br) * np.cos(lr) - 8.2, d * np.cos(br) * np.sin(lr))
    Z = d * np.sin(br) + 0.025
    thin = -(np.sqrt(R**2 + 4.0) - math.sqrt(8.2**2 + 4.0)) / 2.6 - (np.abs(Z) - 0.025) / 0.3
    _close(nd[0], thin + 2 * np.log(d), rtol=1e-12)
    _close(GAL(d, coord), lnp_pos, rtol=1e-12)
    # the mapping form of labels is traceable and equals the plain arrays
    lab = {"feh": jnp.asarray(feh), "loga": jnp.asarray(loga)}
    _close(jax.jit(lambda x, lab: kp.logp_galactic_structure(x, coord, labels=lab))(d, lab), total, rtol=1e-14)


def test_gradients_are_finite(rng):
    d, feh, loga = _gal_inputs(rng, 64)
    loga = np.minimum(loga, 10.1)
    g = jax.jit(jax.grad(lambda x, f, a: jnp.sum(kp.logp_galactic_structure(x, (30.0, 10.0), feh=f, loga=a)),
                         argnums=(0, 1, 2)))
    for arr in g(d, feh, loga):
        assert np.all(np.isfinite(np.asarray(arr)))
    # with respect to (traced, not constant-folded) model parameters
    gp = jax.jit(jax.grad(lambda r, z: jnp.sum(kp.logp_galactic_structure(d, (30.0, 10.0), R_solar=r, Z_thick=z)),
                          argnums=(0, 1)))
    assert all(np.isfinite(float(x)) for x in gp(8.2, 0.9))

    def smooth_priors(m, plx, R, Z, t):  # every kernel at points where it is smooth, one compile
        return jnp.concatenate([
            kp.logp_imf(m), kp.logp_imf(m, mgrid2=m[::-1]), kp.logp_parallax(plx, 1.0, 0.2),
            kp.logp_parallax_scale(plx**2, 0.1, 1.0, 0.2), kp.logn_halo(R, Z), kp.logn_disk(R, Z),
            kp.logp_age_from_feh(t, -0.7),
        ])

    args = (np.array([0.1, 0.3, 0.7, 2.0, 20.0]), np.array([0.5, 1.5]), np.array([3.0, 9.0]),
            np.array([0.5, -2.0]), np.array([1.0, 7.0, 13.0]))
    check_grads(jax.jit(smooth_priors), args, order=1, modes=["rev"])

    # where a prior is -inf or flat the gradient is 0, not NaN
    def edge_grads(m, pm, pe):
        lnp = kp.logp_imf(m)
        gm = jax.grad(lambda m: jnp.sum(jnp.where(jnp.isfinite(kp.logp_imf(m)), kp.logp_imf(m), 0.0)))(m)
        gpar = jax.grad(lambda pm, pe: jnp.sum(kp.logp_parallax_scale(jnp.array([1.0, 2.0]), 0.1, pm, pe)),
                        argnums=(0, 1))(pm, pe)
        return lnp, gm, gpar

    edge = jax.jit(jax.vmap(edge_grads, in_axes=(None, 0, 0)))
    lnp, gm, (gpm, gpe) = edge(jnp.array([0.01, 0.5, 200.0, -1.0]), jnp.array([1.0, 1.0, np.nan, 0.1]),
                               jnp.array([0.2, 0.0, 0.2, 0.2]))
    assert np.isneginf(np.asarray(lnp)).sum() == 4 * 3
    assert all(np.all(np.isfinite(np.asarray(x))) for x in (gm, gpm, gpe))
    assert np.all(np.asarray(gpm)[1:] == 0.0) and np.asarray(gpm)[0] != 0.0


def test_float32_follows_input_and_agrees(rng):
    # shapes as in the oracle tests, so the float64 references are already compiled
    d, feh, loga = _gal_inputs(rng, NGAL)
    loga = np.minimum(loga, 10.13)
    f64 = np.asarray(GAL(d, (45.0, 5.0), feh=feh, loga=loga))
    f32 = GAL(d.astype(np.float32), (45.0, 5.0), feh=feh.astype(np.float32), loga=loga.astype(np.float32))
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f32), f64, rtol=1e-4, atol=2e-4)
    m = _masses(rng)
    m[:8] = 1.0
    i32 = IMF(m.astype(np.float32), mgrid2=m[::-1].astype(np.float32))
    assert i32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(i32), np.asarray(IMF(m, mgrid2=m[::-1])), rtol=1e-5, atol=1e-5)
    plx = rng.uniform(0.5, 3.0, 300)
    p32 = PSCALE((plx**2).astype(np.float32), np.full(300, 0.1, np.float32), np.float32(2.0), np.float32(0.2))
    assert p32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p32), np.asarray(PSCALE(plx**2, np.full(300, 0.1), 2.0, 0.2)),
                               rtol=1e-5, atol=1e-5)
    assert AGE(np.float32(5.0), -0.2).dtype == jnp.float32


def test_vmap_over_stars(rng):
    """Per-star sky positions and labels: vmap == per-star calls."""
    d = jnp.asarray(10 ** rng.uniform(-1, 1, (4, 30)))
    ell, b = jnp.asarray(rng.uniform(0, 360, 4)), jnp.asarray(rng.uniform(-60, 60, 4))
    feh = jnp.asarray(rng.uniform(-2, 0.3, (4, 30)))
    f = jax.jit(jax.vmap(lambda x, l_, b_, z: kp.logp_galactic_structure(x, (l_, b_), feh=z)))
    out = np.asarray(f(d, ell, b, feh))
    d, ell, b, feh = (np.asarray(x) for x in (d, ell, b, feh))
    for i in range(4):
        _close(out[i], GAL(d[i], (ell[i], b[i]), feh=feh[i]), rtol=1e-13)


def test_ps1_luminosity_function_kernel_and_host(rng, monkeypatch):
    x = np.linspace(-1.0, 20.0, 421)
    y = -0.5 * (x - 6.0) ** 2 / 9.0 + 0.1 * np.sin(x)
    Mr = rng.uniform(-1.0, 20.0, 300)
    kern = jax.jit(kp.logp_ps1_luminosity_function)
    _close(kern(Mr, x, y), np.interp(Mr, x, y), rtol=1e-13)
    out = np.asarray(kern(np.array([-3.0, 25.0]), x, y))
    _close(out, [y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (-2.0),
                 y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * 5.0], rtol=1e-12)
    _close(face.logp_ps1_luminosity_function(Mr, table=(x, y)), np.interp(Mr, x, y), rtol=1e-13)
    assert face.logp_ps1_luminosity_function(np.float32(3.0), table=(x, y)).dtype == jnp.float32
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="astro-brutus"):
        face.logp_ps1_luminosity_function(Mr)


@pytest.mark.parametrize("with_feh,with_age", [(True, True), (True, False), (False, True), (False, False)])
def test_galactic_factored_equals_full(with_feh, with_age):
    """The per-model/per-distance factorisation used in the MC integration equals
    the full three-component prior (membership weights telescope)."""
    from brutus_jax.kernels.galactic import galactic_prior_of_distance

    rng = np.random.default_rng(3)
    K, n = 120, 25
    feh = rng.uniform(-2.5, 0.6, K) if with_feh else None
    loga = rng.uniform(7.0, 10.2, K) if with_age else None
    if with_age:
        loga[:3] = 10.18  # older than 13.8 Gyr: -inf
    d = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), (K, n)))
    for ell, b in [(10.0, 5.0), (200.0, -60.0), (0.0, 90.0)]:
        ref = np.asarray(galactic.logp_galactic_structure(d, (ell, b), feh=None if feh is None else feh[:, None],
                                                 loga=None if loga is None else loga[:, None], R_solar=8.0,
                                                 Z_solar=0.02))
        for stacked in (True, False):  # both layouts of the component terms (BruteForce's vmapped / serial MC)
            new = np.asarray(galactic_prior_of_distance(feh, loga, ell, b, stacked=stacked, R_solar=8.0,
                                                        Z_solar=0.02)(d))
            fin = np.isfinite(ref)
            np.testing.assert_array_equal(np.isfinite(new), fin)
            np.testing.assert_allclose(new[fin], ref[fin], rtol=1e-12, atol=1e-10)
            assert np.all(new[~fin] == -np.inf)
        if with_age:
            assert 0 < fin.mean() < 1  # both finite and excluded (too old) models were exercised


def test_galactic_factored_logsumexp_any_order():
    """The two-exponential 3-term log-sum-exp of `logp_galactic_factored` (largest term
    as exp(0) = 1) equals scipy's logsumexp whichever component is largest, with ties,
    -inf terms, all terms -inf and 700-nat gaps."""
    from scipy.special import logsumexp

    from brutus_jax.kernels.galactic import logp_galactic_factored

    vals = [-np.inf, -700.0, -3.0, 0.0, 0.0, 2.5, 40.0]
    t = np.array(np.meshgrid(vals, vals, vals, indexing="ij")).reshape(3, -1)  # every order
    got = np.asarray(logp_galactic_factored(tuple(t[c][None, :] for c in range(3)), np.zeros((1, 3))))[0]
    with np.errstate(divide="ignore"):
        ref = logsumexp(t, axis=0)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-14, atol=1e-14)
    assert np.all(got[~fin] == -np.inf)


def test_galactic_params_rejects_unknown():
    from brutus_jax.kernels.galactic import galactic_params

    with pytest.raises(ValueError, match="R_sun"):
        galactic_params(R_sun=8.0)
    assert galactic_params(R_solar=8.3)["R_solar"] == 8.3
