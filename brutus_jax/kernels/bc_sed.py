"""Magnitudes of stars from bolometric corrections: pure JAX kernels.

Two SED back ends, both ``m = Mbol - BC + 5 log10(d / 10 pc)`` with
``Mbol = 4.74 - 2.5 log10(L / Lsun)`` (brutus's convention; the lachesis MIST
``Mbol`` column equals it to 1e-6 mag):

* :func:`bc_table_mags` -- the MIST/C3K BC table (astroLACHESIS) with the
  model grid's forward model (``data/build.py``)::

      m = Mbol - BC(A_V = 0) + A_V (k31 + b (R_V - 3.1)) + mu

  ``BC(A_V = 0)``, ``k31`` (the weighted A_V slope of the table's A_V axis at
  R_V = 3.1, on brutus's A_V lattice) and ``b = rel k31 + b_abs`` (G23
  band-averaged R_V slope) are interpolated multilinearly in ([Fe/H]_surf,
  log Teff, logg), clamped to the table, exactly as the grid builder does per
  model.  Linear in A_V: no derivative kinks at the table's 13 A_V nodes
  (HMC), and the same magnitudes as the fitted grids; the table's own A_V
  curvature differs from the line by <= 0.0015 mag at A_V = 1 (grows for
  A_V >> 1.5, the end of the lattice the slope is fitted on).
* :func:`nn_mags` -- brutus's per-band MLP (``nn_c3k.h5`` format):
  ``BC = W3 s(W2 s(W1 x^ + b1) + b2) + b3``, ``s`` the logistic function,
  ``x^ = (x - xmin)/(xmax - xmin)``, ``x = [Teff [K], logg, feh_surf, afe, A_V, R_V]``;
  rows outside ``[xmin, xmax]`` (or non-finite) are flagged not ok (brutus: NaN).

Outputs are finite everywhere (invalid rows get whatever the clamped
evaluation gives; use ``ok``), so masked sums keep NaN-free gradients.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BCSEDTable", "NNWeights", "bc_table_mags", "nn_mags", "MBOL_SUN"]

#: bolometric magnitude of the Sun used by brutus (and the lachesis Mbol column)
MBOL_SUN = 4.74
_LN10 = math.log(10.0)


class BCSEDTable(NamedTuple):
    """BC and reddening-slope lattice (pytree).

    feh, logt, logg : ascending axes ([dex], log10 K, log10 cgs).
    coef : (n_feh, n_logt, n_logg, 4 n_band) = [BC0 | k31 | rel | b_abs]:
        BC at A_V = 0, dm/dA_V at R_V = 3.1, relative and absolute R_V slopes
        (``b = rel * k31 + b_abs``; ``b_abs`` only for bands without a filter curve).
    """

    feh: jax.Array
    logt: jax.Array
    logg: jax.Array
    coef: jax.Array


class NNWeights(NamedTuple):
    """brutus FastNN weights stacked over bands (pytree).

    w1 (nb, h1, 6), b1 (nb, h1), w2 (nb, h2, h1), b2 (nb, h2), w3 (nb, h2),
    b3 (nb,), xmin, xmax (6,).
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    w3: jax.Array
    b3: jax.Array
    xmin: jax.Array
    xmax: jax.Array


def _clamped_bracket(nodes, x):
    """Index i and fraction t of x clamped to [nodes[0], nodes[-1]]."""
    n = nodes.shape[0]
    # clamp with where: jnp.clip would halve the derivative exactly at the end nodes
    xc = jnp.where(x < nodes[0], nodes[0], jnp.where(x > nodes[-1], nodes[-1], x))
    i = jnp.clip(jnp.searchsorted(nodes, xc, side="right") - 1, 0, n - 2)
    t = (xc - nodes[i]) / (nodes[i + 1] - nodes[i])
    return i, t


def _lerp_corners(cube, idx, ts):
    """Multilinear interpolation of ``cube`` (axes..., nb) at per-point indices.

    idx, ts : lists (one per leading axis) of arrays shaped like the points.
    The cube is flattened to (n_nodes, nb) so every corner is one row gather.
    Returns (..., nb).
    """
    k = len(idx)
    shape = cube.shape[:k]
    strides = [int(np.prod(shape[a + 1:], dtype=np.int64)) for a in range(k)]
    flat = cube.reshape((-1,) + cube.shape[k:])
    bits = (np.arange(2 ** k)[:, None] >> np.arange(k - 1, -1, -1)[None, :]) & 1  # (2^k, k)
    offs = jnp.asarray(bits @ np.asarray(strides, np.int64), idx[0].dtype)  # (2^k,)
    base = sum(i * st for i, st in zip(idx, strides))
    t = jnp.stack(ts, axis=-1)[..., None, :]  # (..., 1, k)
    w = jnp.prod(jnp.where(bits.astype(bool), t, 1.0 - t), axis=-1)  # (..., 2^k)
    vals = jnp.take(flat, base[..., None] + offs, axis=0)  # (..., 2^k, nb)
    return jnp.einsum("...c,...cb->...b", w, vals)


def _feh_cubic_coef(table, feh, i_t, t_t, i_g, t_g):
    """Coefficients cubic-Hermite in [Fe/H] (4 nodes, clamped), bilinear in (log Teff, logg)."""
    from .isochrone_interp import _hermite_axis

    nf, nt, ng, nc = table.coef.shape
    flat = table.coef.reshape(nf * nt * ng, nc)
    xc = jnp.where(feh < table.feh[0], table.feh[0], jnp.where(feh > table.feh[-1], table.feh[-1], feh))
    i_f = jnp.clip(jnp.searchsorted(table.feh, xc, side="right") - 1, 0, nf - 2)
    t_f = (xc - table.feh[i_f]) / (table.feh[i_f + 1] - table.feh[i_f])
    f4 = i_f[None] + jnp.arange(-1, 3).reshape((4,) + (1,) * i_f.ndim)  # (4, ...)
    exists = (f4 >= 0) & (f4 < nf)
    f4c = jnp.clip(f4, 0, nf - 1)
    base = f4c * (nt * ng) + i_t[None] * ng + i_g[None]
    c = 0.0
    for bt in (0, 1):
        for bg in (0, 1):
            w = (t_t if bt else 1.0 - t_t) * (t_g if bg else 1.0 - t_g)
            c = c + w[None, ..., None] * jnp.take(flat, base + bt * ng + bg, axis=0)
    # Hermite along [Fe/H] is linear in the 4 node values: get the 4 weights per
    # point (the interpolant of unit vectors), then contract with the coefficients
    eye = jnp.eye(4, dtype=flat.dtype)
    x4f = table.feh[f4c].reshape(4, -1).T  # (npts, 4)
    exf = exists.reshape(4, -1).T
    wts = jax.vmap(lambda o, x, t: _hermite_axis(eye, o[:, None], o[:, None], x, t, True)[0])(
        exf, x4f, t_f.reshape(-1))  # (npts, 4)
    w4 = jnp.moveaxis(wts.reshape(i_f.shape + (4,)), -1, 0)  # (4, ...)
    return jnp.einsum("k...,k...c->...c", w4, c)


def bc_table_mags(table, logt, logg, feh, logl, av, rv, dist, feh_cubic=False):
    """Apparent magnitudes from the BC table.

    Parameters
    ----------
    table : BCSEDTable
    logt, logg, feh, logl : arrays (...) -- log10 Teff [K], log10 g [cgs],
        surface [Fe/H] [dex], log10 L/Lsun.
    av : A_V [mag]; rv : R_V; dist : distance [pc] (scalars or broadcastable).
    feh_cubic : bool (static)
        cubic Hermite in [Fe/H] (C1 across the table's 0.25-dex [Fe/H] nodes,
        which coincide with the MIST isochrone nodes) instead of linear;
        exact at the nodes.

    Returns
    -------
    mags : (..., n_band).
    """
    dtype = table.coef.dtype
    logt, logg, feh, logl = (jnp.asarray(x, dtype) for x in (logt, logg, feh, logl))
    logt, logg, feh, logl = jnp.broadcast_arrays(logt, logg, feh, logl)
    av = jnp.asarray(av, dtype)
    rv = jnp.asarray(rv, dtype)
    dist = jnp.asarray(dist, dtype)
    i_f, t_f = _clamped_bracket(table.feh, feh)
    i_t, t_t = _clamped_bracket(table.logt, logt)
    i_g, t_g = _clamped_bracket(table.logg, logg)
    if feh_cubic:
        c = _feh_cubic_coef(table, feh, i_t, t_t, i_g, t_g)
    else:
        c = _lerp_corners(table.coef, [i_f, i_t, i_g], [t_f, t_t, t_g])
    nb = table.coef.shape[-1] // 4
    bc0, k31, rel, babs = (c[..., j * nb:(j + 1) * nb] for j in range(4))
    red = k31 + (rel * k31 + babs) * (rv - 3.1)[..., None]
    mu = 5.0 * jnp.log10(dist) - 5.0
    return (MBOL_SUN - 2.5 * logl)[..., None] - bc0 + av[..., None] * red + mu


def nn_mags(weights, logt, logg, feh, afe, logl, av, rv, dist):
    """Apparent magnitudes from brutus's FastNN (per-band MLP).

    Parameters as :func:`bc_table_mags` plus ``afe`` ([alpha/Fe] surface).

    Returns
    -------
    mags : (..., n_band) finite; ok : (...) bool (inputs finite and inside
        ``[xmin, xmax]``, brutus's ``sed_batch`` rule).
    """
    dtype = weights.w1.dtype
    logt, logg, feh, afe, logl = jnp.broadcast_arrays(*(jnp.asarray(x, dtype) for x in (logt, logg, feh, afe, logl)))
    av = jnp.broadcast_to(jnp.asarray(av, dtype), logt.shape)
    rv = jnp.broadcast_to(jnp.asarray(rv, dtype), logt.shape)
    dist = jnp.asarray(dist, dtype)
    x = jnp.stack([10.0 ** logt, logg, feh, afe, av, rv], axis=-1)
    ok = jnp.all(jnp.isfinite(x) & (x >= weights.xmin) & (x <= weights.xmax), axis=-1)
    xs = jnp.where(ok[..., None], x, weights.xmin)
    xn = (xs - weights.xmin) / (weights.xmax - weights.xmin)
    a1 = jax.nn.sigmoid(jnp.einsum("bhi,...i->...bh", weights.w1, xn) + weights.b1)
    a2 = jax.nn.sigmoid(jnp.einsum("bkh,...bh->...bk", weights.w2, a1) + weights.b2)
    bc = jnp.einsum("bk,...bk->...b", weights.w3, a2) + weights.b3
    logl = jnp.where(ok, logl, 0.0)
    mu = 5.0 * jnp.log10(dist) - 5.0
    return (MBOL_SUN - 2.5 * logl)[..., None] - bc + mu, ok
