"""Small numerical helpers shared by the prior kernels (``priors``, ``galactic``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

_LN_2PI = math.log(2.0 * math.pi)
_LN_2 = math.log(2.0)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _asfloat(x):
    """``jnp.asarray`` that turns integer / bool input into the default float dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _concrete(x):
    """``float(x)`` for a concrete scalar, ``None`` for a tracer (inside jit/grad)."""
    try:
        return float(x)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def _log1mexp(x):
    """``log(1 - exp(x))`` for ``x <= 0``, accurate for all x (Maechler 2012).

    Both branches are evaluated on safe arguments so gradients stay finite.
    """
    near = x > -_LN_2
    x_near = jnp.where(near, x, -1.0)
    x_far = jnp.where(near, -1.0, x)
    return jnp.where(near, jnp.log(-jnp.expm1(x_near)), jnp.log1p(-jnp.exp(x_far)))


def log_normal_mass(a, b):
    """Log of the standard-normal mass between two bounds, ``log[Phi(b) - Phi(a)]``.

    Tail-stable: when both bounds lie in the upper tail the interval is
    mirrored to the lower tail (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) and
    the difference is formed in log space from ``log_ndtr``, so the result
    keeps full relative precision even 40 sigma out, where an erf difference
    underflows to zero.

    Parameters
    ----------
    a, b : array_like, broadcastable
        Standardised lower and upper bounds (``a <= b``); ``+-inf`` allowed.

    Returns
    -------
    jax.Array
        ``log[Phi(b) - Phi(a)]``; ``-inf`` when ``a == b``.
    """
    a = _asfloat(a)
    b = _asfloat(b)
    flip = a > 0.0
    lo = jnp.where(flip, -b, a)
    hi = jnp.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    log_lo = log_ndtr(lo)
    return log_hi + _log1mexp(jnp.minimum(log_lo - log_hi, 0.0))


def truncnorm_logpdf(x, lower, upper, loc, scale):
    """Log-density of a normal ``N(loc, scale)`` truncated to ``[lower, upper]``.

    Parameters
    ----------
    x : array_like
        Points (same units as ``loc``).
    lower, upper : float or array_like
        Truncation bounds in data units (not standardised), ``lower < upper``;
        ``+-inf`` allowed.
    loc, scale : float or array_like
        Mean and standard deviation (``scale > 0``) of the parent normal.

    Returns
    -------
    jax.Array
        ``log N(x; loc, scale) - log[Phi(b) - Phi(a)]`` inside the bounds,
        ``-inf`` outside (NaN ``x`` gives NaN).
    """
    x = _asfloat(x)
    xi = (x - loc) / scale
    # log_ndtr makes Python-float (weakly typed) bounds strongly typed: cast back
    lnmass = log_normal_mass((lower - loc) / scale, (upper - loc) / scale).astype(xi.dtype)
    lnp = -0.5 * (_LN_2PI + xi * xi) - jnp.log(scale) - lnmass
    return jnp.where((x < lower) | (x > upper), -jnp.inf, lnp)


