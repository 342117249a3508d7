"""Tests for brutus_jax.kernels.photometry (the brutus.utils photometry functions).

References are independent of the code under test: float64 numpy/scipy formulas
written here, exact analytic identities (round trips, asymptotes), and, for the
``oracle`` tests, astro-brutus 1.2.0 itself.

Speed: on CPU every XLA compile costs ~0.1 s and eager (op-by-op) execution
compiles every primitive separately, so the tests call module-level jitted
kernels with a small set of reused shapes/signatures.  Eager execution is
exercised once (``test_magnitude_eager_bad_values``); jit, vmap and eager are
the same code, so the jitted checks cover the maths.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from brutus_jax.kernels.photometry import (
    add_mag,
    inv_luptitude,
    inv_magnitude,
    luptitude,
    magnitude,
    phot_loglike,
)

NOBJ, NMOD, NFILT = 4, 6, 5
POGSON = 2.5 / math.log(10.0)

MAG, IMAG = jax.jit(magnitude), jax.jit(inv_magnitude)
LUPT, ILUPT = jax.jit(luptitude), jax.jit(inv_luptitude)
ADDMAG = jax.jit(add_mag)
PL = jax.jit(phot_loglike, static_argnames=("dim_prior",))


def npa(*xs):
    """jax outputs -> numpy (indexing/comparing jax arrays eagerly would compile)."""
    return tuple(np.asarray(x) for x in xs)


# ---------------------------------------------------------------------------
# independent float64 reference for phot_loglike
# ---------------------------------------------------------------------------


def _ref_loglike(flux, err, mflux, mask, dim_prior=False, dof_reduction=0, extra_chi2=0.0, extra_dims=0.0):
    """Loop over the batch indices, scipy.stats per object/model.

    ``flux, err, mflux, mask`` broadcast to a common (..., Nfilt) shape; the
    extras broadcast to the batch shape (...).
    """
    flux, err, mflux, mask = np.broadcast_arrays(flux, err, mflux, mask)
    batch = flux.shape[:-1]
    extra_chi2 = np.broadcast_to(extra_chi2, batch)
    extra_dims = np.broadcast_to(extra_dims, batch)
    out = np.empty(batch)
    with np.errstate(invalid="ignore"):
        for idx in np.ndindex(*batch):
            use = (mask[idx] > 0) & np.isfinite(flux[idx]) & np.isfinite(err[idx]) & (err[idx] > 0)
            w = np.asarray(mask[idx], float)[use]
            f, e, m = flux[idx][use], err[idx][use], mflux[idx][use]
            chi2 = np.sum(w * ((f - m) / e) ** 2) + extra_chi2[idx]
            n = np.sum(w) + extra_dims[idx]
            if dim_prior:
                dof = n - dof_reduction
                out[idx] = stats.chi2.logpdf(chi2, dof) if dof > 0 else -np.inf
            elif np.all(w == 1.0):
                # independent Gaussians; the extra terms as brutus counts them:
                # -chi2_extra/2 and -ln(2 pi)/2 per extra dimension (no ln sigma^2)
                out[idx] = (
                    np.sum(stats.norm.logpdf(f, loc=m, scale=e))
                    - 0.5 * extra_chi2[idx]
                    - 0.5 * extra_dims[idx] * np.log(2 * np.pi)
                )
            else:  # weighted bands
                out[idx] = -0.5 * chi2 - 0.5 * (n * np.log(2 * np.pi) + np.sum(w * np.log(e**2)))
    return out


@pytest.fixture
def phot(rng):
    flux = rng.uniform(0.5, 5.0, (NOBJ, NFILT))
    err = rng.uniform(0.05, 0.5, (NOBJ, NFILT))
    zp = rng.uniform(0.5, 3.0, NFILT)
    sky = rng.uniform(0.1, 1.0, NFILT)
    mag = rng.uniform(10.0, 25.0, (NOBJ, NFILT))
    return flux, err, zp, sky, mag


@pytest.fixture
def loglike_data(rng):
    flux = rng.uniform(0.5, 5.0, (NOBJ, NFILT))
    err = rng.uniform(0.05, 0.5, (NOBJ, NFILT))
    mflux = flux + rng.normal(0.0, 0.3, (NMOD, NOBJ, NFILT))  # (Nmod, Nobj, Nfilt)
    mask = rng.random((NOBJ, NFILT)) > 0.3
    mask[0] = True  # one fully used object
    mask[3, :2] = False
    return flux, err, mflux, mask


# ---------------------------------------------------------------------------
# magnitudes
# ---------------------------------------------------------------------------


def test_magnitude_matches_numpy_reference(phot):
    flux, err, zp, _, _ = phot
    mag, merr = npa(*MAG(flux, err, zp))
    np.testing.assert_allclose(mag, -2.5 * np.log10(flux / zp), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(merr, 1.0857362047581294 * err / flux, rtol=1e-13)
    assert mag.shape == (NOBJ, NFILT)


def test_magnitude_roundtrips(phot):
    flux, err, zp, _, mag = phot
    f2, e2 = npa(*IMAG(*MAG(flux, err, zp), zp))
    np.testing.assert_allclose(f2, flux, rtol=1e-13)
    np.testing.assert_allclose(e2, err, rtol=1e-13)
    merr = err / 10.0
    ph, ph_err = npa(*IMAG(mag, merr, zp))
    np.testing.assert_allclose(ph, zp * 10 ** (-0.4 * mag), rtol=1e-12)
    np.testing.assert_allclose(ph_err, 0.4 * np.log(10.0) * merr * ph, rtol=1e-12)
    m2, me2 = npa(*MAG(ph, ph_err, zp))
    np.testing.assert_allclose(m2, mag, rtol=1e-13)
    np.testing.assert_allclose(me2, merr, rtol=1e-12)


def test_magnitude_eager_bad_values():
    """Eager call; zero/negative/NaN flux -> inf/NaN, no exception; eager == jit."""
    flux = np.array([-1.0, 0.0, np.nan, 1.0, 2.0])
    err = np.full(5, 0.1)
    mag, merr = npa(*magnitude(flux, err))
    assert np.isnan(mag[0]) and mag[1] == np.inf and np.isnan(mag[2]) and mag[3] == 0.0
    np.testing.assert_allclose(mag[4], -2.5 * np.log10(2.0), rtol=1e-15)
    assert np.isnan(merr[2]) and merr[1] == np.inf
    jm, jme = npa(*MAG(flux, err, np.ones(5)))
    np.testing.assert_array_equal(jm, mag)
    np.testing.assert_array_equal(jme, merr)


def test_luptitude_matches_lupton_formula_and_roundtrips(phot, rng):
    _, err, zp, sky, _ = phot
    flux = rng.normal(0.0, 3.0, (NOBJ, NFILT))  # includes negative fluxes
    lupt, lerr = npa(*LUPT(flux, err, sky, zp))
    # Lupton+1999: mu = -a [asinh(x / 2b) + ln b], a = 2.5 log10(e), everything in zeropoint units
    a = 2.5 * np.log10(np.e)
    x, dx, b = flux / zp, err / zp, sky / zp
    np.testing.assert_allclose(lupt, -a * (np.arcsinh(x / (2 * b)) + np.log(b)), rtol=1e-13, atol=1e-13)
    # sigma_mu = |d mu / dx| sigma_x = a sigma_x / sqrt(4 b^2 + x^2)
    np.testing.assert_allclose(lerr, a * dx / np.sqrt(4 * b**2 + x**2), rtol=1e-13)
    assert np.all(np.isfinite(lupt))
    f2, e2 = npa(*ILUPT(lupt, lerr, sky, zp))
    np.testing.assert_allclose(f2, flux, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(e2, err, rtol=1e-11)


def test_luptitude_bright_asymptote_is_magnitude(rng):
    b = 1e-3
    sky, zp = np.full(NFILT, b), np.ones(NFILT)
    flux = rng.uniform(1.0, 10.0, (NOBJ, NFILT))  # flux / b >= 1000
    err = rng.uniform(0.01, 0.1, (NOBJ, NFILT))
    lupt, lerr = npa(*LUPT(flux, err, sky, zp))
    mag, merr = npa(*MAG(flux, err, zp))
    # asinh(y) = ln(2y) + 1/(4y^2) + ...  =>  lupt - mag = -a (b/f)^2 + O((b/f)^4)
    np.testing.assert_allclose(lupt - mag, -POGSON * (b / flux) ** 2, rtol=1e-3, atol=1e-15)
    # sigma_lupt / sigma_mag = (1 + 4 b^2 / f^2)^(-1/2) = 1 - 2 (b/f)^2 + ...
    np.testing.assert_allclose(lerr / merr - 1.0, -2.0 * (b / flux) ** 2, rtol=1e-3)
    # ... and far from a magnitude for faint sources (f = b)
    lf, _ = npa(*LUPT(np.full_like(flux, b), err, sky, zp))
    mf, _ = npa(*MAG(np.full_like(flux, b), err, zp))
    np.testing.assert_allclose(lf - mf, -POGSON * (np.arcsinh(0.5) - np.log(1.0)), rtol=1e-12)
    assert np.all(np.abs(lf - mf) > 0.5)


def test_add_mag(phot, rng):
    m1 = phot[4]
    m2 = np.broadcast_to(rng.uniform(5.0, 25.0, NFILT), m1.shape)
    ref = -2.5 * np.log10(10 ** (-0.4 * m1) + 10 ** (-0.4 * m2))
    np.testing.assert_allclose(ADDMAG(m1, m2), ref, rtol=1e-13)
    np.testing.assert_allclose(ADDMAG(m1, m1), m1 - 2.5 * np.log10(2.0), rtol=1e-13)
    np.testing.assert_allclose(ADDMAG(m1, np.full_like(m1, np.inf)), m1, rtol=1e-14)  # + zero flux
    # stable where the naive 10**(-0.4 m) form overflows / underflows float32
    f32 = np.float32
    out = np.asarray(ADDMAG(np.full(m1.shape, -120.0, f32), np.full(m1.shape, [-120.0, 150.0, 150.0, 1e30, 0.0], f32)))
    assert out.dtype == np.float32
    expected = [-120.0 - 2.5 * np.log10(2.0), -120.0, -120.0, -120.0, -120.0]
    np.testing.assert_allclose(out, np.broadcast_to(expected, m1.shape), rtol=1e-6)
    out = np.asarray(ADDMAG(np.full(m1.shape, 150.0, f32), np.full(m1.shape, 200.0, f32)))
    np.testing.assert_allclose(out, 150.0, rtol=1e-6)


def test_magnitude_gradients(phot):
    flux, err, zp, sky, _ = phot

    def all_outputs(f, e):
        return jnp.concatenate(
            magnitude(f, e, zp) + inv_magnitude(f, e, zp) + luptitude(f - 2.0, e, sky, zp)
            + inv_luptitude(f, e, sky, zp) + (add_mag(f, e + 1.0),)
        )

    # reverse mode against central finite differences (a random projection of the full Jacobian)
    check_grads(jax.jit(all_outputs), (flux, err), order=1, modes=("rev",))


def test_float32_magnitudes(phot):
    flux, err, zp, sky, mag = phot
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    cases = [
        (MAG, (flux, err, zp)),
        (IMAG, (mag, err, zp)),
        (LUPT, (flux - 2.0, err, sky, zp)),
        (ILUPT, (mag - 12.0, err, sky, zp)),
    ]
    for fn, args in cases:
        out32 = npa(*fn(*map(f32, args)))
        out64 = npa(*fn(*args))
        for o32, o64 in zip(out32, out64):
            assert o32.dtype == np.float32 and o64.dtype == np.float64
            # float32 rounding of inputs and ops: 1e-5 relative (1e-5 mag absolute near mag 0)
            np.testing.assert_allclose(o32, o64, rtol=1e-5, atol=1e-5)
    # Python-float default zeropoints must not promote float32 to float64 (eager path)
    assert magnitude(f32(flux[0]), f32(err[0]))[0].dtype == jnp.float32


# ---------------------------------------------------------------------------
# phot_loglike
# ---------------------------------------------------------------------------


def test_loglike_broadcasting_matches_scipy_norm(loglike_data):
    flux, err, mflux, _ = loglike_data
    grid = mflux[:, :1, :]  # (Nmod, 1, Nfilt): one shared grid against every object
    lnl = np.asarray(PL(flux, err, grid))
    assert lnl.shape == (NMOD, NOBJ)
    np.testing.assert_allclose(lnl, _ref_loglike(flux, err, grid, 1), rtol=1e-12)


def test_loglike_mask_with_nan_in_masked_bands(loglike_data):
    flux, err, mflux, mask = loglike_data
    fl, er, mf = flux.copy(), err.copy(), mflux.copy()
    fl[~mask] = np.nan
    er[~mask & (np.arange(NFILT) % 2 == 0)] = np.nan
    mf[:, ~mask] = np.nan  # model fluxes in masked bands are ignored too
    lnl = np.asarray(PL(fl, er, mf, mask=mask))
    assert np.all(np.isfinite(lnl))
    np.testing.assert_allclose(lnl, _ref_loglike(flux, err, mflux, mask), rtol=1e-12)
    # invalid data (non-finite flux, err <= 0) are masked automatically
    er2 = np.where(mask, err, -1.0)
    fl2 = np.where(mask, flux, np.inf)
    np.testing.assert_allclose(PL(fl2, er2, mflux, mask=np.ones_like(mask)), lnl, rtol=1e-13)
    # ... but a NaN model flux in a USED band does propagate
    mf[0, 0, 0] = np.nan
    lnl_nan = np.asarray(PL(fl, er, mf, mask=mask))
    assert np.isnan(lnl_nan[0, 0]) and np.all(np.isfinite(lnl_nan.ravel()[1:]))


def test_loglike_fractional_mask_weights(loglike_data, rng):
    flux, err, mflux, _ = loglike_data
    w = rng.uniform(0.0, 1.0, (NOBJ, NFILT))
    w[0, 0] = 0.0
    lnl = PL(flux, err, mflux, mask=w)
    np.testing.assert_allclose(lnl, _ref_loglike(flux, err, mflux, w), rtol=1e-12)


@pytest.mark.parametrize("dim_prior", [False, True])
def test_loglike_extra_terms_and_dim_prior_match_scipy(loglike_data, rng, dim_prior):
    flux, err, mflux, mask = loglike_data
    extra_chi2 = rng.uniform(0.0, 3.0, (NMOD, NOBJ))
    extra_dims = np.array([1.0, 1.0, 0.0, 2.0])
    lnl = PL(flux, err, mflux, mask=mask, dim_prior=dim_prior, dof_reduction=2, extra_chi2=extra_chi2,
             extra_dims=extra_dims)
    ref = _ref_loglike(flux, err, mflux, mask, dim_prior, 2, extra_chi2, extra_dims)
    np.testing.assert_allclose(lnl, ref, rtol=1e-12)


def test_loglike_dim_prior_edge_cases():
    """dof <= 0 -> -inf; chi2 = 0 -> -ln 2 (dof 2, xlogy convention), +inf (dof 1), -inf (dof 3)."""
    flux = np.ones((NOBJ, NFILT))
    mflux = np.ones((NMOD, NOBJ, NFILT))  # model 0: chi2 = 0
    mflux[1] += 1.0  # model 1: chi2 = 5 for every used object
    mask = np.ones((NOBJ, NFILT), bool)
    mask[0] = False  # nothing used
    extra_dims = np.array([5.0, 2.0, 1.0, 3.0])
    lnl = np.asarray(PL(flux, flux, mflux, mask=mask, dim_prior=True, dof_reduction=5,
                        extra_chi2=np.zeros((NMOD, NOBJ)), extra_dims=extra_dims))
    # dof per object = [0, 2, 1, 3]
    np.testing.assert_array_equal(lnl[:, 0], -np.inf)
    np.testing.assert_array_equal(lnl[0], [-np.inf, -np.log(2.0), np.inf, -np.inf])
    np.testing.assert_allclose(lnl[1, 1:], stats.chi2.logpdf(5.0, [2, 1, 3]), rtol=1e-14)


def test_loglike_gradients_with_nan_in_masked_bands(loglike_data):
    flux, err, mflux, mask = loglike_data
    fl = np.where(mask, flux, np.nan)  # NaN data must not leak into values or gradients

    def both(f, m):
        return jnp.stack([PL(f, err, m, mask=mask), PL(f, err, m, mask=mask, dim_prior=True, dof_reduction=1)])

    both = jax.jit(both)
    assert np.all(np.isfinite(np.asarray(both(fl, mflux))))
    check_grads(both, (fl, mflux), order=1, modes=("rev",))
    # analytic gradient of the Gaussian lnl w.r.t. the model fluxes, zero (not NaN) in masked bands
    g = np.asarray(jax.jit(jax.grad(lambda m: jnp.sum(phot_loglike(fl, err, m, mask=mask))))(mflux))
    np.testing.assert_allclose(g, np.where(mask, (flux - mflux) / err**2, 0.0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim_prior", [False, True])
def test_loglike_float32(loglike_data, dim_prior):
    flux, err, mflux, mask = loglike_data
    args32 = tuple(np.asarray(a, np.float32) for a in (flux, err, mflux))
    out32 = np.asarray(PL(*args32, mask=mask, dim_prior=dim_prior, dof_reduction=1, extra_dims=1))
    assert out32.dtype == np.float32
    ref64 = _ref_loglike(flux, err, mflux, mask, dim_prior, 1, 0.0, 1.0)
    # float32 agrees with the float64 reference to 1e-5 relative (|lnl| ~ 1-100 here)
    np.testing.assert_allclose(out32, ref64, rtol=1e-5, atol=1e-5)


def test_loglike_vmap_equals_broadcast(loglike_data):
    flux, err, mflux, mask = loglike_data
    grid = mflux[:, 0, :]  # (Nmod, Nfilt)
    per_obj = jax.jit(jax.vmap(lambda f, e, k: phot_loglike(f, e, grid, mask=k)))(flux, err, mask)
    per_obj = np.asarray(per_obj)
    assert per_obj.shape == (NOBJ, NMOD)
    np.testing.assert_allclose(per_obj.T, PL(flux, err, grid[:, None, :], mask=mask), rtol=1e-13)
    np.testing.assert_allclose(per_obj.T, _ref_loglike(flux, err, grid[:, None, :], mask), rtol=1e-12)


# ---------------------------------------------------------------------------
# oracle: astro-brutus 1.2.0
# ---------------------------------------------------------------------------


@pytest.mark.oracle
def test_oracle_magnitude_functions(brutus_oracle, phot):
    from brutus.utils import add_mag as b_add_mag
    from brutus.utils import inv_luptitude as b_inv_lupt
    from brutus.utils import inv_magnitude as b_inv_mag
    from brutus.utils import luptitude as b_lupt
    from brutus.utils import magnitude as b_mag

    flux, err, zp, sky, mag = phot
    pairs = [
        (MAG(flux, err, zp), b_mag(flux, err, zp)),
        (IMAG(mag, err, zp), b_inv_mag(mag, err, zp)),
        (LUPT(flux - 2.0, err, sky, zp), b_lupt(flux - 2.0, err, sky, zp)),
        (ILUPT(mag - 12.0, err, sky, zp), b_inv_lupt(mag - 12.0, err, sky, zp)),
        ((ADDMAG(mag, mag[::-1]),), (b_add_mag(mag, mag[::-1]),)),
    ]
    for ours, theirs in pairs:
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o, t, rtol=1e-10, atol=1e-12)


@pytest.mark.oracle
@pytest.mark.parametrize("dim_prior", [False, True])
def test_oracle_phot_loglike(brutus_oracle, rng, dim_prior):
    from brutus.utils import phot_loglike as b_loglike

    flux = rng.uniform(0.5, 5.0, (NOBJ, NFILT))
    err = rng.uniform(0.05, 0.5, (NOBJ, NFILT))
    mflux = flux[:, None, :] + rng.normal(0.0, 0.3, (NOBJ, NMOD, NFILT))  # brutus layout (Nobj, Nmod, Nfilt)
    mask = rng.random((NOBJ, NFILT)) > 0.3
    mask[0] = True
    mask[1] = False  # dof <= 0 object under the dimensionality prior
    flux[~mask] = np.nan  # NaN data in masked bands
    err[2, 0] = 0.0  # invalid error: auto-masked by both
    fmask = mask.astype(float)  # float masks throughout: fewer compiles
    extra_chi2 = rng.uniform(0.0, 2.0, NOBJ)
    extra_dims = np.ones(NOBJ)
    ours_args = (flux[:, None, :], err[:, None, :])
    for kw in (dict(), dict(extra_chi2=extra_chi2, extra_dims=extra_dims)):
        ours_kw = {k: v[:, None] for k, v in kw.items()}  # brutus's (Nobj,) -> (Nobj, 1)
        ref = b_loglike(flux, err, mflux, mask=fmask, dim_prior=dim_prior, dof_reduction=1, **kw)
        lnl = np.asarray(PL(*ours_args, mflux, mask=fmask[:, None, :], dim_prior=dim_prior, dof_reduction=1,
                            **ours_kw))
        assert lnl.shape == ref.shape == (NOBJ, NMOD)
        np.testing.assert_allclose(lnl, ref, rtol=1e-10, atol=1e-10)
        # brutus's shared-grid (2-D mfluxes, matrix-product) path vs ours on the broadcast grid
        shared = mflux[0]
        ref2 = b_loglike(flux, err, shared, mask=fmask, dim_prior=dim_prior, dof_reduction=1, **kw)
        lnl2 = PL(*ours_args, np.broadcast_to(shared, mflux.shape), mask=fmask[:, None, :], dim_prior=dim_prior,
                  dof_reduction=1, **ours_kw)
        np.testing.assert_allclose(lnl2, ref2, rtol=1e-10, atol=1e-10)
    # fractional mask weights (brutus treats them as linear weights)
    w = rng.uniform(0.2, 1.0, (NOBJ, NFILT))
    f2 = np.where(np.isfinite(flux), flux, 1.0)
    ref = b_loglike(f2, err, mflux, mask=w, dim_prior=dim_prior, dof_reduction=1)
    lnl = PL(f2[:, None], err[:, None], mflux, mask=w[:, None], dim_prior=dim_prior, dof_reduction=1)
    np.testing.assert_allclose(lnl, ref, rtol=1e-10, atol=1e-10)
