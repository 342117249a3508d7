"""3-D dust maps (the ``brutus.dust`` face): Bayestar reader, HEALPix lookup, writer.

``Bayestar(dustfile).query(coords)`` returns the per-sightline A_V profiles
``(dists_kpc, av_mean, av_std)`` that `brutus_jax.priors.logp_extinction`
(host wrapper) and `brutus_jax.kernels.priors.logp_extinction` (pure kernel)
consume.  `lb2pix` is a numpy HEALPix ``ang2pix`` (healpy is not required).
"""

from .bayestar import Bayestar, DustMap, lb2pix, write_bayestar

__all__ = ["lb2pix", "DustMap", "Bayestar", "write_bayestar"]
