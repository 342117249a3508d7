"""Line-of-sight (LOS) dust: the multi-cloud model of brutus, in pure ``jax.numpy``.

A sightline is described by ``theta = [pb, s0, s, fred, d1, r1, d2, r2, ...]``
(``4 + 2 n`` values for ``n`` clouds):

* ``pb`` -- fraction of stars drawn from a uniform outlier model in reddening;
* ``s0``, ``s`` -- kernel widths in front of / behind the first cloud, as
  fractions of the reddening range ``rlims[1] - rlims[0]``;
* ``fred`` -- reddening in front of the first cloud (units of ``rlims``,
  default A_V [mag]);
* ``(d_i, r_i)`` -- cloud distances (units of the distance samples, default
  distance modulus [mag]), sorted increasingly, and the *absolute* reddening
  level ``r_i`` of the stars between cloud ``i`` and cloud ``i + 1`` (not an
  increment; with ``template_reds`` a dimensionless rescaling of each star's
  template reddening; with ``additive_foreground`` ``fred`` is added to it).

Per-star posterior samples ``(dsamps, rsamps)`` of shape (Nobj, Nsamp) enter
through a Monte-Carlo average: a sample at distance ``d`` falls into segment
``k = #{i : d_i <= d}`` (0 = foreground) and is weighted by a kernel in
reddening centred on that segment's level with width ``s0 * dr`` (``k = 0``)
or ``s * dr`` (``k > 0``).  Star ``j``'s likelihood is the mean kernel weight
over its first ``Ndraws`` samples, mixed with the outlier density:
``L_j = (1 - pb) mean_k w_jk + pb / dr``; the sightline log-likelihood is
``sum_j ln L_j``.  The built-in kernels are renormalised to ``rlims`` (a
sample can never leave the admissible reddening range).

Everything here is traceable: ``jax.jit`` (``kernel``, ``rlims``, ``Ndraws`` and
the flags are Python values; inside the compiled likelihood only the kernel and
``Ndraws`` are static, so toggling the flags or ``rlims`` does not recompile),
``jax.grad`` in theta, and ``jax.vmap`` across sightlines.
Where brutus *raises* on a traced value (``pb`` outside [0, 1], negative
widths, unsorted cloud distances, a zero kernel width in use) these functions
return ``-inf`` instead; they never return NaN.  Beyond brutus,
``los_clouds_loglike_samples`` accepts ``n = 0`` clouds (``len(theta) == 4``:
every star in the foreground), used for model comparison in `los_fit`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

__all__ = [
    "los_clouds_priortransform",
    "los_clouds_loglike_samples",
    "kernel_tophat",
    "kernel_gauss",
    "kernel_lorentz",
]

#: distances at or beyond this value (and negative ones) are invalid samples (as brutus)
_DMAX = 1e10
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------- small helpers
def _safe_log(x):
    """ln x, -inf where x <= 0, with finite gradients everywhere."""
    pos = x > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def _logmeanexp(logw, axis=-1):
    """ln(mean(exp(logw))) along ``axis``; -inf (zero gradient) when every entry is -inf."""
    m = jax.lax.stop_gradient(jnp.max(logw, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    tot = jnp.sum(jnp.exp(logw - m), axis=axis)
    n = logw.shape[axis]
    return jnp.squeeze(m, axis) + _safe_log(tot) - math.log(n)


def _as_float(x, dtype=None):
    x = jnp.asarray(x, dtype)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_lims(lims, name):
    try:
        lo, hi = (float(v) for v in lims)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a 2-tuple of numbers (low, high), got {lims!r}") from None
    if not lo < hi:
        raise ValueError(f"{name}: must satisfy {name}[0] < {name}[1], got ({lo}, {hi})")
    return lo, hi


# ---------------------------------------------------------------------------- kernels
# Each kernel is split into `prep` (per mean/width: the parameters of its shape and the log of
# its normalisation) and `core` (per reddening sample).  The public kernels combine the two; the
# likelihood preps once per distance segment and evaluates `core` per sample (no erf per sample).
def _gauss_prep(mu, w, rlims):
    lognorm = _LOG_SQRT_2PI + _safe_log(w)
    ok = w > 0
    if rlims is not None:
        ws = jnp.where(ok, w, 1.0)
        mass = ndtr((rlims[1] - mu) / ws) - ndtr((rlims[0] - mu) / ws)
        lognorm = lognorm + _safe_log(mass)
        ok = ok & (mass > 0)
    return (mu, jnp.where(ok, w, 1.0)), jnp.where(ok, lognorm, jnp.inf)


def _gauss_core(r, p):
    mu, w = p
    return -0.5 * ((r - mu) / w) ** 2


def _lorentz_prep(mu, w, rlims):
    lognorm = math.log(math.pi) + _safe_log(w)
    ok = w > 0
    if rlims is not None:
        ws = jnp.where(ok, w, 1.0)
        mass = (jnp.arctan((rlims[1] - mu) / ws) - jnp.arctan((rlims[0] - mu) / ws)) / math.pi
        lognorm = lognorm + _safe_log(mass)
        ok = ok & (mass > 0)
    return (mu, jnp.where(ok, w, 1.0)), jnp.where(ok, lognorm, jnp.inf)


def _lorentz_core(r, p):
    mu, w = p
    return -jnp.log(1.0 + ((r - mu) / w) ** 2)


def _tophat_prep(mu, w, rlims):
    lo, hi = mu - w, mu + w
    if rlims is None:
        width = 2.0 * w
    else:
        lo, hi = jnp.maximum(lo, rlims[0]), jnp.minimum(hi, rlims[1])
        width = hi - lo
    ok = (w > 0) & (width > 0)
    return (lo, hi), jnp.where(ok, _safe_log(width), jnp.inf)


def _tophat_core(r, p):
    lo, hi = p
    return jnp.where((r >= lo) & (r < hi), 0.0, -jnp.inf)


# the same cores as weights exp(core), without transcendental functions where possible
_LINEAR = {
    "gauss": lambda r, p: jnp.exp(-0.5 * jnp.square((r - p[0]) * p[1])),
    "lorentz": lambda r, p: 1.0 / (1.0 + jnp.square((r - p[0]) * p[1])),
    "tophat": lambda r, p: jnp.where((r >= p[0]) & (r < p[1]), 1.0, 0.0),
}

_KERNELS = {
    "gauss": (_gauss_prep, _gauss_core),
    "lorentz": (_lorentz_prep, _lorentz_core),
    "tophat": (_tophat_prep, _tophat_core),
}


@partial(jax.jit, static_argnames=("name", "rlims"))
def _kernel_jit(reds, mu, w, name, rlims):
    prep, core = _KERNELS[name]
    params, lognorm = prep(mu, w, rlims)
    logw = core(reds, params) - lognorm
    return jnp.where(jnp.isnan(logw), -jnp.inf, logw)


def _kernel(name, reds, kp, rlims):
    rl = None if rlims is None else _check_lims(rlims, "rlims")
    return _kernel_jit(_as_float(reds), _as_float(kp[0]), _as_float(kp[1]), name=name, rlims=rl)


def kernel_tophat(reds, kp, rlims=None):
    """Log-weights of reddening samples under a top-hat kernel.

    Parameters
    ----------
    reds : array_like, shape (Nsamps,) (or any shape broadcastable with ``kp``)
        Reddening samples [units of ``rlims``, default A_V mag].
    kp : tuple ``(mean, half_width)``
        Kernel centre and half width (scalars or arrays broadcastable with
        ``reds``), same units as ``reds``.
    rlims : tuple of float, optional
        If given, the support ``[mean - half_width, mean + half_width)`` is
        clipped to ``rlims`` and the kernel renormalised over it.

    Returns
    -------
    logw : jax.Array, broadcast shape of ``reds`` and ``kp``
        ``-ln(support width)`` inside ``[low, high)``, ``-inf`` outside; ``-inf``
        everywhere when the half width is <= 0 or the clipped support is empty
        (brutus raises on a non-positive width).
    """
    return _kernel("tophat", reds, kp, rlims)


def kernel_gauss(reds, kp, rlims=None):
    """Log-weights of reddening samples under a Gaussian kernel.

    Parameters
    ----------
    reds : array_like, shape (Nsamps,) (or broadcastable with ``kp``)
        Reddening samples [units of ``rlims``, default A_V mag].
    kp : tuple ``(mean, std)``
        Kernel mean and standard deviation (scalars or broadcastable arrays).
    rlims : tuple of float, optional
        If given, the density is divided by its mass inside ``rlims``,
        ``Phi((r1 - mean)/std) - Phi((r0 - mean)/std)``.

    Returns
    -------
    logw : jax.Array
        ``-(r - mean)^2 / (2 std^2) - ln(sqrt(2 pi) std) [- ln mass]``; ``-inf``
        where std <= 0 or the mass underflows to 0 (brutus raises on std <= 0).
    """
    return _kernel("gauss", reds, kp, rlims)


def kernel_lorentz(reds, kp, rlims=None):
    """Log-weights of reddening samples under a Lorentzian (Cauchy) kernel.

    Parameters
    ----------
    reds : array_like, shape (Nsamps,) (or broadcastable with ``kp``)
        Reddening samples [units of ``rlims``, default A_V mag].
    kp : tuple ``(mean, hwhm)``
        Kernel centre and half width at half maximum.
    rlims : tuple of float, optional
        If given, the density is divided by its mass inside ``rlims``,
        ``[atan((r1 - mean)/hwhm) - atan((r0 - mean)/hwhm)] / pi``.

    Returns
    -------
    logw : jax.Array
        ``-ln(1 + ((r - mean)/hwhm)^2) - ln(pi hwhm) [- ln mass]``; ``-inf`` where
        hwhm <= 0 (brutus raises).
    """
    return _kernel("lorentz", reds, kp, rlims)


# ---------------------------------------------------------------------------- prior transform
def _trunc_lognorm_ppf(q, params):
    """exp of the quantile ``q`` of N(mean, std) truncated to [low, high] (inverse CDF)."""
    mean, std, low, high = params
    ca, cb = ndtr((low - mean) / std), ndtr((high - mean) / std)
    x = ndtri(ca + q * (cb - ca)) * std + mean
    return jnp.exp(jnp.clip(x, low, high))


def _check_lognorm_params(params, name):
    try:
        mean, std, low, high = (float(v) for v in params)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (mean, std, low, high), got {params!r}") from None
    if not std > 0:
        raise ValueError(f"{name}: standard deviation must be > 0, got {std}")
    if not low < high:
        raise ValueError(f"{name}: lower bound must be below upper bound, got ({low}, {high})")
    return mean, std, low, high


def los_clouds_priortransform(u, rlims=(0.0, 6.0), dlims=(4.0, 19.0), pb_params=(-3.0, 0.7, -math.inf, 0.0),
                              s_params=(-3.0, 0.3, -math.inf, 0.0), dust_template=False, nlims=(0.2, 2)):
    """Map a point of the unit cube to LOS parameters drawn from the brutus prior.

    Parameters
    ----------
    u : array_like, shape (..., Nparams), Nparams = 4 + 2 n
        Unit-cube coordinates ``[u_pb, u_s0, u_s, u_fred, u_d1, u_r1, ...]``;
        leading axes are a batch.
    rlims : (float, float)
        Reddening range [A_V mag by default] of ``fred`` and the cloud levels.
    dlims : (float, float)
        Distance range [distance modulus mag by default] of the clouds.
    pb_params, s_params : (mean, std, low, high)
        ``ln pb`` and ``ln s0``, ``ln s`` follow N(mean, std) truncated to
        [low, high] (defaults: median pb ~ 0.05 with a factor-2 scatter,
        median s ~ 0.05 with a factor-1.35 scatter, both <= 1).
    dust_template : bool
        If True the cloud values are template rescalings uniform on ``nlims``.
    nlims : (float, float)
        Range of the template rescalings.

    Returns
    -------
    theta : jax.Array, shape (..., Nparams)
        ``[pb, s0, s, fred, d1, r1, ...]``: distances are the sorted uniforms on
        ``dlims``, the cloud values are permuted with that sort (so the pairs
        ``(d_i, r_i)`` stay together).

    Raises
    ------
    ValueError
        Bad limits or prior parameters; ``u`` outside [0, 1] (checked when
        concrete) or a last axis that is not ``4 + 2 n`` long.
    """
    u = _as_float(u)
    if u.ndim < 1 or u.shape[-1] < 4 or (u.shape[-1] - 4) % 2:
        raise ValueError(f"u: last axis must have 4 + 2 n entries, got shape {u.shape}")
    if not isinstance(u, jax.core.Tracer) and np.any((np.asarray(u) < 0) | (np.asarray(u) > 1)):
        raise ValueError("u: all values must lie in [0, 1]")
    r0, r1 = _check_lims(rlims, "rlims")
    d0, d1 = _check_lims(dlims, "dlims")
    pbp = _check_lognorm_params(pb_params, "pb_params")
    sp = _check_lognorm_params(s_params, "s_params")
    n0, n1 = _check_lims(nlims, "nlims") if dust_template else (None, None)
    return _priortransform_jit(u, (r0, r1), (d0, d1), pbp, sp, (n0, n1) if dust_template else None)


@partial(jax.jit, static_argnames=("rlims", "dlims", "pbp", "sp", "nlims"))
def _priortransform_jit(u, rlims, dlims, pbp, sp, nlims):
    (r0, r1), (d0, d1) = rlims, dlims
    pb = _trunc_lognorm_ppf(u[..., 0:1], pbp)
    ss = _trunc_lognorm_ppf(u[..., 1:3], sp)
    fred = r0 + u[..., 3:4] * (r1 - r0)
    ud, ur = u[..., 4::2], u[..., 5::2]
    order = jnp.argsort(ud, axis=-1)
    dist = d0 + jnp.take_along_axis(ud, order, axis=-1) * (d1 - d0)
    ur = jnp.take_along_axis(ur, order, axis=-1)
    red = nlims[0] + ur * (nlims[1] - nlims[0]) if nlims is not None else r0 + ur * (r1 - r0)
    pairs = jnp.stack([dist, red], axis=-1).reshape(u.shape[:-1] + (-1,))
    return jnp.concatenate([pb, ss, fred, pairs], axis=-1).astype(u.dtype)


# ---------------------------------------------------------------------------- likelihood
@partial(jax.jit, static_argnames=("kernel", "ndraws", "exact"))
def _loglike_core(theta, dsamps, rsamps, template, star_weight, rlims, options, *, kernel, ndraws, exact=True):
    """Sightline log-likelihood; see `los_clouds_loglike_samples`.

    ``star_weight`` (Nobj,) multiplies each star's ln L (1 for real stars, 0 for padding);
    ``rlims`` (2,) and ``options`` = [has_template, additive_foreground, monotonic] (bool (3,))
    are traced, so toggling them does not recompile; ``kernel`` and ``ndraws`` are static.
    ``exact=False`` (the fitter) sums the kernel weights in linear space (see below)."""
    dt = theta.dtype
    rlims = rlims.astype(dt)
    r0, r1 = rlims[0], rlims[1]
    area = r1 - r0
    has_template, additive, monotonic = options[0], options[1], options[2]
    pb, s0, s = theta[0], theta[1], theta[2]
    reds, dists = theta[3::2], theta[4::2]
    ncl = dists.shape[0]
    ds = dsamps[:, :ndraws].astype(dt)
    rs = rsamps[:, :ndraws].astype(dt)
    template = jnp.where(has_template, template.astype(dt), 1.0)

    # ---- conditions under which brutus raises (or returns NaN, or -inf)
    ok = (pb >= 0) & (pb <= 1) & (s0 >= 0) & (s >= 0) & ~jnp.any(jnp.isnan(theta)) & (area > 0)
    ok &= ~jnp.any(jnp.isnan(template) & (star_weight > 0))
    if ncl > 1:
        ok &= jnp.all(dists[1:] >= dists[:-1])
    if ncl > 0:
        cl = reds[1:]
        mono = jnp.all(cl[1:] >= cl[:-1]) if ncl > 1 else jnp.bool_(True)
        mono &= jnp.where(additive, cl[0] >= 0, has_template | (reds[0] <= cl[0]))
        ok &= ~monotonic | mono
    pb = jnp.clip(pb, 0.0, 1.0)
    area = jnp.where(area > 0, area, 1.0)

    # ---- segment of every sample: 0 = foreground, i = behind cloud i (numpy searchsorted
    # 'right' on the sorted distances; unsorted distances already gave ok = False).  Per-sample
    # parameters are picked with selects over the clouds (no gather: fast under vmap).
    valid = (ds >= 0) & (ds < _DMAX) & jnp.isfinite(rs)
    rs = jnp.where(valid, rs, 0.5 * (r0 + r1))
    behind_cl = [ds >= dists[i] for i in range(ncl)]

    # ---- per-segment kernel means (Nobj or 1, ncl + 1) and widths (ncl + 1,)
    level = jnp.broadcast_to(reds[0], (1, 1))
    if ncl > 0:
        cloud = reds[1:][None, :] * template[:, None] + jnp.where(additive, reds[0], 0.0)
        level = jnp.concatenate([jnp.broadcast_to(level, (cloud.shape[0], 1)), cloud], axis=1)
    width = jnp.concatenate([(s0 * area)[None], jnp.broadcast_to(s * area, (ncl,))])
    # brutus raises when any sample (valid or not; NaN distances sort behind every cloud) is
    # assigned a non-positive width
    if not exact:  # the fitter: widths > 0 by construction; skip the two passes over the samples
        ok &= (s0 > 0) & (s > 0)
    elif ncl > 0:
        behind = behind_cl[0] | jnp.isnan(ds)
        ok &= ~((jnp.any(~behind) & (s0 <= 0)) | (jnp.any(behind) & (s <= 0)))
    else:
        ok &= s0 > 0

    def per_sample(p):
        """(Nobj or 1, ncl + 1) segment values -> (Nobj, ndraws) per-sample values."""
        out = jnp.broadcast_to(p[:, :1], ds.shape)
        for i in range(ncl):
            out = jnp.where(behind_cl[i], p[:, i + 1:i + 2], out)
        return out

    if isinstance(kernel, str):
        prep, core = _KERNELS[kernel]
        params, lognorm = prep(level, width[None, :], (r0, r1))
        params = tuple(jnp.broadcast_to(q, level.shape) for q in params)
        lognorm = jnp.broadcast_to(lognorm, level.shape)
    if isinstance(kernel, str) and not exact:
        # linear space, shifted by each star's largest segment normalisation (every core <= 0,
        # so no overflow and no max pass over the samples); a star whose kernel values all
        # underflow (> 38 sigma in float64) gets L = 0 instead of e^-750: invisible for pb > 0
        top = jnp.max(jnp.where(jnp.isfinite(lognorm), -lognorm, -jnp.inf), axis=1, keepdims=True)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        scale = jnp.exp(-lognorm - top)
        if kernel != "tophat":  # multiply by the inverse width (one division per segment)
            params = (params[0], 1.0 / params[1])
        wts = _LINEAR[kernel](rs, tuple(per_sample(q) for q in params)) * per_sample(scale)
        tot = jnp.sum(jnp.where(valid, wts, 0.0), axis=1)
        lstar = top[:, 0] + _safe_log(tot) - math.log(ds.shape[1])
    else:
        if isinstance(kernel, str):
            logw = core(rs, tuple(per_sample(q) for q in params)) - per_sample(lognorm)
        else:  # a user kernel: called on the per-sample means and widths, without rlims (as brutus)
            logw = kernel(rs, (per_sample(level), per_sample(jnp.broadcast_to(width[None, :], level.shape))))
        logw = jnp.where(valid & ~jnp.isnan(logw), logw, -jnp.inf)
        lstar = _logmeanexp(logw, axis=1)
    # ln[(1 - pb) L + pb / area], written so that pb = 0 or 1 and L = 0 keep finite gradients
    lout = -jnp.log(area)
    top = jnp.maximum(lstar, lout)
    lmix = top + _safe_log((1.0 - pb) * jnp.exp(lstar - top) + pb * jnp.exp(lout - top))
    ll = jnp.sum(jnp.where(star_weight > 0, star_weight * lmix, 0.0))
    return jnp.where(ok & ~jnp.isnan(ll), ll, -jnp.inf).astype(dt)


def los_clouds_loglike_samples(theta, dsamps, rsamps, kernel="gauss", rlims=(0.0, 6.0), template_reds=None,
                               Ndraws=25, additive_foreground=False, monotonic=True):
    """Log-likelihood of an ``n``-cloud LOS reddening model given per-star samples.

    Parameters
    ----------
    theta : array_like, shape (4 + 2 n,)
        ``[pb, s0, s, fred, d1, r1, ..., dn, rn]`` (module docstring); ``n >= 0``.
    dsamps, rsamps : array_like, shape (Nobj, Nsamps)
        Distance [units of theta's distances, default distance modulus mag] and
        reddening [units of ``rlims``, default A_V mag] posterior samples of
        each star.  Samples with ``d < 0``, ``d >= 1e10`` or non-finite ``r``
        carry zero weight (but still count in the ``1 / Ndraws`` average).
    kernel : {'gauss', 'lorentz', 'tophat'} or callable
        Reddening kernel (see `kernel_gauss` etc.).  A callable
        ``f(reds, (mean, width)) -> logw`` (jnp, elementwise) is used without
        renormalisation, as in brutus.
    rlims : (float, float)
        Reddening range: the outlier density is ``1 / (rlims[1] - rlims[0])``,
        widths are ``s0, s`` times that range, built-in kernels are
        renormalised to it.
    template_reds : array_like, shape (Nobj,), optional
        Per-star template reddenings; behind a cloud the kernel mean is
        ``r_i * template_reds`` (cloud values are rescalings).
    Ndraws : int
        Only the first ``Ndraws`` samples of each star are used.
    additive_foreground : bool
        Behind a cloud the kernel mean is ``fred + r_i`` (after the template).
    monotonic : bool
        ``-inf`` unless ``r1 <= r2 <= ...`` and, additionally, ``r1 >= 0``
        (additive foreground) or ``fred <= r1`` (no template).

    Returns
    -------
    loglike : jax.Array, shape ()
        Sum over stars of ``ln[(1 - pb) mean_k K(r_jk) + pb / dr]``; dtype of
        ``theta`` (float32 stays float32).  ``-inf`` (never NaN) for
        non-monotone or invalid parameters (where brutus raises).

    Notes
    -----
    Jittable and differentiable in ``theta`` (the likelihood is piecewise
    constant in the cloud distances, so their gradient is 0); vmap across
    sightlines with ``jax.vmap(f, in_axes=(0, 0, 0))``.  Shape and option
    errors raise ``ValueError`` when traced.
    """
    theta = _as_float(theta)
    dsamps, rsamps = jnp.asarray(dsamps), jnp.asarray(rsamps)
    if theta.ndim != 1 or theta.shape[0] < 4 or (theta.shape[0] - 4) % 2:
        raise ValueError(f"theta: expected shape (4 + 2 n,), got {theta.shape}")
    if dsamps.ndim != 2 or rsamps.ndim != 2:
        raise ValueError(f"dsamps, rsamps: expected 2-D (Nobj, Nsamps), got {dsamps.shape} and {rsamps.shape}")
    if dsamps.shape != rsamps.shape:
        raise ValueError(f"rsamps: shape {rsamps.shape} differs from dsamps {dsamps.shape}")
    if not (isinstance(kernel, str) and kernel in _KERNELS) and not callable(kernel):
        raise ValueError(f"kernel: {kernel!r} is not valid; options: {list(_KERNELS)} or a callable")
    rl = _check_lims(rlims, "rlims")
    ndraws = int(Ndraws)
    if ndraws < 1:
        raise ValueError(f"Ndraws: must be >= 1, got {Ndraws}")
    ndraws = min(ndraws, dsamps.shape[1])
    nobj = dsamps.shape[0]
    if template_reds is not None:
        template = jnp.asarray(template_reds)
        if template.shape != (nobj,):
            raise ValueError(f"template_reds: expected shape ({nobj},), got {template.shape}")
    else:
        template = jnp.ones((nobj,), theta.dtype)
    options = jnp.asarray([template_reds is not None, additive_foreground, monotonic], bool)
    return _loglike_core(theta, dsamps, rsamps, template, jnp.ones((nobj,), theta.dtype), jnp.asarray(rl, theta.dtype),
                         options, kernel=kernel, ndraws=ndraws)
