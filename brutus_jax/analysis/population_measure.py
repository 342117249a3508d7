"""Terminal EEP of a population for the smooth row measure (``row_measure="smooth"``).

The smooth measure (`brutus_jax.kernels.population.population_row_weights`
with ``eep_end``) needs a terminal EEP that moves continuously with
([Fe/H], log age).  One mechanism supplies it: the population's
``eep_end(feh, loga)`` (or ``eep_end(loga)``) hook -- the analytic toy
population's closed form, or :meth:`brutus_jax.core.StellarPop.eep_end` (a
continuous lower bound of the interpolated MIST isochrone's end,
`brutus_jax.kernels.isochrone_interp.terminal_eep`) -- or an explicit
``eep_end`` argument.  Populations without the hook fall back to probing, which
only locates the current end (no derivative; the likelihood keeps its steps
wherever that end jumps).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

__all__ = ["terminal_eep_for_measure"]

_N_PROBE = 32  # probes per EEP cell when the terminal EEP is located numerically


def terminal_eep_for_measure(stellarpop, pg, eep_end, feh, loga, kw):
    """Terminal EEP for ``row_measure='smooth'``: ``eep_end`` (or ``stellarpop.eep_end``) as
    ``f(loga)`` / ``f(feh, loga)`` / a number, else ``_N_PROBE`` probes of the population (SMF 0)
    in the cell after the last valid row (1/_N_PROBE of a cell, zero derivative: exact for
    isochrones whose end is constant between table nodes, but it keeps the jumps at the nodes:
    give such populations an ``eep_end`` hook)."""
    dt = pg.eep.dtype
    fn = getattr(stellarpop, "eep_end", None) if eep_end is None else eep_end
    if callable(fn):
        try:
            nargs = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            nargs = 2
        return jnp.asarray(fn(loga) if nargs == 1 else fn(feh, loga), dt)
    if fn is not None:
        return jnp.asarray(fn, dt)
    e = pg.eep
    n = e.shape[0]
    ok0 = jnp.asarray(pg.mini_ok[0], bool)
    j = jnp.max(jnp.where(ok0, jnp.arange(n), -1))
    jc = jnp.clip(j, 0, max(n - 2, 0))
    e0 = e[jc]
    e1 = e[jc + 1] if n > 1 else e0 + 1.0
    probes = e0 + (e1 - e0) * jnp.arange(1, _N_PROBE + 1, dtype=dt) / _N_PROBE
    pp = stellarpop.get_seds_smf_grid_jax(jnp.zeros((1,), dt), feh=feh, loga=loga, eep=probes, **kw)
    nv = jnp.sum(jnp.cumprod(jnp.asarray(pp.mini_ok[0], jnp.int32)))
    end = e0 + (e1 - e0) * nv / _N_PROBE
    beyond = e[-1] + 2.0 * (e[-1] - e[max(n - 2, 0)]) + 1.0
    end = jnp.where(j >= n - 1, beyond, jnp.where(j < 0, e[0] - 1.0, end))
    return jax.lax.stop_gradient(end)
