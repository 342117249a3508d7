"""Reddened SEDs from per-band magnitude coefficients (the grid forward model).

Every model of a brutus grid stores, per band, three coefficients
``(m0, a, b)`` describing the magnitude at the reference distance of 1 kpc as a
function of dust extinction ``A_V`` and attenuation-curve shape ``R_V``::

    m(A_V, R_V) = m0 + A_V * (a + b * R_V)

so that ``R = a + b R_V`` is the reddening vector (mag per unit A_V) and
``D = b`` its derivative with respect to R_V (per unit A_V).

In flux form (maggies, ``f = 10**(-0.4 m) = exp(c m)`` with
``c = -0.4 ln 10``) the same derivatives become ``df/dA_V = c f R`` ("rvec")
and ``c f b`` ("drvec", so that ``df/dR_V = A_V c f b``).

This is a pure ``jax.numpy`` kernel (jit / vmap / grad friendly).  It computes
in the dtype of its inputs: the only constants are Python floats, so float32
coefficients with float32 (or Python-scalar) ``av``/``rv`` stay float32.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["get_seds", "FLUX_FACTOR"]

#: c = -0.4 ln 10: ``f = exp(c m)`` and ``df/dm = c f`` (Python float, weakly typed).
FLUX_FACTOR = -0.4 * math.log(10.0)

_DEFAULT_AV = 0.0
_DEFAULT_RV = 3.3


def get_seds(mag_coeffs, av=None, rv=None, return_flux=False, return_rvec=False, return_drvec=False):
    """Reddened SEDs (and reddening vectors) from magnitude coefficients.

    Same semantics as brutus's ``get_seds`` / ``_get_seds`` (brutus.core.sed_utils).

    Parameters
    ----------
    mag_coeffs : array (..., Nbands, 3)
        ``(m0, a, b)`` per band: unreddened magnitude at 1 kpc, reddening
        vector at R_V = 0, and its R_V derivative.  Usually (Nmodels, Nbands, 3).
    av, rv : scalar or array broadcastable to ``mag_coeffs.shape[:-2]``, optional
        A_V [mag] and R_V per model.  Defaults: ``av = 0``, ``rv = 3.3``.
    return_flux : bool
        Return fluxes in maggies instead of magnitudes (and flux-space
        derivatives for the reddening vectors).
    return_rvec, return_drvec : bool
        Also return the reddening vector / its R_V derivative (see module
        docstring for the magnitude and flux forms).

    Returns
    -------
    seds : array (..., Nbands)
        Magnitudes, or fluxes when ``return_flux``.
    rvecs : array (..., Nbands), only if ``return_rvec``
        ``a + b R_V`` (magnitudes) or ``c f (a + b R_V)`` (flux).
    drvecs : array (..., Nbands), only if ``return_drvec``
        ``b`` (magnitudes) or ``c f b`` (flux).

    Returned as ``seds``, ``(seds, rvecs)``, ``(seds, drvecs)`` or
    ``(seds, rvecs, drvecs)`` depending on the flags, as in brutus.
    """
    mag_coeffs = jnp.asarray(mag_coeffs)
    m0 = mag_coeffs[..., 0]
    a = mag_coeffs[..., 1]
    b = mag_coeffs[..., 2]

    # per-model scalars broadcast over the band axis
    av = _DEFAULT_AV if av is None else jnp.asarray(av)[..., None]
    rv = _DEFAULT_RV if rv is None else jnp.asarray(rv)[..., None]

    rvecs = a + rv * b
    drvecs = b
    seds = m0 + av * rvecs
    if return_flux:
        seds = jnp.exp(FLUX_FACTOR * seds)
        dflux = FLUX_FACTOR * seds
        rvecs = dflux * rvecs
        drvecs = dflux * drvecs
    else:
        # materialise drvec with the broadcast shape of the other outputs
        drvecs = jnp.broadcast_to(drvecs, seds.shape)
        rvecs = jnp.broadcast_to(rvecs, seds.shape)

    if return_rvec and return_drvec:
        return seds, rvecs, drvecs
    if return_rvec:
        return seds, rvecs
    if return_drvec:
        return seds, drvecs
    return seds
