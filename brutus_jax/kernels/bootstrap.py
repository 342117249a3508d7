"""Weighted bootstrap of medians (the kernel of `analysis.offsets`).

Each replicate resamples objects uniformly with replacement and one posterior
draw per object by weight (inverted CDF, binary search), then takes the median
ratio by bisection on the floats' integer order keys (no sort).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["bootstrap_medians"]


def _draw_index(cdf, obj, u):
    """First index j with ``cdf[obj, j] >= u`` (binary search; ``u`` in (0, 1], ``cdf[:, -1] == 1``)."""
    s = cdf.shape[1]
    lo = jnp.zeros(obj.shape, jnp.int32)
    hi = jnp.full(obj.shape, s - 1, jnp.int32)
    for _ in range(max(0, math.ceil(math.log2(s)))):
        mid = (lo + hi) // 2
        right = cdf[obj, mid] < u
        lo = jnp.where(right, mid + 1, lo)
        hi = jnp.where(right, hi, mid)
    return lo


def _order_key(x):
    """Signed integers with the order of the floats ``x`` (IEEE total order; involution)."""
    ity = jnp.int64 if x.dtype == jnp.float64 else jnp.int32
    i = jax.lax.bitcast_convert_type(x, ity)
    return jnp.where(i < 0, i ^ jnp.iinfo(ity).max, i)


def _median_first(x, n):
    """Median of ``x[:n]`` (1-D; entries from n on must be +inf) without sorting: bisection on the
    integer order keys (XLA's CPU sort is ~4x slower than these 32 / 64 counting passes)."""
    key = _order_key(x)
    k1, k2 = jnp.maximum(n - 1, 0) // 2, n // 2

    def step(_, lh):
        lo, hi = lh
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        ok = jnp.sum(key <= mid) >= k1 + 1
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    v1 = jax.lax.fori_loop(0, 8 * key.dtype.itemsize, step, (jnp.min(key), jnp.max(key)))[0]
    above = jnp.min(jnp.where(key > v1, key, jnp.iinfo(key.dtype).max))
    v2 = jnp.where(jnp.sum(key <= v1) >= k2 + 1, v1, above)
    back = lambda v: jax.lax.bitcast_convert_type(jnp.where(v < 0, v ^ jnp.iinfo(v.dtype).max, v), x.dtype)  # noqa: E731
    return 0.5 * (back(v1) + back(v2))


def bootstrap_medians(key, ratios, weights, used, n_bootstrap, batch_size=None):
    """Bootstrap medians of one band's ratios (pure jnp; jit with static ``n_bootstrap``, ``batch_size``).

    Replicate ``b`` draws ``n = sum(used)`` objects uniformly with replacement
    among the ``used`` ones, one draw per drawn object with probability
    ``weights[obj]`` (inverted CDF, binary search; zero-weight draws are never
    chosen), and returns the median of the ``n`` ratios.  All random numbers
    come from one ``jax.random.bits(key, (n_bootstrap, 2, N))`` call (32 bits for
    the object, 32 for the draw), so the result does not depend on
    ``batch_size``; an ``impl='rbg'`` key compiles much faster than threefry
    (``photometric_offsets`` uses one).

    Parameters
    ----------
    key : JAX PRNG key
    ratios, weights : arrays (N, S)
        Ratios (not NaN) and per-object weights (rows of used objects sum to 1).
    used : bool array (N,)
    n_bootstrap : int
    batch_size : int, optional
        Replicates evaluated together (default all): memory vs. speed only.

    Returns
    -------
    medians : array (n_bootstrap,); ``+inf`` when no object is used.
    """
    n_obj = ratios.shape[0]
    dt = ratios.dtype
    n_used = jnp.sum(used).astype(jnp.int32)
    pos = jnp.nonzero(used, size=n_obj, fill_value=0)[0]
    cdf = jnp.cumsum(weights, axis=1)
    last = cdf[:, -1:]
    cdf = cdf / jnp.where(last > 0, last, 1.0)
    cdf = cdf.at[:, -1].set(1.0)
    slot = jnp.arange(n_obj)
    bits = jax.random.bits(key, (n_bootstrap, 2, n_obj), jnp.uint32)

    def one(b):
        k = (b[0].astype(dt) * 2.0**-32 * n_used.astype(dt)).astype(jnp.int32)
        obj = pos[jnp.minimum(k, jnp.maximum(n_used - 1, 0))]
        u = (b[1].astype(dt) + 1.0) * 2.0**-32  # (0, 1]
        r = ratios[obj, _draw_index(cdf, obj, u)]
        return _median_first(jnp.where(slot < n_used, r, jnp.inf), n_used)

    return jax.lax.map(one, bits, batch_size=min(batch_size or n_bootstrap, n_bootstrap))
