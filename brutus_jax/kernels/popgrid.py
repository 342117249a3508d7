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

from typing import NamedTuple

import jax

__all__ = ["PopSEDGrid"]


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
