"""Population (cluster) log-likelihood: brutus's ``analysis.populations`` in JAX.

Same names, signatures, defaults and semantics as astro-brutus 1.2.0
(mixture BEFORE marginalisation over the (mass, SMF) grid; chi-square or
uniform outlier model; parallax as an extra chi-square term and dimension
under the dimensionality prior; normalised integration measure), with one
structural change: the grid has STATIC shape ``n_smf * n_eep`` rows.  Rows
brutus drops (``Delta m <= 0``; post-main-sequence rows of every SMF slice
but the first that has them) stay in the arrays with zero jacobians / a
``-inf`` log-weight, so that

    jax.jit(jax.value_and_grad(lambda th: isochrone_population_loglike(th, pop, ...)))

compiles once and is differentiable in theta = [feh, loga, av, rv, dist_pc,
field_frac] when ``pop`` offers ``get_seds_smf_grid_jax`` (returning a
:class:`~brutus_jax.kernels.popgrid.PopSEDGrid`).  Duck-typed brutus-style
objects that only offer ``get_seds_smf_grid`` / ``get_seds`` (numpy, NaN where
invalid) are evaluated eagerly into the same static structure (not
differentiable), which is how the results are compared with astro-brutus.

Invalid-model markers: like brutus, :func:`compute_isochrone_cluster_loglike`
returns NaN for grid rows whose model SED is invalid and
:func:`apply_isochrone_mixture_model` propagates it; both are written so that
these markers never produce NaN gradients, and the marginalised per-object
and total log-likelihoods are finite or ``-inf``, never NaN.

The mathematics lives in :mod:`brutus_jax.kernels.population`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import population as K
from ..kernels.popgrid import PopSEDGrid
from .cluster_selection import row_log_selection
from .population_measure import terminal_eep_for_measure as _terminal_eep

__all__ = [
    "isochrone_population_loglike",
    "generate_isochrone_population_grid",
    "compute_isochrone_cluster_loglike",
    "compute_isochrone_outlier_loglike",
    "apply_isochrone_mixture_model",
    "marginalize_isochrone_grid",
    "chisquare_outlier_loglike",
    "uniform_outlier_loglike",
]

# Jitted kernels: the public step functions are also fast when called eagerly
# (inside an outer jit they are simply inlined).
_cluster_kernel = jax.jit(K.cluster_loglike, static_argnames=("dim_prior",))
_mixture_kernel = jax.jit(K.mixture_loglike)
_marginal_kernel = jax.jit(K.marginalize_log_weights)
_chisq_outlier_kernel = jax.jit(K.chisquare_outlier_from_table)
_uniform_outlier_kernel = jax.jit(K.uniform_outlier_loglike)
_row_weights_kernel = jax.jit(K.population_row_weights)
_fused_kernel = jax.jit(K.marginalize_mixture_per_object)
_flux_kernel = jax.jit(K.mags_to_flux)

_DEFAULT_SMF = np.linspace(0.0, 1.0, 21)
_DEFAULT_EEP = np.linspace(202.0, 808.0, 1000)


def _is_traced(*xs):
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_obs(obs_flux, obs_err, mask=None, parallax=None, parallax_err=None,
               names=("obs_flux", "obs_err")):
    """Host-side shape validation; returns jnp arrays."""
    flux = jnp.asarray(obs_flux)
    err = jnp.asarray(obs_err)
    if flux.ndim != 2:
        raise ValueError(f"{names[0]} must have shape (N_objects, N_filters), got {flux.shape}")
    if err.shape != flux.shape:
        raise ValueError(f"{names[1]} shape {err.shape} must match {names[0]} shape {flux.shape}")
    if mask is not None and jnp.shape(mask) != flux.shape:
        raise ValueError(f"mask shape {jnp.shape(mask)} must match {names[0]} shape {flux.shape}")
    for nm, p in (("parallax", parallax), ("parallax_err", parallax_err)):
        if p is not None and jnp.shape(p) != flux.shape[:1]:
            raise ValueError(f"{nm} must have shape ({flux.shape[0]},), got {jnp.shape(p)}")
    return flux, err


def _data_valid(flux, err):
    return jnp.isfinite(flux) & jnp.isfinite(err) & (err > 0.0)


# ---------------------------------------------------------------------------
# Step 1: the (SMF, EEP) grid
# ---------------------------------------------------------------------------


def _popgrid_from_brutus_style(stellarpop, smf_grid, eep_grid, feh, loga, av, rv, dist,
                               mini_bound, eep_binary_max, corr_params):
    """Evaluate a brutus-style (numpy) population into a static PopSEDGrid.

    Slices that raise are treated as entirely invalid (brutus skips them).
    """
    kw = dict(feh=feh, loga=loga, av=av, rv=rv, eep=eep_grid, dist=dist,
              mini_bound=mini_bound, eep_binary_max=eep_binary_max, corr_params=corr_params)
    if hasattr(stellarpop, "get_seds_smf_grid"):
        try:
            results = list(stellarpop.get_seds_smf_grid(smf_grid, **kw))
        except Exception as e:  # brutus: warn and skip every slice
            warnings.warn(f"Failed to generate isochrones for SMF grid: {e}")
            results = [None] * len(smf_grid)
    else:
        results = []
        for smf in smf_grid:
            try:
                results.append(stellarpop.get_seds(binary_fraction=smf, **kw))
            except Exception as e:
                warnings.warn(f"Failed to generate isochrone for SMF={smf}: {e}")
                results.append(None)
    n_eep = len(eep_grid)
    n_filt = next((np.shape(r[0])[1] for r in results if r is not None), None)
    if n_filt is None:
        raise ValueError("No valid isochrone models generated")
    mags = np.zeros((len(smf_grid), n_eep, n_filt))
    sed_ok = np.zeros((len(smf_grid), n_eep), dtype=bool)
    mini = np.zeros((len(smf_grid), n_eep))
    mini_ok = np.zeros((len(smf_grid), n_eep), dtype=bool)
    for i, r in enumerate(results):
        if r is None:
            continue
        sed = np.asarray(r[0], dtype=float).reshape(n_eep, n_filt)
        m = np.asarray(r[1]["mini"], dtype=float).reshape(n_eep)
        sed_ok[i] = np.all(np.isfinite(sed), axis=1)
        mags[i] = np.where(sed_ok[i][:, None], sed, 0.0)
        mini_ok[i] = np.isfinite(m)
        mini[i] = np.where(mini_ok[i], m, 0.0)
    return PopSEDGrid(mags=jnp.asarray(mags), sed_ok=jnp.asarray(sed_ok), mini=jnp.asarray(mini),
                      mini_ok=jnp.asarray(mini_ok), eep=jnp.asarray(eep_grid, dtype=mags.dtype),
                      smf=jnp.asarray(smf_grid, dtype=mags.dtype))


def generate_isochrone_population_grid(stellarpop, feh, loga, av, rv, dist, smf_grid=None,
                                       eep_grid=None, mini_bound=0.08, eep_binary_max=480.0,
                                       corr_params=None, row_measure="brutus", eep_end=None):
    r"""Model grid over (SMF, EEP) with integration weights (brutus step 1).

    Parameters
    ----------
    stellarpop : object
        A population with ``get_seds_smf_grid_jax`` (JAX path: traceable and
        differentiable in feh, loga, av, rv, dist), or a brutus-style object
        with ``get_seds_smf_grid`` / ``get_seds`` (numpy, eager).
    feh, loga, av, rv, dist : scalar
        [Fe/H], log10(age / yr), A_V [mag], R_V, distance [pc].
    smf_grid : array (n_smf,), optional
        Secondary mass fractions q = M2/M1; default 21 values in [0, 1].
    eep_grid : array (n_eep,), optional
        EEPs; default 1000 values in [202, 808].
    mini_bound : float, optional
        Minimum initial mass [Msun] of a model (primary and secondary). 0.08.
    eep_binary_max : float, optional
        Binaries only for ``eep <= eep_binary_max``. 480.
    corr_params : array (4,), optional
        Empirical low-mass corrections, forwarded to the population.
    row_measure : {"brutus", "smooth"}, optional
        "brutus" (default): exact; a row enters only if both EEP neighbours
        are valid, so the integral's end jumps by a cell whenever a terminal
        row switches validity (O(1)-nat steps in log age / [Fe/H]).
        "smooth": continuous -- the cell straddling the terminal EEP gets the
        fraction below it (`kernels.population.population_row_weights`);
        equals brutus's when ``eep_end`` is on a grid node.
    eep_end : callable, float or None, optional
        Terminal EEP for "smooth": ``f(loga)`` / ``f(feh, loga)`` / a value;
        default ``stellarpop.eep_end``, else found by probing the population
        (needed for a brutus-style population).

    Returns
    -------
    grid : dict
        Rows ``i * n_eep + j`` for SMF slice ``i`` and EEP ``j``
        (``N = n_smf * n_eep``, static).  brutus's keys:

        - ``photometry`` (N, n_filt): model flux ``10**(-0.4 mag)`` at ``dist``;
          0 where the SED is invalid.
        - ``masses`` (N,): primary initial mass [Msun] (fill value where
          brutus's is NaN).
        - ``smf_values`` (N,): the slice's SMF.
        - ``mass_jacobians`` (N,): ``np.gradient`` of the slice's masses for
          rows brutus keeps, 0 for rows brutus drops.
        - ``smf_jacobians`` (N,): ``Delta smf`` of the slice for kept main-
          sequence rows, ``sum(Delta smf)`` for post-MS rows (``eep >
          eep_binary_max``) of the first slice having them, else 0.
        - ``grid_info``: ``smf_grid``, ``eep_grid``, ``n_total_points`` (= N),
          ``shape`` ``(n_smf, n_eep)``.

        plus ``magnitudes`` (N, n_filt) (apparent; 0 where the SED is
        invalid), ``sed_ok`` (N,) bool (model SED finite) and ``log_weights`` (N,):
        ``ln(mass_jac * smf_jac)`` for rows entering the integral, ``-inf``
        otherwise.
    """
    smf_grid = _DEFAULT_SMF if smf_grid is None else smf_grid
    eep_grid = _DEFAULT_EEP if eep_grid is None else eep_grid
    if np.ndim(smf_grid) != 1 or np.ndim(eep_grid) != 1:
        raise ValueError("smf_grid and eep_grid must be 1-D arrays")
    if hasattr(stellarpop, "get_seds_smf_grid_jax"):
        pg = stellarpop.get_seds_smf_grid_jax(
            smf_grid, feh=feh, loga=loga, eep=eep_grid, av=av, rv=rv, dist=dist,
            mini_bound=mini_bound, eep_binary_max=eep_binary_max, corr_params=corr_params)
    elif hasattr(stellarpop, "get_seds_smf_grid") or hasattr(stellarpop, "get_seds"):
        if _is_traced(feh, loga, av, rv, dist):
            raise TypeError(
                "stellarpop has no get_seds_smf_grid_jax: a brutus-style (numpy) population "
                "cannot be traced by jax.jit / jax.grad; call it eagerly")
        pg = _popgrid_from_brutus_style(
            stellarpop, np.asarray(smf_grid, dtype=float), np.asarray(eep_grid, dtype=float),
            float(feh), float(loga), float(av), float(rv), float(dist), mini_bound,
            eep_binary_max, corr_params)
    else:
        raise TypeError("stellarpop must offer get_seds_smf_grid_jax, get_seds_smf_grid or get_seds")
    n_smf, n_eep, n_filt = pg.mags.shape
    if row_measure not in ("brutus", "smooth"):
        raise ValueError(f"row_measure: 'brutus' or 'smooth', got {row_measure!r}")
    e_end = None
    if row_measure == "smooth":
        if not hasattr(stellarpop, "get_seds_smf_grid_jax") and eep_end is None:
            raise TypeError("row_measure='smooth' needs eep_end for a brutus-style population")
        e_end = _terminal_eep(stellarpop, pg, eep_end, feh, loga,
                              dict(av=av, rv=rv, dist=dist, mini_bound=mini_bound,
                                   eep_binary_max=eep_binary_max, corr_params=corr_params))
    mass_jac, smf_jac, log_w = _row_weights_kernel(
        pg.mini, pg.mini_ok, pg.sed_ok, pg.eep, pg.smf, eep_binary_max, e_end)
    n = n_smf * n_eep
    return {
        "photometry": _flux_kernel(pg.mags, pg.sed_ok).reshape(n, n_filt),
        "magnitudes": jnp.where(jnp.asarray(pg.sed_ok)[..., None], pg.mags, 0.0).reshape(n, n_filt),
        "masses": jnp.asarray(pg.mini).reshape(n),
        "smf_values": jnp.repeat(jnp.asarray(pg.smf), n_eep),
        "mass_jacobians": mass_jac.reshape(n),
        "smf_jacobians": smf_jac.reshape(n),
        "sed_ok": jnp.asarray(pg.sed_ok).reshape(n),
        "log_weights": log_w.reshape(n),
        "eep_end": e_end,
        "grid_info": {"smf_grid": pg.smf, "eep_grid": pg.eep, "n_total_points": n,
                      "shape": (n_smf, n_eep)},
    }


# ---------------------------------------------------------------------------
# Steps 2-3: cluster and outlier likelihoods
# ---------------------------------------------------------------------------


def compute_isochrone_cluster_loglike(obs_flux, obs_err, isochrone_grid, parallax=None,
                                      parallax_err=None, distance=None, dim_prior=True,
                                      mask=None):
    """Cluster log-likelihood of every (grid row, object) pair (brutus step 2).

    Parameters
    ----------
    obs_flux, obs_err : array (N_objects, N_filters)
        Observed fluxes and errors [maggies]; non-finite values or ``err <= 0``
        drop that band only.
    isochrone_grid : dict
        From :func:`generate_isochrone_population_grid` (or brutus's own).
    parallax, parallax_err : array (N_objects,), optional
        [mas]; used only when ``distance`` is given too.
    distance : scalar, optional
        Population distance [pc].
    dim_prior : bool (static)
        Chi-square log-pdf (True) or Gaussian (False) likelihood.
    mask : array (N_objects, N_filters), optional
        Band weights (1 = use, 0 = skip).

    Returns
    -------
    lnl_cluster : array (N_grid_points, N_objects)
        NaN for rows whose model SED is invalid (brutus's marker; NaN-free
        gradients).
    """
    flux, err = _check_obs(obs_flux, obs_err, mask, parallax, parallax_err)
    valid = _data_valid(flux, err)
    bmask = valid.astype(flux.dtype) if mask is None else jnp.asarray(mask) * valid
    model = jnp.asarray(isochrone_grid["photometry"])
    if model.ndim != 2 or model.shape[1] != flux.shape[1]:
        raise ValueError(f"isochrone_grid['photometry'] shape {model.shape} does not match "
                         f"{flux.shape[1]} filters of obs_flux")
    ok = jnp.all(jnp.isfinite(model), axis=1)
    if "sed_ok" in isochrone_grid:
        ok = ok & jnp.asarray(isochrone_grid["sed_ok"], dtype=bool)
    model = jnp.where(ok[:, None], model, 0.0)
    lnl = _cluster_kernel(flux, err, bmask, model, parallax, parallax_err, distance,
                          dim_prior=bool(dim_prior))
    return jnp.where(ok[:, None], lnl, jnp.nan)


def chisquare_outlier_loglike(flux, err, stellar_params=None, parallax=None, parallax_err=None,
                              p_value_cut=1e-5, mask=None, dof_reduction=0):
    """Chi-square outlier model (brutus ``utils.chisquare_outlier_loglike``).

    The chi-square(dof) log-pdf at its ``1 - p_value_cut`` quantile, dof =
    used bands (+1 with a valid parallax) - ``dof_reduction``; ``-inf`` where
    dof <= 0.  The quantiles are tabulated on the host (scipy) for every
    possible dof, so the function is traceable in the data.

    Returns
    -------
    lnl_outlier : array (N_objects,)
    """
    from scipy.stats import chi2 as _chi2

    flux, err = _check_obs(flux, err, mask, parallax, parallax_err, names=("flux", "err"))
    valid = _data_valid(flux, err)
    if mask is not None:
        valid = valid & (jnp.asarray(mask) > 0)
    dof = jnp.sum(valid, axis=1)
    if parallax is not None and parallax_err is not None:
        plx, perr = jnp.asarray(parallax), jnp.asarray(parallax_err)
        dof = dof + (jnp.isfinite(plx) & jnp.isfinite(perr) & (perr > 0.0))
    dof = dof - int(dof_reduction)
    kmax = flux.shape[1] + 1
    k = np.arange(1, kmax + 1)
    table = np.concatenate([[-np.inf], _chi2.logpdf(_chi2.ppf(1.0 - p_value_cut, k), k)])
    return _chisq_outlier_kernel(dof, jnp.asarray(table, dtype=flux.dtype))


def uniform_outlier_loglike(flux, err, stellar_params=None, parallax=None, parallax_err=None,
                            sigma_clip=3.0, mask=None):
    """Uniform outlier density (brutus ``utils.uniform_outlier_loglike``).

    ``-sum_b ln(range_b)`` over used bands, ``range_b`` the span of
    ``flux +/- sigma_clip err`` over all objects (own ``2 sigma_clip err``
    if not positive), and the same for the parallax [mas] when given.

    Returns
    -------
    lnl_outlier : array (N_objects,)
    """
    flux, err = _check_obs(flux, err, mask, parallax, parallax_err, names=("flux", "err"))
    return _uniform_outlier_kernel(flux, err, mask, parallax, parallax_err, sigma_clip)


def compute_isochrone_outlier_loglike(obs_flux, obs_err, isochrone_grid=None, parallax=None,
                                      parallax_err=None, dim_prior=True, outlier_model_func=None,
                                      mask=None, **outlier_kwargs):
    """Outlier (field) log-likelihood (brutus step 3).

    ``outlier_model_func(obs_flux, obs_err, stellar_params=..., parallax=...,
    parallax_err=..., mask=..., **outlier_kwargs)`` if given (returning
    (N_objects,) or (N_grid_points, N_objects)); else
    :func:`chisquare_outlier_loglike` (``dim_prior``) or
    :func:`uniform_outlier_loglike`.  ``stellar_params`` holds the grid's
    ``masses`` and ``smf_values``.

    Returns
    -------
    lnl_outlier : array (N_grid_points, N_objects)
        (1, N_objects) when no grid is given.
    """
    flux, err = _check_obs(obs_flux, obs_err, mask, parallax, parallax_err)
    lnl = _outlier_raw(flux, err, isochrone_grid, parallax, parallax_err, dim_prior,
                       outlier_model_func, mask, outlier_kwargs)
    if isochrone_grid is None:
        return lnl[None, :] if lnl.ndim == 1 else lnl
    if lnl.ndim == 1:
        return jnp.broadcast_to(lnl[None, :], (jnp.shape(isochrone_grid["masses"])[0], flux.shape[0]))
    return lnl


def _outlier_raw(flux, err, isochrone_grid, parallax, parallax_err, dim_prior, outlier_model_func,
                 mask, outlier_kwargs):
    """The outlier model's own output: (N_objects,) or (N_grid_points, N_objects)."""
    n_obj = flux.shape[0]
    stellar_params = None
    if isochrone_grid is not None:
        stellar_params = {"masses": isochrone_grid["masses"],
                          "smf_values": isochrone_grid["smf_values"]}
    if outlier_model_func is not None:
        func = outlier_model_func
    elif dim_prior:
        func = chisquare_outlier_loglike
    else:
        func = uniform_outlier_loglike
    lnl = jnp.asarray(func(flux, err, stellar_params=stellar_params, parallax=parallax,
                           parallax_err=parallax_err, mask=mask, **outlier_kwargs))
    n_pts = None if isochrone_grid is None else jnp.shape(isochrone_grid["masses"])[0]
    if lnl.shape != (n_obj,) and (n_pts is None or lnl.shape != (n_pts, n_obj)):
        raise ValueError(f"Outlier likelihood shape {lnl.shape} incompatible with expected "
                         f"({n_pts}, {n_obj}) or ({n_obj},)")
    return lnl


# ---------------------------------------------------------------------------
# Steps 4-5: mixture and marginalisation
# ---------------------------------------------------------------------------


def apply_isochrone_mixture_model(lnl_cluster, lnl_outlier, cluster_prob, field_fraction):
    """Mixture at every grid point, before marginalisation (brutus step 4).

    ``ln(w_c L_c + (1 - w_c) L_o)`` with ``w_c = cluster_prob * (1 -
    field_fraction)``.  NaN inputs (invalid models) stay NaN; weights
    outside [0, 1] give NaN everywhere (brutus: log of a negative number).

    Returns
    -------
    lnl_mixture : array (N_grid_points, N_objects)
    """
    lc, lo = jnp.asarray(lnl_cluster), jnp.asarray(lnl_outlier)
    if lc.shape != lo.shape:
        raise ValueError(f"Cluster and outlier likelihood shapes must match: {lc.shape} vs {lo.shape}")
    return _mixture_kernel(lc, lo, cluster_prob, field_fraction)


def _log_jacobian(mass_jacobians, smf_jacobians):
    prod = jnp.asarray(mass_jacobians) * jnp.asarray(smf_jacobians)
    ok = (prod > 0.0) & jnp.isfinite(prod)
    return jnp.where(ok, jnp.log(jnp.where(ok, prod, 1.0)), -jnp.inf)


def marginalize_isochrone_grid(lnl_mixture, mass_jacobians, smf_jacobians):
    r"""Normalised marginalisation over the (mass, SMF) grid (brutus step 5).

    ``ln P_obj = logsumexp_i[lnL_i + ln J_i] - logsumexp_{valid i}(ln J_i)``,
    ``J = mass_jacobians * smf_jacobians``; valid rows have ``J > 0`` (finite)
    and a finite ``lnL`` for at least one object; non-finite ``lnL`` counts
    as zero probability.

    Returns
    -------
    lnl_marginalized : array (N_objects,)
        Finite or ``-inf`` (all objects ``-inf`` when no row is valid).
    """
    lnl = jnp.asarray(lnl_mixture)
    if lnl.ndim != 2 or jnp.shape(mass_jacobians) != lnl.shape[:1] or \
            jnp.shape(smf_jacobians) != lnl.shape[:1]:
        raise ValueError("mass_jacobians and smf_jacobians must have shape (N_grid_points,) "
                         f"matching lnl_mixture {lnl.shape}")
    return _marginal_kernel(lnl, _log_jacobian(mass_jacobians, smf_jacobians))


# ---------------------------------------------------------------------------
# The full likelihood
# ---------------------------------------------------------------------------


def _imf_log_weights(grid, imf):
    """The grid's log integration weights times the members' mass function ``imf``."""
    log_w = grid["log_weights"]
    if imf is None:
        return log_w
    if isinstance(imf, str):
        if imf.lower() != "kroupa":
            raise ValueError(f"imf: None, 'kroupa' or a callable, got {imf!r}")
        from ..kernels.priors import logp_imf

        imf = logp_imf
    elif not callable(imf):
        raise ValueError(f"imf: None, 'kroupa' or a callable, got {imf!r}")
    ok = jnp.isfinite(log_w)
    m = jnp.where(ok & (grid["masses"] > 0.0), grid["masses"], 1.0)
    return jnp.where(ok, log_w + jnp.asarray(imf(m), log_w.dtype), -jnp.inf)


def isochrone_population_loglike(theta, stellarpop, obs_phot, obs_err, parallax=None,
                                 parallax_err=None, cluster_prob=0.95, dim_prior=True,
                                 outlier_model_func=None, smf_grid=None, eep_grid=None,
                                 mini_bound=0.08, eep_binary_max=480.0, corr_params=None,
                                 return_components=False, mask=None, row_measure="brutus",
                                 eep_end=None, selection=None, imf=None, **outlier_kwargs):
    r"""Log-likelihood of a coeval population, theta = [feh, loga, av, rv, dist, field_frac].

    .. math::
        \ln L(\theta) = \sum_i \ln \frac{\sum_j J_j\,[w_c P_c(d_i|j,\theta)
        + (1 - w_c) P_o(d_i)]}{\sum_{j\,\rm valid} J_j},
        \qquad w_c = p_{\rm cluster}(1 - f_{\rm field})

    over the (mass, SMF) grid rows ``j`` of
    :func:`generate_isochrone_population_grid` (steps 1-5 of brutus).

    Parameters
    ----------
    theta : array (6,)
        [Fe/H], log10(age / yr), A_V [mag], R_V, distance [pc], field fraction.
    stellarpop : object
        See :func:`generate_isochrone_population_grid`.  With
        ``get_seds_smf_grid_jax`` the function is jit-able and differentiable
        in theta with static shapes (one compilation for all theta).
    obs_phot, obs_err : array (N_objects, N_filters)
        Fluxes ``10**(-0.4 mag)`` and errors.
    parallax, parallax_err : array (N_objects,), optional
        [mas].
    cluster_prob : float, optional
        Prior membership probability. 0.95.
    dim_prior : bool (static), optional
        Chi-square (True) or Gaussian/uniform (False) models. True.
    outlier_model_func : callable, optional
        Custom outlier model (see :func:`compute_isochrone_outlier_loglike`).
    smf_grid, eep_grid, mini_bound, eep_binary_max, corr_params : optional
        Grid settings (see :func:`generate_isochrone_population_grid`).
    return_components : bool, optional
        Also return a dict with ``lnl_total``, ``lnl_per_object``,
        ``isochrone_grid``, ``lnl_cluster``, ``lnl_outlier``, ``lnl_mixture``.
    mask : array (N_objects, N_filters), optional
        Band mask (1 = use), shared by the cluster and outlier models.
    row_measure, eep_end : optional
        "brutus" (default, exact) or "smooth" (continuous in feh, loga; used
        by `fit_cluster`), see :func:`generate_isochrone_population_grid`.
    selection : callable, optional
        How the members were selected (not in brutus): ``f(mags) -> ln S``
        per grid row from its apparent magnitudes (n_pts, n_filt), e.g.
        `analysis.cluster_selection.box_selection`.  The cluster term is then
        normalised over the selected part of the isochrone, ``sum_j J_j S_j``
        (`cluster_selection` explains why ages are biased without it).
        Needs a row-independent outlier model (the defaults).
    imf : None, "kroupa" or callable, optional
        Mass function of the members (not in brutus).  None (brutus): rows
        weighted uniformly in initial mass.  "kroupa" (Kroupa 2001 broken
        power law, `kernels.priors.logp_imf`) or ``f(mass) -> ln xi``: each
        row's weight is multiplied by ``xi(M_primary)``, in the numerator and
        in the normaliser.  Real clusters have many more low-mass members
        than a flat mass function predicts; the flat one lets the shorter
        mass range of an older isochrone score higher.  Needs a row-
        independent outlier model.
    **outlier_kwargs
        Forwarded to the outlier model (e.g. ``p_value_cut``, ``sigma_clip``).

    Returns
    -------
    lnl_total : 0-d array
        Finite or ``-inf`` (never NaN): ``-inf`` for invalid theta (non-finite
        entries, ``dist <= 0``, ``field_frac`` outside [0, 1]) or when the
        brutus-style population fails.
    components : dict, only if ``return_components``
    """
    theta = jnp.asarray(theta)
    if theta.shape != (6,):
        raise ValueError(f"theta must have shape (6,) = [feh, loga, av, rv, dist, field_frac], "
                         f"got {theta.shape}")
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        theta = theta.astype(jnp.result_type(float))
    if row_measure not in ("brutus", "smooth"):
        raise ValueError(f"row_measure: 'brutus' or 'smooth', got {row_measure!r}")
    flux, err = _check_obs(obs_phot, obs_err, mask, parallax, parallax_err,
                           names=("obs_phot", "obs_err"))
    n_obj = flux.shape[0]
    theta_ok = (jnp.all(jnp.isfinite(theta)) & (theta[4] > 0.0) & (theta[5] >= 0.0)
                & (theta[5] <= 1.0))
    safe = jnp.asarray([0.0, 9.0, 0.0, 3.3, 1000.0, 0.5], dtype=theta.dtype)
    th = jnp.where(theta_ok, theta, safe)
    feh, loga, av, rv, dist, ffrac = (th[i] for i in range(6))
    jax_path = hasattr(stellarpop, "get_seds_smf_grid_jax")
    minus_inf = jnp.asarray(-jnp.inf, dtype=theta.dtype)
    failed = None
    if not jax_path and not _is_traced(theta) and not bool(theta_ok):
        failed = "invalid theta"
    grid = None
    if failed is None:
        try:
            grid = generate_isochrone_population_grid(
                stellarpop, feh, loga, av, rv, dist, smf_grid=smf_grid, eep_grid=eep_grid,
                mini_bound=mini_bound, eep_binary_max=eep_binary_max, corr_params=corr_params,
                row_measure=row_measure, eep_end=eep_end)
        except ValueError as e:
            if jax_path:
                raise
            warnings.warn(f"Likelihood computation failed: {e}")
            failed = str(e)
    if failed is not None:
        if return_components:
            return minus_inf, {"lnl_total": minus_inf,
                               "lnl_per_object": jnp.full((n_obj,), -jnp.inf, theta.dtype),
                               "isochrone_grid": grid, "lnl_cluster": None,
                               "lnl_outlier": None, "lnl_mixture": None}
        return minus_inf

    eff_mask = _data_valid(flux, err).astype(flux.dtype)
    if mask is not None:
        eff_mask = jnp.asarray(mask) * eff_mask
    lnl_out = _outlier_raw(flux, err, grid, parallax, parallax_err, dim_prior, outlier_model_func,
                           eff_mask, outlier_kwargs)
    if lnl_out.ndim == 1:
        # Row-independent outlier model (the defaults): mixture and marginalisation
        # fused (one exponential per row and object, no NaN markers).
        lc = _cluster_kernel(flux, err, eff_mask, grid["photometry"], parallax, parallax_err,
                             dist, dim_prior=bool(dim_prior))
        log_sel = None if selection is None else row_log_selection(selection, grid["magnitudes"], grid["sed_ok"])
        lnl_obj = _fused_kernel(lc, lnl_out, _imf_log_weights(grid, imf), cluster_prob, ffrac, log_sel)
    elif selection is not None or imf is not None:
        raise ValueError("selection, imf: need an outlier model that does not depend on the grid row")
    else:
        lnl_obj = None
    if lnl_obj is None or return_components:
        lnl_cluster = compute_isochrone_cluster_loglike(
            flux, err, grid, parallax=parallax, parallax_err=parallax_err, distance=dist,
            dim_prior=dim_prior, mask=eff_mask)
        lnl_outlier = (jnp.broadcast_to(lnl_out[None, :], lnl_cluster.shape)
                       if lnl_out.ndim == 1 else lnl_out)
        lnl_mixture = apply_isochrone_mixture_model(lnl_cluster, lnl_outlier, cluster_prob, ffrac)
        if lnl_obj is None:
            lnl_obj = marginalize_isochrone_grid(lnl_mixture, grid["mass_jacobians"],
                                                 grid["smf_jacobians"])
    lnl_obj = jnp.where(theta_ok, lnl_obj, -jnp.inf)
    total = jnp.sum(lnl_obj)
    total = jnp.where(theta_ok & jnp.isfinite(total), total, -jnp.inf)
    if return_components:
        return total, {"lnl_total": total, "lnl_per_object": lnl_obj, "isochrone_grid": grid,
                       "lnl_cluster": lnl_cluster, "lnl_outlier": lnl_outlier,
                       "lnl_mixture": lnl_mixture}
    return total
