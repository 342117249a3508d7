"""Prior kernels: IMF, parallax, Galactic structure, 3-D dust, PS1 luminosity function.

Pure ``jax.numpy`` re-implementations of the priors of astro-brutus 1.2.0
(``brutus.priors`` and ``brutus.utils.math.galactic_to_galactocentric_cyl``).
Every function computes in the dtype of its array inputs (all constants are
Python floats, weakly typed), broadcasts numpy-style, never raises on bad
*values* and is safe to ``jit``, ``vmap`` and differentiate: branches that are
not taken are evaluated on safe placeholder values, so gradients are finite
wherever the prior itself is finite and smooth.

Only bad *configuration* given as concrete Python numbers (an empty IMF mass
range, reversed ``avlim``) raises ``ValueError``, and only outside ``jit``.

Units
-----
masses in solar masses; parallaxes in mas; scale factors ``s = parallax**2``
(mas**2, i.e. ``1 / d_kpc**2``); distances, radii, heights in kpc; Galactic
``l, b`` in degrees; ages in Gyr, ``loga = log10(age / yr)``; [Fe/H] in dex;
extinctions ``A_V`` in mag; ``Mr`` absolute PS1 r magnitude.

Differences from brutus 1.2.0 (all deliberate, documented per function):

* brutus evaluates large calls (> 1000 points) with numba kernels whose edge
  cases differ from its own numpy path (ages outside ``[min_age, max_age]``
  give ``-1e300`` there and ``-inf`` in numpy; erf-based vs ``log_ndtr``-based
  truncated-normal masses).  Here there is one code path: ``-inf`` outside
  the age support and tail-stable ``log[Phi(b) - Phi(a)]`` everywhere.
* The dust prior's truncation mass is evaluated tail-stably instead of as an
  erf difference floored at ``1e-300`` (identical away from the far tails).
* ``feh`` / ``loga`` arrays broadcast against ``dists`` instead of having to
  be 1-D of the same length.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = [
    "logp_imf",
    "logp_parallax",
    "convert_parallax_to_scale",
    "logp_parallax_scale",
    "galactic_to_galactocentric_cyl",
    "logn_disk",
    "logn_halo",
    "logp_feh",
    "logp_age_from_feh",
    "logp_galactic_structure",
    "log_normal_mass",
    "truncnorm_logpdf",
    "interp_extinction_profile",
    "logp_av_truncnorm",
    "logp_extinction",
    "logp_ps1_luminosity_function",
]

from ._prior_math import _asfloat, _concrete, log_normal_mass, truncnorm_logpdf  # noqa: E402,F401
from .galactic import (  # noqa: E402,F401  (re-exported: the Galactic prior lives in its own module)
    galactic_to_galactocentric_cyl,
    logn_disk,
    logn_halo,
    logp_age_from_feh,
    logp_feh,
    logp_galactic_structure,
)
#: scale-factor statistics of an uninformative parallax (brutus SCALE_MIN / SCALE_MAX).
SCALE_MIN = 1e-20
SCALE_MAX = 1e20


# ---------------------------------------------------------------------------
# IMF
# ---------------------------------------------------------------------------


def _powerlaw_integral(m_lo, m_hi, alpha):
    """``int_{m_lo}^{m_hi} M**-alpha dM``; log form when ``alpha`` is within numpy.isclose of 1."""
    near_one = jnp.abs(alpha - 1.0) <= 1e-8 + 1e-5
    one_m = jnp.where(near_one, 1.0, 1.0 - alpha)
    power = (m_hi**one_m - m_lo**one_m) / one_m
    return jnp.where(near_one, jnp.log(m_hi / m_lo), power)


def _imf_unnormalised(m, alpha_low, alpha_high, mass_break, mass_min, mass_max):
    valid = (m >= mass_min) & (m <= mass_max)
    ln_m = jnp.log(jnp.where(valid, m, 1.0))
    low = -alpha_low * ln_m
    high = -alpha_high * ln_m + (alpha_high - alpha_low) * jnp.log(mass_break)
    return jnp.where(valid, jnp.where(m <= mass_break, low, high), -jnp.inf)


def logp_imf(mgrid, alpha_low=1.3, alpha_high=2.3, mass_break=0.5, mgrid2=None, mass_min=0.08, mass_max=100.0):
    """Log-prior of a Kroupa-type broken power-law initial mass function.

    ``xi(M) = M**-alpha_low`` for ``M <= mass_break`` and
    ``mass_break**(alpha_high - alpha_low) * M**-alpha_high`` above (continuous
    at the break), normalised analytically over ``[mass_min, mass_max]``
    (``ln(m_hi / m_lo)`` pieces when a slope is 1).  With ``mgrid2`` the two
    components of a binary are drawn independently from the same IMF:
    ``ln xi(M1) + ln xi(M2) - 2 ln Z``.  For the defaults
    ``Z = 3.95360`` (``ln Z = 1.37463``).

    Parameters
    ----------
    mgrid : array_like
        Initial (primary) masses [Msun].
    alpha_low, alpha_high : float, optional
        Slopes below / above ``mass_break`` (defaults 1.3, 2.3, Kroupa 2001).
    mass_break : float, optional
        Break mass [Msun] (default 0.5).
    mgrid2 : array_like, optional
        Secondary masses [Msun], broadcastable with ``mgrid``.
    mass_min, mass_max : float, optional
        Support of the IMF [Msun] (defaults 0.08, 100).

    Returns
    -------
    jax.Array, broadcast shape of ``mgrid`` (and ``mgrid2``)
        Normalised log-density [ln Msun**-1 (per component)]; ``-inf`` for
        masses outside ``[mass_min, mass_max]`` or NaN.

    Raises
    ------
    ValueError
        If concrete ``mass_min``/``mass_max`` do not satisfy
        ``0 < mass_min < mass_max``.
    """
    lo, hi = _concrete(mass_min), _concrete(mass_max)
    if lo is not None and hi is not None and not (0.0 < lo < hi):
        raise ValueError(
            f"Invalid mass range: require 0 < mass_min < mass_max, got mass_min={mass_min}, mass_max={mass_max}."
        )
    mgrid = _asfloat(mgrid)
    args = (alpha_low, alpha_high, mass_break, mass_min, mass_max)
    logp = _imf_unnormalised(mgrid, *args)

    # normalisation: pieces of the range below / above the break
    cont = mass_break ** (alpha_high - alpha_low)
    straddle = _powerlaw_integral(mass_min, mass_break, alpha_low) + cont * _powerlaw_integral(
        mass_break, mass_max, alpha_high
    )
    all_high = cont * _powerlaw_integral(mass_min, mass_max, alpha_high)
    all_low = _powerlaw_integral(mass_min, mass_max, alpha_low)
    norm = jnp.where(
        mass_min >= mass_break, all_high, jnp.where(mass_max < mass_break, all_low, straddle)
    )
    ln_norm = jnp.log(norm)

    if mgrid2 is not None:
        logp = logp + _imf_unnormalised(_asfloat(mgrid2), *args)
        ln_norm = 2.0 * ln_norm
    return logp - ln_norm


# ---------------------------------------------------------------------------
# parallax
# ---------------------------------------------------------------------------


def _parallax_ok(p_meas, p_err):
    return jnp.isfinite(p_meas) & jnp.isfinite(p_err) & (p_err > 0.0)


def logp_parallax(parallaxes, p_meas, p_err):
    """Gaussian log-likelihood of model parallaxes given a measured parallax.

    ``-0.5 [(parallax - p_meas)**2 / p_err**2 + ln(2 pi p_err**2)]``; a flat
    prior (0) when ``p_meas`` or ``p_err`` is non-finite or ``p_err <= 0``.

    Parameters
    ----------
    parallaxes : array_like
        Model parallaxes [mas] (e.g. ``1 / d_kpc``).
    p_meas, p_err : float or array_like, broadcastable with ``parallaxes``
        Measured parallax and its 1-sigma error [mas].

    Returns
    -------
    jax.Array, broadcast shape
        Log-density [ln mas**-1], or 0 for an unusable measurement.
    """
    parallaxes = _asfloat(parallaxes)
    ok = _parallax_ok(p_meas, p_err)
    pm = jnp.where(ok, p_meas, 0.0)
    pe = jnp.where(ok, p_err, 1.0)
    lnp = -0.5 * ((parallaxes - pm) ** 2 / pe**2 + jnp.log(2.0 * math.pi * pe**2))
    return jnp.where(ok, lnp, jnp.zeros_like(lnp))


def _scale_ok(p_meas, p_err, snr_lim):
    ok = _parallax_ok(p_meas, p_err)
    snr = jnp.abs(jnp.where(ok, p_meas, 0.0) / jnp.where(ok, p_err, 1.0))
    return ok & (snr > snr_lim)


def _scale_stats(p_meas, p_err, ok):
    """Scale-factor mean and std where ``ok`` (safe placeholders elsewhere)."""
    pp = jnp.maximum(jnp.where(ok, p_meas, 1.0), 0.0)
    pe = jnp.where(ok, p_err, 1.0)
    return pp**2 + pe**2, jnp.sqrt(2.0 * pe**4 + 4.0 * pp**2 * pe**2)


def convert_parallax_to_scale(p_meas, p_err, snr_lim=4.0):
    """Mean and standard deviation of the scale factor ``s = parallax**2``.

    For a usable measurement with ``|p_meas / p_err| > snr_lim``::

        s_mean = max(0, p_meas)**2 + p_err**2
        s_std  = sqrt(2 p_err**4 + 4 max(0, p_meas)**2 p_err**2)

    otherwise the uninformative pair ``(1e-20, 1e20)``.

    Parameters
    ----------
    p_meas, p_err : float or array_like, broadcastable
        Measured parallax and error [mas].
    snr_lim : float, optional
        Minimum ``|p_meas / p_err|`` for an informative conversion (default 4).

    Returns
    -------
    s_mean, s_std : jax.Array
        Scale-factor mean and standard deviation [mas**2].
    """
    p_meas = _asfloat(p_meas)
    p_err = _asfloat(p_err)
    ok = _scale_ok(p_meas, p_err, snr_lim)
    s_mean, s_std = _scale_stats(p_meas, p_err, ok)
    return jnp.where(ok, s_mean, SCALE_MIN), jnp.where(ok, s_std, SCALE_MAX)


def logp_parallax_scale(scales, scale_errs, p_meas, p_err, snr_lim=4.0):
    """Gaussian log-prior on model scale factors from a measured parallax.

    ``-0.5 [(s - s_mean)**2 / V + ln(2 pi V)]`` with
    ``V = s_std**2 + scale_errs**2`` and ``(s_mean, s_std)`` from
    `convert_parallax_to_scale`; 0 (flat) when the parallax is unusable or its
    SNR is ``<= snr_lim``.  Used for model selection only.

    Parameters
    ----------
    scales : array_like
        Model scale factors ``s = 1 / d_kpc**2`` [mas**2].
    scale_errs : array_like, broadcastable
        Model scale-factor uncertainties [mas**2].
    p_meas, p_err : float or array_like, broadcastable
        Measured parallax and error [mas].
    snr_lim : float, optional
        SNR threshold (default 4).

    Returns
    -------
    jax.Array, broadcast shape
        Log-density [ln mas**-2], or 0.
    """
    scales = _asfloat(scales)
    scale_errs = _asfloat(scale_errs)
    ok = _scale_ok(p_meas, p_err, snr_lim)
    s_mean, s_std = _scale_stats(p_meas, p_err, ok)
    var = jnp.where(ok, s_std**2 + scale_errs**2, 1.0)
    lnp = -0.5 * ((scales - s_mean) ** 2 / var + jnp.log(2.0 * math.pi * var))
    return jnp.where(ok, lnp, jnp.zeros_like(lnp))


# ---------------------------------------------------------------------------
# 3-D dust
# ---------------------------------------------------------------------------


def interp_extinction_profile(distance, dist_grid, av_mean, av_std):
    """Dust-map profiles linearly interpolated in distance (``numpy.interp`` semantics).

    Distances beyond the grid take the end values; a distance equal to a grid
    node returns that node's values exactly (even next to a NaN node); a NaN
    distance or a NaN neighbour gives NaN.

    Parameters
    ----------
    distance : array_like
        Query distances [kpc], any shape.
    dist_grid : array_like, shape (Ndist,)
        Increasing distances of the map's bins [kpc].
    av_mean, av_std : array_like, shape (Ndist,)
        Mean and standard deviation of A_V along one line of sight [mag].

    Returns
    -------
    mu, sigma : jax.Array, shape of ``distance``
        Interpolated A_V mean and standard deviation [mag].
    """
    distance = _asfloat(distance)
    xp = jnp.asarray(dist_grid)
    fps = (jnp.asarray(av_mean), jnp.asarray(av_std))
    n = xp.shape[0]
    if n == 1:  # numpy.interp: the single node's value everywhere
        return tuple(jnp.zeros_like(distance) + fp[0] for fp in fps)
    j = jnp.clip(jnp.searchsorted(xp, distance, side="right") - 1, 0, n - 2)
    x0, x1 = xp[j], xp[j + 1]
    at_node = distance == x0
    below, above = distance <= xp[0], distance >= xp[n - 1]
    out = []
    for fp in fps:
        # NaN nodes are replaced by 0 in the arithmetic and the NaN re-inserted
        # afterwards, so the result's derivative never multiplies a NaN.
        nan = jnp.isnan(fp)
        fs = jnp.where(nan, 0.0, fp)
        y0, y1 = fs[j], fs[j + 1]
        val = jnp.where(at_node, y0, (y1 - y0) / (x1 - x0) * (distance - x0) + y0)
        is_nan = jnp.where(at_node, nan[j], nan[j] | nan[j + 1])
        val = jnp.where(below, fs[0], jnp.where(above, fs[n - 1], val))
        is_nan = jnp.where(below, nan[0], jnp.where(above, nan[n - 1], is_nan)) | jnp.isnan(distance)
        out.append(jnp.where(is_nan, jnp.nan, val))
    return tuple(out)


def _check_avlim(avlim):
    if avlim is None:
        return
    lo, hi = _concrete(avlim[0]), _concrete(avlim[1])
    if lo is not None and hi is not None and not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"avlim must be finite with avlim[0] < avlim[1]; got {avlim}")


def logp_av_truncnorm(avs, mu, sigma, avlim=(0.0, 20.0)):
    """Gaussian A_V log-prior ``N(mu, sigma)`` renormalised to ``avlim``.

    ``-0.5[(A - mu)**2 / sigma**2 + ln(2 pi sigma**2)] - ln[Phi(hi) - Phi(lo)]``
    (``lo, hi`` = standardised ``avlim``; the mass is computed tail-stably),
    with no truncation term if ``avlim`` is None.  Where ``mu`` or ``sigma``
    is non-finite or ``sigma <= 0`` (no map coverage / unreliable bin) the
    prior is flat: 0.  ``A`` itself is not checked against ``avlim`` (brutus
    clips its draws to the support).

    Parameters
    ----------
    avs : array_like
        Extinctions A_V [mag].
    mu, sigma : array_like, broadcastable with ``avs``
        Mean and standard deviation of the map's A_V [mag].
    avlim : (float, float) or None, optional
        Support over which the Gaussian is normalised [mag] (default (0, 20)).

    Returns
    -------
    jax.Array, broadcast shape
        Log-density [ln mag**-1], or 0 where the map gives no information.
    """
    _check_avlim(avlim)
    avs = _asfloat(avs)
    mu = _asfloat(mu)
    sigma = _asfloat(sigma)
    ok = jnp.isfinite(mu) & jnp.isfinite(sigma) & (sigma > 0.0)
    m = jnp.where(ok, mu, 0.0)
    s = jnp.where(ok, sigma, 1.0)
    lnp = -0.5 * ((avs - m) ** 2 / s**2 + jnp.log(2.0 * math.pi * s**2))
    if avlim is not None:
        lnp = lnp - log_normal_mass((avlim[0] - m) / s, (avlim[1] - m) / s)
    return jnp.where(ok, lnp, jnp.zeros_like(lnp))


def logp_extinction(avs, dist_grid, av_mean, av_std, distance, avlim=(0.0, 20.0)):
    """3-D dust-map A_V log-prior along one line of sight (pure kernel).

    Interpolates the map's A_V mean and standard deviation to ``distance``
    (`interp_extinction_profile`: linear, clamped to the end values) and
    evaluates `logp_av_truncnorm` there: a Gaussian truncated and
    renormalised to ``avlim``; 0 (flat) where the map has no reliable value.
    The map columns come from ``Bayestar.query``; vmap over stars for several
    lines of sight.

    Parameters
    ----------
    avs : array_like
        Extinctions A_V [mag].
    dist_grid : array_like, shape (Ndist,)
        Map distance bins [kpc], increasing.
    av_mean, av_std : array_like, shape (Ndist,)
        Map A_V mean and standard deviation on ``dist_grid`` [mag] (NaN =
        not covered / unreliable).
    distance : array_like, broadcastable with ``avs``
        Distances at which the prior is evaluated [kpc].
    avlim : (float, float) or None, optional
        Support of the truncated normal [mag] (default (0, 20), brutus's
        default, not the fit's ``avlim``).

    Returns
    -------
    jax.Array, broadcast shape of ``avs`` and ``distance``
        Log-density [ln mag**-1].
    """
    mu, sigma = interp_extinction_profile(distance, dist_grid, av_mean, av_std)
    return logp_av_truncnorm(avs, mu, sigma, avlim)


# ---------------------------------------------------------------------------
# PS1 luminosity function
# ---------------------------------------------------------------------------


def logp_ps1_luminosity_function(Mr, table_Mr, table_lnp):
    """PS1 r-band luminosity-function log-prior from a tabulated ``ln p(Mr)``.

    Piecewise-linear interpolation of the table, extrapolated linearly with
    the first / last segment outside it (scipy ``interp1d(kind='linear',
    fill_value='extrapolate')`` semantics).  brutus's table is
    ``PSMrLF_lnprior.dat`` (Mr = -1 ... 20 step 0.05); the host wrapper
    `brutus_jax.priors.logp_ps1_luminosity_function` loads it.

    Parameters
    ----------
    Mr : array_like
        Absolute PS1 r magnitudes [mag].
    table_Mr : array_like, shape (Ntab,)
        Increasing tabulated magnitudes (``Ntab >= 2``).
    table_lnp : array_like, shape (Ntab,)
        Log-prior at ``table_Mr``.

    Returns
    -------
    jax.Array, shape of ``Mr``
        Interpolated log-prior (NaN for NaN ``Mr``).
    """
    Mr = _asfloat(Mr)
    x = jnp.asarray(table_Mr)
    y = jnp.asarray(table_lnp)
    hi = jnp.clip(jnp.searchsorted(x, Mr, side="left"), 1, x.shape[0] - 1)
    lo = hi - 1
    slope = (y[hi] - y[lo]) / (x[hi] - x[lo])
    return slope * (Mr - x[lo]) + y[lo]
