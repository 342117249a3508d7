"""Kernels of the population (cluster) log-likelihood over a (SMF, EEP) grid.

Pure ``jax.numpy`` functions behind :mod:`brutus_jax.analysis.populations`
(astro-brutus 1.2.0 ``brutus.analysis.populations``).  Everything has static
shapes: the model grid keeps all ``n_smf x n_eep`` rows, and the rows that
brutus *drops* (non-increasing mass, post-main-sequence rows of every slice
but the first one that has them, invalid SEDs) are encoded as log-weights of
``-inf``.  That makes ``jax.jit(jax.value_and_grad(...))`` of the total
log-likelihood compile once for every theta.

NaN policy: no function here produces NaN from finite inputs, and every
``log`` / division that may see a masked entry uses the double-``where``
trick, so gradients stay NaN-free when rows or objects are invalid.
Constants are Python floats (weakly typed): float32 inputs give float32
outputs.

Units: fluxes in maggies (``10**(-0.4 mag)``), parallaxes in mas,
distances in pc, masses in Msun.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jax.scipy.special import gammaln

__all__ = [
    "index_gradient",
    "smf_measure",
    "population_row_weights",
    "terminal_fractions",
    "mags_to_flux",
    "cluster_loglike",
    "chisquare_outlier_from_table",
    "uniform_outlier_loglike",
    "mixture_loglike",
    "marginalize_log_weights",
    "marginalize_mixture_per_object",
    "safe_logsumexp",
]

_LN_2PI = math.log(2.0 * math.pi)
_LN_2 = math.log(2.0)
_NEG_0P4_LN10 = -0.4 * math.log(10.0)


# ---------------------------------------------------------------------------
# Grid measure: mass and SMF jacobians, brutus's row selection
# ---------------------------------------------------------------------------


def index_gradient(x, ok):
    """``np.gradient`` along the last axis (unit spacing) with a validity mask.

    Parameters
    ----------
    x : array (..., n)
        Values (e.g. initial masses [Msun]); entries where ``ok`` is False
        may hold any finite fill.
    ok : bool array (..., n)
        True where ``x`` is finite in the brutus sense.

    Returns
    -------
    dx : array (..., n)
        Central differences ``(x[j+1] - x[j-1]) / 2`` in the interior and
        one-sided differences at both ends, 0 where invalid.
    dx_ok : bool array (..., n)
        True where numpy's gradient of the NaN-filled array would be finite
        (i.e. every neighbour the stencil uses is valid; the centre point
        itself is not used by the central stencil).  For ``n == 1`` the
        result is ``dx = 1`` (brutus's convention), always valid.
    """
    x = jnp.asarray(x)
    ok = jnp.asarray(ok, dtype=bool)
    n = x.shape[-1]
    if n == 1:
        return jnp.ones_like(x), jnp.ones(x.shape, dtype=bool)
    # Previous / next neighbour used by numpy's stencil at each index.
    lo = jnp.concatenate([x[..., :1], x[..., :-2], x[..., -2:-1]], axis=-1)
    hi = jnp.concatenate([x[..., 1:2], x[..., 2:], x[..., -1:]], axis=-1)
    lo_ok = jnp.concatenate([ok[..., :1], ok[..., :-2], ok[..., -2:-1]], axis=-1)
    hi_ok = jnp.concatenate([ok[..., 1:2], ok[..., 2:], ok[..., -1:]], axis=-1)
    # Interior points divide by 2 (two index steps), the ends by 1.
    half = jnp.concatenate(
        [jnp.ones((1,), x.dtype), jnp.full((n - 2,), 0.5, x.dtype), jnp.ones((1,), x.dtype)]
    )
    if n == 2:
        half = jnp.ones((2,), x.dtype)
    dx_ok = lo_ok & hi_ok
    dx = jnp.where(dx_ok, (hi - lo) * half, 0.0)
    return dx, dx_ok


def smf_measure(smf):
    """SMF jacobians ``np.gradient(smf)`` (``[1.0]`` for a single value).

    Parameters
    ----------
    smf : array (n_smf,)
        Secondary mass fractions (dimensionless).

    Returns
    -------
    dsmf : array (n_smf,)
    """
    smf = jnp.asarray(smf)
    dsmf, _ = index_gradient(smf, jnp.ones(smf.shape, dtype=bool))
    return dsmf


def terminal_fractions(eep, eep_end):
    """Fraction of every row's EEP cell that lies below a continuous terminal EEP.

    ``f_j = clip((eep_end - e_j) / (e_{j+1} - e_j), 0, 1)`` (the last row uses
    the previous spacing): 1 for every row whose upper neighbour is below the
    end, 0 for rows beyond it, linear in ``eep_end`` for the last one.

    Parameters
    ----------
    eep : array (n_eep,)
        Ascending EEP grid.
    eep_end : scalar
        Terminal EEP of the isochrone (continuous in [Fe/H], log age).

    Returns
    -------
    f : array (n_eep,)
    """
    eep = jnp.asarray(eep)
    if eep.shape[0] < 2:
        return jnp.where(eep <= eep_end, 1.0, 0.0).astype(eep.dtype)
    de = jnp.diff(eep)
    de = jnp.concatenate([de, de[-1:]])
    de = jnp.where(de > 0.0, de, 1.0)
    t = (eep_end - eep) / de
    return jnp.where(t < 0.0, 0.0, jnp.where(t > 1.0, 1.0, t))  # full derivative at ties


def _smooth_mass_gradient(x, ok, frac=None):
    """``index_gradient`` plus a one-sided estimate at the last valid row of a run.

    brutus drops a row whose upper neighbour is invalid (NaN gradient); here it
    gets the second-order backward difference ``(3 x_j - 4 x_{j-1} + x_{j-2}) / 2``
    (first order ``x_j - x_{j-1}`` when ``x_{j-2}`` is invalid), which agrees with
    the central difference the row gets once its neighbour becomes valid up to
    O(h^3) times the third derivative.

    ``frac`` (n,), the terminal fractions of the rows: a row whose upper
    neighbour is valid but only partly below the terminal EEP gets
    ``f_{j+1} central + (1 - f_{j+1}) backward``, so its jacobian does not
    depend on whether the neighbour is valid (that switches at isochrone table
    nodes, independently of the terminal EEP) and moves continuously from the
    one-sided to the central value as the terminal EEP crosses the neighbour's cell.
    """
    dx, dx_ok = index_gradient(x, ok)
    n = x.shape[-1]
    if n < 3:
        return dx, dx_ok

    def shift(a, k, fill):  # a[..., j - k], ``fill`` for j < k
        return jnp.concatenate([jnp.full(a.shape[:-1] + (k,), fill, a.dtype), a[..., :-k]], axis=-1)

    x1, x2 = shift(x, 1, 0.0), shift(x, 2, 0.0)
    o1, o2 = shift(ok, 1, False), shift(ok, 2, False)
    hi_ok = jnp.concatenate([ok[..., 1:], jnp.ones(ok.shape[:-1] + (1,), bool)], axis=-1)
    last = ok & o1 & ~hi_ok
    back = jnp.where(o2, 1.5 * x - 2.0 * x1 + 0.5 * x2, x - x1)
    if frac is not None:
        u = jnp.concatenate([frac[1:], jnp.ones((1,), frac.dtype)])  # the upper neighbour's fraction
        inner = ok & o1 & hi_ok & dx_ok
        dx = jnp.where(inner, u * dx + (1.0 - u) * back, dx)
    return jnp.where(last, back, dx), dx_ok | last


def population_row_weights(mini, mini_ok, sed_ok, eep, smf, eep_binary_max, eep_end=None):
    """Integration weights of every (SMF slice, EEP) row, brutus's selection.

    brutus's ``generate_isochrone_population_grid`` keeps, per SMF slice
    ``i``, the rows with ``Delta m > 0`` and ``eep <= eep_binary_max``
    (weight ``Delta m * Delta smf_i``); the post-main-sequence rows
    (``eep > eep_binary_max``, ``Delta m > 0``) are SMF-independent and are
    stored ONCE, from the first slice that has any, with weight
    ``Delta m * sum(Delta smf)``.  Rows whose SED is invalid stay in brutus's
    grid but contribute nothing (NaN likelihood); here they get log-weight
    ``-inf`` directly.

    Parameters
    ----------
    mini : array (n_smf, n_eep)
        Primary initial masses [Msun] per slice (finite fill where invalid).
    mini_ok : bool array (n_smf, n_eep)
        Where ``mini`` is finite in brutus.
    sed_ok : bool array (n_smf, n_eep)
        Where the model SED is finite.
    eep : array (n_eep,)
        EEP grid.
    smf : array (n_smf,)
        SMF grid.
    eep_binary_max : float
        Maximum EEP of binary models.
    eep_end : scalar or None
        None: brutus's measure (exact).  A terminal EEP: the *smooth* measure,
        continuous in ``eep_end`` -- the last valid row of each slice also
        gets a mass jacobian (one-sided, ``_smooth_mass_gradient``; brutus
        drops it) and every row's jacobian is multiplied by
        :func:`terminal_fractions`; the row below the straddling one blends
        its central and one-sided jacobians by the straddling row's fraction,
        so the weights depend continuously on ``eep_end`` alone, not on which
        rows beyond it are valid.  Identical to brutus's measure when
        ``eep_end`` is beyond the grid's last row + one spacing; with
        ``eep_end`` on a grid node ``e_{j+1}`` it differs from brutus's only by
        row j's one-sided instead of central mass difference (O(h^3)); in
        between the integral's end moves (to that order) linearly from one
        brutus value to the next instead of jumping by a whole cell.

    Returns
    -------
    mass_jac : array (n_smf, n_eep)
        ``Delta m`` [Msun] for rows brutus keeps, else 0.
    smf_jac : array (n_smf, n_eep)
        ``Delta smf_i`` (main-sequence rows) or ``sum(Delta smf)``
        (post-MS rows of the first slice having them) for kept rows, else 0.
    log_w : array (n_smf, n_eep)
        ``ln(mass_jac * smf_jac)`` for kept rows with a valid SED and a
        positive finite weight; ``-inf`` otherwise.
    """
    mini = jnp.asarray(mini)
    if eep_end is None:
        dm, dm_ok = index_gradient(mini, mini_ok)
    else:
        frac = terminal_fractions(jnp.asarray(eep, mini.dtype), eep_end)
        dm, dm_ok = _smooth_mass_gradient(mini, jnp.asarray(mini_ok, dtype=bool), frac)
        dm = dm * frac[None, :]
    dsmf = smf_measure(jnp.asarray(smf).astype(mini.dtype))
    total = jnp.sum(dsmf)
    eep = jnp.asarray(eep)
    pos = dm_ok & (dm > 0.0)
    is_ms = (eep <= eep_binary_max)[None, :]
    is_post = (eep > eep_binary_max)[None, :]
    any_post = jnp.any(pos & is_post, axis=1)
    first_post = any_post & (jnp.cumsum(any_post.astype(jnp.int32)) == 1)
    keep_ms = pos & is_ms
    keep_post = pos & is_post & first_post[:, None]
    keep = keep_ms | keep_post
    smf_jac = jnp.where(keep_ms, dsmf[:, None], jnp.where(keep_post, total, 0.0))
    mass_jac = jnp.where(keep, dm, 0.0)
    prod = mass_jac * smf_jac
    enter = keep & jnp.asarray(sed_ok, dtype=bool) & (prod > 0.0) & jnp.isfinite(prod)
    log_w = jnp.where(enter, jnp.log(jnp.where(enter, prod, 1.0)), -jnp.inf)
    return mass_jac, smf_jac, log_w


def mags_to_flux(mags, ok):
    """``10**(-0.4 mags)`` with 0 where ``ok`` is False (NaN-free, incl. gradients).

    Parameters
    ----------
    mags : array (..., n_filt)
        Magnitudes.
    ok : bool array (...)
        Row validity (broadcast over the band axis).
    """
    ok = jnp.asarray(ok, dtype=bool)[..., None]
    safe = jnp.where(ok, mags, 0.0)
    return jnp.where(ok, jnp.exp(_NEG_0P4_LN10 * safe), 0.0)


# ---------------------------------------------------------------------------
# Cluster and outlier likelihoods
# ---------------------------------------------------------------------------


def _chi2_logpdf(chi2, dof):
    """Chi-square log-pdf (brutus ``phot_loglike(dim_prior=True)``); ``-inf`` where dof <= 0.

    ``(a - 1) ln chi2`` is taken as 0 when ``a == 1`` (``scipy.special.xlogy``).
    """
    ok = dof > 0.0
    a = jnp.where(ok, 0.5 * dof, 1.0)
    am1 = a - 1.0
    # per-dof constant first (``dof`` is usually (1, n_obj)): gammaln inside the broadcast
    # would be evaluated for every (row, object) pair
    const = -gammaln(a) - _LN_2 * a
    xlogy = jnp.where(am1 == 0.0, 0.0, am1 * jnp.log(jnp.where(am1 == 0.0, 1.0, chi2)))
    return jnp.where(ok, xlogy - 0.5 * chi2 + const, -jnp.inf)


@jax.custom_vjp
def _chi2_direct(model, flux, ivar):
    """``chi2[n, o] = sum_b ivar[o, b] (flux[o, b] - model[n, b])**2``, band loop unrolled.

    Forward: one fused (n_pts, n_obj) pass per band, no cancellation (used in
    float32).  Backward: matrix products (the naive reverse pass of the
    unrolled loop re-reads the (n_pts, n_obj) cotangent once per band).
    """
    chi2 = jnp.zeros((model.shape[0], flux.shape[0]), dtype=jnp.result_type(model, flux, ivar))
    for b in range(flux.shape[1]):
        r = flux[None, :, b] - model[:, b, None]
        chi2 = chi2 + ivar[None, :, b] * (r * r)
    return chi2


def _chi2_direct_fwd(model, flux, ivar):
    return _chi2_direct(model, flux, ivar), (model, flux, ivar)


def _chi2_direct_bwd(res, g):
    model, flux, ivar = res
    g_sum = jnp.sum(g, axis=0)[:, None]                       # (n_obj, 1)
    g_m = g.T @ model                                          # (n_obj, n_filt)
    d_model = 2.0 * (model * (g @ ivar) - g @ (ivar * flux))
    d_flux = 2.0 * ivar * (flux * g_sum - g_m)
    d_ivar = flux * flux * g_sum - 2.0 * flux * g_m + g.T @ (model * model)
    return d_model, d_flux, d_ivar


_chi2_direct.defvjp(_chi2_direct_fwd, _chi2_direct_bwd)


def cluster_loglike(obs_flux, obs_err, band_mask, model_flux, parallax=None,
                    parallax_err=None, distance=None, dim_prior=True):
    """Cluster log-likelihood of every (model row, object) pair.

    Same likelihood as :func:`brutus_jax.kernels.photometry.phot_loglike`
    (brutus's ``phot_loglike`` with ``extra_chi2`` / ``extra_dims`` for the
    parallax), evaluated in the (model, object) layout with the band loop
    unrolled: every band adds one fused (n_pts, n_obj) term, so neither the
    forward nor the backward pass materialises (n_pts, n_obj, n_filt) arrays.

    Parameters
    ----------
    obs_flux, obs_err : array (n_obj, n_filt)
        Observed fluxes and 1-sigma errors [maggies].
    band_mask : array (n_obj, n_filt)
        Band weights (1 = use, 0 = skip); invalid data are always skipped.
    model_flux : array (n_pts, n_filt)
        Model fluxes at the cluster distance [maggies]; must be finite.
    parallax, parallax_err : array (n_obj,) or None
        Parallax and error [mas]; non-finite or ``err <= 0`` entries are skipped.
    distance : scalar or None
        Cluster distance [pc]; predicted parallax ``1000 / distance`` mas.
    dim_prior : bool (static)
        Chi-square log-pdf (True; parallax is one more chi-square term and
        dimension) or Gaussian (False; parallax is a normalised Gaussian).

    Returns
    -------
    lnl : array (n_pts, n_obj)
        Finite, or ``-inf`` where ``dim_prior`` and the degrees of freedom are
        <= 0.
    """
    flux = jnp.asarray(obs_flux)
    err = jnp.asarray(obs_err)
    model = jnp.asarray(model_flux)
    m = jnp.asarray(band_mask)
    use = jnp.isfinite(flux) & jnp.isfinite(err) & (err > 0.0) & (m > 0)
    w = jnp.where(use, m, 0.0).astype(flux.dtype)
    f_s = jnp.where(use, flux, 0.0)
    e_s = jnp.where(use, err, 1.0)
    ivar = w / (e_s * e_s)
    ndim = jnp.sum(w, axis=1)
    if flux.dtype == jnp.float64 and model.dtype == jnp.float64:
        # Expanded square as matrix products (as brutus does): forward and
        # backward are GEMMs.  Cancellation error ~1e-16 * sum(f^2 / sigma^2).
        chi2 = (jnp.sum(ivar * f_s * f_s, axis=1)[None, :]
                - 2.0 * model @ (ivar * f_s).T + (model * model) @ ivar.T)
        chi2 = jnp.maximum(chi2, 0.0)
    else:
        # float32: the direct residual sum (no cancellation), GEMM backward.
        chi2 = _chi2_direct(model, f_s, ivar)
    lnl_plx = 0.0
    if parallax is not None and parallax_err is not None and distance is not None:
        plx = jnp.asarray(parallax)
        perr = jnp.asarray(parallax_err)
        pok = jnp.isfinite(plx) & jnp.isfinite(perr) & (perr > 0.0)
        perr_s = jnp.where(pok, perr, 1.0)
        pred = 1000.0 / distance
        chi2_p = jnp.where(pok, ((jnp.where(pok, plx, 0.0) - pred) / perr_s) ** 2, 0.0)
        if dim_prior:
            chi2 = chi2 + chi2_p[None, :]
            ndim = ndim + pok.astype(ndim.dtype)
        else:
            lnl_plx = jnp.where(pok, -0.5 * (chi2_p + _LN_2PI + 2.0 * jnp.log(perr_s)), 0.0)[None, :]
    if dim_prior:
        return _chi2_logpdf(chi2, ndim[None, :])
    log_det = jnp.sum(w * (2.0 * jnp.log(e_s)), axis=1)
    return -0.5 * chi2 - 0.5 * (ndim * _LN_2PI + log_det)[None, :] + lnl_plx


def chisquare_outlier_from_table(dof, logpdf_table):
    """Chi-square outlier log-likelihood per object from a host-made table.

    Parameters
    ----------
    dof : int array (n_obj,)
        Degrees of freedom per object (bands + parallax - dof_reduction).
    logpdf_table : array (k_max + 1,)
        ``logpdf_table[k]`` = chi-square(k) log-pdf at its
        ``ppf(1 - p_value_cut)``; entry 0 unused.

    Returns
    -------
    lnl : array (n_obj,)
        ``-inf`` where ``dof <= 0``.
    """
    k = jnp.clip(dof, 1, logpdf_table.shape[0] - 1)
    return jnp.where(dof > 0, logpdf_table[k], -jnp.inf)


def uniform_outlier_loglike(obs_flux, obs_err, band_mask=None, parallax=None,
                            parallax_err=None, sigma_clip=3.0):
    """Uniform outlier log-density ``-sum_b ln(range_b)`` per object.

    ``range_b`` is the span of ``flux +/- sigma_clip * err`` over all objects
    with a valid band ``b`` (falling back to the object's own
    ``2 sigma_clip err`` when the span is not positive); the parallax, when
    given, adds the same term in mas.

    Parameters
    ----------
    obs_flux, obs_err : array (n_obj, n_filt)
        Fluxes and errors [maggies].
    band_mask : array (n_obj, n_filt) or None
        Bands used (> 0) by the inlier model.
    parallax, parallax_err : array (n_obj,) or None
        [mas].
    sigma_clip : float
        Padding in units of the errors.

    Returns
    -------
    lnl : array (n_obj,)
        Log-density [ln(1 / maggies^n_band (/ mas))].
    """
    flux = jnp.asarray(obs_flux)
    err = jnp.asarray(obs_err)
    valid = jnp.isfinite(flux) & jnp.isfinite(err) & (err > 0.0)
    if band_mask is not None:
        valid = valid & (jnp.asarray(band_mask) > 0)

    def _log_side(x, e, ok, axis):
        xs = jnp.where(ok, x, 0.0)
        es = jnp.where(ok, e, 1.0)
        hi = jnp.max(jnp.where(ok, xs + sigma_clip * es, -jnp.inf), axis=axis)
        lo = jnp.min(jnp.where(ok, xs - sigma_clip * es, jnp.inf), axis=axis)
        has = jnp.any(ok, axis=axis)
        side = jnp.where(has, hi - lo, 0.0)
        pos = side > 0.0
        log_range = jnp.log(jnp.where(pos, side, 1.0))
        own = jnp.log(2.0 * sigma_clip * es)
        return jnp.where(ok, jnp.where(pos, log_range, own), 0.0)

    lnl = -jnp.sum(_log_side(flux, err, valid, 0), axis=1)
    if parallax is not None and parallax_err is not None:
        plx = jnp.asarray(parallax)
        perr = jnp.asarray(parallax_err)
        pok = jnp.isfinite(plx) & jnp.isfinite(perr) & (perr > 0.0)
        lnl = lnl - _log_side(plx, perr, pok, 0)
    return lnl


# ---------------------------------------------------------------------------
# Mixture and marginalisation
# ---------------------------------------------------------------------------


def mixture_loglike(lnl_cluster, lnl_outlier, cluster_prob, field_fraction):
    """``ln(w_c exp(lnl_cluster) + (1 - w_c) exp(lnl_outlier))``, ``w_c = p (1 - f)``.

    Written with the linear weights (not their logs) so the derivative in
    ``field_fraction`` stays finite at ``w_c = 0`` or ``1``.  NaN entries of
    either input propagate as NaN (brutus's "invalid model" marker) without
    NaN gradients; weights outside [0, 1] give NaN (as ``log`` of a
    negative weight does in brutus).

    Parameters
    ----------
    lnl_cluster, lnl_outlier : array (n_pts, n_obj)
    cluster_prob, field_fraction : scalar

    Returns
    -------
    lnl_mixture : array (n_pts, n_obj)
    """
    lc = jnp.asarray(lnl_cluster)
    lo = jnp.asarray(lnl_outlier)
    wc = cluster_prob * (1.0 - field_fraction)
    wo = 1.0 - wc
    bad_w = (wc < 0.0) | (wo < 0.0)
    wc_s = jnp.where(bad_w, 0.5, wc)
    wo_s = jnp.where(bad_w, 0.5, wo)
    nan = jnp.isnan(lc) | jnp.isnan(lo)
    # Terms with zero weight are dropped (0 * exp(+inf) := 0).
    lc_s = jnp.where(nan | (wc_s == 0.0), -jnp.inf, lc)
    lo_s = jnp.where(nan | (wo_s == 0.0), -jnp.inf, lo)
    m = jnp.maximum(lc_s, lo_s)
    m_ok = jnp.isfinite(m)
    m_s = jnp.where(m_ok, m, 0.0)
    s = wc_s * jnp.exp(lc_s - m_s) + wo_s * jnp.exp(lo_s - m_s)
    s_ok = m_ok & (s > 0.0)
    out = jnp.where(s_ok, m_s + jnp.log(jnp.where(s_ok, s, 1.0)), -jnp.inf)
    # +inf inputs (chi2 = 0 with one dof) give +inf, as logaddexp does.
    out = jnp.where(m == jnp.inf, jnp.inf, out)
    return jnp.where(nan | bad_w, jnp.nan, out)


def safe_logsumexp(x, axis):
    """``logsumexp`` that returns ``-inf`` (zero gradient) for all-(-inf) slices.

    Non-finite entries (NaN, +/-inf) are treated as ``-inf``.  Two passes over
    ``x`` (maximum, sum of exponentials): no separate finiteness reduction.
    """
    xs = jnp.where(jnp.isfinite(x), x, -jnp.inf)
    m = jax.lax.stop_gradient(jnp.max(xs, axis=axis, keepdims=True))
    ok = m > -jnp.inf
    m_s = jnp.where(ok, m, 0.0)
    s = jnp.sum(jnp.exp(xs - m_s), axis=axis, keepdims=True)
    out = jnp.where(ok, m_s + jnp.log(jnp.where(ok, s, 1.0)), -jnp.inf)
    return jnp.squeeze(out, axis=axis)


def marginalize_log_weights(lnl_mixture, log_w):
    """Normalised marginalisation over grid rows (brutus step 5).

    ``lnL_obj = logsumexp_i[lnl_i + log_w_i] - logsumexp_{valid i}(log_w_i)``
    with valid rows = finite ``log_w`` and at least one finite ``lnl`` among
    the objects; non-finite ``lnl`` entries count as ``-inf``.

    Parameters
    ----------
    lnl_mixture : array (n_pts, n_obj)
    log_w : array (n_pts,)
        Log integration weights (``-inf`` or NaN: row not in the integral).

    Returns
    -------
    lnl_obj : array (n_obj,)
        ``-inf`` for every object when no row is valid.
    """
    lnl = jnp.asarray(lnl_mixture)
    log_w = jnp.asarray(log_w)
    w_ok = jnp.isfinite(log_w)
    lw = jnp.where(w_ok, log_w, -jnp.inf)
    row_ok = w_ok & jnp.any(jnp.isfinite(lnl), axis=1)
    ln_norm = safe_logsumexp(jnp.where(row_ok, lw, -jnp.inf), axis=0)
    norm_ok = jnp.isfinite(ln_norm)
    lnl_s = jnp.where(jnp.isfinite(lnl), lnl, -jnp.inf)
    terms = jnp.where(row_ok[:, None], lnl_s + jnp.where(row_ok, lw, 0.0)[:, None], -jnp.inf)
    lse = safe_logsumexp(terms, axis=0)
    return jnp.where(norm_ok, lse - jnp.where(norm_ok, ln_norm, 0.0), -jnp.inf)


def marginalize_mixture_per_object(lnl_cluster, lnl_outlier, log_w, cluster_prob,
                                   field_fraction, log_sel=None):
    """Steps 4 + 5 fused for an outlier model that does not depend on the row.

    With ``lnl_outlier`` constant over the grid, the marginal of the mixture
    is a mixture of marginals (the integral is linear in probability):

    ``ln P_o = ln[w_c sum_j J_j L_c,jo + (1 - w_c) L_o,o Z] - ln Z``,
    ``Z = sum_{valid j} J_j``,

    which is brutus's ``marginalize(apply_mixture(...))`` (same valid rows)
    with one exponential per (row, object) instead of four.  Only difference:
    a ``+inf`` cluster term (chi-square exactly 0 with one dof) is dropped
    here alone, whereas brutus drops that whole mixture entry.

    Parameters
    ----------
    lnl_cluster : array (n_pts, n_obj)
        Finite or ``-inf`` (no NaN markers: invalid rows carry ``log_w = -inf``).
    lnl_outlier : array (n_obj,)
    log_w : array (n_pts,)
        Log integration weights, ``-inf`` for rows outside the integral.
    cluster_prob, field_fraction : scalar
    log_sel : array (n_pts,), optional
        Log selection probability of each row (`analysis.cluster_selection`):
        the cluster term is normalised by ``Z_sel = sum_j J_j S_j`` instead
        of ``Z`` (members conditional on being selected); None: ``S = 1``.

    Returns
    -------
    lnl_obj : array (n_obj,)
        Finite or ``-inf``.
    """
    lc = jnp.asarray(lnl_cluster)
    lo = jnp.asarray(lnl_outlier)
    log_w = jnp.asarray(log_w)
    wc = cluster_prob * (1.0 - field_fraction)
    wo = 1.0 - wc
    w_ok = jnp.isfinite(log_w)
    lw = jnp.where(w_ok, log_w, 0.0)
    # The (row, object) terms are computed once into a buffer (optimization_barrier): XLA:CPU has
    # no multi-output fusion and otherwise re-evaluates the chi-square and its log-pdf in every
    # consumer (the finiteness tests, the maximum and the sum: 5 passes, 3.5 -> 2 ms for 1500 rows
    # x 500 objects).  Non-finite cluster terms (-inf; +inf from chi2 = 0 with one dof) are -inf.
    t = jax.lax.optimization_barrier(jnp.where(jnp.isfinite(lc), lc + lw[:, None], -jnp.inf))
    row_ok = w_ok & ((jnp.any(t > -jnp.inf, axis=1) & (wc > 0.0))
                     | (jnp.any(jnp.isfinite(lo)) & (wo > 0.0)))
    lw_z = lw if log_sel is None else lw + jnp.asarray(log_sel)  # the normaliser's weights
    ln_z = safe_logsumexp(jnp.where(row_ok, lw_z, -jnp.inf), axis=0)
    z_ok = jnp.isfinite(ln_z)
    ln_z_s = jnp.where(z_ok, ln_z, 0.0)
    a = safe_logsumexp(jnp.where(row_ok[:, None], t, -jnp.inf), axis=0)
    out = mixture_loglike(a, lo + ln_z_s, cluster_prob, field_fraction) - ln_z_s
    return jnp.where(z_ok & ~jnp.isnan(out), out, -jnp.inf)
