"""kernels.seds.get_seds: the grid forward model m = m0 + A_V (a + b R_V)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.kernels.seds import get_seds

C = -0.4 * math.log(10.0)


def _coeffs(rng, n=40, nb=6):
    c = np.empty((n, nb, 3))
    c[..., 0] = rng.uniform(8.0, 20.0, (n, nb))
    c[..., 1] = rng.uniform(0.1, 1.5, (n, nb))
    c[..., 2] = rng.uniform(-0.05, 0.05, (n, nb))
    return c


def _reference(c, av, rv, flux):
    """Plain numpy float64 reference, written from the formulas."""
    av = np.broadcast_to(av, c.shape[:-2])[..., None]
    rv = np.broadcast_to(rv, c.shape[:-2])[..., None]
    r = c[..., 1] + rv * c[..., 2]
    d = np.broadcast_to(c[..., 2], r.shape)
    m = c[..., 0] + av * r
    if not flux:
        return m, r, d
    f = 10.0 ** (-0.4 * m)
    return f, C * f * r, C * f * d


@pytest.mark.parametrize("flux", [False, True])
def test_matches_numpy_formulas(rng, flux):
    c = _coeffs(rng)
    av = rng.uniform(0, 3, len(c))
    rv = rng.uniform(2, 5, len(c))
    got = get_seds(c, av, rv, return_flux=flux, return_rvec=True, return_drvec=True)
    for g, e in zip(got, _reference(c, av, rv, flux)):
        np.testing.assert_allclose(np.asarray(g), e, rtol=1e-13, atol=0)


def test_defaults_and_return_combinations(rng):
    c = _coeffs(rng, n=5)
    m, r, d = _reference(c, 0.0, 3.3, False)
    np.testing.assert_allclose(get_seds(c), m, rtol=1e-14)
    s, rv_ = get_seds(c, return_rvec=True)
    np.testing.assert_allclose(rv_, r, rtol=1e-14)
    s, dr = get_seds(c, return_drvec=True)
    np.testing.assert_allclose(dr, d, rtol=1e-14)
    out = get_seds(c, av=1.0, return_rvec=True, return_drvec=True)
    assert len(out) == 3 and all(o.shape == (5, c.shape[1]) for o in out)
    # av=0 is the unreddened magnitude whatever R_V is
    np.testing.assert_array_equal(get_seds(c, av=0.0, rv=5.0), c[..., 0])


def test_flux_derivatives_are_gradients(rng):
    """rvec = df/dA_V and A_V * drvec = df/dR_V in flux mode (autodiff check)."""
    c = jnp.asarray(_coeffs(rng, n=1, nb=4)[0])
    av, rv = 0.7, 3.1

    def f(av, rv):
        return get_seds(c, av, rv, return_flux=True)

    _, r, d = get_seds(c, av, rv, return_flux=True, return_rvec=True, return_drvec=True)
    dav, drv = jax.jacfwd(f, argnums=(0, 1))(av, rv)
    np.testing.assert_allclose(dav, r, rtol=1e-12)
    np.testing.assert_allclose(drv, av * d, rtol=1e-12)


def test_batch_shapes_broadcast(rng):
    c = _coeffs(rng, n=12).reshape(3, 4, -1, 3)
    av = rng.uniform(0, 2, (3, 4))
    s = get_seds(c, av, 3.1)
    np.testing.assert_allclose(s, _reference(c, av, 3.1, False)[0], rtol=1e-14)


def test_dtype_follows_inputs(rng):
    c64 = _coeffs(rng)
    c32 = c64.astype(np.float32)
    av = rng.uniform(0, 3, len(c64))
    out32 = get_seds(c32, av.astype(np.float32), 3.3, return_flux=True, return_rvec=True, return_drvec=True)
    out64 = get_seds(c32.astype(np.float64), av.astype(np.float32).astype(np.float64), 3.3, return_flux=True,
                     return_rvec=True, return_drvec=True)
    for a, b in zip(out32, out64):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=2e-5)
    assert get_seds(c32).dtype == jnp.float32  # Python-float defaults do not promote
    assert get_seds(c64).dtype == jnp.float64


def test_jit_and_vmap(rng):
    c = _coeffs(rng, n=8)
    av = rng.uniform(0, 3, 8)
    rv = rng.uniform(2, 5, 8)
    f = jax.jit(lambda c, a, r: get_seds(c, a, r, return_flux=True, return_rvec=True, return_drvec=True))
    eager = get_seds(c, av, rv, return_flux=True, return_rvec=True, return_drvec=True)
    vm = jax.vmap(f)(c[:, None], av[:, None], rv[:, None])
    for e, j, v in zip(eager, f(c, av, rv), vm):
        np.testing.assert_allclose(j, e, rtol=1e-14)
        np.testing.assert_allclose(v[:, 0], e, rtol=1e-14)


@pytest.mark.oracle
def test_matches_brutus(brutus_oracle, rng):
    from brutus.core.sed_utils import _get_seds, get_seds as b_get_seds

    c = _coeffs(rng, n=30, nb=7)
    av = rng.uniform(0, 4, 30)
    rv = rng.uniform(1.5, 6, 30)
    for flux in (False, True):
        ref = _get_seds(c, av, rv, return_flux=flux)
        got = get_seds(c, av, rv, return_flux=flux, return_rvec=True, return_drvec=True)
        for g, e in zip(got, ref):
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-12, atol=0)
        for rvec, drvec in itertools.product((False, True), repeat=2):
            for a, r in ((av, rv), (None, None), (1.2, None)):
                kw = dict(return_flux=flux, return_rvec=rvec, return_drvec=drvec)
                e = b_get_seds(c, a, r, **kw)
                g = get_seds(c, a, r, **kw)
                e = e if isinstance(e, tuple) else (e,)
                g = g if isinstance(g, tuple) else (g,)
                assert len(g) == len(e)
                for gi, ei in zip(g, e):
                    np.testing.assert_allclose(np.asarray(gi), ei, rtol=1e-12, atol=0)
