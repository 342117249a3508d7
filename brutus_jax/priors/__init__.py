"""Priors (the ``brutus.priors`` face).

Every name of ``brutus.priors`` (astro-brutus 1.2.0) is here.  Most are the
pure JAX kernels of `brutus_jax.kernels.priors` re-exported unchanged; two are
host wrappers with brutus's signatures:

* `logp_extinction(avs, dustmap, coord, distance=None, ...)` queries a dust
  map object (`brutus_jax.dust.Bayestar`) and evaluates the pure kernel
  `brutus_jax.kernels.priors.logp_extinction` on the returned profile;
* `logp_ps1_luminosity_function(Mr)` reads brutus's tabulated PS1 r-band
  luminosity function ``PSMrLF_lnprior.dat`` from an installed astro-brutus
  (the table is not redistributed here) and evaluates the kernel.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import priors as _k
from ..kernels.priors import (  # noqa: F401
    convert_parallax_to_scale,
    logn_disk,
    logn_halo,
    logp_age_from_feh,
    logp_feh,
    logp_galactic_structure,
    logp_imf,
    logp_parallax,
    logp_parallax_scale,
)

__all__ = [
    "logp_imf",
    "logp_ps1_luminosity_function",
    "logp_parallax",
    "logp_parallax_scale",
    "convert_parallax_to_scale",
    "logp_galactic_structure",
    "logn_disk",
    "logn_halo",
    "logp_feh",
    "logp_age_from_feh",
    "logp_extinction",
]

_PS1_LF_FILE = "PSMrLF_lnprior.dat"


def _extinction_one_los(avs, distance, dists, av_mean, av_std, avlim):
    mu, sig = _k.interp_extinction_profile(distance, dists, av_mean, av_std)
    return _k.logp_av_truncnorm(avs, mu, sig, avlim), mu, sig


_extinction_one_los_jit = jax.jit(_extinction_one_los, static_argnames="avlim")
_extinction_many_los_jit = jax.jit(
    jax.vmap(_extinction_one_los, in_axes=(0, 0, None, 0, 0, None)), static_argnums=5
)
_truncnorm_jit = jax.jit(_k.logp_av_truncnorm, static_argnames="avlim")
_ps1_jit = jax.jit(_k.logp_ps1_luminosity_function)


# ---------------------------------------------------------------------------
# dust
# ---------------------------------------------------------------------------


def logp_extinction(avs, dustmap, coord, distance=None, return_components=False, avlim=(0.0, 20.0)):
    """A_V log-prior from a 3-D dust map (brutus ``logp_extinction`` signature).

    Queries ``dustmap.query(coord)`` and, for a distance-resolved map
    (``query`` returns ``(dists, av_mean, av_std)``), interpolates the profile
    linearly to ``distance`` (clamped to the end bins) and evaluates a
    Gaussian in A_V truncated and renormalised to ``avlim``; 0 (flat) where the
    map has no reliable value, and everywhere when ``distance`` is None.  For a
    2-D map whose ``query`` returns scalars ``(av_mean, av_std)`` the Gaussian is
    used directly.  Unlike brutus, a failing ``query`` raises instead of
    degrading to a flat prior with a warning.

    Parameters
    ----------
    avs : array_like
        Extinctions A_V [mag].
    dustmap : object with ``query``
        E.g. `brutus_jax.dust.Bayestar`.
    coord : (l, b) pair [deg] or astropy SkyCoord
        Line of sight.  Several lines of sight (an ``(N, 2)`` array) are
        allowed when ``avs`` and ``distance`` have a leading axis of length N.
    distance : float or array_like, optional
        Distances [kpc], broadcastable with ``avs``.
    return_components : bool, optional
        Also return ``(av_mean, av_std)`` interpolated at ``distance``
        (NaN when ``distance`` is None).
    avlim : (float, float) or None, optional
        Support of the truncated normal [mag] (default (0, 20)); None: no
        truncation.

    Returns
    -------
    logp : jax.Array
        Log-prior [ln mag**-1], broadcast shape of ``avs`` and ``distance``.
    (av_mean, av_std) : tuple, optional
        Map statistics used.

    Raises
    ------
    TypeError
        If ``dustmap`` has no ``query`` method (e.g. an unloaded file path).
    ValueError
        For a non-finite or reversed ``avlim``.
    """
    _k._check_avlim(avlim)
    avlim = None if avlim is None else (float(avlim[0]), float(avlim[1]))  # hashable: a static argument
    if not hasattr(dustmap, "query"):
        raise TypeError(
            f"`dustmap` has no query() method (got {type(dustmap).__name__!r}); load a map first, "
            "e.g. brutus_jax.dust.Bayestar(path)."
        )
    avs = _k._asfloat(avs)
    result = dustmap.query(coord)
    nan_components = (jnp.nan, jnp.nan)
    if isinstance(result, tuple) and len(result) == 3:
        dists, av_mean, av_std = result
        av_mean, av_std = np.squeeze(av_mean), np.squeeze(av_std)
        if distance is None:
            lnp, comps = jnp.zeros_like(avs), nan_components
        elif av_mean.ndim == 1:
            lnp, mu, sig = _extinction_one_los_jit(avs, distance, dists, av_mean, av_std, avlim=avlim)
            comps = (mu, sig)
        else:  # one profile per leading index of avs / distance
            n = av_mean.shape[0]
            shape = jnp.broadcast_shapes(avs.shape, jnp.shape(distance))
            if shape[:1] != (n,):
                raise ValueError(f"{n} lines of sight need avs/distance with leading axis {n}; got shape {shape}")
            a = jnp.broadcast_to(avs, shape)
            d = jnp.broadcast_to(_k._asfloat(distance), shape)
            lnp, mu, sig = _extinction_many_los_jit(a, d, dists, av_mean, av_std, avlim)
            comps = (mu, sig)
    elif isinstance(result, tuple) and len(result) == 2:
        mu, sig = result
        lnp = _truncnorm_jit(avs, mu, sig, avlim=avlim)
        ok = np.isfinite(mu) & np.isfinite(sig) & (np.asarray(sig) > 0)
        comps = (mu, sig) if np.all(ok) else nan_components
    else:
        lnp, comps = jnp.zeros_like(avs), nan_components
    if return_components:
        return lnp, comps
    return lnp


# ---------------------------------------------------------------------------
# PS1 luminosity function
# ---------------------------------------------------------------------------


def _ps1_table_path():
    spec = importlib.util.find_spec("brutus")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = os.path.join(root, "priors", _PS1_LF_FILE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"logp_ps1_luminosity_function needs brutus's table {_PS1_LF_FILE}, shipped with astro-brutus, "
        "which is not installed (pip install astro-brutus==1.2.0), or pass table=(Mr, lnp)."
    )


@functools.lru_cache(maxsize=4)
def _load_ps1_table(path):
    table = np.loadtxt(path)
    if table.ndim != 2 or table.shape[1] != 2 or table.shape[0] < 2:
        raise ValueError(f"{path}: expected two columns (Mr, ln p) and at least two rows")
    return table[:, 0].copy(), table[:, 1].copy()


def logp_ps1_luminosity_function(Mr, table=None):
    """Pan-STARRS 1 r-band luminosity-function log-prior (brutus's tabulated prior).

    Linear interpolation, with linear extrapolation, of brutus's
    ``PSMrLF_lnprior.dat`` (PARSEC LF, 7 +- 2 Gyr, [Fe/H] = -0.5 +- 0.5; Mr
    from -1 to 20 in 0.05 mag steps), located inside an installed
    astro-brutus.  See `brutus_jax.kernels.priors.logp_ps1_luminosity_function`.

    Parameters
    ----------
    Mr : array_like
        Absolute PS1 r magnitudes [mag].
    table : (array_like, array_like), optional
        ``(Mr_grid, lnp_grid)`` to use instead of brutus's table.

    Returns
    -------
    jax.Array, shape of ``Mr``
        Log-prior (in the dtype of a floating ``Mr``).

    Raises
    ------
    FileNotFoundError
        If no table is given and astro-brutus is not installed.
    """
    Mr = _k._asfloat(Mr)
    grid_Mr, grid_lnp = table if table is not None else _load_ps1_table(_ps1_table_path())
    grid_Mr = jnp.asarray(grid_Mr, dtype=Mr.dtype)
    grid_lnp = jnp.asarray(grid_lnp, dtype=Mr.dtype)
    return _ps1_jit(Mr, grid_Mr, grid_lnp)
