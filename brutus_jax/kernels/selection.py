"""Model selection for the MC stage, with static shapes (ALGORITHMS.md §3.7).

``select_mask`` marks the models kept for one star: those within
``ln(wt_thresh)`` of the best ``lnprob_sel``; with ``wt_thresh=None`` the
smallest top set holding ``1 - cdf_thresh`` of the probability; with both None
every finite model.  ``gather_selected`` turns the mask into a fixed number K
of indices (K is a static bucket chosen by the host): the selected models
padded with invalid slots, or -- when more than ``max_models`` are selected --
``max_models`` of them drawn by Gumbel-top-k ('representative', i.e. weighted
sampling without replacement ~ exp(lnprob_sel)) or the best ones ('topk').
"""

import jax
import jax.numpy as jnp

__all__ = ["select_mask", "gather_selected"]


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


def gather_selected(key, sel, lnprob_sel, K, mode="representative"):
    """Indices (K,) and validity (K,) of the selected models; K static.

    If ``sum(sel) <= K`` all selected models are returned (in index order)
    followed by padding; otherwise K of them are chosen by ``mode``.
    """
    nsel = jnp.sum(sel)

    def all_of_them(_):
        idx = jnp.nonzero(sel, size=K, fill_value=0)[0].astype(jnp.int32)
        return idx, jnp.arange(K) < nsel

    def capped(_):
        score = jnp.where(sel, lnprob_sel, -jnp.inf)
        if mode == "representative":
            u = jax.random.uniform(key, lnprob_sel.shape, dtype=lnprob_sel.dtype)
            score = score - jnp.log(-jnp.log(u + 1e-300) + 1e-300)
        elif mode != "topk":
            raise ValueError(f"subsample_mode: expected 'representative' or 'topk', got {mode!r}")
        _, idx = jax.lax.top_k(score, K)
        return idx.astype(jnp.int32), jnp.ones(K, bool)

    return jax.lax.cond(nsel <= K, all_of_them, capped, None)
