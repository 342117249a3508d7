"""Galactic structure prior kernels (thin disk, thick disk, halo; [Fe/H] and age terms).

Part of the prior kernels (see ``brutus_jax.kernels.priors``, which re-exports
everything here); split out to keep modules small.  Distances, radii and
heights in kpc, Galactic l, b in degrees, ages in Gyr, [Fe/H] in dex.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from ._prior_math import _asfloat, truncnorm_logpdf

# ---------------------------------------------------------------------------
# Galactic structure
# ---------------------------------------------------------------------------


def galactic_to_galactocentric_cyl(dists, ell, b, R_solar=8.2, Z_solar=0.025):
    """Heliocentric Galactic ``(d, l, b)`` to Galactocentric cylindrical ``(R, Z)``.

    The Sun sits at ``(x, y, z) = (R_solar, 0, Z_solar)`` with ``l = 0``
    pointing to the Galactic centre::

        x = d cos b cos l,  y = d cos b sin l
        R = sqrt((x - R_solar)**2 + y**2),  Z = d sin b + Z_solar

    Parameters
    ----------
    dists : array_like
        Heliocentric distances [kpc].
    ell, b : float or array_like, broadcastable with ``dists``
        Galactic longitude and latitude [deg].
    R_solar, Z_solar : float, optional
        Solar Galactocentric radius and height [kpc] (defaults 8.2, 0.025).

    Returns
    -------
    R, Z : jax.Array, broadcast shape
        Cylindrical radius and height above the midplane [kpc].  (The gradient
        of ``R`` is undefined on the axis ``R = 0``.)
    """
    R2, Z = _galactocentric_R2_Z(_asfloat(dists), ell, b, R_solar, Z_solar)
    return jnp.sqrt(R2), Z


def _galactocentric_R2_Z(dists, ell, b, R_solar, Z_solar):
    """``(R**2, Z)`` of `galactic_to_galactocentric_cyl` (no square root)."""
    l_rad = jnp.deg2rad(ell)
    b_rad = jnp.deg2rad(b)
    cos_b = jnp.cos(b_rad)
    x = dists * (cos_b * jnp.cos(l_rad)) - R_solar
    y = dists * (cos_b * jnp.sin(l_rad))
    return x * x + y * y, dists * jnp.sin(b_rad) + Z_solar


def logn_disk(R, Z, R_solar=8.2, Z_solar=0.025, R_scale=2.6, Z_scale=0.3, R_smooth=2.0):
    """Log number density of an exponential disk, 0 at the Sun.

    ``-[(sqrt(R**2 + R_smooth**2) - sqrt(R_solar**2 + R_smooth**2)) / R_scale
    + (|Z| - |Z_solar|) / Z_scale]``.

    Parameters
    ----------
    R, Z : array_like, broadcastable
        Galactocentric cylindrical radius and height [kpc].
    R_solar, Z_solar : float, optional
        Solar position [kpc] (defaults 8.2, 0.025).
    R_scale, Z_scale : float, optional
        Scale length and height [kpc] (defaults 2.6, 0.3: thin disk).
    R_smooth : float, optional
        Core radius smoothing the centre [kpc] (default 2).

    Returns
    -------
    jax.Array
        ``ln(n / n_sun)`` (dimensionless).
    """
    return _logn_disk_R2(_asfloat(R) ** 2, _asfloat(Z), R_solar, Z_solar, R_scale, Z_scale, R_smooth)


def _logn_disk_R2(R2, Z, R_solar, Z_solar, R_scale, Z_scale, R_smooth):
    """`logn_disk` of ``R**2`` (the Monte-Carlo path never needs R itself)."""
    R_eff = jnp.sqrt(R2 + R_smooth**2)
    R_eff_sun = jnp.sqrt(R_solar**2 + R_smooth**2)
    return -((R_eff - R_eff_sun) / R_scale + (jnp.abs(Z) - jnp.abs(Z_solar)) / Z_scale)


def _halo_ln_R_eff2(R2, Z, R_smooth, q_ctr, q_inf, r_q):
    """``ln(R_eff**2)`` of the flattened halo at ``(R**2, Z)``; ``sqrt(r**2 + r_q**2)``
    with ``r**2 = R**2 + Z**2`` (two square roots fewer than through R and r)."""
    q = q_inf - (q_inf - q_ctr) * jnp.exp(1.0 - jnp.sqrt(R2 + Z * Z + r_q**2) / r_q)
    return jnp.log(R2 + (Z / q) ** 2 + R_smooth**2)


def logn_halo(R, Z, R_solar=8.2, Z_solar=0.025, R_smooth=2.0, eta=4.2, q_ctr=0.2, q_inf=0.8, r_q=6.0):
    """Log number density of a flattened power-law stellar halo, 0 at the Sun.

    ``-eta ln(R_eff / R_eff_sun)`` with ``R_eff = sqrt(R**2 + (Z/q)**2 +
    R_smooth**2)`` and a flattening that grows outwards,
    ``q(r) = q_inf - (q_inf - q_ctr) exp(1 - sqrt(r**2 + r_q**2) / r_q)``,
    ``r = sqrt(R**2 + Z**2)``; ``R_eff_sun`` is the same at ``(R_solar, Z_solar)``.

    Parameters
    ----------
    R, Z : array_like, broadcastable
        Galactocentric cylindrical radius and height [kpc].
    R_solar, Z_solar : float, optional
        Solar position [kpc].
    R_smooth : float, optional
        Core radius [kpc] (default 2).
    eta : float, optional
        Power-law index (default 4.2).
    q_ctr, q_inf : float, optional
        Axis ratio at the centre and at large radii (defaults 0.2, 0.8).
    r_q : float, optional
        Transition radius of the axis ratio [kpc] (default 6).

    Returns
    -------
    jax.Array
        ``ln(n / n_sun)`` (dimensionless).
    """
    return _logn_halo_R2(_asfloat(R) ** 2, _asfloat(Z), R_solar, Z_solar, R_smooth, eta, q_ctr, q_inf, r_q)


def _logn_halo_R2(R2, Z, R_solar, Z_solar, R_smooth, eta, q_ctr, q_inf, r_q):
    """`logn_halo` of ``R**2``: ``-eta/2 [ln R_eff**2 - ln R_eff_sun**2]``."""
    ln_sun = _halo_ln_R_eff2(R_solar**2, Z_solar, R_smooth, q_ctr, q_inf, r_q)
    return -0.5 * eta * (_halo_ln_R_eff2(R2, Z, R_smooth, q_ctr, q_inf, r_q) - ln_sun)


def logp_feh(feh, feh_mean=-0.2, feh_sigma=0.3):
    """Gaussian log-density of [Fe/H] for one Galactic component.

    Parameters
    ----------
    feh : array_like
        Metallicities [dex].
    feh_mean, feh_sigma : float, optional
        Mean and dispersion [dex] (defaults -0.2, 0.3: thin disk; brutus uses
        (-0.7, 0.4) thick disk, (-1.6, 0.5) halo).

    Returns
    -------
    jax.Array
        Log-density [ln dex**-1].
    """
    feh = _asfloat(feh)
    return -0.5 * ((feh - feh_mean) ** 2 / feh_sigma**2 + jnp.log(2.0 * math.pi * feh_sigma**2))


def _age_mean_sigma(feh_mean, max_age, min_age, feh_age_ctr, feh_age_scale, nsigma_from_max_age, max_sigma, min_sigma):
    """Logistic age-metallicity relation: mean age and clipped dispersion [Gyr]."""
    mean = (max_age - min_age) / (1.0 + jnp.exp((feh_mean - feh_age_ctr) / feh_age_scale)) + min_age
    sigma = jnp.clip((max_age - mean) / nsigma_from_max_age, min_sigma, max_sigma)
    return mean, sigma


def logp_age_from_feh(
    age,
    feh_mean=-0.2,
    max_age=13.8,
    min_age=0.0,
    feh_age_ctr=-0.5,
    feh_age_scale=0.5,
    nsigma_from_max_age=2.0,
    max_sigma=4.0,
    min_sigma=1.0,
):
    """Log-prior on age for a component of mean metallicity ``feh_mean``.

    A normal truncated to ``[min_age, max_age]`` with mean
    ``t = (max_age - min_age) / (1 + exp((feh_mean - feh_age_ctr) / feh_age_scale)) + min_age``
    and dispersion ``clip((max_age - t) / nsigma_from_max_age, min_sigma, max_sigma)``.
    Defaults give (mean, sigma) = (4.890, 4.000) Gyr for the thin disk's
    ``feh_mean = -0.2``.

    Parameters
    ----------
    age : array_like
        Ages [Gyr].
    feh_mean : float, optional
        Mean [Fe/H] of the component [dex] (default -0.2).
    max_age, min_age : float, optional
        Support [Gyr] (defaults 13.8, 0).
    feh_age_ctr, feh_age_scale : float, optional
        Centre and width of the logistic relation [dex] (defaults -0.5, 0.5).
    nsigma_from_max_age : float, optional
        Mean age sits this many sigma below ``max_age`` (default 2).
    max_sigma, min_sigma : float, optional
        Clipping of the dispersion [Gyr] (defaults 4, 1).

    Returns
    -------
    jax.Array
        Log-density [ln Gyr**-1]; ``-inf`` outside ``[min_age, max_age]``.
    """
    mean, sigma = _age_mean_sigma(
        feh_mean, max_age, min_age, feh_age_ctr, feh_age_scale, nsigma_from_max_age, max_sigma, min_sigma
    )
    return truncnorm_logpdf(age, min_age, max_age, mean, sigma)


def _label_field(labels, name):
    """Field ``name`` of a structured array / mapping of labels, or None if absent."""
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        return labels.get(name)
    names = getattr(getattr(labels, "dtype", None), "names", None) or ()
    return labels[name] if name in names else None


def _lb_from_coord(coord):
    """``(l, b)`` in degrees from an ``(l, b)`` pair or an astropy SkyCoord."""
    if hasattr(coord, "galactic"):
        gal = coord.galactic
        return gal.l.deg, gal.b.deg
    return coord[0], coord[1]


def _logsumexp0(x):
    """logsumexp over the (short) leading axis as a chain of logaddexp (as brutus)."""
    out = x[0]
    for i in range(1, x.shape[0]):
        out = jnp.logaddexp(out, x[i])
    return out


def logp_galactic_structure(
    dists,
    coord,
    labels=None,
    feh=None,
    loga=None,
    R_solar=8.2,
    Z_solar=0.025,
    R_thin=2.6,
    Z_thin=0.3,
    Rs_thin=2.0,
    R_thick=2.0,
    Z_thick=0.9,
    f_thick=0.04,
    Rs_thick=2.0,
    Rs_halo=2.0,
    q_halo_ctr=0.2,
    q_halo_inf=0.8,
    r_q_halo=6.0,
    eta_halo=4.2,
    f_halo=0.005,
    feh_thin=-0.2,
    feh_thin_sigma=0.3,
    feh_thick=-0.7,
    feh_thick_sigma=0.4,
    feh_halo=-1.6,
    feh_halo_sigma=0.5,
    max_age=13.8,
    min_age=0.0,
    feh_age_ctr=-0.5,
    feh_age_scale=0.5,
    nsigma_from_max_age=2.0,
    max_sigma=4.0,
    min_sigma=1.0,
    return_components=False,
):
    """Three-component (thin disk, thick disk, halo) Galactic log-prior.

    Position: for each component ``c`` ``ln p_c = ln n_c(R, Z) + ln f_c +
    2 ln d`` (volume element; ``f_thin = 1``), ``ln p_pos = logsumexp_c ln p_c``
    and membership ``ln P(c | pos) = ln p_c - ln p_pos``.

    [Fe/H] (when given): ``ln p_feh = logsumexp_c [ln N(feh; mu_c, s_c) +
    ln P(c | pos)]``.

    Age (when ``loga`` is given; ``t = 10**loga / 1e9`` Gyr):
    ``ln p_age = logsumexp_c [ln TN_c(t) + ln w_c]`` with the per-component
    truncated normals of `logp_age_from_feh` (evaluated at ``feh_c``) and
    weights ``w_c = P(c | pos, feh)`` -- conditioned on [Fe/H] as in brutus
    1.2.0 -- or ``P(c | pos)`` when no [Fe/H] is given.

    Total: ``ln p_pos + ln p_feh + ln p_age`` (terms present when their
    labels are).

    Parameters
    ----------
    dists : array_like
        Distances [kpc].
    coord : (l, b) pair or astropy SkyCoord
        Galactic longitude and latitude [deg]; scalars or arrays broadcastable
        with ``dists``.
    labels : numpy structured array or mapping, optional
        Labels with optional fields ``'feh'`` [dex] and ``'loga'``
        [log10 yr], broadcastable with ``dists``.  Host-side only (not
        traceable); use ``feh``/``loga`` or a dict inside ``jit``.
    feh, loga : array_like, optional
        The same as plain arrays; each overrides its own field of ``labels``.
    R_solar, Z_solar : float
        Solar position [kpc].
    R_thin, Z_thin, Rs_thin : float
        Thin-disk scale length, height, smoothing [kpc].
    R_thick, Z_thick, Rs_thick : float
        Thick-disk scale length, height, smoothing [kpc].
    f_thick : float
        Thick-disk normalisation relative to the thin disk at the Sun.
    Rs_halo, q_halo_ctr, q_halo_inf, r_q_halo, eta_halo : float
        Halo smoothing [kpc], axis ratios, transition radius [kpc], index.
    f_halo : float
        Halo normalisation relative to the thin disk at the Sun.
    feh_thin, feh_thin_sigma, feh_thick, feh_thick_sigma, feh_halo, feh_halo_sigma : float
        Per-component [Fe/H] means and dispersions [dex].
    max_age, min_age, feh_age_ctr, feh_age_scale, nsigma_from_max_age, max_sigma, min_sigma : float
        Age-metallicity relation (see `logp_age_from_feh`).
    return_components : bool, optional
        Also return the per-component terms.

    Returns
    -------
    logp : jax.Array, broadcast shape
        Total log-prior [ln kpc**-1, plus ln dex**-1 and ln Gyr**-1 for the
        [Fe/H] and age terms]; ``-inf`` for ages outside ``[min_age, max_age]``.
    components : dict, optional
        ``{'number_density': [thin, thick, halo]}`` (``ln p_c``), plus
        ``'feh': [...]`` (``ln N(feh|c) + ln P(c|pos)``) and ``'age': [...]``
        (``ln TN_c(t) + ln w_c``) when those labels are present.
    """
    ell, b = _lb_from_coord(coord)
    if feh is None:
        feh = _label_field(labels, "feh")
    if loga is None:
        loga = _label_field(labels, "loga")
    params = dict(
        R_solar=R_solar, Z_solar=Z_solar, R_thin=R_thin, Z_thin=Z_thin, Rs_thin=Rs_thin, R_thick=R_thick,
        Z_thick=Z_thick, f_thick=f_thick, Rs_thick=Rs_thick, Rs_halo=Rs_halo, q_halo_ctr=q_halo_ctr,
        q_halo_inf=q_halo_inf, r_q_halo=r_q_halo, eta_halo=eta_halo, f_halo=f_halo, feh_thin=feh_thin,
        feh_thin_sigma=feh_thin_sigma, feh_thick=feh_thick, feh_thick_sigma=feh_thick_sigma, feh_halo=feh_halo,
        feh_halo_sigma=feh_halo_sigma, max_age=max_age, min_age=min_age, feh_age_ctr=feh_age_ctr,
        feh_age_scale=feh_age_scale, nsigma_from_max_age=nsigma_from_max_age, max_sigma=max_sigma,
        min_sigma=min_sigma,
    )
    if all(isinstance(v, (int, float)) for v in params.values()):
        # the usual call: parameters are compile-time constants (folded by XLA: ~2x faster compile);
        # one compiled function per parameter set, (feh?, loga?) and shapes; inlined under an outer jit
        logp, components = _galactic_structure_static(dists, ell, b, feh, loga, tuple(params.items()))
    else:  # traced / array parameters (e.g. differentiating with respect to them)
        logp, components = _galactic_structure(dists, ell, b, feh, loga, params)
    if return_components:
        return logp, components
    return logp


def _galactic_structure(dists, ell, b, feh, loga, p):
    """Body of `logp_galactic_structure`: (total, components dict); ``p`` the parameter dict.

    The three components are stacked on a leading axis of length 3 (thin,
    thick, halo); the position terms are `galactic_position_terms`.
    """
    lnp_c = galactic_position_terms(dists, ell, b, p)  # (3, ...)
    shape = jnp.broadcast_shapes(lnp_c.shape[1:], () if feh is None else jnp.shape(feh),
                                 () if loga is None else jnp.shape(loga))
    lnp_c = jnp.broadcast_to(lnp_c, (3,) + shape)

    def comp(*vals):  # per-component parameters as a (3, 1, ..., 1) column
        return jnp.reshape(jnp.stack([jnp.asarray(v) for v in vals]), (len(vals),) + (1,) * len(shape))

    lnp_pos = _logsumexp0(lnp_c)
    components = {"number_density": list(lnp_c)}
    ln_w = lnp_c - lnp_pos  # log membership weights P(c | pos), then P(c | pos, feh)
    logp = lnp_pos

    feh_mu = comp(p["feh_thin"], p["feh_thick"], p["feh_halo"])
    if feh is not None:
        sig = comp(p["feh_thin_sigma"], p["feh_thick_sigma"], p["feh_halo_sigma"])
        terms = logp_feh(_asfloat(feh), feh_mu, sig) + ln_w
        lnp_feh = _logsumexp0(terms)
        logp = logp + lnp_feh
        components["feh"] = list(terms)
        ln_w = terms - lnp_feh

    if loga is not None:
        age = 10.0 ** _asfloat(loga) / 1e9
        age_kw = {k: p[k] for k in ("max_age", "min_age", "feh_age_ctr", "feh_age_scale", "nsigma_from_max_age",
                                    "max_sigma", "min_sigma")}
        terms = logp_age_from_feh(age, feh_mu, **age_kw) + ln_w
        logp = logp + _logsumexp0(terms)
        components["age"] = list(terms)
    return logp, components


_galactic_structure_static = jax.jit(
    lambda dists, ell, b, feh, loga, items: _galactic_structure(dists, ell, b, feh, loga, dict(items)),
    static_argnums=5,
)




# ---------------------------------------------------------------------------
# Factored form for Monte-Carlo integration
# ---------------------------------------------------------------------------
#
# With ln p_c(pos) the component number densities (incl. volume), F_c the
# [Fe/H] and A_c the age log-densities, the total of `_galactic_structure`
# telescopes to
#     logp = logsumexp_c [ln p_c(d) + F_c(feh) + A_c(age)],
# (membership weights cancel), so the per-model terms G_c = F_c + A_c are
# computed once per model and only ln p_c(d) per Monte-Carlo point.


def galactic_params(**overrides):
    """Full parameter dict of `logp_galactic_structure` (its defaults, updated)."""
    sig = inspect.signature(logp_galactic_structure).parameters
    p = {k: v.default for k, v in sig.items() if isinstance(v.default, (int, float)) and k != "return_components"}
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown Galactic prior parameter(s) {sorted(unknown)}; known: {sorted(p)}")
    p.update(overrides)
    return p


def galactic_model_terms(feh, loga, p):
    """Per-model terms ``G_c = F_c + A_c`` of the factored Galactic prior, (..., 3).

    ``feh`` [dex] and ``loga`` [log10 yr] arrays (or None: term absent);
    ``p`` from `galactic_params`.  Columns: thin disk, thick disk, halo.
    """
    given = [_asfloat(x) for x in (feh, loga) if x is not None]
    dt = jnp.result_type(*given) if given else jnp.result_type(float)
    feh_mu = jnp.asarray([p["feh_thin"], p["feh_thick"], p["feh_halo"]], dt)
    out = jnp.zeros(3, dt)
    if feh is not None:
        sig = jnp.asarray([p["feh_thin_sigma"], p["feh_thick_sigma"], p["feh_halo_sigma"]], dt)
        out = out + logp_feh(_asfloat(feh)[..., None], feh_mu, sig)
    if loga is not None:
        age = 10.0 ** _asfloat(loga)[..., None] / 1e9
        age_kw = {k: p[k] for k in ("max_age", "min_age", "feh_age_ctr", "feh_age_scale", "nsigma_from_max_age",
                                    "max_sigma", "min_sigma")}
        out = out + logp_age_from_feh(age, feh_mu, **age_kw)
    return out


def galactic_position_terms(dists, ell, b, p, log_dists=None):
    """Component log number densities incl. the volume, ``ln p_c(d)``: (3, ...).

    ``dists`` [kpc], ``ell``/``b`` [deg]; ``log_dists`` (ln d, optional) saves a log.
    """
    return jnp.stack(_position_terms(dists, ell, b, p, log_dists))


def _position_terms(dists, ell, b, p, log_dists=None):
    """`galactic_position_terms` as a tuple (thin, thick, halo) of ``dists``-shaped arrays.

    Through ``R**2`` (`_logn_disk_R2`, `_logn_halo_R2`): R itself is never needed,
    three square roots per point fewer in the Monte-Carlo integration's inner loop."""
    dists = _asfloat(dists)
    R2, Z = _galactocentric_R2_Z(dists, ell, b, p["R_solar"], p["Z_solar"])
    lnd = jnp.log(dists + 1e-300) if log_dists is None else log_dists
    thin = _logn_disk_R2(R2, Z, p["R_solar"], p["Z_solar"], p["R_thin"], p["Z_thin"], p["Rs_thin"])
    thick = _logn_disk_R2(R2, Z, p["R_solar"], p["Z_solar"], p["R_thick"], p["Z_thick"], p["Rs_thick"])
    halo = _logn_halo_R2(R2, Z, p["R_solar"], p["Z_solar"], p["Rs_halo"], p["eta_halo"], p["q_halo_ctr"],
                         p["q_halo_inf"], p["r_q_halo"])
    vol = 2.0 * lnd
    # jnp.log: the parameters may be traced (differentiating the prior with respect to them)
    return thin + vol, thick + jnp.log(p["f_thick"]) + vol, halo + jnp.log(p["f_halo"]) + vol


def logp_galactic_factored(position_terms, model_terms):
    """``logsumexp_c [position_terms[c] + model_terms[..., c]]``: the Galactic log-prior.

    ``position_terms``: (3, K, n) from `galactic_position_terms`, or a tuple of
    three (K, n) arrays; ``model_terms`` (K, 3) from `galactic_model_terms`;
    equals `logp_galactic_structure`.
    """
    mt = jnp.asarray(model_terms)
    if isinstance(position_terms, tuple):
        t = []
        for c in range(3):
            gc = mt[..., c]
            t.append(position_terms[c] + gc.reshape(gc.shape + (1,) * (jnp.ndim(position_terms[c]) - gc.ndim)))
    else:
        mt = jnp.moveaxis(mt, -1, 0)
        t = position_terms + mt.reshape(mt.shape + (1,) * (position_terms.ndim - mt.ndim))
    # explicit 3-term log-sum-exp (a reduction over the leading axis is ~10x slower on
    # XLA:CPU) with two exponentials, not three: the largest term contributes exp(0) = 1
    # exactly, the other two are the median and the minimum (found by min/max, exact)
    lo01, hi01 = jnp.minimum(t[0], t[1]), jnp.maximum(t[0], t[1])
    mx = jnp.maximum(hi01, t[2])
    mid = jnp.maximum(lo01, jnp.minimum(hi01, t[2]))
    mn = jnp.minimum(lo01, t[2])
    ok = jnp.isfinite(mx)
    safe = jnp.where(ok, mx, 0.0)
    tot = 1.0 + jnp.exp(mid - safe) + jnp.exp(mn - safe)
    return jnp.where(ok, safe + jnp.log(tot), mx)


def galactic_prior_terms(feh, loga, ell, b, stacked=True, **params):
    """The Galactic log-prior split into per-model terms and a function of distance.

    Returns ``(f, G)``: ``G`` (K, 3) the per-model [Fe/H]/age terms of ``feh``,
    ``loga`` ((K,) or None), evaluated once; ``f(d, G)`` the log-prior at
    distances ``d`` [kpc], with ``d`` (K, n) and the whole ``G``, or one model's
    (n,) with its row (so ``f`` can be vmapped over models).  ``params``
    override the defaults of `logp_galactic_structure` (e.g. R_solar, Z_solar).

    ``stacked`` (same values either way) picks how XLA:CPU lays out the three
    component terms, measured in `BruteForce`'s Monte-Carlo pass (K = 8192
    models x 50 draws, float32, one core): stacked, 18 ms per star when the pass
    is vmapped over a group of stars, 20 ms for one star; unstacked, 12 ms for
    one star (the serial CPU path) but 64 ms vmapped over stars.
    """
    p = galactic_params(**params)
    G = jax.lax.optimization_barrier(galactic_model_terms(feh, loga, p))  # per model, not per MC point

    def f(d, G):
        # materialised: XLA:CPU would otherwise recompute the position terms in each consumer
        pos = galactic_position_terms(d, ell, b, p) if stacked else _position_terms(d, ell, b, p)
        return logp_galactic_factored(jax.lax.optimization_barrier(pos), G)

    return f, G


def galactic_prior_of_distance(feh, loga, ell, b, **params):
    """The Galactic log-prior of K models as a function of their distances:
    ``f(d) -> (K, n)`` for ``d`` (K, n) [kpc] (see `galactic_prior_terms`)."""
    f, G = galactic_prior_terms(feh, loga, ell, b, **params)
    return lambda d: f(d, G)
