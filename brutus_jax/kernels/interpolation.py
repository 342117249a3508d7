"""Multilinear interpolation on an incomplete lattice of models.

A model grid is a set of models sitting on (a subset of) the Cartesian product
of ``k`` sorted 1-D axes (e.g. mini x eep x feh).  It is described by

* ``axes``: tuple of ``k`` sorted 1-D arrays of unique node values;
* ``lattice``: integer array of shape ``(len(axes[0]), ..., len(axes[k-1]))``
  whose entry is the model row at that lattice point, or ``-1`` where the
  grid has no (valid) model;
* ``values``: array ``(Nmodel, ...)`` of anything to interpolate.

Query points are ``(Nq, k)``.  For each axis the query is bracketed with
``searchsorted`` and clamped to the axis range (outside it, the end node gets
weight 1; a single-node axis always has weight 1).  The ``2**k`` bracketing
corners get the usual product weights; corners without a model are dropped
and the surviving weights renormalised.  When the surviving corners carry less
than half of the weight (or none survive), the query falls back to the
*nearest existing model* in normalised axis units (each axis scaled by its
node range ``max - min``, single-node axes ignored; the query is NOT clamped
for this distance).  This is brutus 1.2.0's ``StarGrid`` rule, except that
brutus's fallback is an inverse-distance-weighted average of the 8 nearest
models from a KD-tree, which mixes models far apart along a truncated track;
we use the single nearest model.

The fallback needs no precomputed data: the squared normalised distance from
the query to every lattice point is separable,
``d2[i0, ..., ik] = sum_j d2_j[i_j]``, so it is a broadcast sum over the
lattice followed by a masked argmin (cost ~ lattice size per query).  It is
only evaluated (via ``lax.cond``) when some query of the batch needs it.

Everything here is pure ``jax.numpy`` and the public kernels are already
wrapped in ``jax.jit`` (compiled once per shape; they compose with outer
``jit``/``vmap``/``grad``), with the grid passed as arguments (never closed
over).  Weights are computed in the dtype
of ``points`` (promoted with the axes' dtype).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "corner_weights",
    "nearest_rows",
    "apply_weights",
    "interpolate",
    "build_lattice",
]

#: surviving corners must carry at least this fraction of the weight
MIN_CORNER_WEIGHT = 0.5


def _bracket(nodes, x):
    """Lower node index and upper-node weight ``t`` for queries ``x`` (Nq,)."""
    n = nodes.shape[0]
    if n == 1:
        zeros = jnp.zeros(x.shape, dtype=jnp.int32)
        return zeros, zeros, jnp.zeros_like(x)
    idx = jnp.searchsorted(nodes, x, side="left", method="compare_all")
    lo = jnp.clip(idx - 1, 0, n - 2).astype(jnp.int32)
    hi = lo + 1
    x_lo = nodes[lo]
    x_hi = nodes[hi]
    t = jnp.clip((x - x_lo) / (x_hi - x_lo), 0.0, 1.0)
    return lo, hi, t


def _lattice_strides(shape):
    strides = []
    acc = 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= size
    return tuple(reversed(strides))


def _nearest_one(norm_axes, flat_lattice, shape, qnorm):
    """Flat lattice row of the nearest existing model to one normalised query."""
    k = len(shape)
    d2 = jnp.zeros((), dtype=qnorm.dtype)
    for j in range(k):
        dj = (norm_axes[j] - qnorm[j]) ** 2
        d2 = d2[..., None] + dj if j else dj
    d2 = jnp.reshape(d2, (-1,)) if k else jnp.reshape(d2, (1,))
    d2 = jnp.where(flat_lattice >= 0, d2, jnp.inf)
    row = flat_lattice[jnp.argmin(d2)]
    # a non-finite query has no nearest model
    return jnp.where(jnp.all(jnp.isfinite(qnorm)), row, -1)


def _normalise(axes, points):
    """Axis nodes and query points scaled by each axis's node range."""
    norm_axes, cols = [], []
    for j, nodes in enumerate(axes):
        lo, hi = nodes[0], nodes[-1]
        scale = jnp.where(hi > lo, hi - lo, 1.0)
        if nodes.shape[0] == 1:
            # a single-node axis never discriminates between models
            norm_axes.append(jnp.zeros_like(nodes, dtype=points.dtype))
            cols.append(jnp.zeros_like(points[:, j]))
        else:
            norm_axes.append((nodes - lo) / scale)
            cols.append((points[:, j] - lo) / scale)
    qnorm = jnp.stack(cols, axis=-1) if cols else points
    return norm_axes, qnorm


@jax.jit
def nearest_rows(axes, lattice, points):
    """Row of the nearest existing model for every query (normalised axis units).

    Parameters
    ----------
    axes : tuple of k sorted 1-D arrays
    lattice : int array, shape ``tuple(len(a) for a in axes)``; -1 = no model
    points : array (Nq, k)

    Returns
    -------
    rows : int array (Nq,)
        Model row, or -1 when the lattice holds no model at all.
    """
    points = jnp.asarray(points)
    axes = tuple(jnp.asarray(a) for a in axes)
    points = points.astype(jnp.result_type(points, *axes, float))
    lattice = jnp.asarray(lattice)
    shape = lattice.shape
    flat = jnp.reshape(lattice, (-1,))
    norm_axes, qnorm = _normalise(axes, points)
    return jax.lax.map(lambda q: _nearest_one(norm_axes, flat, shape, q), qnorm)


@jax.jit
def corner_weights(axes, lattice, points, min_weight=MIN_CORNER_WEIGHT):
    """Multilinear corner rows and weights, with the nearest-model fallback.

    Parameters
    ----------
    axes : tuple of k sorted 1-D arrays (unique nodes)
    lattice : int array, shape ``tuple(len(a) for a in axes)``; -1 = no model
    points : array (Nq, k)
        Query coordinates in axis order.
    min_weight : float
        Fall back to the nearest model when the existing corners carry less
        than this fraction of the multilinear weight.

    Returns
    -------
    rows : int32 array (Nq, 2**k)
        Model rows of the corners (0 where a corner has no model; its weight
        is then 0).  After a fallback, column 0 holds the nearest model.
    weights : array (Nq, 2**k)
        Normalised weights (sum 1), or all zero when the lattice is empty.
    """
    points = jnp.asarray(points)
    axes = tuple(jnp.asarray(a) for a in axes)
    dtype = jnp.result_type(points, *axes, float)
    points = points.astype(dtype)
    lattice = jnp.asarray(lattice)
    k = len(axes)
    shape = lattice.shape
    if len(shape) != k:
        raise ValueError(f"lattice has {len(shape)} dimensions but {k} axes were given")
    strides = _lattice_strides(shape)
    flat = jnp.reshape(lattice, (-1,))
    nq = points.shape[0]

    # corners as an array axis (few HLO ops -> fast compiles): bits (C, k)
    bits = np.array(list(itertools.product((0, 1), repeat=k)), dtype=np.int32).reshape(-1, k)
    brackets = [_bracket(axes[j], points[:, j]) for j in range(k)]
    if k:
        lo = jnp.stack([b[0] for b in brackets], axis=-1)  # (Nq, k)
        t = jnp.stack([b[2] for b in brackets], axis=-1)
        step = bits * np.array([s_ > 1 for s_ in shape], dtype=np.int32)  # hi = lo + 1
        index = jnp.sum((lo[:, None, :] + step) * np.array(strides, dtype=np.int32), axis=-1)
        w = jnp.prod(jnp.where(bits.astype(bool), t[:, None, :], 1.0 - t[:, None, :]), axis=-1)
    else:
        index = jnp.zeros((nq, 1), dtype=jnp.int32)
        w = jnp.ones((nq, 1), dtype=dtype)
    rows = flat[index]  # (Nq, C)
    exists = rows >= 0
    w = jnp.where(exists, w, 0.0)
    wsum = jnp.sum(w, axis=-1)
    need_fallback = ~(wsum >= min_weight)  # also catches NaN queries
    w = w / jnp.where(need_fallback, 1.0, wsum)[:, None]
    rows = jnp.where(exists, rows, 0).astype(jnp.int32)

    def with_fallback(args):
        rows, w = args
        near = nearest_rows(axes, lattice, points)
        ok = near >= 0
        onehot = jnp.zeros_like(w).at[:, 0].set(jnp.where(ok, 1.0, 0.0))
        near_rows = jnp.zeros_like(rows).at[:, 0].set(jnp.where(ok, near, 0).astype(rows.dtype))
        fb = need_fallback[:, None]
        return jnp.where(fb, near_rows, rows), jnp.where(fb, onehot, w)

    return jax.lax.cond(jnp.any(need_fallback), with_fallback, lambda args: args, (rows, w))


@jax.jit
def apply_weights(values, rows, weights):
    """``sum_c weights[q, c] * values[rows[q, c]]`` -> (Nq, ...).

    Corners with zero weight contribute exactly 0 (even if their values are
    NaN); queries whose weights are all zero (empty lattice) give NaN.
    """
    values = jnp.asarray(values)
    gathered = values[rows]  # (Nq, C, ...)
    w = weights.reshape(weights.shape + (1,) * (values.ndim - 1))
    contrib = jnp.where(w > 0, w * gathered, 0.0)
    out = jnp.sum(contrib, axis=1)
    empty = jnp.sum(weights, axis=1) <= 0
    empty = empty.reshape(empty.shape + (1,) * (values.ndim - 1))
    return jnp.where(empty, jnp.nan, out)


@functools.partial(jax.jit, static_argnames=("method",))
def interpolate(axes, lattice, values, points, method="multilinear"):
    """Interpolate ``values`` (Nmodel, ...) at ``points`` (Nq, k).

    ``method="multilinear"`` (renormalised over existing corners, nearest-model
    fallback; see module docstring) or ``"nearest"`` (nearest existing model in
    normalised axis units).  Returns (Nq, ...); NaN only when the lattice has
    no model at all.
    """
    points = jnp.asarray(points)
    if method == "multilinear":
        rows, weights = corner_weights(axes, lattice, points)
    elif method == "nearest":
        near = nearest_rows(axes, lattice, points)
        rows = jnp.where(near >= 0, near, 0)[:, None]
        weights = jnp.where(near >= 0, 1.0, 0.0)[:, None].astype(jnp.result_type(points, *axes, float))
    else:
        raise ValueError(f"method must be 'multilinear' or 'nearest', got {method!r}")
    return apply_weights(values, rows, weights)


def build_lattice(coords, axes=None):
    """Host helper (numpy, not traceable): axes and index lattice from per-model coordinates.

    Parameters
    ----------
    coords : array (Nmodel, k)
        Grid coordinates of every model.  Rows with a non-finite coordinate
        are left out of the lattice.
    axes : tuple of k 1-D arrays, optional
        Node values; default: the sorted unique finite values per column.

    Returns
    -------
    axes : tuple of k float64 numpy arrays
    lattice : int32 numpy array; entry = model row (the FIRST row when several
        models share a lattice point, as brutus), -1 where there is none.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2:
        raise ValueError(f"coords must be (Nmodel, k), got shape {coords.shape}")
    n, k = coords.shape
    finite = np.all(np.isfinite(coords), axis=1)
    if axes is None:
        axes = tuple(np.unique(coords[finite, j]) for j in range(k))
    else:
        axes = tuple(np.asarray(a, dtype=np.float64) for a in axes)
    shape = tuple(len(a) for a in axes)
    if n >= np.iinfo(np.int32).max:
        raise ValueError("too many models for an int32 index lattice")
    lattice = np.full(shape, -1, dtype=np.int32)
    rows = np.nonzero(finite)[0]
    if rows.size and all(shape):
        idx = []
        keep = np.ones(rows.size, dtype=bool)
        for j in range(k):
            i = np.searchsorted(axes[j], coords[rows, j])
            i = np.clip(i, 0, shape[j] - 1)
            keep &= axes[j][i] == coords[rows, j]
            idx.append(i)
        flat = np.ravel_multi_index(tuple(i[keep] for i in idx), shape)
        uniq, first = np.unique(flat, return_index=True)
        lattice.reshape(-1)[uniq] = rows[keep][first]
    return axes, lattice
