r"""Per-model (scale, A_V, R_V) fit of one star against a whole model grid.

This is the optimiser inside brutus's ``BruteForce.loglike_grid`` (astro-brutus
1.2.0) as pure JAX kernels: for ONE star it fits, for EVERY model of the grid,
the scale factor ``s = 1/d_kpc^2``, the extinction ``A_V`` and the curve shape
``R_V``, and returns the per-model log-likelihood, chi-square, best-fit values
and the 3x3 precision (Fisher) matrix in ``(s, A_V, R_V)``.  `fit_star` is
written to be ``jax.vmap``-ed over stars; `fit_stars` is the jitted batch
version (one compile per ``(Nstar, Nfilt, Nmodel)`` shape and dtype).

Forward model (brutus conventions): per model and band the magnitude at 1 kpc
is ``m = m0 + A_V (a + b R_V)`` and the flux ``f = exp(c m)`` with
``c = -0.4 ln 10``; the data flux is modelled as ``s f``.

Algorithm (brutus 1.2.0 semantics, see ALGORITHMS.md 3.3-3.6)
---------------------------------------------------------------
1. **Magnitude stage.**  Start every model at ``(A_V, R_V) = (av_gauss[0],
   rv_gauss[0])``; repeat alternating linearised A_V and R_V Newton steps in
   magnitude space (distance modulus eliminated analytically, Gaussian priors
   ``av_gauss``/``rv_gauss``, steps clipped to ``avlim``/``rvlim``) until
   ``max(|dA_V|, |dR_V|) < 2.5 ltol`` over the models whose magnitude-space
   ``logwt = -chi2_mag/2`` (residuals at 1 kpc, i.e. *including* the distance
   modulus, as brutus does) is within ``ln(init_thresh)`` of the best.  Then
   the linear-least-squares scale and the Fisher matrix at the final point.
2. **Selection.**  ``lnl = -chi2/2`` (flux chi-square); with a finite parallax
   ``lnl_p = lnl - (sqrt(s) - parallax)^2 / (2 parallax_err^2)``; models with
   ``lnl_p > max(lnl_p) + ln(init_thresh)`` go on to the flux stage
   (``init_thresh=None``: all models).  The parallax enters ONLY here.
3. **Flux stage** (selected models).  Repeat one damped pair of independent
   1-D Gauss-Newton steps in A_V and R_V at fixed scale followed by a new scale
   / Fisher matrix, until ``max |lnl_new - lnl_old| <= ltol`` over the selected
   models within ``ln(ltol_subthresh)`` of the best ``lnl_new``; a model whose
   ``lnl`` decreased has its step size divided by 1.2.  At least two flux
   steps are always made.
4. **Output.**  Flux-stage models get the normalised Gaussian log-likelihood
   ``-chi2/2 - (Ndim ln 2pi + sum ln sigma^2)/2``; the other models keep the
   magnitude-stage ``-chi2/2`` WITHOUT the normalisation (brutus gotcha 3).
   With ``dim_prior`` every model gets ``-(3 - Ndim) ln(Ndim) / 2``.

Static vs traced arguments
--------------------------
Everything numeric is a traced value when passed as an argument of a jitted
function (see `fit_stars`): ``avlim, av_gauss, rvlim, rv_gauss, ltol,
ltol_subthresh, init_thresh, max_iter_mag, max_iter_flux, dim_prior``, the
parallax and the data.  Changing any of them does not recompile.  `fit_stars`
also turns the ``None`` options into values (``av_gauss``/``rv_gauss`` ->
their flat defaults, ``init_thresh=None`` -> ``select_all=True``,
``model_mask=None`` -> all True) before the compiled call, so the only things
that recompile are the shapes ``(Nstar, Nfilt, Nmodel)`` and the dtype.
(Calling `fit_star` under your own ``jit``, ``None`` is an empty pytree, i.e.
static: ``None`` vs a value traces twice.)

Deviations from brutus 1.2.0 (all documented in `fit_star`)
-------------------------------------------------------------
* Iteration caps ``max_iter_mag``/``max_iter_flux`` (brutus loops without a
  bound); `GridFit` reports the counts and whether both criteria were met.
* ``init_thresh=None`` crashes brutus 1.2.0 (``log(None)`` inside numba); here
  it sends all models to the flux stage and the magnitude stage's convergence
  set uses 5e-3 (the default of brutus's ``_optimize_fit_mag``).
* ``Ndim == 0`` (brutus raises ``ValueError``) returns ``lnl = -inf``,
  ``ndim = 0`` and NaN-free placeholders; the loops do not run.
* NaN per-model values are ignored by the maxima that drive the selections and
  convergence tests (as brutus's serial magnitude-stage scans do); brutus's
  flux stage would propagate them and crash.  A parallax with
  ``parallax_err <= 0`` is treated as absent (brutus gives ``-inf`` everywhere
  and crashes on an empty selection).
* The magnitude-stage residuals are recomputed from the coefficients at every
  iteration instead of being updated in place, and the R_V step's sums at the
  residuals updated by the A_V step are derived from the A_V step's sums (one
  pass over the grid for both steps; identical up to rounding).
* `fit_star` freezes the models outside the flux-stage selection at their
  magnitude-stage ``(A_V, R_V)`` inside the (static-shape) flux loop, and ONE
  final scale / Fisher evaluation serves all models; brutus evaluates the two
  sets separately, as the staged path (`fit_star_mag` ... `fit_star_finish`)
  does.  Same numbers (the evaluation depends on ``(A_V, R_V)`` only).
* brutus's ``indices`` (fit a subset of models) is ``model_mask``; its
  ``av_init``/``rv_init`` (never used by ``BruteForce.fit``) are not offered.

Layout and performance
----------------------
The grid is band-major (`BandMajorGrid`, ``(Nfilt, Nmodel)`` per coefficient)
and every band loop is an unrolled Python loop (Nfilt is static), so the work
is elementwise over models; the 3x3 algebra is closed form (no
``jnp.linalg``).  XLA:CPU has no multi-output fusion, so a cheap chain with
several consumers is re-evaluated in each of them; `_materialise` forces the
shared ones (band weights, chi-squares, precision entries) into buffers.
Cost per star and iteration is a few elementwise passes (7 exponentials per
model and flux step); the magnitude stage takes ~2 iterations and the flux
stage 2 with the default R_V prior (up to ~55 / 15 with a flat R_V prior on
the test stars).  The dtype of the computation is ``result_type(grid, flux,
err)`` (float32 grid + float32 data stay float32); constants are Python floats.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .seds import FLUX_FACTOR

__all__ = ["BandMajorGrid", "GridFit", "to_band_major", "fit_star", "fit_stars", "MagStage", "fit_star_mag",
           "FluxStage", "fit_star_flux", "merge_flux", "fit_star_finish", "DEFAULT_MAX_ITER_MAG",
           "DEFAULT_MAX_ITER_FLUX"]

#: Iteration cap of the magnitude stage.  brutus has none; with the default
#: R_V prior it stops after 1-2 iterations on the test stars, after up to ~55
#: with a flat R_V prior, so the cap only stops pathological stars from
#: holding a vmapped batch (a vmapped while_loop runs until its slowest star).
DEFAULT_MAX_ITER_MAG = 100
#: Iteration cap of the flux stage (brutus: none; 2-15 steps on the test stars).
DEFAULT_MAX_ITER_FLUX = 100

#: brutus's floor on the scale factor (MIN_SCALE).
_MIN_SCALE = 1e-20
#: brutus's step-size damping factor of the flux stage.
_RESCALING = 1.2
#: magnitude-stage convergence set used with ``init_thresh=None``
#: (the default of brutus's ``_optimize_fit_mag``).
_MAG_THRESH_DEFAULT = 5e-3
#: (2.5 / ln 10)^2: magnitude variance = POGSON2 * var / flux^2.
_POGSON2 = (2.5 / math.log(10.0)) ** 2
_LN_2PI = math.log(2.0 * math.pi)
#: magnitude variance brutus assigns to bands with a non-positive flux.
_BAD_MAG_VAR = 1e50


class BandMajorGrid(NamedTuple):
    """Model grid coefficients in band-major layout.

    Attributes
    ----------
    m0, a, b : arrays (Nfilt, Nmodel)
        Unreddened magnitude at 1 kpc, reddening vector at R_V = 0 and its
        R_V slope, per band (rows) and model (columns):
        ``m = m0 + A_V (a + b R_V)``.
    """

    m0: jax.Array
    a: jax.Array
    b: jax.Array

    @property
    def nfilt(self):
        return self.m0.shape[0]

    @property
    def nmodel(self):
        return self.m0.shape[1]


def to_band_major(models, dtype=None):
    """Host helper: brutus's ``(Nmodel, Nfilt, 3)`` coefficients -> `BandMajorGrid`.

    Parameters
    ----------
    models : array_like (Nmodel, Nfilt, 3)
        ``(m0, a, b)`` per model and band (e.g. ``load_models``' output, or
        ``models[:, band_subset]``).
    dtype : numpy dtype, optional
        dtype of the device arrays (default: that of ``models``).

    Returns
    -------
    BandMajorGrid with three contiguous (Nfilt, Nmodel) device arrays.
    """
    models = np.asarray(models)
    if models.ndim != 3 or models.shape[-1] != 3:
        raise ValueError(f"models must have shape (Nmodel, Nfilt, 3), got {models.shape}")
    dtype = models.dtype if dtype is None else np.dtype(dtype)
    return BandMajorGrid(*(jnp.asarray(np.ascontiguousarray(models[:, :, k].T), dtype=dtype) for k in range(3)))


class GridFit(NamedTuple):
    """Per-model fit of one star (leading star axis added by `fit_stars`).

    Attributes
    ----------
    lnl : (Nmodel,) log-likelihood (brutus ``lnl``; ``-inf`` when ``ndim == 0``
        and for models excluded by ``model_mask``).
    ndim : () int32, number of bands used.
    chi2 : (Nmodel,) flux chi-square at the best fit.
    scale : (Nmodel,) best-fit scale factor ``s = 1/d_kpc^2`` (>= 1e-20).
    av, rv : (Nmodel,) best-fit A_V [mag] and R_V.
    icov : (Nmodel, 3, 3) precision matrix over ``(s, A_V, R_V)``.
    flux_stage : (Nmodel,) bool, models that went through the flux stage
        (brutus's ``init_sel``); the others carry magnitude-stage values.
    n_iter_mag, n_iter_flux : () int32, iterations made by each stage.
    converged : () bool, both stages met brutus's criteria within the caps
        (False when ``ndim == 0``).
    """

    lnl: jax.Array
    ndim: jax.Array
    chi2: jax.Array
    scale: jax.Array
    av: jax.Array
    rv: jax.Array
    icov: jax.Array
    flux_stage: jax.Array
    n_iter_mag: jax.Array
    n_iter_flux: jax.Array
    converged: jax.Array


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _materialise(x, one):
    """``x / one`` with ``one`` a runtime 1.0: an exact identity.

    XLA:CPU has no multi-output fusion: a cheap elementwise chain with several
    consumers (e.g. a chi-square feeding a maximum, a selection and the loop
    carry) is re-evaluated inside every consumer.  A floating-point divide by
    a value the compiler cannot fold counts as "expensive", so the chain is
    computed once into a buffer instead (this halved the per-model operation
    count of a flux-stage iteration in the compiled HLO).
    """
    return x / one


def _masked_max(x, keep, axis=None):
    """max of ``x`` over ``keep`` (NaN ignored; over ``axis``, default all); ``-inf`` when nothing is kept."""
    return jnp.max(jnp.where(keep & (x == x), x, -jnp.inf), axis=axis)


class _ScaleFit(NamedTuple):
    """Per-model results of `_scale_fit` (brutus's ``_get_sed_mle``)."""

    scale: jax.Array
    chi2: jax.Array
    # flux-stage step terms, with R~ = s df/dA_V, D~ = s c f b, r = F - s f:
    grad_av: jax.Array  # sum R~ r w
    curv_av: jax.Array  # sum R~^2 w
    grad_rv: jax.Array  # sum D~ r w
    curv_rv: jax.Array  # sum D~^2 w


def _scale_fit(grid, flux, w, av, rv, with_icov, av_ivar, rv_ivar, one):
    """Linear-LS scale, residual chi-square and Fisher terms at (A_V, R_V).

    brutus's ``_get_sed_mle``: ``s = sum f F w / sum f^2 w`` (floored at
    1e-20), ``chi2 = sum (F - s f)^2 w`` and the Gauss-Newton Fisher matrix of
    the flux chi-square in ``(s, A_V, R_V)`` plus the A_V / R_V prior
    precisions.  ``flux``/``w`` are tuples of per-band scalars (data flux,
    inverse variance, 0 for unused bands); ``av``/``rv`` are (Nmodel,).
    Returns `_ScaleFit` and, with ``with_icov``, the 6 distinct entries
    ``(I_ss, I_sA, I_sR, I_AA, I_RR, I_AR)`` of the precision matrix.
    """
    nf = len(flux)
    f, g, h = [], [], []
    sff = sfF = 0.0
    for j in range(nf):
        red = grid.a[j] + rv * grid.b[j]
        fj = jnp.exp(FLUX_FACTOR * (grid.m0[j] + av * red))
        cf = FLUX_FACTOR * fj
        f.append(fj)
        g.append(cf * red)  # df/dA_V (unscaled)
        h.append(cf * grid.b[j])  # (df/dR_V) / A_V (unscaled)
        fw = fj * w[j]
        sff = sff + fj * fw
        sfF = sfF + flux[j] * fw
    # Ndim == 0 gives sff == 0: keep it NaN-free (brutus raises earlier).
    scale = sfF / jnp.where(sff > 0.0, sff, 1.0)
    scale = jnp.where(scale <= _MIN_SCALE, _MIN_SCALE, scale)

    chi2 = ga = ha = gr = hr = 0.0
    sfg = sfh = sgh = 0.0
    for j in range(nf):
        r = flux[j] - scale * f[j]
        rw = r * w[j]
        chi2 = chi2 + r * rw
        gs = scale * g[j]
        hs = scale * h[j]
        gsw = gs * w[j]
        hsw = hs * w[j]
        ga = ga + gs * rw
        ha = ha + gs * gsw
        gr = gr + hs * rw
        hr = hr + hs * hsw
        if with_icov:
            sfg = sfg + f[j] * gsw  # s f g w
            sfh = sfh + f[j] * hsw  # s f h w
            sgh = sgh + gs * hsw  # s^2 g h w
    mle = _ScaleFit(scale, _materialise(chi2, one), ga, ha, gr, hr)
    if not with_icov:
        return mle
    i00 = sff
    i01 = sfg
    i02 = av * sfh
    i11 = ha + av_ivar
    i22 = av * av * hr + rv_ivar
    i12 = av * sgh
    return mle, (i00, i01, i02, i11, i22, i12)


def _icov_matrix(entries, one):
    """(Nmodel, 3, 3) symmetric matrices from their six distinct entries."""
    # Each entry is materialised first: otherwise XLA:CPU fuses every entry's
    # producer chain into the interleaving concatenate, which then runs
    # branchy and unvectorised (profiled: ~30 % of a single-star call);
    # stacking on a leading axis + transpose instead costs a slow strided copy.
    i00, i01, i02, i11, i22, i12 = (_materialise(x, one) for x in entries)
    m = jnp.stack([i00, i01, i02, i01, i11, i12, i02, i12, i22], axis=-1)
    return m.reshape(m.shape[:-1] + (3, 3))


# ---------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------


def fit_star(
    grid,
    flux,
    err,
    mask,
    parallax=float("nan"),
    parallax_err=float("nan"),
    avlim=(0.0, 20.0),
    av_gauss=(0.0, 1e6),
    rvlim=(1.0, 8.0),
    rv_gauss=(3.32, 0.18),
    dim_prior=True,
    ltol=0.03,
    ltol_subthresh=0.01,
    init_thresh=0.005,
    max_iter_mag=DEFAULT_MAX_ITER_MAG,
    max_iter_flux=DEFAULT_MAX_ITER_FLUX,
    model_mask=None,
    select_all=False,
):
    """Fit (scale, A_V, R_V) of every model to one star (brutus ``loglike_grid``).

    Pure and traceable: ``jax.vmap`` over the star arguments (``flux, err,
    mask, parallax, parallax_err``) with the grid and options unbatched, then
    ``jax.jit`` (or use `fit_stars`).

    Parameters
    ----------
    grid : BandMajorGrid
        Coefficients, each (Nfilt, Nmodel).
    flux, err : (Nfilt,)
        Observed fluxes and 1-sigma errors [maggies].
    mask : (Nfilt,) bool
        Bands to use.  Bands with non-finite ``flux``/``err`` or ``err <= 0``
        are dropped as well (zero weight; shapes stay static).  Bands with a
        non-positive flux are kept (weight ~0 in the magnitude stage, normal
        in the flux stage), as in brutus.
    parallax, parallax_err : scalar [mas]
        NaN (or ``parallax_err <= 0``) = no parallax.  Only used to select the
        models entering the flux stage.
    avlim, rvlim : pair
        Bounds on A_V and R_V.
    av_gauss, rv_gauss : pair or None
        (mean, std) of the Gaussian priors on A_V and R_V; also the starting
        point of every model.  None means (0, 1e6) and (3.32, 1e6) (flat).
    dim_prior : bool (may be traced)
        Add brutus 1.2's constant ``-(3 - Ndim) ln(Ndim) / 2``.
    ltol : scalar
        Flux-stage tolerance on the change of lnl; the magnitude stage uses
        ``2.5 ltol`` on max(|dA_V|, |dR_V|).
    ltol_subthresh : scalar
        Flux-stage convergence set: models within ``ln(ltol_subthresh)`` of
        the best.
    init_thresh : scalar or None
        Magnitude-stage convergence set and flux-stage selection threshold
        (fraction of the best likelihood).  None: every model enters the flux
        stage (brutus 1.2.0 crashes on None; the magnitude-stage convergence
        set then uses 5e-3).  Same as ``init_thresh=5e-3, select_all=True``.
    max_iter_mag, max_iter_flux : int (may be traced)
        Iteration caps (brutus has none); see `GridFit.converged`.
    model_mask : (Nmodel,) bool or None
        Models to fit (e.g. False for padding rows).  Excluded models take no
        part in any maximum / selection / convergence test and get
        ``lnl = -inf``.  None: all models (like brutus without ``indices``).
    select_all : bool (may be traced)
        Send every model to the flux stage (no culling; ``init_thresh`` then
        only sets the magnitude-stage convergence set).

    Returns
    -------
    GridFit
        ``lnl, ndim, chi2, scale, av, rv, icov`` exactly as brutus's
        ``loglike_grid(..., return_vals=True)`` returns ``lnl, Ndim, chi2,
        scale, av, rv, icov_sar``, plus ``flux_stage``, ``n_iter_mag``,
        ``n_iter_flux`` and ``converged``.  When no band is usable
        (``ndim == 0``): ``lnl = -inf``, ``chi2 = 0``, ``scale = 1e-20``,
        ``av, rv`` = prior means, ``icov = diag(0, 1/sig_A^2, 1/sig_R^2)``,
        ``converged = False``; nothing is NaN.
    """
    c = _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh,
               select_all, model_mask)
    mag = _mag_stage(c, parallax, parallax_err, max_iter_mag)
    av, rv, n_flux, lerr = _flux_stage(c, c.grid, mag.av, mag.rv, mag.active, max_iter_flux)
    return _finish(c, av, rv, mag, n_flux, lerr, dim_prior)


class MagStage(NamedTuple):
    """State after the magnitude stage and the flux-stage selection of one star:
    (Nmodel,) ``av, rv``, ``active`` (the models sent to the flux stage) and, at
    (av, rv), ``scale, chi2`` and ``icov`` (`_scale_fit`'s six entries) or/and the
    marginal ``scale_err`` (None: not computed); () ``n_active, n_iter_mag, err_mag``."""

    av: jax.Array
    rv: jax.Array
    active: jax.Array
    n_active: jax.Array
    n_iter_mag: jax.Array
    err_mag: jax.Array
    scale: jax.Array
    chi2: jax.Array
    icov: tuple = None
    scale_err: jax.Array = None


class _Setup(NamedTuple):
    grid: BandMajorGrid
    dtype: object
    F: tuple
    W: tuple
    M: tuple
    WM: tuple
    one: jax.Array
    ndim: jax.Array
    has_data: jax.Array
    log_norm: jax.Array
    valid: jax.Array
    av_min: jax.Array
    av_max: jax.Array
    rv_min: jax.Array
    rv_max: jax.Array
    av_mean: jax.Array
    rv_mean: jax.Array
    av_ivar: jax.Array
    rv_ivar: jax.Array
    ltol: jax.Array
    ln_subthresh: jax.Array
    ln_init_thresh: jax.Array
    select_all: jax.Array


def _setup(grid, flux, err, mask, avlim, av_gauss, rvlim, rv_gauss, ltol, ltol_subthresh, init_thresh,
           select_all, model_mask):
    """Per-star constants shared by the stages (band weights, priors, bounds).

    ``flux, err, mask`` (Nfilt,): one star.  (S, Nfilt): S stars in the star-minor
    layout of `fit_stars_mag`: every per-star value is (S,), the grid's rows and
    ``valid`` get a trailing axis ((Nmodel, 1)), so per-model arrays broadcast to
    (Nmodel, S); the options stay shared scalars."""
    dtype = jnp.result_type(grid.m0, flux, err, float)

    def cast(x):
        return jnp.asarray(x, dtype=dtype)

    nfilt, nmodel = grid.m0.shape
    flux = cast(flux)
    err = cast(err)
    if flux.ndim not in (1, 2) or flux.shape[-1] != nfilt or err.shape != flux.shape:
        raise ValueError(f"flux/err must have shape ({nfilt},) or (S, {nfilt}), got {flux.shape}, {err.shape}")
    star_minor = flux.ndim == 2
    grid = BandMajorGrid(*(cast(x)[:, :, None] if star_minor else cast(x) for x in grid))
    if av_gauss is None:
        av_gauss = (0.0, 1e6)
    if rv_gauss is None:
        rv_gauss = (3.32, 1e6)
    if init_thresh is None:
        init_thresh, select_all = _MAG_THRESH_DEFAULT, True
    valid = jnp.ones((nmodel,), bool) if model_mask is None else jnp.asarray(model_mask, bool)
    if star_minor:
        valid = valid[:, None]

    # ---- band weights (static shape, NaN-safe) ---------------------------
    used = (jnp.asarray(mask) != 0) & jnp.isfinite(flux) & jnp.isfinite(err) & (err > 0.0)
    ndim = jnp.sum(used, axis=-1, dtype=jnp.int32)
    has_data = ndim > 0
    nd1 = jnp.maximum(ndim, 1).astype(dtype)
    one = nd1 / nd1  # exactly 1.0, unknown to the compiler (see _materialise)
    fl = jnp.where(used, flux, 0.0)
    var = jnp.where(used, err * err, 1.0)
    w = jnp.where(used, 1.0 / var, 0.0)
    log_norm = 0.5 * (ndim.astype(dtype) * _LN_2PI + jnp.sum(jnp.where(used, jnp.log(var), 0.0), axis=-1))
    # magnitudes; non-positive fluxes get mag 0 and variance 1e50 (brutus)
    pos = used & (flux > 0.0)
    fpos = jnp.where(pos, flux, 1.0)
    mag = jnp.where(pos, -2.5 * jnp.log10(fpos), 0.0)
    wmag = jnp.where(pos, fpos * fpos / (_POGSON2 * var), 1.0 / _BAD_MAG_VAR)
    wmag = jnp.where(used, wmag, 0.0)
    # Materialise the per-band values: unbatched, XLA:CPU otherwise re-derives
    # every band weight from (flux, err, mask) inside each per-model loop
    # (measured 1.5x slower single-star calls).
    fl, w, mag, wmag = (_materialise(x, one[..., None]) for x in (fl, w, mag, wmag))
    return _Setup(
        grid=grid, dtype=dtype,
        F=tuple(fl[..., j] for j in range(nfilt)), W=tuple(w[..., j] for j in range(nfilt)),
        M=tuple(mag[..., j] for j in range(nfilt)), WM=tuple(wmag[..., j] for j in range(nfilt)),
        one=one, ndim=ndim, has_data=has_data, log_norm=log_norm, valid=valid,
        av_min=cast(avlim[0]), av_max=cast(avlim[1]), rv_min=cast(rvlim[0]), rv_max=cast(rvlim[1]),
        av_mean=cast(av_gauss[0]), rv_mean=cast(rv_gauss[0]),
        av_ivar=1.0 / cast(av_gauss[1]) ** 2, rv_ivar=1.0 / cast(rv_gauss[1]) ** 2,
        ltol=cast(ltol), ln_subthresh=jnp.log(cast(ltol_subthresh)), ln_init_thresh=jnp.log(cast(init_thresh)),
        select_all=jnp.asarray(select_all, bool),
    )  # fmt: skip


def _mag_stage(c, parallax, parallax_err, max_iter_mag, final=None):
    """Magnitude stage over all models, then the flux-stage selection.  ``final``
    (static): None or ``final(entries, one) -> (icov, scale_err)`` of `MagStage`,
    from `_scale_fit`'s six precision entries at the final point.  ``c`` of one star
    or of S stars in the star-minor layout (`_setup`): per-model arrays (Nmodel,) or
    (Nmodel, S), reductions over axis 0, per-star results () or (S,)."""
    grid, dtype, WM, M = c.grid, c.dtype, c.WM, c.M
    nfilt, nmodel = grid.m0.shape[:2]
    av_ivar, rv_ivar, av_mean, rv_mean = c.av_ivar, c.rv_ivar, c.av_mean, c.rv_mean
    mag_tol = 2.5 * c.ltol
    s_sum = sum(WM)  # S = sum w (same for every model)
    p_sum = q_sum = 0.0
    for j in range(nfilt):
        bw = grid.b[j] * WM[j]
        p_sum = p_sum + grid.b[j] * bw  # sum D^2 w
        q_sum = q_sum + bw  # sum D w

    def mag_step(av, rv):
        """One A_V step then one R_V step of every model: ONE pass over the grid.  The
        R_V step's sums at the updated residuals ``res - dA_V red`` follow from the
        A_V step's sums (``sum w res' = sum w res - dA_V sum w red``, likewise with
        ``b``), so the grid is read once."""
        a_den = av_ivar
        sa = rs = rb = db = 0.0  # sum w red, sum w res, sum w res b, sum w red b
        ra = (av_mean - av) * av_ivar
        for j in range(nfilt):
            rj = grid.a[j] + rv * grid.b[j]
            resj = M[j] - (grid.m0[j] + av * rj)
            rjw = rj * WM[j]
            resw = resj * WM[j]
            a_den = a_den + rj * rjw
            sa = sa + rjw
            rs = rs + resw
            ra = ra + resj * rjw
            rb = rb + resw * grid.b[j]
            db = db + rjw * grid.b[j]
        dav = (s_sum * ra - sa * rs) / (s_sum * a_den - sa * sa)
        av_new = av + jnp.clip(dav, c.av_min - av, c.av_max - av)
        dav = av_new - av
        # R_V step at the new A_V, with the updated residuals
        rs = rs - dav * sa
        rb = rb - dav * db
        r_den = p_sum * av_new * av_new + rv_ivar
        sr = q_sum * av_new
        rr = rb * av_new + (rv_mean - rv) * rv_ivar
        drv = (s_sum * rr - sr * rs) / (s_sum * r_den - sr * sr)
        return av_new, rv + jnp.clip(drv, c.rv_min - rv, c.rv_max - rv)

    def mag_logwt(av, rv):
        """-chi2/2 of the magnitudes at 1 kpc (distance modulus NOT fitted, as brutus)."""
        chi2 = 0.0
        for j in range(nfilt):
            rj = M[j] - (grid.m0[j] + av * (grid.a[j] + rv * grid.b[j]))
            chi2 = chi2 + rj * rj * WM[j]
        return -0.5 * chi2

    def mag_err(state):
        """max(|dA_V|, |dR_V|) of the last step over the models within ln(init_thresh) of the best."""
        _, it, logwt, step = state
        near = c.valid & (logwt > _masked_max(logwt, c.valid, axis=0) + c.ln_init_thresh)
        return jnp.where(it == 0, jnp.inf, _masked_max(step, near, axis=0))

    def mag_cond(state):
        # brutus stops when err < tol; a NaN err (impossible: NaN is masked) would stop too
        return c.has_data & (state[1] < max_iter_mag) & (mag_err(state) >= mag_tol)

    def mag_body(state):
        # Two passes over the grid per iteration: the steps, then logwt at the new point.
        # XLA:CPU has no multi-output fusion, so every per-model output of the body is
        # its own fusion and re-reads the grid: (A_V, R_V) travel as ONE complex array
        # (one fusion for both steps, the shared divisions computed once); logwt is a
        # loop carry read by the convergence test (`mag_err`) in the loop condition; the
        # step size is the difference of the carried points (no grid read).
        z, it, _, _ = state
        av, rv = jnp.real(z), jnp.imag(z)
        z_new = lax.optimization_barrier(lax.complex(*mag_step(av, rv)))
        av_new, rv_new = jnp.real(z_new), jnp.imag(z_new)
        step = jnp.maximum(jnp.abs(av_new - av), jnp.abs(rv_new - rv))
        return z_new, it + 1, mag_logwt(av_new, rv_new), step

    shape = jnp.broadcast_shapes(grid.m0.shape[1:], jnp.shape(c.has_data))  # (Nmodel,) or (Nmodel, S)
    av0 = jnp.full(shape, av_mean, dtype)
    rv0 = jnp.full(shape, rv_mean, dtype)
    it0 = jnp.zeros(jnp.shape(c.has_data), jnp.int32)
    state0 = (lax.complex(av0, rv0), it0, av0, av0)
    if jnp.ndim(c.has_data) == 0:
        state = lax.while_loop(mag_cond, mag_body, state0)
    else:
        # S stars: what vmap makes of the loop (every star steps until all have stopped,
        # a stopped star's state is kept), with the per-star predicate carried
        def body_s(st):
            run = st[-1]
            new = mag_body(st[:-1])
            new = tuple(jnp.where(run, n, o) for n, o in zip(new, st[:-1]))
            return new + (mag_cond(new),)

        state = lax.while_loop(lambda st: jnp.any(st[-1]), body_s, state0 + (mag_cond(state0),))[:-1]
    av_m, rv_m, n_mag = jnp.real(state[0]), jnp.imag(state[0]), state[1]
    err_mag = mag_err(state)
    mle_m, extra = _scale_fit(grid, c.F, c.W, av_m, rv_m, final is not None, av_ivar, rv_ivar, c.one), (None, None)
    if final is not None:
        mle_m, extra = mle_m[0], final(mle_m[1], c.one)
    lnl_m = -0.5 * mle_m.chi2

    # ---- selection -------------------------------------------------------
    plx = jnp.asarray(parallax, dtype)
    plx_err = jnp.asarray(parallax_err, dtype)
    use_plx = jnp.isfinite(plx) & jnp.isfinite(plx_err) & (plx_err > 0.0)
    plx_err_safe = jnp.where(use_plx, plx_err, 1.0)
    chi2_p = (jnp.sqrt(mle_m.scale) - plx) ** 2 / plx_err_safe**2
    lnl_p = jnp.where(use_plx, lnl_m - 0.5 * chi2_p, lnl_m)
    active = c.valid & (c.select_all | (lnl_p > _masked_max(lnl_p, c.valid, axis=0) + c.ln_init_thresh))
    active = active & c.has_data
    return MagStage(av_m, rv_m, active, jnp.sum(active, axis=0, dtype=jnp.int32), n_mag, err_mag, mle_m.scale,
                    mle_m.chi2, *extra)


def _flux_stage(c, grid, av, rv, active, max_iter_flux):
    """Flux-stage iterations on ``grid`` (all models or a gathered subset);
    models with ``active`` False stay frozen and take no part in the tests.
    Returns (av, rv, n_iter_flux, last error)."""
    av_ivar, rv_ivar, av_mean, rv_mean = c.av_ivar, c.rv_ivar, c.av_mean, c.rv_mean
    nmodel = grid.m0.shape[1]
    ltol = c.ltol

    def flux_cond(state):
        it, lerr = state[-2], state[-1]
        return c.has_data & (it < max_iter_flux) & (lerr > ltol)

    def flux_body(state):
        av, rv, step, lnl_old, mle, it, _ = state
        dav = step * ((av_mean - av) * av_ivar + mle.grad_av) / (av_ivar + mle.curv_av)
        drv = step * ((rv_mean - rv) * rv_ivar + mle.grad_rv) / (rv_ivar + mle.curv_rv)
        av = av + jnp.where(active, jnp.clip(dav, c.av_min - av, c.av_max - av), 0.0)
        rv = rv + jnp.where(active, jnp.clip(drv, c.rv_min - rv, c.rv_max - rv), 0.0)
        mle = _scale_fit(grid, c.F, c.W, av, rv, False, av_ivar, rv_ivar, c.one)
        lnl_new = -0.5 * mle.chi2
        best = _masked_max(lnl_new, active)
        near = active & (lnl_new > best + c.ln_subthresh)
        lerr = _masked_max(jnp.abs(lnl_new - lnl_old), near)
        step = jnp.where(lnl_new < lnl_old, step / _RESCALING, step)
        return av, rv, step, lnl_new, mle, it + 1, lerr

    mle0 = _scale_fit(grid, c.F, c.W, av, rv, False, av_ivar, rv_ivar, c.one)
    state0 = (
        av,
        rv,
        jnp.ones((nmodel,), c.dtype),
        jnp.full((nmodel,), -jnp.inf, c.dtype),  # brutus: LOG_ZERO = -1e300
        mle0,
        jnp.asarray(0, jnp.int32),
        jnp.asarray(jnp.inf, c.dtype),
    )
    av, rv, _, _, _, n_flux, lerr = lax.while_loop(flux_cond, flux_body, state0)
    return av, rv, n_flux, lerr


def _finish(c, av, rv, mag, n_flux, lerr, dim_prior):
    """Final scale / Fisher evaluation of every model and brutus's lnl."""
    mle, icov = _scale_fit(c.grid, c.F, c.W, av, rv, True, c.av_ivar, c.rv_ivar, c.one)
    return _grid_fit(c, av, rv, mle.scale, mle.chi2, _icov_matrix(icov, c.one), mag, n_flux, lerr, dim_prior)


def _grid_fit(c, av, rv, scale, chi2, icov, mag, n_flux, lerr, dim_prior):
    """`GridFit` from the final per-model values: brutus's lnl, convergence flag."""
    # normalised Gaussian for the flux-stage models only (brutus gotcha 3)
    lnl = -0.5 * chi2 - jnp.where(mag.active, c.log_norm, 0.0)
    nd = c.ndim.astype(c.dtype)
    dim_term = 0.5 * (3.0 - nd) * jnp.log(jnp.where(c.has_data, nd, 1.0))
    lnl = lnl - jnp.where(jnp.asarray(dim_prior) & c.has_data, dim_term, 0.0)
    lnl = jnp.where(c.has_data & c.valid, lnl, -jnp.inf)
    converged = c.has_data & (mag.err_mag < 2.5 * c.ltol) & ~(lerr > c.ltol)
    return GridFit(lnl=lnl, ndim=c.ndim, chi2=chi2, scale=scale, av=av, rv=rv, icov=icov,
                   flux_stage=mag.active, n_iter_mag=mag.n_iter_mag, n_iter_flux=n_flux, converged=converged)


def __getattr__(name):  # the stage entry points and `fit_stars` live in sedfit_stages (module size)
    if name in ("FluxStage", "fit_star_finish", "fit_star_flux", "fit_star_mag", "fit_stars", "merge_flux",
                "icov_at", "marginal_scale_err"):
        from . import sedfit_stages  # lazily: either module may be imported first
        return getattr(sedfit_stages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
