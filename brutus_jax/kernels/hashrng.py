"""Counter-based random numbers: a 32-bit integer hash of (counter, two seed words).

Each output element is a pure function of its index and the JAX PRNG key, so a
model's draws do not depend on how many models are evaluated with it, and on
XLA:CPU they cost ~1 ns per element where threefry (``jax.random``) costs ~15.
Used by the Monte-Carlo normals (`posterior.standard_normals`) and the Gumbel
noise of capped selections (`selection.gather_selected`).
"""

import jax
import jax.numpy as jnp

__all__ = ["hash_bits", "unit_interval", "hash_uniforms"]


def _lowbias32(x):
    """A 32-bit integer hash with low avalanche bias (C. Wellons' "lowbias32")."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def hash_bits(seed, counters):
    """uint32 hash of ``counters`` under the two seed words ``seed`` (2,) uint32."""
    return _lowbias32(_lowbias32(counters ^ seed[0]) + seed[1])


def unit_interval(bits, dtype):
    """uint32 -> ``(top 23 bits + 0.5) / 2**23``, strictly inside (0, 1) in float32 too
    (with 24 bits, ``2**24 - 0.5`` rounds to ``2**24`` in float32: u = 1)."""
    return ((bits >> 9).astype(dtype) + 0.5) * (2.0 ** -23)


def hash_uniforms(key, n, dtype):
    """(n,) uniforms in (0, 1) from a counter-based hash keyed by a JAX PRNG key.

    Element i is `unit_interval` of ``hash(i)``: a function of i and the key only, and on
    XLA:CPU ~1 ns per element where ``jax.random.uniform`` (threefry) costs ~15 (the
    Gumbel noise of a capped selection covers the whole grid, 655k models).  The same
    hash gives `posterior.standard_normals`.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    return unit_interval(hash_bits(seed, jax.lax.iota(jnp.uint32, n)), dtype)
