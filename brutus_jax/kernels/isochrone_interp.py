"""Isochrone interpolation in ([Fe/H], [alpha/Fe], log age, EEP): pure JAX kernels.

An isochrone set is a dense table ``values[feh, afe, loga, eep, pred]`` with a
boolean ``valid`` mask (False beyond the end of an isochrone, or where the
source has no model).  ``isochrone_on_nodes`` evaluates the isochrone at one
(feh, afe, loga) on every EEP node; ``interp_eep`` then interpolates linearly
in EEP to any requested EEPs (EEPs are marginalised on fine grids, so linear is
enough there).

Interpolation in (feh, loga)
----------------------------
``method="linear"`` is brutus's multilinear rule.  Its derivative jumps at
every node, which makes likelihood surfaces of cluster fits jagged for HMC.
``method="cubic"`` (default of :class:`brutus_jax.core.Isochrone`) uses cubic
Hermite splines in loga and then in feh, with node tangents from the 3-point
(parabola, "Bessel") formula ``m_k = (h_{k-1} d_k + h_k d_{k-1}) / (h_{k-1} + h_k)``
(= Catmull-Rom on uniform nodes; ``d`` are secant slopes, ``h`` node gaps).
The result passes through the table at nodes.  Tangents next to the end of an
isochrone (EEP ranges change with age and [Fe/H]) use *ghost* nodes: missing
entries adjacent to existing ones are filled on the host by linear
extrapolation along loga, then along feh (:func:`ghost_fill`), flagged
``usable`` (for tangents) but not ``valid``.  The tangent rule therefore never
switches inside the valid region and the interpolant is C1 in (feh, loga)
wherever it is valid (one-sided secants only at the table's outer edges).
afe is interpolated linearly (MIST has one afe node).

Validity (both methods) follows brutus's ``RegularGridInterpolator`` exactly:
on each axis the bracketing pair is ``i = clip(searchsorted(nodes, x,
'right') - 1, 0, n - 2)`` and ``i + 1`` -- *both* nodes must be valid even
when one has zero weight -- and queries outside the node range are invalid.
A single-node afe axis accepts ``|afe - afe0| <= 1e-5`` (brutus pads it so).

Invalid entries carry finite fill values, never NaN, and every division is
guarded, so values and gradients stay finite (mask with ``ok``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["IsochroneTable", "ghost_fill", "isochrone_on_nodes", "interp_eep", "empirical_corrections",
           "isochrone_predictions", "DEFAULT_CORR_PARAMS", "bracket", "terminal_eep"]

#: (dtdm, drdm, msto_smooth, feh_scale) of brutus's empirical low-mass corrections
DEFAULT_CORR_PARAMS = (0.09, -0.09, 30.0, 0.5)

#: half-width of the padding brutus gives a single-node afe axis
_AFE_PAD = 1e-5


class IsochroneTable(NamedTuple):
    """Dense isochrone table (a pytree; pass it as a jit argument).

    Attributes
    ----------
    feh, afe, loga, eep : 1-D arrays of ascending node values ([dex], [dex], [log10 yr], EEP).
    values : (n_feh, n_afe, n_loga, n_eep, n_pred) predictions, finite fill where not valid.
    valid : (n_feh, n_afe, n_loga, n_eep) bool.
    usable : (n_feh, n_afe, n_loga, n_eep) bool, valid or ghost (tangents only).
    """

    feh: jax.Array
    afe: jax.Array
    loga: jax.Array
    eep: jax.Array
    values: jax.Array
    valid: jax.Array
    usable: jax.Array


def _clip01(t):
    """clip to [0, 1] with the full derivative at the ends (jnp.clip halves it at ties)."""
    return jnp.where(t < 0.0, jnp.zeros_like(t), jnp.where(t > 1.0, jnp.ones_like(t), t))


def bracket(nodes, x):
    """brutus/scipy bracketing: lower index ``i``, fraction ``t`` and in-range flag.

    ``i = clip(searchsorted(nodes, x, 'right') - 1, 0, n - 2)``; ``t`` is the
    position inside ``[nodes[i], nodes[i + 1]]`` (clipped to [0, 1]); ``inside``
    is False outside ``[nodes[0], nodes[-1]]`` or for NaN.  Works on arrays of x.
    """
    n = nodes.shape[0]
    i = jnp.clip(jnp.searchsorted(nodes, x, side="right") - 1, 0, n - 2)
    lo, hi = nodes[i], nodes[i + 1]
    t = _clip01((x - lo) / (hi - lo))
    inside = (x >= nodes[0]) & (x <= nodes[-1])
    return i, t, inside


def _hermite_axis(p, ok, use, x4, t, cubic):
    """Interpolate along axis 0 of ``p`` (4, ...) at fraction t of cell [x4[1], x4[2]].

    ``p``: values at the 4 nodes i-1, i, i+1, i+2; ``ok``: (4, ...) validity;
    ``use``: (4, ...) usable for tangents (valid or ghost; False beyond the
    axis ends); ``x4``: (4,) node positions (duplicates beyond the ends).
    Returns (value, ok of the cell).
    """
    cell_ok = ok[1] & ok[2]
    if not cubic:
        return p[1] + t * (p[2] - p[1]), cell_ok
    h = x4[2] - x4[1]
    hm = x4[1] - x4[0]
    hp = x4[3] - x4[2]
    one = jnp.ones((), h.dtype)
    hm_s = jnp.where(hm > 0, hm, one)
    hp_s = jnp.where(hp > 0, hp, one)
    d0 = (p[2] - p[1]) / h  # secant of the cell
    dm = (p[1] - p[0]) / hm_s
    dp = (p[3] - p[2]) / hp_s
    m1 = jnp.where(use[0] & (hm > 0), (hm * d0 + h * dm) / (hm_s + h), d0)
    m2 = jnp.where(use[3] & (hp > 0), (hp * d0 + h * dp) / (hp_s + h), d0)
    t2 = t * t
    t3 = t2 * t
    h00 = 2 * t3 - 3 * t2 + 1
    h10 = t3 - 2 * t2 + t
    h01 = -2 * t3 + 3 * t2
    h11 = t3 - t2
    val = h00 * p[1] + h10 * h * m1 + h01 * p[2] + h11 * h * m2
    return val, cell_ok


def _four(nodes, i):
    """Indices i-1..i+2 clipped to the axis, their positions and an existence flag."""
    n = nodes.shape[0]
    idx = i + jnp.arange(-1, 3)
    exists = (idx >= 0) & (idx < n)
    idxc = jnp.clip(idx, 0, n - 1)
    return idxc, nodes[idxc], exists


def isochrone_on_nodes(table, feh, afe, loga, method="cubic"):
    """The isochrone at (feh, afe, loga) on every EEP node.

    Parameters
    ----------
    table : IsochroneTable
    feh, afe : scalars [dex]; loga : scalar [log10 yr].
    method : {'cubic', 'linear'} interpolation in feh and loga (static).

    Returns
    -------
    vals : (n_eep, n_pred) with finite fill where not ``ok``.
    ok : (n_eep,) bool.
    """
    if method not in ("cubic", "linear"):
        raise ValueError(f"method: must be 'cubic' or 'linear', got {method!r}")
    cubic = method == "cubic"
    dtype = table.values.dtype
    feh = jnp.asarray(feh, dtype)
    afe = jnp.asarray(afe, dtype)
    loga = jnp.asarray(loga, dtype)

    jf, tf, feh_in = bracket(table.feh, feh)
    jl, tl, loga_in = bracket(table.loga, loga)
    fidx, fx, fex = _four(table.feh, jf)
    lidx, lx, lex = _four(table.loga, jl)
    fi, li = fidx[:, None], lidx[None, :]
    # afe: linear (single node -> exact match within brutus's padding)
    if table.afe.shape[0] == 1:
        p = table.values[fi, 0, li]  # (4, 4, n_eep, n_pred)
        oka = table.valid[fi, 0, li]
        usa = table.usable[fi, 0, li]
        afe_in = jnp.abs(afe - table.afe[0]) <= _AFE_PAD
    else:
        ia, ta, afe_in = bracket(table.afe, afe)
        p = (1 - ta) * table.values[fi, ia, li] + ta * table.values[fi, ia + 1, li]
        oka = table.valid[fi, ia, li] & table.valid[fi, ia + 1, li]
        usa = table.usable[fi, ia, li] & table.usable[fi, ia + 1, li]
    edge = fex[:, None, None] & lex[None, :, None]
    ok = oka & edge  # (4, 4, n_eep)
    use = usa & edge
    # along loga for each of the 4 feh nodes (cell ok: valid; cell use: usable)
    pl, okl = jax.vmap(lambda pp, oo, uu: _hermite_axis(pp, oo[..., None], uu[..., None], lx, tl, cubic))(p, ok, use)
    okl = okl[..., 0]  # (4, n_eep)
    usl = use[:, 1] & use[:, 2]
    val, okv = _hermite_axis(pl, okl[..., None], usl[..., None], fx, tf, cubic)
    okv = okv[..., 0] & feh_in & loga_in & afe_in
    val = jnp.where(okv[:, None], val, jnp.zeros((), dtype))
    return val, okv


def _min3(a, axis):
    """Minimum over each interior entry's 3-neighbourhood along ``axis`` (length 4 -> 2: offsets 1, 2)."""
    a = jnp.moveaxis(a, axis, 0)
    return jnp.moveaxis(jnp.minimum(jnp.minimum(a[:2], a[1:3]), a[2:]), 0, axis)


def terminal_eep(table, feh, afe, loga, method="cubic"):
    """Continuous, differentiable terminal EEP of the isochrone at (feh, afe, loga).

    Within one (feh, loga) cell the interpolated isochrone is valid exactly up to
    ``E(cell) = min`` over the cell's corner nodes of each node's last valid EEP
    ``L`` (brutus's rule: every bracketing node must be valid), so brutus's
    integral ends at a step function that jumps at table nodes.  This returns a
    continuous function ``e_c <= E`` everywhere: every node gets
    ``M = min L`` over its 3 x 3 neighbourhood of nodes (the corners of all cells
    it touches; 3 x 3 x 3 with several afe nodes), and ``M`` is interpolated
    with the isochrone's weights restricted to a convex combination of the
    cell's corners -- ``method='linear'``: multilinear (C0); ``'cubic'``: cubic
    Hermite with zero node tangents (weights ``3 t^2 - 2 t^3``: C1 in feh and
    loga, the derivative is 0 on nodes).  A convex combination of corner ``M``'s
    never exceeds ``E`` of the cell, so every requested EEP below ``e_c`` has
    valid predictions (``interp_eep`` needs both bracketing EEP nodes valid).
    ``e_c`` equals ``L`` on a node whose neighbours end no earlier.

    Nodes without any valid EEP count as ``L = eep[0] - 1``; nodes beyond the
    axes are ignored.  Outside the table the result is that of the nearest cell
    (everything is invalid there anyway).  Pure jnp, finite values and
    gradients in feh, afe, loga.

    Parameters
    ----------
    table : IsochroneTable; feh, afe [dex], loga [log10 yr]: scalars.
    method : {'cubic', 'linear'} (static).

    Returns
    -------
    e_end : scalar (table dtype), in EEP units.
    """
    if method not in ("cubic", "linear"):
        raise ValueError(f"method: must be 'cubic' or 'linear', got {method!r}")
    dtype = table.values.dtype
    feh = jnp.asarray(feh, dtype)
    afe = jnp.asarray(afe, dtype)
    loga = jnp.asarray(loga, dtype)
    e = jnp.asarray(table.eep, dtype)
    none, far = e[0] - 1.0, e[-1] + 1.0
    jf, tf, _ = bracket(table.feh, feh)
    jl, tl, _ = bracket(table.loga, loga)
    fidx, _, fex = _four(table.feh, jf)
    lidx, _, lex = _four(table.loga, jl)
    if table.afe.shape[0] == 1:
        aidx = jnp.zeros((1,), jnp.int32)
        aex = jnp.ones((1,), bool)
    else:
        ia, ta, _ = bracket(table.afe, afe)
        aidx, _, aex = _four(table.afe, ia)
    valid = table.valid[fidx[:, None, None], aidx[None, :, None], lidx[None, None, :]]  # (4, na, 4, n_eep)
    last = jnp.max(jnp.where(valid, e, none), axis=-1)
    exists = fex[:, None, None] & aex[None, :, None] & lex[None, None, :]
    last = jnp.where(exists, last, far)
    m = _min3(_min3(last, 0), 2)  # (2, na, 2): the cell's corners
    if table.afe.shape[0] > 1:
        m = _min3(m, 1)
    w = (lambda t: t) if method == "linear" else (lambda t: t * t * (3.0 - 2.0 * t))
    sf, sl = w(tf), w(tl)
    m = (1.0 - sl) * m[..., 0] + sl * m[..., 1]  # (2, na)
    m = (1.0 - sf) * m[0] + sf * m[1]  # (na,)
    if table.afe.shape[0] > 1:
        m = (1.0 - ta) * m[0] + ta * m[1]
    else:
        m = m[0]
    return m


def _ghost_axis(values, usable, x, axis):
    """One layer of ghost nodes along ``axis`` (numpy, host): entries not usable
    next to usable ones get the linear extrapolation of their two usable
    neighbours on that side (the neighbour itself if only one), or the linear
    interpolation when both sides are usable.  Returns new (values, usable)."""
    v = np.moveaxis(values, axis, 0)
    u = np.moveaxis(usable, axis, 0)
    x = np.asarray(x, float)
    n = v.shape[0]
    shp = (n,) + (1,) * (v.ndim - 1)
    xs = x.reshape(shp)
    if n < 2:
        return values, usable
    # from the left neighbour (k-1) and the right neighbour (k+1)
    lu = np.zeros_like(u)
    lu[1:] = u[:-1]
    ru = np.zeros_like(u)
    ru[:-1] = u[1:]
    lv = np.zeros_like(v)
    lv[1:] = v[:-1]
    rv = np.zeros_like(v)
    rv[:-1] = v[1:]
    l2 = np.zeros_like(u)
    l2[2:] = u[:-2] & u[1:-1]
    r2 = np.zeros_like(u)
    r2[:-2] = u[2:] & u[1:-1]
    lslope = np.zeros_like(v)
    lslope[2:] = (v[1:-1] - v[:-2]) / (xs[1:-1] - xs[:-2])
    rslope = np.zeros_like(v)
    rslope[:-2] = (v[2:] - v[1:-1]) / (xs[2:] - xs[1:-1])
    dxl = np.zeros(shp)  # x[k] - x[k-1]
    dxl[1:] = xs[1:] - xs[:-1]
    dxr = np.zeros(shp)  # x[k+1] - x[k]
    dxr[:-1] = xs[1:] - xs[:-1]
    ext_l = lv + np.where(l2[..., None], lslope, 0.0) * dxl
    ext_r = rv - np.where(r2[..., None], rslope, 0.0) * dxr
    both = lu & ru
    dl, dr = dxl[..., 0], dxr[..., 0]
    wl = np.where(both, dr / np.where(both, dl + dr, 1.0), 0.0)
    interp = wl[..., None] * lv + (1.0 - wl[..., None]) * rv
    fill = ~u & (lu | ru)
    ghost = np.where(both[..., None], interp, np.where(lu[..., None], ext_l, ext_r))
    out_v = np.where(fill[..., None], ghost, v)
    out_u = u | fill
    return np.moveaxis(out_v, 0, axis), np.moveaxis(out_u, 0, axis)


def ghost_fill(feh, loga, values, valid):
    """Host (numpy) ghost nodes for tangents: one layer along loga, then one
    along feh.  ``values`` (n_feh, n_afe, n_loga, n_eep, n_pred) finite where
    valid.  Returns (values with ghosts, usable mask)."""
    out = np.empty(values.shape, float)
    use = np.empty(valid.shape, bool)
    step = 64  # EEP chunks keep the temporaries small (the MIST table is ~180 MB)
    for e0 in range(0, values.shape[3], step):
        sl = slice(e0, e0 + step)
        v, u = _ghost_axis(values[:, :, :, sl], valid[:, :, :, sl], loga, axis=2)
        v, u = _ghost_axis(v, u, feh, axis=0)
        out[:, :, :, sl] = np.where(u[..., None], v, 0.0)
        use[:, :, :, sl] = u
    return out, use


def interp_eep(eep_nodes, vals, ok, eep):
    """Linear interpolation in EEP of node values (brutus's rule for validity).

    Parameters
    ----------
    eep_nodes : (n_node,); vals : (n_node, n_pred); ok : (n_node,) bool.
    eep : (...) requested EEPs (NaN allowed: invalid).

    Returns
    -------
    out : (..., n_pred) finite; out_ok : (...) bool.
    """
    eep = jnp.asarray(eep, vals.dtype)
    safe = jnp.where(jnp.isfinite(eep), eep, eep_nodes[0])
    k, t, inside = bracket(eep_nodes, safe)
    out = vals[k] + t[..., None] * (vals[k + 1] - vals[k])
    out_ok = ok[k] & ok[k + 1] & inside & jnp.isfinite(eep)
    return jnp.where(out_ok[..., None], out, jnp.zeros((), vals.dtype)), out_ok


def empirical_corrections(mini, feh, eep, corr_params=DEFAULT_CORR_PARAMS):
    """brutus's empirical (dlogt, dlogr) for low-mass stars (zero for mini >= 1).

    ``dlogt = log10(max(1 + (mini - 1) dtdm, 1e-10)) f_eep f_feh`` (same with
    drdm for dlogr), ``f_eep = 1 - 1/(1 + exp(-(eep - 454)/msto_smooth))``,
    ``f_feh = exp(feh_scale * feh)``.  mini [Msun], feh [dex]; arrays broadcast.
    """
    dtdm, drdm, smooth, fscale = corr_params
    off = mini - 1.0
    tiny = jnp.asarray(1e-10, mini.dtype)
    lt = jnp.log10(jnp.maximum(1.0 + off * dtdm, tiny))
    lr = jnp.log10(jnp.maximum(1.0 + off * drdm, tiny))
    ecorr = 1.0 - jax.nn.sigmoid((eep - 454.0) / smooth)
    fcorr = jnp.exp(fscale * feh)
    below = mini < 1.0
    zero = jnp.zeros((), mini.dtype)
    return jnp.where(below, lt * ecorr * fcorr, zero), jnp.where(below, lr * ecorr * fcorr, zero)


def isochrone_predictions(table, feh, afe, loga, eep, cols, method="cubic", apply_corr=True,
                          corr_params=DEFAULT_CORR_PARAMS):
    """Predictions at requested EEPs, with brutus's empirical corrections.

    Parameters
    ----------
    table : IsochroneTable; feh, afe [dex], loga [log10 yr]: scalars; eep : (n,) EEPs.
    cols : static tuple ``(i_mini, i_logt, i_logl, i_logg)`` of column indices
        in ``table.values`` (``None`` disables the corrections).
    method : 'cubic' | 'linear'; apply_corr : bool (static); corr_params : 4 floats.

    Returns
    -------
    preds : (n, n_pred) finite fill where not ``ok``; ok : (n,) bool.
    """
    vals, ok = isochrone_on_nodes(table, feh, afe, loga, method)
    preds, pok = interp_eep(table.eep, vals, ok, eep)
    if apply_corr and cols is not None:
        preds = apply_corrections(preds, pok, feh, eep, cols, corr_params)
    return preds, pok


def apply_corrections(preds, ok, feh, eep, cols, corr_params=DEFAULT_CORR_PARAMS):
    """Add brutus's corrections: logt += dlogt, logl += 2 dlogr, logg -= 2 dlogr."""
    i_mini, i_logt, i_logl, i_logg = cols
    dtype = preds.dtype
    eep = jnp.where(ok, jnp.asarray(eep, dtype), jnp.asarray(454.0, dtype))
    dlt, dlr = empirical_corrections(preds[..., i_mini], jnp.asarray(feh, dtype), eep, corr_params)
    dlt = jnp.where(ok, dlt, 0.0)
    dlr = jnp.where(ok, dlr, 0.0)
    preds = preds.at[..., i_logt].add(dlt)
    preds = preds.at[..., i_logl].add(2.0 * dlr)
    preds = preds.at[..., i_logg].add(-2.0 * dlr)
    return preds
