"""brutus.core.sed_utils: the SED forward model (see ``brutus_jax.kernels.seds``)."""

from ..kernels.seds import get_seds  # noqa: F401

_get_seds = get_seds  # brutus's private name, for code ported from brutus
