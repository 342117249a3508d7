"""Container for a stellar population's SEDs over (secondary mass fraction, EEP).

``PopSEDGrid`` is what :meth:`brutus_jax.core.StellarPop.get_seds_smf_grid_jax`
returns and what the population likelihood (``brutus_jax.analysis.populations``)
consumes.  It is a ``NamedTuple`` of arrays, hence a JAX pytree: it can be
returned from / passed into ``jax.jit`` functions and differentiated through.

Invalid entries never hold NaN: ``mags`` and ``mini`` carry a finite fill value
where ``sed_ok`` / ``mini_ok`` are False, so that masked sums (``jnp.where``)
keep gradients NaN-free.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["PopSEDGrid", "PopDetail", "population_seds"]


class PopSEDGrid(NamedTuple):
    """SEDs of a simple stellar population on a (smf, eep) grid.

    Attributes
    ----------
    mags : array (n_smf, n_eep, n_filt)
        Apparent magnitudes at the requested distance [pc]; a finite fill
        where ``sed_ok`` is False.
    sed_ok : bool array (n_smf, n_eep)
        True exactly where astro-brutus's ``get_seds`` would return a finite
        SED for that (secondary mass fraction, EEP).
    mini : array (n_smf, n_eep)
        Primary initial mass [Msun] (brutus's ``params1['mini']`` of that
        slice); a finite fill where ``mini_ok`` is False.
    mini_ok : bool array (n_smf, n_eep)
        True where brutus's ``params1['mini']`` is finite.
    eep : array (n_eep,)
        Equivalent evolutionary points.
    smf : array (n_smf,)
        Secondary mass fractions q = M2/M1 (0 = single star).
    """

    mags: jax.Array
    sed_ok: jax.Array
    mini: jax.Array
    mini_ok: jax.Array
    eep: jax.Array
    smf: jax.Array


# ---------------------------------------------------------------------------
# Kernel: a simple stellar population with binaries (brutus's StellarPop rules)
# ---------------------------------------------------------------------------


class PopDetail(NamedTuple):
    """Everything :func:`population_seds` computes (numpy outputs are built from it).

    prim : (n_eep, n_label) primary predictions (file label order), fill where not prim_ok.
    prim_ok : (n_eep,) predictions exist (brutus: finite params1).
    sed_ok : (n_eep,) primary SED exists (mini >= mini_bound and SED back end ok).
    sec : (n_smf, n_eep, n_label) secondary predictions at eep2.
    sec_ok : (n_smf, n_eep) secondary predictions exist (brutus: finite params2 for 0 < q < 1).
    has_sec : (n_smf, n_eep) the secondary's flux is added.
    eq_binary : (n_smf, n_eep) q == 1 doubling applied.
    mags : (n_smf, n_eep, n_band) combined apparent magnitudes, 0 where not sed_ok.
    """

    prim: jax.Array
    prim_ok: jax.Array
    sed_ok: jax.Array
    sec: jax.Array
    sec_ok: jax.Array
    has_sec: jax.Array
    eq_binary: jax.Array
    mags: jax.Array


def _interp_sorted(xs, ys, n_valid, x):
    """np.interp(x, xs[:n_valid], ys[:n_valid], left=nan, right=nan) without NaN.

    ``xs`` ascending with its first ``n_valid`` entries meaningful (the rest
    padded with a large finite value).  Returns (y, inside).
    """
    n = xs.shape[0]
    j = jnp.clip(jnp.searchsorted(xs, x, side="right") - 1, 0, jnp.maximum(n_valid - 2, 0))
    j = jnp.minimum(j, n - 2)
    x0, x1 = xs[j], xs[j + 1]
    den = x1 - x0
    good = den > 0
    t = jnp.where(good, (x - x0) / jnp.where(good, den, 1.0), 0.0)
    t = jnp.where(t < 0.0, 0.0, jnp.where(t > 1.0, 1.0, t))  # not jnp.clip: full derivative at ties
    y = ys[j] + t * (ys[j + 1] - ys[j])
    last = xs[jnp.maximum(n_valid - 1, 0)]
    inside = (n_valid >= 1) & (x >= xs[0]) & (x <= last)
    return y, inside


def population_seds(iso_table, sed_data, smf, eep, feh, afe, loga, av, rv, dist, mini_bound,
                    eep_binary_max, corr_params, *, cols, method, apply_corr, sed_fn):
    """SEDs of a simple stellar population for several secondary mass fractions.

    Implements brutus 1.2.0's ``StellarPop.get_seds`` rules for every ``q`` in
    ``smf``: primary valid if its predictions exist, ``mini >= mini_bound`` and
    the SED back end accepts it; for ``0 < q < 1`` the secondary has
    ``mini2 = q mini`` on the same isochrone with ``eep2 = interp(mini2,
    sorted minis, eeps)`` (only where ``eep <= eep_binary_max`` and
    ``eep2 <= eep_binary_max``) and is added in flux when its own
    ``mini >= mini_bound`` and SED exist; ``q == 1`` subtracts 2.5 log10 2 for
    ``eep <= eep_binary_max``; any other q is a single star.

    Parameters
    ----------
    iso_table : IsochroneTable; sed_data : pytree for ``sed_fn``.
    smf : (n_smf,); eep : (n_eep,); feh, afe [dex], loga [log10 yr], av [mag],
    rv, dist [pc], mini_bound [Msun], eep_binary_max: scalars.
    corr_params : 4 floats.
    cols : static dict name -> column index (needs mini, logt, logg, logl,
        feh_surf, afe_surf); method : 'cubic'|'linear'; apply_corr : bool;
    sed_fn : static callable ``(sed_data, logt, logg, feh_surf, afe_surf, logl,
        av, rv, dist) -> (mags (..., n_band), ok (...))``.

    Returns
    -------
    PopDetail
    """
    from .isochrone_interp import apply_corrections, interp_eep, isochrone_on_nodes

    dtype = iso_table.values.dtype
    eep = jnp.asarray(eep, dtype)
    smf = jnp.asarray(smf, dtype)
    feh = jnp.asarray(feh, dtype)
    mini_bound = jnp.asarray(mini_bound, dtype)
    eep_binary_max = jnp.asarray(eep_binary_max, dtype)
    corr_cols = (cols["mini"], cols["logt"], cols["logl"], cols["logg"])

    nodes, nodes_ok = isochrone_on_nodes(iso_table, feh, afe, loga, method)

    def predict(e):
        p, ok = interp_eep(iso_table.eep, nodes, nodes_ok, e)
        if apply_corr:
            p = apply_corrections(p, ok, feh, e, corr_cols, corr_params)
        return p, ok

    def seds(p):
        return sed_fn(sed_data, p[..., cols["logt"]], p[..., cols["logg"]], p[..., cols["feh_surf"]],
                      p[..., cols["afe_surf"]], p[..., cols["logl"]], av, rv, dist)

    prim, pok = predict(eep)
    mini = prim[:, cols["mini"]]

    # secondary EEPs: interpolate eep(mini) along the (sorted) valid primaries
    big = jnp.asarray(jnp.finfo(dtype).max / 4, dtype)
    key = jnp.where(pok, mini, big)
    order = jnp.argsort(key)
    xs, es = key[order], eep[order]
    n_valid = jnp.sum(pok)
    mini2 = smf[:, None] * mini[None, :]
    eep2, inside = _interp_sorted(xs, es, n_valid, mini2)
    eep2_ok = inside & pok[None, :] & (eep2 <= eep_binary_max) & (eep[None, :] <= eep_binary_max)
    eep2 = jnp.where(eep2_ok, eep2, eep[None, :])
    sec, sok = predict(eep2)
    sok = sok & eep2_ok

    # one SED evaluation for primaries and secondaries together
    n_smf, n_eep = mini2.shape
    both = jnp.concatenate([prim, sec.reshape(n_smf * n_eep, -1)], axis=0)
    m_all, s_all = seds(both)
    m_prim, s_ok = m_all[:n_eep], s_all[:n_eep]
    m_sec = m_all[n_eep:].reshape(n_smf, n_eep, -1)
    s2_ok = s_all[n_eep:].reshape(n_smf, n_eep)
    sed_ok = pok & (mini >= mini_bound) & s_ok
    has_sec = sok & (sec[..., cols["mini"]] >= mini_bound) & s2_ok

    mid = ((smf > 0) & (smf < 1))[:, None]
    one = (smf == 1)[:, None]
    has_sec = has_sec & mid
    eq_binary = one & sed_ok[None, :] & (eep[None, :] <= eep_binary_max)
    m_sec_safe = jnp.where(has_sec[..., None], m_sec, m_prim[None])
    from .photometry import add_mag

    combined = jnp.where(has_sec[..., None], add_mag(m_prim[None], m_sec_safe), m_prim[None])
    combined = jnp.where(eq_binary[..., None], m_prim[None] - 2.5 * math.log10(2.0), combined)
    mags = jnp.where(sed_ok[None, :, None], combined, jnp.zeros((), dtype))
    sec_ok = sok & mid
    return PopDetail(prim, pok, sed_ok, sec, sec_ok, has_sec, eq_binary, mags)
