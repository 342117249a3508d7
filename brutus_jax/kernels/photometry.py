"""Photometric kernels: magnitudes, asinh magnitudes and the photometric likelihood.

Pure ``jax.numpy`` re-implementations of the photometry utilities of
astro-brutus 1.2.0 (``brutus.utils.photometry``).  Every function is a pure
function of arrays (jit / vmap / grad friendly) and computes in the dtype of
its inputs: all constants are Python floats (weakly typed), so float32 inputs
give float32 outputs.  Mixing a float32 array with a float64 array (e.g. a
numpy float64 zeropoint array) promotes numpy-style to float64.

Conventions
-----------
* Fluxes are linear flux densities in units of the zeropoint ("maggies" when
  ``zeropoints=1``), i.e. ``flux = zeropoint * 10**(-0.4 * mag)``.
* All arrays broadcast numpy-style; the photometric band axis, where one is
  needed, is the LAST axis.
* These are kernels: they never raise on bad *values*.  Zero, negative or NaN
  fluxes give ``inf`` / NaN magnitudes exactly as the numpy formulas (and
  brutus) do; callers validate data on the host.

The Pogson constant used throughout is ``POGSON = 2.5 / ln(10) = 1.0857...``,
so that ``m = -2.5 log10(f) = -POGSON * ln(f)``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import gammaln

__all__ = [
    "magnitude",
    "inv_magnitude",
    "luptitude",
    "inv_luptitude",
    "add_mag",
    "phot_loglike",
]

#: 2.5 / ln(10): d(mag) / d(ln flux) (Python float: weakly typed).
POGSON = 2.5 / math.log(10.0)
#: 0.4 ln(10) = 1 / POGSON.
_INV_POGSON = 0.4 * math.log(10.0)
_LN_2PI = math.log(2.0 * math.pi)
_LN_2 = math.log(2.0)


# ---------------------------------------------------------------------------
# Magnitudes
# ---------------------------------------------------------------------------


def magnitude(phot, err, zeropoints=1.0):
    """Convert fluxes and flux errors to (Pogson / AB-like) magnitudes.

    ``mag = -2.5 log10(phot / zeropoints)`` and the first-order propagated
    error ``mag_err = (2.5 / ln 10) * err / phot``.

    Parameters
    ----------
    phot : array_like, shape (..., Nfilt)
        Flux densities (same units as ``zeropoints``).
    err : array_like, broadcastable with ``phot``
        Flux density errors (same units).
    zeropoints : float or array_like, shape (Nfilt,) or broadcastable, optional
        Flux of a zero-magnitude source.  Default ``1.0`` (fluxes in maggies).

    Returns
    -------
    mag : jax.Array, broadcast shape of the inputs
        Magnitudes.  ``phot = 0`` gives ``+inf``; negative or NaN flux gives
        NaN (no exception is raised).
    mag_err : jax.Array, same shape
        Magnitude errors (signed like ``err / phot``: negative for a negative
        flux, as in brutus).
    """
    phot = jnp.asarray(phot)
    err = jnp.asarray(err)
    mag = -POGSON * jnp.log(phot / zeropoints)
    mag_err = POGSON * err / phot
    return mag, mag_err


def inv_magnitude(mag, err, zeropoints=1.0):
    """Convert magnitudes and magnitude errors back to fluxes (exact inverse of `magnitude`).

    ``phot = zeropoints * 10**(-0.4 mag)`` and
    ``phot_err = 0.4 ln(10) * err * phot``.

    Parameters
    ----------
    mag : array_like, shape (..., Nfilt)
        Magnitudes.
    err : array_like, broadcastable with ``mag``
        Magnitude errors.
    zeropoints : float or array_like, shape (Nfilt,) or broadcastable, optional
        Flux of a zero-magnitude source.  Default ``1.0``.

    Returns
    -------
    phot : jax.Array
        Flux densities in the units of ``zeropoints``.
    phot_err : jax.Array
        Flux density errors (same units).
    """
    mag = jnp.asarray(mag)
    err = jnp.asarray(err)
    phot = jnp.exp(-_INV_POGSON * mag) * zeropoints
    phot_err = _INV_POGSON * err * phot
    return phot, phot_err


def luptitude(phot, err, skynoise=1.0, zeropoints=1.0):
    """Convert fluxes to asinh magnitudes ("luptitudes", Lupton, Gunn & Szalay 1999).

    With normalised flux ``x = phot / zeropoints``, normalised error
    ``dx = err / zeropoints`` and softening ``b = skynoise / zeropoints``
    (brutus's convention: the softening is the sky noise in zeropoint units)::

        lupt     = -(2.5 / ln 10) * [asinh(x / (2 b)) + ln b]
        lupt_err =  (2.5 / ln 10) * dx / (2 b sqrt(1 + (x / (2 b))**2))

    For ``x >> b`` this tends to the ordinary magnitude ``-2.5 log10(x)``;
    it stays finite for zero and negative fluxes.

    Parameters
    ----------
    phot : array_like, shape (..., Nfilt)
        Flux densities.
    err : array_like, broadcastable with ``phot``
        Flux density errors.
    skynoise : float or array_like, shape (Nfilt,) or broadcastable, optional
        Background sky noise (flux units), the softening parameter.  Default ``1.0``.
    zeropoints : float or array_like, shape (Nfilt,) or broadcastable, optional
        Flux of a zero-magnitude source.  Default ``1.0``.

    Returns
    -------
    lupt : jax.Array
        Asinh magnitudes.  NaN flux gives NaN.
    lupt_err : jax.Array
        Asinh-magnitude errors.
    """
    phot = jnp.asarray(phot)
    err = jnp.asarray(err)
    b = skynoise / zeropoints
    two_b = 2.0 * b
    y = (phot / zeropoints) / two_b
    lupt = -POGSON * (jnp.arcsinh(y) + jnp.log(b))
    # sqrt(1 + y**2) written as hypot: no overflow of y**2 in float32.
    lupt_err = POGSON * (err / zeropoints) / (two_b * jnp.hypot(1.0, y))
    return lupt, lupt_err


def inv_luptitude(mag, err, skynoise=1.0, zeropoints=1.0):
    """Convert asinh magnitudes back to fluxes (exact inverse of `luptitude`).

    With ``b = skynoise / zeropoints`` and ``u = -0.4 ln(10) mag - ln b``::

        phot     = zeropoints * 2 b sinh(u)
        phot_err = zeropoints * 0.4 ln(10) * err * 2 b cosh(u)

    Parameters
    ----------
    mag : array_like, shape (..., Nfilt)
        Asinh magnitudes.
    err : array_like, broadcastable with ``mag``
        Asinh-magnitude errors.
    skynoise : float or array_like, shape (Nfilt,) or broadcastable, optional
        Background sky noise (softening parameter).  Default ``1.0``.
    zeropoints : float or array_like, shape (Nfilt,) or broadcastable, optional
        Flux of a zero-magnitude source.  Default ``1.0``.

    Returns
    -------
    phot : jax.Array
        Flux densities (may be negative).
    phot_err : jax.Array
        Flux density errors.
    """
    mag = jnp.asarray(mag)
    err = jnp.asarray(err)
    b = skynoise / zeropoints
    u = -_INV_POGSON * mag - jnp.log(b)
    scale = 2.0 * b * zeropoints
    phot = scale * jnp.sinh(u)
    phot_err = _INV_POGSON * err * scale * jnp.cosh(u)
    return phot, phot_err


def add_mag(mag1, mag2):
    """Magnitude of the summed flux of two sources.

    ``-2.5 log10(10**(-0.4 mag1) + 10**(-0.4 mag2))``, evaluated in the stable
    form ``-(2.5/ln 10) * logaddexp(-0.4 ln10 mag1, -0.4 ln10 mag2)`` so that
    very bright / very faint magnitudes neither overflow nor underflow.

    Parameters
    ----------
    mag1, mag2 : array_like, broadcastable
        Magnitudes (``+inf`` means zero flux).

    Returns
    -------
    mag : jax.Array, broadcast shape
        Combined magnitude.  NaN in either input gives NaN.
    """
    mag1 = jnp.asarray(mag1)
    mag2 = jnp.asarray(mag2)
    return -POGSON * jnp.logaddexp(-_INV_POGSON * mag1, -_INV_POGSON * mag2)


# ---------------------------------------------------------------------------
# Likelihood
# ---------------------------------------------------------------------------


def phot_loglike(
    flux,
    err,
    mfluxes,
    mask=None,
    dim_prior=False,
    dof_reduction=0,
    extra_chi2=None,
    extra_dims=None,
):
    r"""Gaussian (or chi-square "dimensionality prior") log-likelihood of model fluxes.

    Semantics of astro-brutus 1.2.0 ``brutus.utils.phot_loglike`` with
    numpy-style broadcasting (band axis last) instead of brutus's fixed shapes.

    Let ``w_i`` be the band weight: ``w_i = mask_i`` where ``mask_i > 0`` AND
    the observed band is valid (``flux_i`` and ``err_i`` finite and
    ``err_i > 0``), else ``0``.  Then

    .. math::

        \chi^2 = \sum_i w_i (f_i - m_i)^2 / \sigma_i^2 + \chi^2_{\rm extra},
        \qquad N = \sum_i w_i + N_{\rm extra}

    and, without the dimensionality prior,

    .. math::

        \ln L = -\tfrac12 \chi^2 - \tfrac12\left(N \ln 2\pi + \sum_i w_i \ln \sigma_i^2\right);

    with ``dim_prior=True`` it is the chi-square log-pdf with
    ``a = (N - dof_reduction) / 2``:

    .. math::

        \ln L = (a - 1)\ln\chi^2 - \chi^2/2 - \ln\Gamma(a) - a\ln 2,

    (``(a-1) ln chi2`` taken as 0 when ``a == 1``, like ``scipy.special.xlogy``)
    and ``-inf`` wherever ``N - dof_reduction <= 0``.

    Parameters
    ----------
    flux : array_like, shape (..., Nfilt)
        Observed fluxes.
    err : array_like, shape (..., Nfilt)
        Observed flux errors (1-sigma, same units as ``flux``).
    mfluxes : array_like, shape (..., Nfilt)
        Model fluxes.  ``flux``, ``err``, ``mfluxes`` (and ``mask``) broadcast
        numpy-style, e.g. ``flux`` (Nobj, Nfilt) with ``mfluxes``
        (Nmod, 1, Nfilt) gives (Nmod, Nobj); brutus's layout, ``flux``
        (Nobj, Nfilt) with ``mfluxes`` (Nobj, Nmod, Nfilt) or (Nmod, Nfilt)
        giving (Nobj, Nmod), is obtained by passing ``flux[:, None, :]``,
        ``err[:, None, :]`` and ``mask[:, None, :]``.  (Passing brutus's 2-D
        shapes unchanged would broadcast band-by-band, NOT object × model.)
    mask : array_like or None, broadcastable to (..., Nfilt), optional
        Band weights: 1/True = use, 0/False = skip.  Non-binary positive
        values act as linear weights on both the chi-square and ``N`` (as in
        brutus); non-positive values mean "skip".  ``None`` uses all bands.
    dim_prior : bool, optional
        Use the chi-square log-pdf instead of the Gaussian likelihood.  Must be
        a Python bool (static under ``jit``).  Default ``False``.
    dof_reduction : int or array_like, optional
        Number of fitted parameters subtracted from the degrees of freedom
        (``dim_prior=True`` only).  Default 0.
    extra_chi2 : array_like or None, broadcastable to the output shape, optional
        Extra chi-square terms (e.g. a parallax term) added to chi-square
        before the likelihood / dimensionality prior is evaluated.  In
        brutus's layout an (Nobj,) array must be passed as ``[:, None]``.
    extra_dims : array_like or None, broadcastable to the output shape, optional
        Extra data dimensions added to ``N`` (both to the degrees of freedom
        and, as in brutus, to the ``N ln 2pi`` normalisation).

    Returns
    -------
    lnl : jax.Array, shape ``broadcast(flux, err, mfluxes, mask).shape[:-1]``
        (further broadcast against ``extra_chi2`` / ``extra_dims``)
        Log-likelihood, in the promoted floating dtype of the inputs.

    Notes
    -----
    Behaviour taken from brutus 1.2.0 that goes beyond the bare formula:

    * Invalid observed bands (non-finite ``flux`` or ``err``, or ``err <= 0``)
      are folded into the mask: they add nothing to chi-square, to ``N`` or
      to the ``ln sigma^2`` sum.  Masked / invalid bands never leak NaN.
    * ``extra_dims`` enters ``N`` in the ``N ln 2pi`` term too, while no
      ``ln sigma^2`` is added for the extra terms (brutus's convention;
      callers wanting a normalised extra Gaussian add ``ln sigma^2`` themselves).
    * With ``dim_prior=True`` and ``chi2 == 0`` the result is ``+inf``
      (``a < 1``) or ``-inf`` (``a > 1``), as in brutus.

    Deliberate differences from brutus:

    * Model fluxes in masked/invalid bands are ignored entirely: a NaN/inf
      model flux in a masked band gives a finite result here, whereas brutus
      (which multiplies by the mask) returns NaN.  A NaN model flux in a used
      band gives NaN in both.
    * brutus's shared-grid (2-D ``mfluxes``) fast path expands chi-square into
      matrix products and clips it at 0; here chi-square is always the direct
      residual sum (identical up to rounding).
    """
    flux = jnp.asarray(flux)
    err = jnp.asarray(err)
    mfluxes = jnp.asarray(mfluxes)
    dtype = jnp.result_type(flux, err, mfluxes, float)
    flux = flux.astype(dtype)
    err = err.astype(dtype)
    mfluxes = mfluxes.astype(dtype)

    # Band usage: user mask AND valid observed data.
    use = jnp.isfinite(flux) & jnp.isfinite(err) & (err > 0.0)
    if mask is None:
        weight = jnp.where(use, 1.0, 0.0).astype(dtype)
    else:
        m = jnp.asarray(mask).astype(dtype)
        use = use & (m > 0.0)
        weight = jnp.where(use, m, 0.0)

    # Sanitise unused bands *before* any arithmetic (double-where: keeps both
    # values and gradients free of NaN from masked data).
    f_s = jnp.where(use, flux, 0.0)
    e_s = jnp.where(use, err, 1.0)
    m_s = jnp.where(use, mfluxes, 0.0)

    z = (f_s - m_s) / e_s
    chi2 = jnp.sum(weight * z * z, axis=-1)
    ndim = jnp.sum(weight, axis=-1)

    if extra_chi2 is not None:
        chi2 = chi2 + jnp.asarray(extra_chi2)
    if extra_dims is not None:
        ndim = ndim + jnp.asarray(extra_dims)

    if not dim_prior:
        log_det = jnp.sum(weight * (2.0 * jnp.log(e_s)), axis=-1)
        return -0.5 * chi2 - 0.5 * (ndim * _LN_2PI + log_det)

    # Chi-square log-pdf with a = dof / 2 (−inf where dof <= 0).
    dof = ndim - dof_reduction
    ok = dof > 0.0
    a = jnp.where(ok, 0.5 * dof, 1.0)
    am1 = a - 1.0
    # xlogy(a - 1, chi2): exactly 0 when a == 1 (also for chi2 == 0).
    xlogy = jnp.where(am1 == 0.0, 0.0, am1 * jnp.log(jnp.where(am1 == 0.0, 1.0, chi2)))
    lnl = xlogy - 0.5 * chi2 - gammaln(a) - _LN_2 * a
    return jnp.where(ok, lnl, -jnp.inf)
