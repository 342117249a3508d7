"""Photometric offsets: astro-brutus oracle, numpy references, sampler, injection-recovery, files, errors."""

import dataclasses

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from brutus_jax.analysis.fit_io import FitOutput
from brutus_jax.analysis.offsets import (
    PhotometricOffsetsConfig,
    _band_terms,
    _check,
    _setup,
    bootstrap_medians,
    leave_one_out_log_weights,
    offsets_from_fit,
    photometric_offsets,
    read_fit_draws,
    write_offsets,
)
from brutus_jax.data import load_offsets
from brutus_jax.data.synthetic import make_synthetic_grid

N, S = 160, 40  # one shape for most tests: the kernels compile once per dim_prior
O_TRUE = np.array([1.0, 0.95, 1.03, 1.0, 0.97, 1.05, 1.0])  # data * O_TRUE = model


def _fluxes(models, idxs, reds, dreds, dists):
    """Model fluxes [maggies] at the draws' distances (plain numpy float64)."""
    m = models[idxs]
    mag = m[..., 0] + np.asarray(reds)[..., None] * (m[..., 1] + np.asarray(dreds)[..., None] * m[..., 2])
    return 10 ** (-0.4 * mag) / np.asarray(dists)[..., None] ** 2


@pytest.fixture(scope="module")
def models():
    return np.asarray(make_synthetic_grid(n_mini=8, n_eep=10, n_feh=3)[0], dtype=np.float64)


@pytest.fixture(scope="module")
def calib(models):
    """Stars from grid models whose data carry the offsets 1/O_TRUE.

    Posterior draws (``idxs, reds, dreds, dists``, equally weighted like BruteForce's) are resampled from
    proposals around the truth (10 % of them of a random other model) by likelihood / proposal density;
    ``prior_*`` are draws around the truth that do not depend on the data."""
    rng = np.random.default_rng(11)
    nf, npr = models.shape[1], 200
    idx = rng.integers(0, len(models), N)
    av, rv, d = rng.uniform(0.1, 1.0, N), rng.normal(3.3, 0.1, N), rng.uniform(0.5, 2.0, N)
    ftrue = _fluxes(models, idx, av, rv, d)
    err = 0.02 * ftrue / O_TRUE
    phot = (ftrue + 0.02 * ftrue * rng.normal(size=ftrue.shape)) / O_TRUE
    mask = rng.random((N, nf)) > 0.08
    z = rng.normal(size=(3, N, npr))
    p_idx = np.where(rng.random((N, npr)) < 0.1, rng.integers(0, len(models), (N, npr)), idx[:, None])
    p_red = np.abs(av[:, None] + 0.05 * z[0])
    p_dred = rv[:, None] + 0.1 * z[1]
    p_dist = d[:, None] * np.exp(0.03 * z[2])
    chi2 = np.sum(np.where(mask[:, None], (phot[:, None] - _fluxes(models, p_idx, p_red, p_dred, p_dist)) ** 2
                           / err[:, None] ** 2, 0.0), axis=-1)
    lw = -0.5 * chi2 + 0.5 * np.sum(z**2, axis=0)
    w = np.exp(lw - lw.max(1, keepdims=True))
    cdf = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
    pick = np.minimum((rng.random((N, S))[..., None] > cdf[:, None, :]).sum(-1), npr - 1)
    take = lambda a: np.take_along_axis(a, pick, axis=1)  # noqa: E731
    return dict(phot=phot, err=err, mask=mask, models=models, idxs=take(p_idx), reds=take(p_red),
                dreds=take(p_dred), dists=take(p_dist), true_idx=idx, prior_idxs=np.repeat(idx[:, None], S, 1),
                prior_reds=p_red[:, :S], prior_dreds=p_dred[:, :S], prior_dists=p_dist[:, :S])


def args_of(c):
    return tuple(c[k] for k in ("phot", "err", "mask", "models", "idxs", "reds", "dreds", "dists"))


def run(c, **kw):
    kw.setdefault("verbose", False)
    kw.setdefault("rng", 1)
    return photometric_offsets(*args_of(c), **kw)


def run_brutus(c, config_kw=None, **kw):
    from brutus.analysis.offsets import PhotometricOffsetsConfig as BConfig
    from brutus.analysis.offsets import photometric_offsets as bpo

    kw.setdefault("verbose", False)
    return bpo(*args_of(c), config=BConfig(**(config_kw or {})), rng=np.random.default_rng(5), **kw)


# ------------------------------------------------------------------ leave-one-out weights
def _normalise(lnw):
    top = np.max(lnw, axis=1, keepdims=True)
    w = np.exp(lnw - np.where(np.isfinite(top), top, 0))
    return w / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dim_prior", [True, False])
def test_loo_log_weights_numpy_reference(rng, dim_prior):
    """ln L_{-i} - ln L_full from scipy's chi-square / normal densities, normalised per object."""
    nobj, ns, nb = 30, 12, 7
    sig = rng.uniform(0.5, 2.0, (nobj, 1, nb))
    resid = rng.normal(size=(nobj, ns, nb)) * rng.uniform(0.5, 3.0, (nobj, 1, 1))
    chi2_b = (resid / sig) ** 2
    full, band = chi2_b.sum(-1), chi2_b[..., 2]
    ndim = np.full(nobj, nb)
    ours = np.asarray(leave_one_out_log_weights(full, band, ndim, dim_prior=dim_prior))
    if dim_prior:  # phot_loglike(dim_prior=True, dof_reduction=1): chi2 density with Ndim - 1 dof
        ref = stats.chi2.logpdf(full - band, nb - 2) - stats.chi2.logpdf(full, nb - 1)
    else:
        lnl = stats.norm.logpdf(resid, scale=sig)
        ref = (lnl.sum(-1) - lnl[..., 2]) - lnl.sum(-1)
    np.testing.assert_allclose(_normalise(ours), _normalise(ref), rtol=1e-10, atol=1e-300)


@pytest.mark.oracle
def test_loo_log_weights_match_brutus(rng, brutus_oracle):
    from brutus.analysis.offsets import _loo_log_weights

    nobj, ns = 40, 9
    full = rng.chisquare(6, (nobj, ns)) + 0.0
    band = full * rng.uniform(0, 1.0, (nobj, ns))
    band[0, :3] = full[0, :3]  # chi2_loo = 0
    full[1, 0] = 0.0
    band[1, 0] = 0.0  # both zero
    band[2, 1] = full[2, 1] + 1e-12  # cancellation below zero
    full[3, 2] = np.nan
    ndim = rng.integers(1, 9, nobj)  # includes dof_loo <= 0
    for dp in (True, False):
        ref = _loo_log_weights(full.copy(), band.copy(), ndim, dp)
        ours = np.asarray(leave_one_out_log_weights(full, band, ndim, dim_prior=dp))
        np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(ours[fin], ref[fin], rtol=1e-12, atol=1e-12)


def _reference_band(c, i, weights=None, mask_fit=None, old=None, dim_prior=True, loo_bands="fitted"):
    """Plain numpy float64: ratios, normalised draw weights and weight validity of band i."""
    phot, err, mask, models, idxs, reds, dreds, dists = args_of(c)
    nf = phot.shape[1]
    mask_fit = np.ones(nf, bool) if mask_fit is None else mask_fit
    old = np.ones(nf) if old is None else old
    weights = np.ones(idxs.shape) if weights is None else weights
    m = models[idxs]
    flux = 10 ** (-0.4 * (m[..., 0] + reds[..., None] * (m[..., 1] + dreds[..., None] * m[..., 2])))
    flux = flux / dists[..., None] ** 2
    lb = mask & mask_fit if loo_bands == "fitted" else mask
    chi2_b = np.where(lb[:, None, :], (phot[:, None, :] * old - flux) ** 2 / (err[:, None, :] * old) ** 2, 0.0)
    full, k = chi2_b.sum(-1), lb.sum(1)[:, None]
    if not mask_fit[i]:
        lnw = np.zeros(full.shape)
    elif dim_prior:
        with np.errstate(invalid="ignore"):
            lnw = stats.chi2.logpdf(full - chi2_b[..., i], k - 1 - lb[:, i:i + 1]) - stats.chi2.logpdf(full, k - 1)
    else:
        lnw = 0.5 * chi2_b[..., i]
    with np.errstate(divide="ignore"):
        lnw = np.where(np.isnan(lnw), -np.inf, lnw) + np.log(weights)
    w = np.exp(lnw - np.max(lnw, axis=1, keepdims=True))
    ok = w.sum(1) > 0
    return flux[..., i] / phot[:, i, None], w / np.where(ok, w.sum(1), 1)[:, None], ok


@pytest.mark.parametrize("dim_prior,loo_bands", [(True, "fitted"), (True, "observed"), (False, "fitted")])
def test_band_weights_and_ratios_numpy_reference(calib, rng, dim_prior, loo_bands):
    nf = calib["phot"].shape[1]
    mask_fit = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    old = rng.uniform(0.95, 1.05, nf)
    weights = rng.uniform(0, 1, (N, S))
    cfg = PhotometricOffsetsConfig(loo_bands=loo_bands)
    chk = _check(*args_of(calib), None, weights, True)
    elig, _, args = _setup(*chk, mask_fit, old, cfg)
    for i in (0, 2, 4):
        ratio, w, used, _ = (np.asarray(x) for x in _band_terms(i, *args, dim_prior=dim_prior))
        rr, rw, rok = _reference_band(calib, i, weights, mask_fit, old, dim_prior, loo_bands)
        np.testing.assert_array_equal(used[:N], elig[:, i] & rok)
        u = used[:N]
        np.testing.assert_allclose(ratio[:N][u], rr[u], rtol=1e-12)
        np.testing.assert_allclose(w[:N][u], rw[u], rtol=1e-9, atol=1e-300)


def test_loo_uses_fitted_bands_only(calib):
    """brutus quirk: with dim_prior, brutus's leave-one-out likelihood includes observed bands that were NOT
    fitted, so a fitted band's weights change with the unfitted photometry.  loo_bands='fitted' (default)
    does not; 'observed' reproduces brutus."""
    nf = calib["phot"].shape[1]
    mask_fit = np.arange(nf) != 6
    other = dict(calib, phot=calib["phot"] * np.where(np.arange(nf) == 6, 1.3, 1.0))
    out = {}
    for mode in ("fitted", "observed"):
        cfg = PhotometricOffsetsConfig(loo_bands=mode)
        for name, c in (("a", calib), ("b", other)):
            _, _, args = _setup(*_check(*args_of(c), None, None, True), mask_fit, np.ones(nf), cfg)
            out[mode, name] = np.asarray(_band_terms(1, *args, dim_prior=True)[1])
    np.testing.assert_array_equal(out["fitted", "a"], out["fitted", "b"])
    assert np.max(np.abs(out["observed", "a"] - out["observed", "b"])) > 1e-3


# ------------------------------------------------------------------ bootstrap sampler
@pytest.fixture(scope="module")
def boot():
    f = jax.jit(bootstrap_medians, static_argnums=(4, 5))
    return lambda r, w, used, batch=None, seed=0: np.asarray(
        f(jax.random.key(seed, impl="rbg"), jnp.asarray(r, float), jnp.asarray(w, float), jnp.asarray(used), 20000,
          batch))


def _freq_close(meds, values, probs, n=20000):
    for v, p in zip(values, probs):
        f = np.mean(meds == v)
        assert abs(f - p) < 4.5 * np.sqrt(p * (1 - p) / n) + 1e-12, (v, f, p)


def test_bootstrap_draw_frequencies_follow_weights(boot):
    r = np.tile(np.arange(5.0), (5, 1)) + 100.0 * np.arange(5)[:, None]  # unused objects would show as >= 100
    w = np.full((5, 5), 0.2)
    w[0] = [0.1, 0.0, 0.4, 0.2, 0.3]
    meds = boot(r, w, np.array([1, 0, 0, 0, 0], bool))
    _freq_close(meds, [0.0, 1.0, 2.0, 3.0, 4.0], [0.1, 0.0, 0.4, 0.2, 0.3])
    assert not np.any(meds == 1.0)  # zero-weight draw never chosen


def test_bootstrap_resamples_objects_with_replacement(boot):
    w = np.zeros((5, 5))
    w[:, 0] = 1.0
    r = np.zeros((5, 5))
    r[:, 0] = [1.0, 2.0, 3.0, 50.0, 60.0]
    # three objects: P(median = 1) = P(>= 2 of 3 draws are object 1) = 7/27
    _freq_close(boot(r, w, np.array([1, 1, 1, 0, 0], bool)), [1.0, 2.0, 3.0], [7 / 27, 13 / 27, 7 / 27])
    # two objects {1, 3}: even count -> mean of the middle pair
    r[:, 0] = [1.0, 50.0, 3.0, 60.0, 70.0]
    _freq_close(boot(r, w, np.array([1, 0, 1, 0, 0], bool)), [1.0, 2.0, 3.0], [0.25, 0.5, 0.25])


@pytest.mark.parametrize("ns", [3, 33, 250])
def test_draw_search_equals_searchsorted(ns):
    from brutus_jax.kernels.bootstrap import _draw_index

    rng = np.random.default_rng(ns)
    w = rng.random((20, ns)) * (rng.random((20, ns)) > 0.4)
    w[:, 0] += 1e-3
    cdf = np.cumsum(w, 1) / np.sum(w, 1, keepdims=True)
    cdf[:, -1] = 1.0
    obj, u = rng.integers(0, 20, 4000), 1 - rng.random(4000)
    u[:100] = cdf[obj[:100], rng.integers(0, ns, 100)]  # exact hits of CDF values
    want = [np.searchsorted(cdf[o], x, "left") for o, x in zip(obj, u)]
    np.testing.assert_array_equal(jax.jit(_draw_index)(cdf, obj, u), want)


def test_bootstrap_batching_and_empty(boot):
    rng = np.random.default_rng(3)
    r, w = rng.uniform(size=(5, 5)), rng.uniform(size=(5, 5))
    w /= w.sum(1, keepdims=True)
    used = np.array([1, 1, 0, 1, 1], bool)
    np.testing.assert_array_equal(boot(r, w, used), boot(r, w, used, batch=7))
    assert not np.array_equal(boot(r, w, used), boot(r, w, used, seed=1))
    assert np.all(np.isinf(boot(r, w, np.zeros(5, bool))))


# ------------------------------------------------------------------ astro-brutus oracle
@pytest.mark.oracle
def test_n_objects_used_matches_brutus(calib, brutus_oracle):
    """Eligibility is deterministic: identical counts in brutus for every rule."""
    rng = np.random.default_rng(2)
    nf = calib["phot"].shape[1]
    phot = calib["phot"].copy()
    phot[:5, 3] *= -1  # non-positive fluxes
    phot[5:8, 3] = 0.0
    mask = calib["mask"].copy()
    mask[10:30, :3] = False  # few bands
    weights = rng.uniform(0, 1, (N, S))
    weights[40:44] = 0.0  # no weight
    sel = rng.random(N) > 0.2
    c = dict(calib, phot=phot, mask=mask)
    cases = [dict(), dict(sel=sel, weights=weights), dict(mask_fit=np.arange(nf) % 2 == 0),
             dict(cfg=dict(min_bands_used=6, min_bands_unused=7), mask_fit=np.arange(nf) < 4)]
    for case in cases:
        cfg = case.pop("cfg", {})
        ours = run(c, config=PhotometricOffsetsConfig(**cfg, loo_bands="observed"), **case)[2]
        ref = run_brutus(dict(c, mask=mask.astype(int)), cfg, **case)[2]
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.oracle
@pytest.mark.parametrize("dim_prior", [True, False])
def test_single_object_offsets_equal_brutus_exactly(calib, brutus_oracle, dim_prior):
    """One eligible object with one-hot draw weights: no randomness left, ratios must agree to rounding
    (direction model/data, 1/d^2 scaling, old_offsets only in the weights)."""
    rng = np.random.default_rng(4)
    nf = calib["phot"].shape[1]
    weights = np.zeros((N, S))
    weights[np.arange(N), rng.integers(0, S, N)] = 1.0
    sel = np.zeros(N, bool)
    sel[np.flatnonzero(calib["mask"].all(1))[0]] = True
    kw = dict(sel=sel, weights=weights, dim_prior=dim_prior, old_offsets=rng.uniform(0.9, 1.1, nf),
              mask_fit=np.arange(nf) != 3)
    clean = dict(calib, idxs=np.repeat(calib["true_idx"][:, None], S, axis=1))  # see the next test
    ours = run(clean, **kw)
    ref = run_brutus(clean, **kw)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12)
    np.testing.assert_array_equal(ours[1], 0.0)
    np.testing.assert_array_equal(ours[1], ref[1])
    np.testing.assert_array_equal(ours[2], np.ones(nf))
    np.testing.assert_array_equal(ours[2], ref[2])


@pytest.mark.oracle
def test_zero_weight_draws_do_not_underflow_the_weights(calib, brutus_oracle):
    """brutus quirk: it exponentiates ln w - max(ln w) BEFORE multiplying by the user weights, so when the
    draws with the largest leave-one-out weight (here: draws of a wrong model, which exp(+chi2_i/2) favours)
    have zero user weight, every weight underflows and the object is dropped.  Combined in log space, the
    object keeps its one weighted draw."""
    obj, k = 0, 0
    c = dict(calib, **{key: calib["prior_" + key].copy() for key in ("idxs", "reds", "dreds", "dists")})
    c["idxs"][obj, 1::2] = (calib["true_idx"][obj] + len(calib["models"]) // 2) % len(calib["models"])
    weights = np.zeros((N, S))
    weights[obj, k] = 1.0
    kw = dict(sel=np.arange(N) == obj, weights=weights, dim_prior=False)
    o, e, n = run(c, **kw)
    ref = run_brutus(c, **kw)
    observed = calib["mask"][obj]
    assert np.all(ref[2][observed] == 0)  # brutus drops it
    np.testing.assert_array_equal(n, observed.astype(int))
    flux = _fluxes(c["models"], c["idxs"][obj, k], c["reds"][obj, k], c["dreds"][obj, k], c["dists"][obj, k])
    np.testing.assert_allclose(o[observed], (flux / c["phot"][obj])[observed], rtol=1e-12)


@pytest.mark.oracle
@pytest.mark.parametrize("case", ["default", "gauss", "mask_fit", "sel_weights", "old", "prior", "std"])
def test_offsets_statistically_match_brutus(calib, brutus_oracle, case):
    """Same inputs, independent bootstrap streams: offsets agree to a fraction of their error."""
    rng = np.random.default_rng(7)
    nf = calib["phot"].shape[1]
    kw, cfg = {}, {}
    if case == "gauss":
        kw["dim_prior"] = False
    elif case == "mask_fit":
        kw["mask_fit"] = np.arange(nf) % 3 != 0
    elif case == "sel_weights":
        kw.update(sel=rng.random(N) > 0.3, weights=rng.uniform(0, 1, (N, S)))
    elif case == "old":
        kw["old_offsets"] = rng.uniform(0.95, 1.05, nf)
    elif case == "prior":
        kw.update(prior_mean=np.full(nf, 1.0), prior_std=np.full(nf, 0.004))
    elif case == "std":
        cfg["uncertainty_method"] = "bootstrap_std"
    ours = run(calib, config=PhotometricOffsetsConfig(**cfg, loo_bands="observed"), **kw)
    ref = run_brutus(calib, cfg, **kw)
    np.testing.assert_array_equal(ours[2], ref[2])
    if case == "prior":  # the same combination rule (the pull toward the prior is too error-sensitive for z)
        for res, base in ((ours, run(calib)), (ref, run_brutus(calib))):
            var = base[1] ** 2 + kw["prior_std"] ** 2
            np.testing.assert_allclose(res[0], (base[0] * kw["prior_std"] ** 2 + kw["prior_mean"] * base[1] ** 2)
                                       / var, rtol=1e-13)
            np.testing.assert_allclose(res[1], base[1] * kw["prior_std"] / np.sqrt(var), rtol=1e-13)
        return
    z = (ours[0] - ref[0]) / ref[1]
    assert np.all(np.abs(z) < 0.6), z
    ratio = ours[1] / ref[1]
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


@pytest.mark.oracle
def test_band_without_objects_matches_brutus(calib, brutus_oracle):
    mask = calib["mask"].copy()
    mask[:, 2] = False
    c = dict(calib, mask=mask)
    for kw in (dict(), dict(prior_mean=np.full(7, 1.02), prior_std=np.full(7, 0.01))):
        ours, ref = run(c, **kw), run_brutus(c, **kw)
        for a, b in zip(ours, ref):
            assert a[2] == b[2]
        assert ours[2][2] == 0 and not np.any(np.isnan(ours[0])) and not np.any(np.isnan(ours[1]))
    o, e, n = run(c)
    assert o[2] == 1.0 and np.isinf(e[2])


# ------------------------------------------------------------------ semantics, reproducibility
def test_injected_offsets_are_recovered(calib):
    """Draws not conditioned on the data (mask_fit all False): offsets = injected within errors;
    the inverse (data/model) is excluded."""
    prior = dict(calib, **{k: calib["prior_" + k] for k in ("idxs", "reds", "dreds", "dists")})
    o, e, n = run(prior, mask_fit=np.zeros(7, bool))
    assert np.all(n > 0.8 * N)
    z = (o - O_TRUE) / np.hypot(e, 0.002)
    assert np.all(np.abs(z) < 4), z
    off = O_TRUE != 1
    assert np.all(np.abs(o - 1 / O_TRUE)[off] > 5 * e[off])


def test_leave_one_out_removes_the_fit_circularity(models):
    """Draws importance-weighted by the full likelihood of data with one band off by 0.9: the leave-one-out
    estimate of that band recovers 0.9; without it the fit's pull biases it toward 1."""
    rng = np.random.default_rng(0)
    nf = models.shape[1]
    idx = rng.integers(0, len(models), N)
    av, rv, d = rng.uniform(0.1, 1.0, N), rng.normal(3.3, 0.1, N), rng.uniform(0.5, 2.0, N)
    ftrue = _fluxes(models, idx, av, rv, d)
    o_true = np.where(np.arange(nf) == 1, 0.9, 1.0)
    err = 0.03 * ftrue / o_true
    phot = (ftrue + 0.03 * ftrue * rng.normal(size=ftrue.shape)) / o_true
    # proposal around the truth in (ln d, A_V); weights = likelihood / proposal density (flat prior)
    zd, za = rng.normal(size=(N, S)), rng.normal(size=(N, S))
    dists, reds = d[:, None] * np.exp(0.03 * zd), av[:, None] + 0.05 * za
    idxs, dreds = np.repeat(idx[:, None], S, 1), np.repeat(rv[:, None], S, 1)
    chi2 = np.sum(((phot[:, None] - _fluxes(models, idxs, reds, dreds, dists)) / err[:, None]) ** 2, axis=-1)
    lw = -0.5 * chi2 + 0.5 * (zd**2 + za**2)
    weights = np.exp(lw - lw.max(1, keepdims=True))
    c = dict(phot=phot, err=err, mask=np.ones(phot.shape, bool), models=models, idxs=idxs, reds=reds, dreds=dreds,
             dists=dists)
    o, e, _ = run(c, weights=weights, dim_prior=False)
    o_no, e_no, _ = run(c, weights=weights, mask_fit=np.zeros(nf, bool))
    assert abs(o[1] - 0.9) < 3 * e[1] + 0.002, (o[1], e[1])
    assert o_no[1] - 0.9 > 4 * e_no[1], (o_no[1], e_no[1])


def test_reproducible_and_rng_forms(calib):
    a = run(calib, rng=3)
    np.testing.assert_array_equal(a[0], run(calib, rng=3)[0])
    np.testing.assert_array_equal(a[0], run(calib, rng=None, config=PhotometricOffsetsConfig(random_seed=3))[0])
    assert not np.array_equal(a[0], run(calib, rng=4)[0])
    g = run(calib, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(g[0], run(calib, rng=np.random.default_rng(9))[0])
    k = run(calib, rng=jax.random.key(2))
    np.testing.assert_array_equal(k[0], run(calib, rng=jax.random.PRNGKey(2))[0])
    # use_vectorized_bootstrap=False only changes the batch size, which cannot change results (tested on
    # bootstrap_medians in test_bootstrap_batching_and_empty; not repeated here to save a compile)


def test_float32_matches_float64(calib):
    """With x64 off the kernels run in float32: same objects, offsets within a few % of their error."""
    r64 = run(calib)
    with jax.enable_x64(False):
        r32 = run(calib)
    np.testing.assert_array_equal(r32[2], r64[2])
    assert np.all(np.abs(r32[0] - r64[0]) < 0.05 * r64[1])
    np.testing.assert_allclose(r32[1], r64[1], rtol=0.05)


def test_prior_combination_and_unselected_placeholders(calib):
    nf = calib["phot"].shape[1]
    o, e, n = run(calib)
    pm, ps = np.linspace(0.98, 1.02, nf), np.full(nf, 0.005)
    po, pe, pn = run(calib, prior_mean=pm, prior_std=ps)
    np.testing.assert_array_equal(n, pn)
    np.testing.assert_allclose(po, (o * ps**2 + pm * e**2) / (e**2 + ps**2), rtol=1e-14)
    np.testing.assert_allclose(pe, e * ps / np.sqrt(e**2 + ps**2), rtol=1e-14)
    # rows outside sel may hold fit placeholders (-99, NaN): ignored, same result as any other values
    sel = np.ones(N, bool)
    sel[:3] = False
    bad = dict(calib, idxs=calib["idxs"].copy(), dists=calib["dists"].copy())
    bad["idxs"][:3] = -99
    bad["dists"][:3] = np.nan
    np.testing.assert_array_equal(run(bad, sel=sel)[0], run(calib, sel=sel)[0])
    with pytest.raises(ValueError, match="idxs"):
        run(bad)


def test_verbose_output(calib, capsys):
    mask = calib["mask"].copy()
    mask[:, 0] = False
    run(dict(calib, mask=mask), verbose=True)
    err = capsys.readouterr().err
    assert "model fluxes" in err and "no usable objects for filter 1" in err


# ------------------------------------------------------------------ errors
def _bad(c, **change):
    args = dict(zip(("phot", "err", "mask", "models", "idxs", "reds", "dreds", "dists"), args_of(c)))
    kw = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    return lambda: photometric_offsets(*args.values(), verbose=False, **kw)


@pytest.mark.parametrize("name,change", [
    ("phot", lambda c: dict(phot=c["phot"][0])),
    ("err", lambda c: dict(err=c["err"][:, :3])),
    ("err", lambda c: dict(err=-c["err"])),
    ("phot", lambda c: dict(phot=np.where(c["mask"], np.nan, c["phot"]))),
    ("mask", lambda c: dict(mask=c["mask"] * 2)),
    ("mask", lambda c: dict(mask=c["mask"][:, :2])),
    ("models", lambda c: dict(models=c["models"][:, :3])),
    # brutus quirk: a grid with MORE bands than phot is silently accepted (its first bands are used)
    ("models", lambda c: dict(models=np.concatenate([c["models"], c["models"][:, :1]], axis=1))),
    # brutus quirk: the -99 of unfinished fit rows silently wraps to models[-99] in a large grid
    ("idxs", lambda c: dict(idxs=np.where(np.arange(S) == 0, -99, c["idxs"]))),
    ("idxs", lambda c: dict(idxs=c["idxs"][:, :, None])),
    ("idxs", lambda c: dict(idxs=c["idxs"] * 1.0)),
    ("idxs", lambda c: dict(idxs=c["idxs"] + 10**6)),
    ("reds", lambda c: dict(reds=c["reds"][:, :3])),
    ("reds", lambda c: dict(reds=c["reds"] * np.nan)),
    ("dists", lambda c: dict(dists=-c["dists"])),
    ("sel", lambda c: dict(sel=np.ones(3, bool))),
    ("weights", lambda c: dict(weights=-np.ones((N, S)))),
    ("weights", lambda c: dict(weights=np.ones((N, 2)))),
    ("mask_fit", lambda c: dict(mask_fit=np.ones(2, bool))),
    ("old_offsets", lambda c: dict(old_offsets=np.zeros(7))),
    ("prior_mean and prior_std", lambda c: dict(prior_mean=np.ones(7))),
    ("prior_std", lambda c: dict(prior_mean=np.ones(7), prior_std=np.zeros(7))),
    ("prior_mean", lambda c: dict(prior_mean=np.ones(3), prior_std=np.ones(3))),
    ("config", lambda c: dict(config=dict(n_bootstrap=3))),
    ("rng", lambda c: dict(rng="seed")),
])
def test_bad_input_names_the_argument(calib, name, change):
    with pytest.raises(ValueError, match=name):
        _bad(calib, **change(calib))()


@pytest.mark.parametrize("kw,name", [(dict(uncertainty_method="mad"), "uncertainty_method"),
                                     (dict(n_bootstrap=0), "n_bootstrap"), (dict(min_bands_used=0), "min_bands_used"),
                                     (dict(progress_interval=-1), "progress_interval"),
                                     (dict(loo_bands="all"), "loo_bands"), (dict(random_seed=1.5), "random_seed")])
def test_config_validation(kw, name):
    with pytest.raises(ValueError, match=name):
        PhotometricOffsetsConfig(**kw)
    cfg = PhotometricOffsetsConfig()
    assert (cfg.min_bands_used, cfg.min_bands_unused, cfg.n_bootstrap, cfg.uncertainty_method) == (4, 3, 300,
                                                                                                     "bootstrap_iqr")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_bootstrap = 5


# ------------------------------------------------------------------ files
def test_write_offsets_round_trip(tmp_path):
    names = ["PS_g", "PS_r", "2MASS_J"]
    vals = np.array([0.95123456789012345, 1.0, 1.0312])
    path = write_offsets(tmp_path / "off.txt", names, vals)
    np.testing.assert_array_equal(load_offsets(path, verbose=False), vals)
    np.testing.assert_array_equal(load_offsets(path, filters=["2MASS_J", "WISE_W1"], verbose=False), [vals[2], 1.0])
    for bad_names, bad_vals, name in ((names, vals[:2], "offsets"), (names, -vals, "offsets"),
                                      (["PS g", "a", "b"], vals, "filters"), (["a", "a", "b"], vals, "filters")):
        with pytest.raises(ValueError, match=name):
            write_offsets(tmp_path / "x.txt", bad_names, bad_vals)
    brutus_data = pytest.importorskip("brutus.data")  # astro-brutus reads the same file
    np.testing.assert_array_equal(brutus_data.load_offsets(str(path), filters=names, verbose=False), vals)


def _write_fit_file(path, c, status, brutus_style=False):
    nobj, nd = c["idxs"].shape
    draws = {"model_idx": c["idxs"].astype(np.int32), "samps_red": c["reds"], "samps_dred": c["dreds"],
             "samps_dist": c["dists"]}
    draws = {k: np.where((status == 1)[:, None], v, -99 if k == "model_idx" else np.nan) for k, v in draws.items()}
    if brutus_style:  # brutus: no obj_status, float32 draws
        with h5py.File(path, "w") as f:
            for k, v in draws.items():
                f[k] = v.astype(np.int32 if k == "model_idx" else np.float32)
        return path
    with FitOutput(path, np.arange(nobj), nd, True, "test") as out:
        out.write(np.arange(nobj), {**draws, "obj_status": status.astype(np.int8)})
    return out.path


@pytest.mark.parametrize("brutus_style", [False, True])
def test_offsets_from_fit_file(calib, tmp_path, brutus_style):
    status = np.ones(N, np.int8)
    status[[3, 50]] = 3  # failed fits: -99 / NaN draws
    path = _write_fit_file(tmp_path / "fit.h5", calib, status, brutus_style)
    idxs, reds, dreds, dists, ok = read_fit_draws(path)
    np.testing.assert_array_equal(ok, status == 1)
    grid = type("Grid", (), {"models": calib["models"]})()  # anything with .models (StarGrid, BruteForce)
    got = offsets_from_fit(path, grid, calib["phot"], calib["err"], calib["mask"], verbose=False, rng=1)
    c32 = dict(calib, idxs=np.where(ok[:, None], idxs, 0), reds=reds, dreds=dreds, dists=dists)
    want = run(c32, sel=ok, dim_prior=False)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    sel = np.arange(N) % 3 != 0
    got = offsets_from_fit(path, grid, calib["phot"], calib["err"], calib["mask"], sel=sel, verbose=False, rng=1)
    np.testing.assert_array_equal(got[0], run(c32, sel=ok & sel, dim_prior=False)[0])
    with pytest.raises(ValueError, match="phot"):
        offsets_from_fit(path, grid, calib["phot"][:5], calib["err"][:5], calib["mask"][:5], verbose=False)
    with h5py.File(tmp_path / "nodraws.h5", "w") as f:
        f["model_idx"] = idxs
    with pytest.raises(ValueError, match="save_dar_draws"):
        offsets_from_fit(tmp_path / "nodraws.h5", grid, calib["phot"], calib["err"], calib["mask"])


@pytest.mark.slow  # ~15-25 s on 2 shared cores, nearly all of it compiling BruteForce.fit
def test_bruteforce_fit_offsets_round_trip(tmp_path):
    """A real BruteForce fit of data with the r band off by 0.92: the leave-one-out offset recovers it (the
    uncorrected estimate is pulled toward 1), and refitting with phot_offsets fits much better.  (Offsets of
    the other bands absorb part of the A_V / distance degeneracy, so only the injected band is checked.)"""
    from brutus_jax.analysis import BruteForce
    from brutus_jax.core import StarGrid

    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)  # as test_bruteforce
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    rng = np.random.default_rng(1)
    n, nf = 32, len(filters)
    o_true = np.where(np.arange(nf) == 1, 0.92, 1.0)
    idx = rng.integers(0, models.shape[0], n)
    av, rv, d = rng.uniform(0, 1.0, n), rng.normal(3.3, 0.1, n), rng.uniform(0.5, 2.0, n)
    ftrue = _fluxes(np.asarray(models, float), idx, av, rv, d)
    phot = (ftrue + 0.02 * ftrue * rng.normal(size=ftrue.shape)) / o_true
    err, mask = 0.02 * ftrue / o_true, np.ones((n, nf), bool)
    kw = dict(parallax=1 / d + 0.02 * rng.normal(size=n), parallax_err=np.full(n, 0.02),
              data_coords=np.column_stack([rng.uniform(0, 360, n), rng.uniform(-60, 60, n)]), rstate=42,
              verbose=False, batch_size=8)
    bf = BruteForce(grid, verbose=False)
    path = bf.fit(phot, err, mask, np.arange(n), tmp_path / "fit", **kw)
    o, e, used = offsets_from_fit(path, bf, phot, err, mask, verbose=False, rng=0)
    o_no, _, _ = offsets_from_fit(path, bf, phot, err, mask, mask_fit=np.zeros(nf, bool), verbose=False, rng=0)
    assert np.all(used == n)
    assert abs(o[1] - 0.92) < 3 * e[1] + 0.01, (o, e)
    assert abs(o[1] - 0.92) < abs(o_no[1] - 0.92)
    assert abs(o[1] - 0.92) < 0.2 * abs(1 / 0.92 - 0.92)
    path2 = bf.fit(phot, err, mask, np.arange(n), tmp_path / "refit", phot_offsets=o, **kw)
    with h5py.File(path) as f1, h5py.File(path2) as f2:
        assert np.median(f2["obj_chi2min"][()]) < 0.5 * np.median(f1["obj_chi2min"][()])
    write_offsets(tmp_path / "off.txt", filters, o)
    np.testing.assert_array_equal(load_offsets(tmp_path / "off.txt", filters=filters, verbose=False), o)
