"""Multiplicative photometric offsets from posterior draws (brutus.analysis.offsets).

For each band, the offset is the typical ratio ``model flux / observed flux``
over a calibration sample, where the model flux of an object is taken from its
posterior draws (model index, A_V, R_V, distance) of a ``BruteForce`` fit.
Offsets multiply the DATA: ``BruteForce.fit(phot, err, ..., phot_offsets=offsets)``
fits ``phot * offsets`` (and ``err * offsets``).

Algorithm (ALGORITHMS.md section 6; same semantics as astro-brutus 1.2.0):

1. model fluxes ``F = get_seds(models[idx], A_V, R_V, flux) / d_kpc**2`` for every
   draw (computed in chunks of draws so memory stays bounded);
2. per-draw chi-square of the data ``phot * old_offsets`` (errors
   ``err * old_offsets``); for a band ``i`` used in the fit, the draws, which
   sample the full posterior, are importance-reweighted to the leave-one-out
   posterior with ``w = L_{-i} / L_full`` (:func:`leave_one_out_log_weights`);
   bands not used in the fit keep uniform weights; user ``weights`` multiply;
3. an object enters band ``i`` if the band is observed, the object is in ``sel``,
   it has enough other bands (``min_bands_used`` / ``min_bands_unused``), its
   weights have a positive finite sum and its flux is > 0;
4. bootstrap (:func:`bootstrap_medians`, one compiled kernel): resample the
   eligible objects with replacement and one draw per object by weight
   (inverted CDF), take the median ratio; the offset is the median of the
   bootstrap medians, its error the IQR / 1.349 (or the std) of them;
5. optional Gaussian prior per band (inverse-variance combination).

The offsets are ABSOLUTE: ratios are taken with respect to the raw ``phot``
even when ``old_offsets`` (the offsets the draws were fitted with) are given,
so the result replaces ``old_offsets``; it is not a further correction.

Deviations from brutus 1.2.0 (all documented where they act):

* ``PhotometricOffsetsConfig.loo_bands='fitted'`` (default): the leave-one-out
  likelihoods use the bands that were fitted (observed and ``mask_fit``), as
  the importance ratio requires; brutus sums over every observed band, so with
  ``dim_prior=True`` and observed-but-unfitted bands its weights for the fitted
  bands depend on the unfitted photometry.  ``loo_bands='observed'`` reproduces
  brutus.  Identical when ``mask_fit`` is all True or ``dim_prior=False``.
* ``rng`` may also be an int seed or a JAX PRNG key; the random stream differs
  from brutus's (the distribution is the same).  Band ``i`` draws from its own
  stream (seed and ``i`` through numpy's ``SeedSequence``, then one XLA RBG key),
  so one band's result does not depend on the others.
* The leave-one-out and user weights are combined in log space.  brutus
  exponentiates ``ln w - max(ln w)`` first and multiplies by ``weights`` after,
  so when the draws with the largest ``ln w`` (poor fits in band i, which
  ``w = exp(chi2_i / 2)`` favours) carry zero or tiny user weight, the row
  underflows to zero and the object is silently dropped ("degenerate weights").
* Stricter validation: ``models`` with another number of bands than ``phot``
  (brutus silently uses the first ones when it has more), out-of-range ``idxs`` (brutus silently
  wraps negative ones, e.g. the -99 of unfinished fit rows), non-finite ``reds``/``dreds``,
  negative or non-finite ``weights``, non-positive ``old_offsets`` or
  ``prior_std`` raise a ValueError naming the argument.  Draw values of
  objects outside ``sel`` are not checked (brutus requires ``dists > 0`` for all).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from ..kernels.bootstrap import bootstrap_medians
from ..kernels.seds import get_seds

__all__ = [
    "PhotometricOffsetsConfig",
    "photometric_offsets",
    "offsets_from_fit",
    "write_offsets",
    "leave_one_out_log_weights",
    "bootstrap_medians",
    "read_fit_draws",
]

#: (object, draw) rows per chunk of the model-flux computation (bounds the transient gather of
#: model coefficients to ``_SED_CHUNK_ROWS * Nfilt * 3`` numbers).
_SED_CHUNK_ROWS = 1 << 18
#: elements (replicates x objects) per vectorised bootstrap batch.
_BOOT_BATCH_ELEMENTS = 1 << 22
_IQR_TO_SIGMA = 1.349
_UNCERTAINTY_METHODS = ("bootstrap_std", "bootstrap_iqr")
_LOO_BANDS = ("fitted", "observed")


@dataclasses.dataclass(frozen=True)
class PhotometricOffsetsConfig:
    """Settings of :func:`photometric_offsets` (immutable; validated on construction).

    Parameters
    ----------
    min_bands_used : int
        For a band used in the fit: minimum number of OTHER observed bands an
        object needs (default 4, i.e. at least 5 observed bands).
    min_bands_unused : int
        For a band not used in the fit: minimum number of observed bands,
        this band included (default 3).
    n_bootstrap : int
        Bootstrap replicates (default 300).
    uncertainty_method : {'bootstrap_iqr', 'bootstrap_std'}
        Error = IQR / 1.349 (default) or standard deviation of the bootstrap medians.
    progress_interval : int
        0 switches progress output off; any other value shows a progress bar
        over bands when ``verbose`` (replicates run inside one compiled kernel,
        so there is no per-replicate progress as in brutus's loop).
    use_vectorized_bootstrap : bool
        True: replicates in vectorised batches of about 4M (replicate, object)
        pairs; False: one replicate at a time (smaller work arrays; the
        ``8 n_bootstrap Nobj`` bytes of random bits are drawn at once either way).
        Both give identical results for the same seed.
    random_seed : int or None
        Seed used when ``rng`` is not given (None: fresh entropy).
    validate_inputs : bool
        Check the values of the inputs (finite, positive, in range); shapes are
        always checked.
    loo_bands : {'fitted', 'observed'}
        brutus_jax extension: bands entering the leave-one-out likelihoods (see
        the module docstring).  'observed' reproduces brutus 1.2.0.
    """

    min_bands_used: int = 4
    min_bands_unused: int = 3
    n_bootstrap: int = 300
    uncertainty_method: str = "bootstrap_iqr"
    progress_interval: int = 10
    use_vectorized_bootstrap: bool = True
    random_seed: int | None = None
    validate_inputs: bool = True
    loo_bands: str = "fitted"

    def __post_init__(self):
        for name in ("min_bands_used", "min_bands_unused", "n_bootstrap", "progress_interval"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name}: expected an integer, got {v!r}")
            lo = 0 if name == "progress_interval" else 1
            if v < lo:
                raise ValueError(f"{name}: must be >= {lo}, got {v}")
        if self.uncertainty_method not in _UNCERTAINTY_METHODS:
            raise ValueError(f"uncertainty_method: unknown {self.uncertainty_method!r}, "
                             f"expected one of {_UNCERTAINTY_METHODS}")
        if self.loo_bands not in _LOO_BANDS:
            raise ValueError(f"loo_bands: unknown {self.loo_bands!r}, expected one of {_LOO_BANDS}")
        if self.random_seed is not None and (isinstance(self.random_seed, bool)
                                             or not isinstance(self.random_seed, (int, np.integer))):
            raise ValueError(f"random_seed: expected an integer or None, got {self.random_seed!r}")


# ---------------------------------------------------------------------------------------------
# kernels (pure jnp)
# ---------------------------------------------------------------------------------------------
def leave_one_out_log_weights(chi2_full, band_chi2, ndim, dim_prior=True, dof_reduction=1):
    r"""Importance log-weights taking full-posterior draws to the leave-one-out posterior.

    ``ln w = ln L_{-i} - ln L_full`` at each draw, up to per-object constants
    (which cancel when the weights are normalised per object).

    * ``dim_prior=True`` (chi-square density convention of
      ``phot_loglike(dim_prior=True, dof_reduction=1)``, i.e. brutus v0.8 fits):
      ``dof_full = ndim - dof_reduction``, ``dof_loo = dof_full - 1``,
      ``a = dof / 2``, ``chi2_loo = max(chi2_full - band_chi2, 0)``::

          ln w = (a_loo - 1) ln chi2_loo - chi2_loo / 2 - (a_full - 1) ln chi2_full + chi2_full / 2

      and ``-inf`` where ``dof_loo <= 0`` or the value is NaN.
    * ``dim_prior=False`` (Gaussian likelihood, as in brutus >= 1.0 / brutus_jax
      ``BruteForce`` fits, whose dimensionality term is a per-object constant):
      ``ln w = band_chi2 / 2``.

    Parameters
    ----------
    chi2_full : array (Nobj, Nsamp)
        Chi-square of each draw summed over the likelihood's bands (band i included).
    band_chi2 : array (Nobj, Nsamp)
        Band i's contribution (0 where band i is unobserved).
    ndim : int array (Nobj,)
        Number of bands in ``chi2_full``.
    dim_prior : bool (static)
    dof_reduction : int

    Returns
    -------
    lnw : array (Nobj, Nsamp), unnormalised.
    """
    chi2_full = jnp.asarray(chi2_full)
    band_chi2 = jnp.asarray(band_chi2, chi2_full.dtype)
    if not dim_prior:
        return 0.5 * band_chi2
    chi2_loo = jnp.maximum(chi2_full - band_chi2, 0.0)  # cancellation guard (NaN propagates)
    dof_full = jnp.asarray(ndim).astype(chi2_full.dtype)[:, None] - dof_reduction
    dof_loo = dof_full - 1.0
    lnw = (xlogy(0.5 * dof_loo - 1.0, chi2_loo) - 0.5 * chi2_loo
           - xlogy(0.5 * dof_full - 1.0, chi2_full) + 0.5 * chi2_full)
    return jnp.where((dof_loo <= 0) | jnp.isnan(lnw), -jnp.inf, lnw)


def _model_fluxes_chunk(coeffs, inv, red, dred, dist, phot_adj, ivar_fit):
    """Fluxes (Nfilt, C, S) and fitted-band chi-square (C, S) of a chunk of C objects."""
    c = jnp.take(coeffs, inv, axis=0)  # (C, S, F, 3)
    f = get_seds(c, av=red, rv=dred, return_flux=True) / (dist * dist)[..., None]
    chi2 = jnp.sum(jnp.square(phot_adj[:, None, :] - f) * ivar_fit[:, None, :], axis=-1)
    return jnp.moveaxis(f, -1, 0), chi2


@partial(jax.jit, static_argnames=("chunk",))
def _model_fluxes(coeffs, inv, red, dred, dist, phot_adj, ivar_fit, chunk):
    """Model fluxes (Nfilt, N, S) [maggies at the draw's distance] and chi2_fit (N, S), in chunks."""
    n, s = inv.shape
    nchunk = n // chunk
    split = lambda x: x.reshape((nchunk, chunk) + x.shape[1:])  # noqa: E731
    f, chi2 = jax.lax.map(lambda a: _model_fluxes_chunk(coeffs, *a),
                          tuple(split(x) for x in (inv, red, dred, dist, phot_adj, ivar_fit)))
    f = jnp.moveaxis(f, 1, 0).reshape(f.shape[1], n, s)
    return f, chi2.reshape(n, s)


def _band_ratios_weights(flux_i, phot_i, phot_adj_i, ivar_i, chi2_fit, ndim_fit, user_w, fitted_i, dim_prior):
    """Ratios model/data (N, S), normalised draw weights (N, S) and weight validity (N,) of one band.

    ``ivar_i`` is the band's inverse variance times its indicator in ``chi2_fit``
    (0 where the band is unobserved or not part of the leave-one-out likelihood).
    """
    band_chi2 = jnp.square(phot_adj_i[:, None] - flux_i) * ivar_i[:, None]
    lnw = leave_one_out_log_weights(chi2_fit, band_chi2, ndim_fit, dim_prior)
    # combined in log space, so that draws with zero user weight cannot set the scale (brutus multiplies
    # after exponentiating: its weights underflow to an all-zero row when those draws dominate ln w)
    lnw = jnp.where(fitted_i, lnw, 0.0) + jnp.log(user_w)
    top = jnp.max(lnw, axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = jnp.exp(lnw - top)
    wsum = jnp.sum(w, axis=1)
    good = jnp.isfinite(wsum) & (wsum > 0)
    w = jnp.where(good[:, None], w / jnp.where(good, wsum, 1.0)[:, None], 0.0)
    ratio = flux_i / phot_i[:, None]
    return ratio, w, good


@partial(jax.jit, static_argnames=("dim_prior",))
def _band_terms(i, flux, phot, phot_adj, ivar_loo, chi2_fit, ndim_fit, user_w, fitted, eligible, dim_prior):
    """Band i: ratios (N, S), normalised weights (N, S), used objects (N,), degenerate-weight count."""
    ratio, w, good = _band_ratios_weights(flux[i], phot[:, i], phot_adj[:, i], ivar_loo[:, i], chi2_fit, ndim_fit,
                                          user_w, fitted[i], dim_prior)
    return ratio, w, eligible[:, i] & good, jnp.sum(eligible[:, i] & ~good)


@partial(jax.jit, static_argnames=("n_bootstrap", "batch_size"))
def _band_bootstrap(key_data, ratio, w, used, n_bootstrap, batch_size):
    # compiled apart from _band_terms: changing dim_prior does not recompile the sampler
    meds = bootstrap_medians(jax.random.wrap_key_data(key_data, impl="rbg"), ratio, w, used, n_bootstrap,
                             batch_size)
    return meds, jnp.sum(used)


# ---------------------------------------------------------------------------------------------
# host layer
# ---------------------------------------------------------------------------------------------
def _band_key_data(rng, seed, nfilt):
    """Per-band RBG key data (Nfilt, 4) uint32 from None (-> ``seed`` or fresh entropy) / int /
    numpy Generator or RandomState / JAX key.  Band i's stream depends only on the seed and i."""
    if rng is None:
        rng = seed if seed is not None else np.random.SeedSequence().entropy
    if isinstance(rng, (bool, np.bool_)):
        raise ValueError(f"rng: expected a numpy Generator, an int seed or a JAX key, got {rng!r}")
    if isinstance(rng, (int, np.integer)):
        entropy = int(rng) % 2**128
    elif isinstance(rng, np.random.Generator):
        entropy = int(rng.integers(0, 2**63 - 1))
    elif isinstance(rng, np.random.RandomState):
        entropy = int(rng.randint(0, 2**31 - 1))
    else:
        try:
            key = jnp.asarray(rng)
            if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                key = jax.random.key_data(key)
            if key.dtype != jnp.uint32:
                raise TypeError
        except TypeError:
            raise ValueError("rng: expected a numpy Generator, an int seed or a JAX key, "
                             f"got {type(rng).__name__}") from None
        entropy = [int(x) for x in np.asarray(key).ravel()]
    return np.stack([np.random.SeedSequence(entropy, spawn_key=(i,)).generate_state(4, np.uint32)
                     for i in range(nfilt)])


def _per_filter(x, nfilt, name, dtype=float):
    arr = np.atleast_1d(np.asarray(x, dtype=dtype))
    if arr.shape != (nfilt,):
        raise ValueError(f"{name}: expected shape ({nfilt},), got {arr.shape}")
    return arr


def _check(phot, err, mask, models, idxs, reds, dreds, dists, sel, weights, validate):
    """Shape checks (always) and value checks (``validate``); returns the arrays as numpy."""
    phot = np.asarray(phot, dtype=float)
    if phot.ndim != 2:
        raise ValueError(f"phot: expected shape (Nobj, Nfilt), got {phot.shape}")
    nobj, nfilt = phot.shape
    err = np.asarray(err, dtype=float)
    mask = np.asarray(mask)
    for name, a in (("err", err), ("mask", mask)):
        if a.shape != phot.shape:
            raise ValueError(f"{name}: shape {a.shape} != phot shape {phot.shape}")
    models = np.asarray(models)
    if models.ndim != 3 or models.shape[1] != nfilt or models.shape[2] != 3:
        raise ValueError(f"models: expected shape (Nmodel, {nfilt}, 3), got {models.shape}")
    idxs = np.asarray(idxs)
    if idxs.ndim != 2 or idxs.shape[0] != nobj or idxs.shape[1] < 1:
        raise ValueError(f"idxs: expected shape ({nobj}, Nsamp >= 1), got {idxs.shape}")
    if not np.issubdtype(idxs.dtype, np.integer):
        raise ValueError(f"idxs: expected integer model indices, got dtype {idxs.dtype}")
    nsamp = idxs.shape[1]
    draws = []
    for name, a in (("reds", reds), ("dreds", dreds), ("dists", dists)):
        a = np.asarray(a, dtype=float)
        if a.shape != idxs.shape:
            raise ValueError(f"{name}: shape {a.shape} != idxs shape {idxs.shape}")
        draws.append(a)
    reds, dreds, dists = draws
    sel = np.ones(nobj, bool) if sel is None else np.asarray(sel)
    if sel.shape != (nobj,):
        raise ValueError(f"sel: expected shape ({nobj},), got {sel.shape}")
    weights = np.ones((nobj, nsamp)) if weights is None else np.asarray(weights, dtype=float)
    if weights.shape != (nobj, nsamp):
        raise ValueError(f"weights: shape {weights.shape} != idxs shape {idxs.shape}")
    if mask.dtype != bool:
        with np.errstate(invalid="ignore"):
            if not np.all(np.isin(mask, [0, 1])):
                raise ValueError("mask: must contain only 0/1 (or booleans)")
    if sel.dtype != bool:
        with np.errstate(invalid="ignore"):
            if not np.all(np.isin(sel, [0, 1])):
                raise ValueError("sel: must contain only 0/1 (or booleans)")
    mask, sel = mask.astype(bool), sel.astype(bool)
    if validate:
        if not np.all(np.isfinite(phot[mask])):
            raise ValueError("phot: non-finite values in observed (mask = 1) bands")
        with np.errstate(invalid="ignore"):
            if not np.all(err[mask] > 0):
                raise ValueError("err: must be positive in observed (mask = 1) bands")
        if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)):
            raise ValueError("weights: must be finite and >= 0")
        rows = sel
        if rows.any():
            ii = idxs[rows]
            if ii.min() < 0 or ii.max() >= models.shape[0]:
                raise ValueError(f"idxs: model indices must lie in [0, {models.shape[0]}) for objects in sel "
                                 f"(got {ii.min()}..{ii.max()}; failed fit rows hold -99: leave them out of sel)")
            for name, a in (("reds", reds), ("dreds", dreds)):
                if not np.all(np.isfinite(a[rows])):
                    raise ValueError(f"{name}: non-finite draws for objects in sel")
            with np.errstate(invalid="ignore"):
                if not np.all(np.isfinite(dists[rows]) & (dists[rows] > 0)):
                    raise ValueError("dists: draws must be finite and > 0 [kpc] for objects in sel")
    return phot, err, mask, models, idxs, reds, dreds, dists, sel, weights


def _setup(phot, err, mask, models, idxs, reds, dreds, dists, sel, weights, mask_fit, old_offsets, config,
           verbose=False):
    """Eligibility (host) and the device inputs of the per-band kernels (model fluxes computed here).

    Returns ``eligible`` (bool, Nobj x Nfilt), ``n_nonpos`` (objects left out for a
    non-positive flux, per band) and the argument tuple of :func:`_band_terms` after
    the band index (arrays padded to a whole number of chunks), or None when no
    object is eligible anywhere.
    """
    nobj, nfilt = phot.shape
    nsamp = idxs.shape[1]
    ndim_obs = mask.sum(axis=1)
    counts = np.where(mask_fit[None, :], ndim_obs[:, None] - mask, ndim_obs[:, None])
    min_bands = np.where(mask_fit, config.min_bands_used, config.min_bands_unused)
    base = mask & sel[:, None] & (counts >= min_bands[None, :]) & (weights.sum(axis=1) > 0)[:, None]
    with np.errstate(invalid="ignore"):
        eligible = base & (phot > 0)
    n_nonpos = (base & ~eligible).sum(axis=0)
    if not eligible.any():
        return eligible, n_nonpos, None
    dt = jnp.result_type(float)
    # rows outside sel never enter: give them harmless draws (they may hold fit placeholders)
    rows = np.flatnonzero(sel)
    uniq, inv = np.unique(idxs[rows], return_inverse=True)
    inv_all = np.zeros((nobj, nsamp), np.int32)
    inv_all[rows] = inv.reshape(rows.size, nsamp)
    red = np.where(sel[:, None], reds, 0.0)
    dred = np.where(sel[:, None], dreds, 3.3)
    dist = np.where(sel[:, None], dists, 1.0)
    loo = mask & (mask_fit[None, :] if config.loo_bands == "fitted" else True)
    phot_adj = np.where(mask, phot, 0.0) * old_offsets
    with np.errstate(divide="ignore", invalid="ignore"):
        ivar = 1.0 / (np.where(mask, err, 1.0) ** 2 * old_offsets**2)
    ivar_loo = np.where(loo, ivar, 0.0)
    chunk = int(max(1, min(nobj, _SED_CHUNK_ROWS // nsamp)))
    npad = -(-nobj // chunk) * chunk
    pad = lambda x, v=0: np.concatenate([x, np.full((npad - nobj,) + x.shape[1:], v, x.dtype)])  # noqa: E731
    j = lambda x: jnp.asarray(x, dt)  # noqa: E731
    if verbose:
        print(f"photometric_offsets: model fluxes of {nobj} x {nsamp} draws ...", file=sys.stderr)
    flux, chi2_fit = _model_fluxes(j(models[uniq]), jnp.asarray(pad(inv_all)), j(pad(red)), j(pad(dred, 3.3)),
                                   j(pad(dist, 1.0)), j(pad(phot_adj)), j(pad(ivar_loo)), chunk=chunk)
    args = (flux, j(pad(np.where(mask, phot, 1.0), 1.0)), j(pad(phot_adj)), j(pad(ivar_loo)), chi2_fit,
            jnp.asarray(pad(loo.sum(axis=1))), j(pad(weights)), jnp.asarray(mask_fit),
            jnp.asarray(pad(eligible, False)))
    return eligible, n_nonpos, args


def _summary(meds, method):
    off = float(np.median(meds))
    if method == "bootstrap_std":
        return off, float(np.std(meds))
    q25, q75 = np.percentile(meds, [25, 75])
    return off, float((q75 - q25) / _IQR_TO_SIGMA)


def photometric_offsets(phot, err, mask, models, idxs, reds, dreds, dists, sel=None, weights=None, mask_fit=None,
                        old_offsets=None, dim_prior=True, prior_mean=None, prior_std=None, verbose=True, config=None,
                        rng=None):
    """Multiplicative photometric offsets (model / data) per band, with bootstrap errors.

    Same arguments, defaults and returns as ``brutus.analysis.photometric_offsets``
    (astro-brutus 1.2.0); see the module docstring for the algorithm and the
    few deviations.

    Parameters
    ----------
    phot, err : array (Nobj, Nfilt)
        Observed fluxes [maggies] and their errors; in unobserved bands any
        placeholder (NaN, 0) is allowed.  Observed errors must be > 0.
    mask : array (Nobj, Nfilt) of 0/1 or bool
        Observed bands.
    models : array (Nmodel, Nfilt, 3)
        Magnitude coefficients ``(m0, a, b)`` at 1 kpc (``StarGrid.models``).
    idxs : int array (Nobj, Nsamp)
        Model index of each posterior draw.
    reds, dreds : arrays (Nobj, Nsamp)
        A_V [mag] and R_V of each draw.
    dists : array (Nobj, Nsamp)
        Distance of each draw [kpc] (> 0).
    sel : bool array (Nobj,), optional
        Objects that may be used (default all).
    weights : array (Nobj, Nsamp), optional
        Non-negative draw weights (default uniform).
    mask_fit : bool array (Nfilt,), optional
        Bands that were used in the fit (default all): their draws are
        reweighted to the leave-one-out posterior.
    old_offsets : array (Nfilt,), optional
        Offsets the draws were fitted with (default 1): the data entering the
        leave-one-out likelihoods are ``phot * old_offsets``.  The returned
        offsets are absolute (they replace ``old_offsets``).
    dim_prior : bool
        Likelihood convention of the leave-one-out ratio: chi-square density
        (True, brutus's default, matches v0.8-style fits) or Gaussian (False,
        the exact ratio for draws of brutus >= 1.0 / brutus_jax ``BruteForce``).
    prior_mean, prior_std : arrays (Nfilt,), optional
        Gaussian prior on the offsets (both or neither; ``prior_std > 0``).
    verbose : bool
        Progress bar over bands and warnings on stderr.
    config : PhotometricOffsetsConfig, optional
    rng : numpy Generator / RandomState, int seed or JAX PRNG key, optional
        Default ``config.random_seed`` (None: fresh entropy).  Results are
        reproducible for a given seed / key.

    Returns
    -------
    offsets : float64 array (Nfilt,)
        Multiply the data by these.  1.0 for bands with no usable object (or
        ``prior_mean`` when a prior is given).
    offset_errors : float64 array (Nfilt,)
        ``inf`` for bands with no usable object (``prior_std`` with a prior).
    n_objects_used : int array (Nfilt,)
        Objects that informed each band (0 where none).
    """
    if config is None:
        config = PhotometricOffsetsConfig()
    elif not isinstance(config, PhotometricOffsetsConfig):
        raise ValueError(f"config: expected a PhotometricOffsetsConfig, got {type(config).__name__}")
    phot, err, mask, models, idxs, reds, dreds, dists, sel, weights = _check(
        phot, err, mask, models, idxs, reds, dreds, dists, sel, weights, config.validate_inputs)
    nfilt = phot.shape[1]
    mask_fit = np.ones(nfilt, bool) if mask_fit is None else _per_filter(mask_fit, nfilt, "mask_fit", bool)
    old_offsets = np.ones(nfilt) if old_offsets is None else _per_filter(old_offsets, nfilt, "old_offsets")
    if not np.all(np.isfinite(old_offsets) & (old_offsets > 0)):
        raise ValueError("old_offsets: must be finite and > 0")
    if (prior_mean is None) != (prior_std is None):
        raise ValueError("prior_mean and prior_std must be provided together")
    if prior_mean is not None:
        prior_mean = _per_filter(prior_mean, nfilt, "prior_mean")
        prior_std = _per_filter(prior_std, nfilt, "prior_std")
        if not np.all(np.isfinite(prior_mean)):
            raise ValueError("prior_mean: must be finite")
        if not np.all(np.isfinite(prior_std) & (prior_std > 0)):
            raise ValueError("prior_std: must be finite and > 0")
    key_data = _band_key_data(rng, config.random_seed, nfilt)
    say = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)  # noqa: E731

    eligible, n_nonpos, args = _setup(phot, err, mask, models, idxs, reds, dreds, dists, sel, weights, mask_fit,
                                      old_offsets, config, verbose and config.progress_interval > 0)
    offsets = np.ones(nfilt)
    offset_errors = np.zeros(nfilt)
    n_used = np.zeros(nfilt, dtype=np.int64)
    bands = np.flatnonzero(eligible.any(axis=0))
    if bands.size:
        npad = args[0].shape[1]
        batch = (int(max(1, min(config.n_bootstrap, _BOOT_BATCH_ELEMENTS // npad)))
                 if config.use_vectorized_bootstrap else 1)
        from tqdm.auto import tqdm

        for i in tqdm(bands, desc="photometric_offsets", unit="band", file=sys.stderr,
                      disable=not (verbose and config.progress_interval > 0)):
            ratio, w, used, n_degenerate = _band_terms(int(i), *args, dim_prior=bool(dim_prior))
            meds, n_i = _band_bootstrap(key_data[i], ratio, w, used, n_bootstrap=config.n_bootstrap,
                                        batch_size=batch)
            n_used[i] = int(n_i)
            if int(n_degenerate):
                say(f"  Warning: excluded {int(n_degenerate)} objects with degenerate weights for filter {i + 1}")
            if n_used[i] > 0:
                offsets[i], offset_errors[i] = _summary(np.asarray(meds, dtype=np.float64),
                                                        config.uncertainty_method)
    for i in range(nfilt):
        if n_nonpos[i]:
            say(f"  Warning: excluded {int(n_nonpos[i])} objects with non-positive flux for filter {i + 1}")
        if n_used[i] == 0:
            say(f"  Warning: no usable objects for filter {i + 1}: offset 1 (or the prior)")
    bad = (n_used > 0) & ~(np.isfinite(offsets) & np.isfinite(offset_errors))
    if bad.any():
        warnings.warn(f"photometric_offsets: non-finite offsets for filters {np.flatnonzero(bad).tolist()} "
                      "(non-finite model fluxes?)", RuntimeWarning, stacklevel=2)

    estimated = n_used > 0
    if prior_mean is not None:
        var = offset_errors**2 + prior_std**2
        combined = (offsets * prior_std**2 + prior_mean * offset_errors**2) / var
        combined_err = offset_errors * prior_std / np.sqrt(var)
        offsets = np.where(estimated, combined, prior_mean)
        offset_errors = np.where(estimated, combined_err, prior_std)
    else:
        offset_errors = np.where(estimated, offset_errors, np.inf)
    return offsets, offset_errors, n_used


# the fit-file path lives in offsets_io (module size)
from .offsets_io import offsets_from_fit, read_fit_draws, write_offsets  # noqa: E402,F401
