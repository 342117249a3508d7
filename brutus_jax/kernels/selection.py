"""Model selection for the MC stage, with static shapes (ALGORITHMS.md §3.7).

``select_mask`` marks the models kept for one star: those within
``ln(wt_thresh)`` of the best ``lnprob_sel``; with ``wt_thresh=None`` the
smallest top set holding ``1 - cdf_thresh`` of the probability; with both None
every finite model.  ``gather_selected`` turns the mask into a fixed number K
of indices (K is a static bucket chosen by the host): the selected models
padded with invalid slots, or -- when more than ``max_models`` are selected --
``max_models`` of them drawn by Gumbel-top-k ('representative', i.e. weighted
sampling without replacement ~ exp(lnprob_sel)) or the best ones ('topk'), in index
order (`top_k_indices`, a sort-free top-k).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from .hashrng import hash_uniforms

__all__ = ["select_mask", "gather_selected", "selected_indices_host", "true_indices", "searchsorted_unrolled",
           "top_k_indices"]


def true_indices(mask, size, fill_value):
    """``jnp.nonzero(mask, size=size, fill_value=fill_value)[0]`` as int32, without a scatter.

    The (j+1)-th True of ``mask`` (N,) sits at the first position where the
    running count reaches j+1: a binary search of ``size`` queries in the
    cumulative sum.  ``jnp.nonzero(size=...)`` scatter-adds all N elements into
    ``size`` bins (a bincount); on a GPU the colliding atomic adds over a
    600k-model grid were a third of the device time of a fit (benchmarks/README.md).
    Same result (tested).
    """
    c = jnp.cumsum(mask, dtype=jnp.int32)
    j = jnp.arange(1, size + 1, dtype=jnp.int32)
    return jnp.where(j <= c[-1], searchsorted_unrolled(c, j), jnp.int32(fill_value))


def searchsorted_unrolled(a, v, side="left"):
    """``jnp.searchsorted(a, v, side)`` (int32) for a sorted 1-D ``a``: a binary search
    unrolled at trace time (ceil(log2(len(a) + 1)) steps).  ``jnp.searchsorted``'s
    default lowers to a while loop, and XLA:GPU reads a while loop's condition
    back to the host every iteration, which blocks dispatch (16 round trips
    per stage-2 call on a GPU); this has no loop.  Same result (tested).  ``a`` is
    materialised first: XLA would otherwise fuse its producer (a cumulative sum)
    into every probe and recompute it (measured 1.8x slower stage 2 on XLA:CPU)."""
    a = jax.lax.optimization_barrier(a)
    n = a.shape[0]
    lo = jnp.zeros(jnp.shape(v), jnp.int32)
    hi = jnp.full(jnp.shape(v), n, jnp.int32)
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        mid = (lo + hi) // 2
        am = a[jnp.minimum(mid, n - 1)]
        right = ((am < v) if side == "left" else (am <= v)) & (lo < hi)
        lo, hi = jnp.where(right, mid + 1, lo), jnp.where(right, hi, mid)
    return lo


def _ordered_bits(x):
    """Unsigned integers with the order of the floats ``x`` (NaN-free): the IEEE bits with
    the sign bit set for x >= 0 and all bits flipped for x < 0 (so -inf is the smallest)."""
    nbits = jnp.finfo(x.dtype).bits
    utype = {32: jnp.uint32, 64: jnp.uint64}[nbits]
    b = jax.lax.bitcast_convert_type(x, utype)
    top = jnp.asarray(1 << (nbits - 1), utype)
    return b ^ jnp.where(b >= top, ~jnp.zeros((), utype), top)


def top_k_indices(score, K):
    """Indices (K,) int32 of the K largest of ``score`` (N,) (NaN-free, K <= N static), in
    index order; ties at the K-th value are taken in index order.

    The same set as ``jax.lax.top_k(score, K)[1]`` (up to ties), without a sort: the K-th
    largest value is built bit by bit from the top (one count over ``score`` per bit of the
    float, unrolled: 32 passes in float32), then the models above it (and the first ties)
    are gathered by `true_indices`.  XLA:GPU lowers a top-k of a whole grid (K = 50,000 of
    600k) to a full sort (16 ms of 127 ms device time per 512-star batch on an H100,
    benchmarks/README.md); on XLA:CPU (655k models, four capped stars in a ``lax.map``) this
    takes 13.9 ms per star against 22.9 for ``lax.top_k``.
    """
    u = _ordered_bits(score)
    t = jnp.zeros((), u.dtype)
    for bit in reversed(range(jnp.iinfo(u.dtype).bits)):  # the largest t with #(u >= t) >= K
        cand = t | jnp.asarray(1 << bit, u.dtype)
        t = jnp.where(jnp.sum(u >= cand, dtype=jnp.int32) >= K, cand, t)
    above = u > t
    ties = u == t
    n_above = jnp.sum(above, dtype=jnp.int32)
    keep = above | (ties & (jnp.cumsum(ties, dtype=jnp.int32) <= K - n_above))
    return true_indices(keep, K, 0)


def select_mask(lnprob_sel, wt_thresh=1e-3, cdf_thresh=2e-3):
    """(Nmodel,) bool selection for one star; ``wt_thresh``/``cdf_thresh`` static."""
    finite = jnp.isfinite(lnprob_sel)
    if wt_thresh is not None:
        best = jnp.max(jnp.where(finite, lnprob_sel, -jnp.inf))
        return finite & (lnprob_sel > best + jnp.log(wt_thresh))
    if cdf_thresh is not None:
        x = jnp.where(finite, lnprob_sel, -jnp.inf)
        order = jnp.argsort(-x)
        xs = x[order]
        w = jnp.exp(xs - xs[0])
        c = jnp.cumsum(w) / jnp.sum(w)
        # keep up to and including the first model at which the CDF reaches 1 - cdf_thresh
        keep_sorted = jnp.concatenate([jnp.array([True]), c[:-1] < 1.0 - cdf_thresh]) & jnp.isfinite(xs)
        return jnp.zeros_like(finite).at[order].set(keep_sorted)
    return finite


def gather_selected(key, sel, lnprob_sel, K, mode="representative", capped=None):
    """Indices (K,) and validity (K,) of the selected models; K static.

    If ``sum(sel) <= K`` all selected models are returned (in index order)
    followed by padding; otherwise K of them are chosen by ``mode``.
    ``capped`` (static): None decides inside the kernel (``lax.cond``); a host
    that knows ``sum(sel)`` passes True/False, which matters under ``vmap``,
    where a batched ``cond`` runs both branches (the top-k over the whole grid
    for every star: ~35 ms per star on XLA:CPU for 655k models).
    """
    nsel = jnp.sum(sel)

    def all_of_them(_):
        idx = true_indices(sel, K, 0)
        return idx, jnp.arange(K) < nsel

    def capped_(_):
        score = jnp.where(sel & ~jnp.isnan(lnprob_sel), lnprob_sel, -jnp.inf)
        if mode == "representative":
            u = hash_uniforms(key, lnprob_sel.shape[0], lnprob_sel.dtype)  # in (0, 1): no guards needed
            score = score - jnp.log(-jnp.log(u))
        elif mode != "topk":
            raise ValueError(f"subsample_mode: expected 'representative' or 'topk', got {mode!r}")
        return top_k_indices(score, K), jnp.ones(K, bool)

    if capped is None:
        return jax.lax.cond(nsel <= K, all_of_them, capped_, None)
    return capped_(None) if capped else all_of_them(None)


def selected_indices_host(sel, K):
    """Host (numpy) version of the uncapped branch of `gather_selected` for one
    star: (K,) int32 indices of the selected models in index order, padded with
    0, and their validity.  On XLA:CPU the device version (a cumsum over the
    whole grid) costs ~10 ms per star for 655k models, numpy ~0.4 ms."""
    idx = np.flatnonzero(np.asarray(sel))
    if idx.size > K:
        raise ValueError(f"{idx.size} selected models do not fit K={K} slots")
    out = np.zeros(K, np.int32)
    out[: idx.size] = idx
    return out, np.arange(K) < idx.size
