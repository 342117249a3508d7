"""BruteForce.fit: agreement with astro-brutus, prior semantics, robustness, resume, compiles."""

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import jax
import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

from brutus_jax.analysis import BruteForce
from brutus_jax.analysis.bruteforce import _stage1_finish, _stage1_flux, _stage1_mag, _stage2
from brutus_jax.analysis.prior_setup import grid_lnprior
from brutus_jax.core import StarGrid
from brutus_jax.data.synthetic import make_synthetic_grid
from brutus_jax.kernels.priors import logp_imf
from brutus_jax.kernels.seds import get_seds


@pytest.fixture(scope="module")
def synth():
    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    return models, labels, params, filters, grid


def simulate(models, n, seed, plx_err=0.1, frac_err=0.03):
    """Stars drawn from grid models with A_V, R_V, distance and noise; returns inputs and truth."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, models.shape[0], n)
    av = rng.uniform(0, 1.5, n)
    rv = rng.normal(3.3, 0.15, n)
    d = rng.uniform(0.3, 2.0, n)
    m = np.asarray(get_seds(np.asarray(models)[idx].astype(float), av=av, rv=rv)) + 5 * np.log10(d)[:, None]
    flux = 10 ** (-0.4 * m)
    err = frac_err * flux
    flux = flux + err * rng.normal(size=flux.shape)
    plx = 1 / d + plx_err * rng.normal(size=n)
    coords = np.column_stack([rng.uniform(0, 360, n), rng.uniform(-60, 60, n)])
    return dict(data=flux, data_err=err, data_mask=np.ones_like(flux, bool), data_labels=np.arange(n),
                parallax=plx, parallax_err=np.full(n, plx_err), data_coords=coords), dict(d=d, av=av, idx=idx)


def read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


@pytest.fixture(scope="module")
def jax_fit(synth, tmp_path_factory):
    models, *_, grid = synth
    kw, truth = simulate(models, 24, seed=2)
    path = BruteForce(grid, verbose=False).fit(save_file=tmp_path_factory.mktemp("fit") / "jax", rstate=42,
                                               verbose=False, batch_size=8, **kw)
    return kw, truth, read(path)


def test_output_layout(jax_fit):
    kw, _, out = jax_fit
    n, nd = 24, 250
    expect = {"model_idx": ("i4", (n, nd)), "ml_scale": ("f4", (n, nd)), "ml_av": ("f4", (n, nd)),
              "ml_rv": ("f4", (n, nd)), "ml_cov_sar": ("f4", (n, nd, 3, 3)), "obj_log_post": ("f4", (n, nd)),
              "obj_log_evid": ("f4", (n,)), "obj_chi2min": ("f4", (n,)), "obj_Nbands": ("i2", (n,)),
              "mc_ess": ("f4", (n, nd)), "samps_dist": ("f4", (n, nd)), "samps_red": ("f4", (n, nd)),
              "samps_dred": ("f4", (n, nd)), "samps_logp": ("f4", (n, nd))}
    for name, (dt, shape) in expect.items():
        assert out[name].dtype == np.dtype(dt) and out[name].shape == shape, name
    np.testing.assert_array_equal(out["labels"], kw["data_labels"])
    assert np.all(out["obj_status"] == 1)
    for name in expect:
        assert np.all(np.isfinite(out[name])), name
    # draws are consistent: ml_scale is the fitted scale of the drawn model
    assert np.all(out["samps_red"] >= 0) and np.all((out["samps_dred"] >= 1) & (out["samps_dred"] <= 8))


@pytest.mark.oracle
def test_matches_astro_brutus(synth, jax_fit, tmp_path, brutus_oracle):
    """Same grid, stars and settings as astro-brutus 1.2.0 (v0.8 prior semantics)."""
    import brutus.analysis
    import brutus.core

    models, labels, params, filters, _ = synth
    kw, _, ours = jax_fit
    bg = brutus.core.StarGrid(np.asarray(models), labels, params, filters=list(filters), verbose=False)
    bb = brutus.analysis.BruteForce(bg, verbose=False)
    bb.models_labels = rfn.merge_arrays([labels, params], flatten=True)  # v0.8 semantics (gotcha 1)
    path = tmp_path / "brutus.h5"
    bb.fit(save_file=str(path), rstate=np.random.RandomState(1), verbose=False, **kw)
    ref = read(path)
    np.testing.assert_array_equal(ours["obj_Nbands"], ref["obj_Nbands"])
    np.testing.assert_allclose(ours["obj_chi2min"], ref["obj_chi2min"], rtol=1e-4, atol=1e-4)
    # evidence: MC estimates of the same integral (antithetic Nmc=50), differ by MC noise only
    np.testing.assert_allclose(ours["obj_log_evid"], ref["obj_log_evid"], atol=0.05)
    for name in ("samps_dist", "samps_red"):
        qa = np.percentile(ours[name], [16, 50, 84], axis=1)
        qb = np.percentile(ref[name], [16, 50, 84], axis=1)
        z = (qa[1] - qb[1]) / (0.5 * (qb[2] - qb[0]))
        ratio = (qa[2] - qa[0]) / (qb[2] - qb[0])
        # 250 draws each: the median is known to ~0.08 sigma per run
        assert np.max(np.abs(z)) < 0.5 and np.mean(np.abs(z)) < 0.15, (name, z)
        assert np.all((ratio > 0.7) & (ratio < 1.4)) and abs(np.median(ratio) - 1) < 0.08, (name, ratio)


def test_recovery_and_coverage(jax_fit):
    """Injected distances and A_V are recovered; 68 % intervals cover roughly at the nominal rate."""
    _, truth, out = jax_fit
    # errors in units of the posterior half-width: ~0.67 for calibrated posteriors
    lo, med, hi = np.percentile(out["samps_dist"], [16, 50, 84], axis=1)
    assert np.median(np.abs(med - truth["d"]) / (0.5 * (hi - lo))) < 1.0
    cover_d = np.mean((truth["d"] >= lo) & (truth["d"] <= hi))
    lo, med, hi = np.percentile(out["samps_red"], [16, 50, 84], axis=1)
    assert np.median(np.abs(med - truth["av"]) / (0.5 * (hi - lo))) < 1.5
    cover_a = np.mean((truth["av"] >= lo) & (truth["av"] <= hi))
    # 24 stars: binomial sd ~0.1 around 0.68; A_V under-covers when stars do not follow the prior
    assert 0.45 <= cover_d <= 0.95, cover_d
    assert 0.3 <= cover_a <= 0.95, cover_a


def test_v08_prior_semantics(synth):
    """The static prior is IMF(mini) + ln agewt + sum of ln(cell width) over grid AXES only,
    whichever way StarGrid received the labels (independent numpy formula)."""
    models, labels, params, filters, grid = synth
    full = rfn.merge_arrays([labels, params], flatten=True)
    expect = np.asarray(logp_imf(labels["mini"].astype(float))) + np.log(np.abs(params["agewt"]))
    for name in ("mini", "eep", "feh"):
        u = np.unique(labels[name])
        width = np.gradient(u)
        expect = expect + np.log(width[np.searchsorted(u, labels[name])])
    forms = [StarGrid(models, labels, params, filters=filters, verbose=False),
             StarGrid(models, full, filters=filters, verbose=False)]
    mask = np.zeros(1, dtype=[(n, bool) for n in full.dtype.names])
    for name in ("mini", "eep", "feh"):
        mask[name] = True
    forms.append(StarGrid(models, full, mask, filters=filters, verbose=False))
    for g in forms:
        np.testing.assert_allclose(grid_lnprior(g.labels, g.labels_mask), expect, rtol=1e-12)


def test_bad_stars_are_flagged_not_fatal(synth, tmp_path):
    models, *_, grid = synth
    kw, _ = simulate(models, 6, seed=5)
    kw["data"][1] = np.nan  # every band NaN
    kw["data_mask"][2] = False  # all bands masked
    kw["data_err"][3, :3] = -1.0  # some errors invalid
    kw["data"][4, 0] = -5.0  # negative flux in one band
    kw["parallax"][5] = np.nan  # no parallax for this star
    out = read(BruteForce(grid, verbose=False).fit(save_file=tmp_path / "bad.h5", rstate=0, verbose=False,
                                                   batch_size=8, **kw))
    assert list(out["obj_status"]) == [1, 2, 2, 1, 1, 1]
    nf = grid.nfilters
    assert list(out["obj_Nbands"]) == [nf + 1, 0, 0, nf - 2, nf, nf]  # usable bands (+1 with parallax)
    assert np.all(out["model_idx"][1:3] == -99)
    ok = out["obj_status"] == 1
    for name in ("samps_dist", "samps_red", "obj_log_evid", "ml_cov_sar"):
        assert np.all(np.isfinite(out[name][ok])), name


def test_bad_arguments_name_the_argument(synth, tmp_path):
    models, *_, grid = synth
    kw, _ = simulate(models, 3, seed=6)
    bf = BruteForce(grid, verbose=False)
    f = tmp_path / "x.h5"
    cases = [
        (dict(data=kw["data"][:, :5]), "data"),
        (dict(data_err=kw["data_err"][:2]), "data_err"),
        (dict(parallax_err=None), "parallax_err"),
        (dict(avlim=(2.0, 1.0)), "avlim"),
        (dict(dustfile=str(tmp_path / "missing.h5")), "dustfile"),
        (dict(data_coords=None, lngalprior=False, dustfile=str(tmp_path / "missing.h5")), "data_coords"),
        (dict(subsample_mode="random"), "subsample_mode"),
        (dict(data_coords=np.zeros((2, 2))), "data_coords"),
        (dict(phot_offsets=np.ones(3)), "phot_offsets"),
        (dict(data_labels=np.arange(5)), "data_labels"),
    ]
    for change, name in cases:
        with pytest.raises(ValueError, match=name):
            bf.fit(save_file=f, verbose=False, **{**kw, **change})
    assert not f.exists()


def test_existing_file_of_another_fit_is_refused(synth, tmp_path):
    models, *_, grid = synth
    kw, _ = simulate(models, 2, seed=7)
    bf = BruteForce(grid, verbose=False)
    path = bf.fit(save_file=tmp_path / "a.h5", rstate=1, verbose=False, batch_size=8, **kw)
    kw["data"] = kw["data"] * 1.01
    with pytest.raises(ValueError, match="save_file"):
        bf.fit(save_file=path, rstate=1, verbose=False, batch_size=8, **kw)
    bf.fit(save_file=path, rstate=1, verbose=False, overwrite=True, batch_size=8, **kw)


def test_no_recompile_per_star_or_batch(synth, tmp_path):
    models, *_, grid = synth
    bf = BruteForce(grid, verbose=False)
    kw, _ = simulate(models, 12, seed=8)
    bf.fit(save_file=tmp_path / "c1.h5", rstate=3, verbose=False, batch_size=8, **kw)
    n1 = _stage1_mag._cache_size() + _stage1_finish._cache_size()
    nf, n2 = _stage1_flux._cache_size(), _stage2._cache_size()
    kw, _ = simulate(models, 10, seed=9)  # other stars, a padded last batch
    bf.fit(save_file=tmp_path / "c2.h5", rstate=4, verbose=False, batch_size=8, **kw)
    assert _stage1_mag._cache_size() + _stage1_finish._cache_size() == n1
    # the flux stage and stage 2 compile once per capacity / K bucket and power-of-two group
    # size (1, 2, 4, 8 for batches of 8), never per star
    assert _stage1_flux._cache_size() - nf <= 4
    assert _stage2._cache_size() - n2 <= 4


def test_batching_does_not_change_results(synth, tmp_path):
    models, *_, grid = synth
    kw, _ = simulate(models, 7, seed=10)
    bf = BruteForce(grid, verbose=False)
    a = read(bf.fit(save_file=tmp_path / "b1.h5", rstate=5, verbose=False, batch_size=8, **kw))
    b = read(bf.fit(save_file=tmp_path / "b3.h5", rstate=5, verbose=False, batch_size=4, **kw))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_vmapped_star_groups_equal_one_star_per_call(synth, tmp_path):
    """The accelerator path (stars sharing a bucket vmapped together in the flux
    stage and stage 2, groups padded to powers of two) gives the CPU path's results
    (one star per call, and groups whose flux stage and stage 2 map over the stars
    serially)."""
    models, *_, grid = synth
    kw, _ = simulate(models, 7, seed=12)
    one = BruteForce(grid, verbose=False, group_bytes=0)
    grouped = BruteForce(grid, verbose=False, group_bytes=1 << 40)
    grouped._serial_stars = False  # the accelerator default
    serial = BruteForce(grid, verbose=False, group_bytes=1 << 40)
    serial._serial_stars = True  # the CPU default
    nf, n2 = _stage1_flux._cache_size(), _stage2._cache_size()
    a = read(one.fit(save_file=tmp_path / "g1.h5", rstate=6, verbose=False, batch_size=8, **kw))
    b = read(grouped.fit(save_file=tmp_path / "g8.h5", rstate=6, verbose=False, batch_size=8, **kw))
    c = read(serial.fit(save_file=tmp_path / "g8s.h5", rstate=6, verbose=False, batch_size=8, **kw))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(c[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)
    # one star per call compiles once per bucket; groups add at most the power-of-two sizes up to 8,
    # for each of the two paths (serial, vmapped)
    assert _stage1_flux._cache_size() - nf <= 3 * 4
    assert _stage2._cache_size() - n2 <= 3 * 4



def test_lazy_scale_errors_give_the_exact_results(synth, tmp_path, monkeypatch):
    """The magnitude stage without marginal scale errors (checked: no model outside the
    flux stage selected, else computed for that star) == every error computed; star 2's
    errors are so large (fluxes and errors x 1e9, the star ~3e4 times closer) that brutus's
    un-normalised lnl of the models outside the flux stage wins: the fallback path."""
    from brutus_jax.analysis import bruteforce as bfm

    calls = []
    exact = bfm._exact_scale_err
    monkeypatch.setattr(bfm, "_exact_scale_err", lambda ids, *a: calls.append(np.asarray(ids)) or exact(ids, *a))
    models, *_, grid = synth
    kw, _ = simulate(models, 6, seed=14)
    kw["data"][2] *= 1e9
    kw["data_err"][2] *= 1e9
    kw["parallax"][2] *= 1e9 ** 0.5
    kw["parallax_err"][2] *= 1e9 ** 0.5
    out = {}
    for lazy in (True, False):
        bf = BruteForce(grid, verbose=False)
        bf._lazy_scale_err = lazy
        out[lazy] = read(bf.fit(save_file=tmp_path / f"l{lazy}.h5", rstate=3, verbose=False, batch_size=8, **kw))
    assert len(calls) == 1 and calls[0].tolist() == [2]  # the fallback ran for star 2 only, when lazy
    for name in out[False]:
        np.testing.assert_array_equal(out[True][name], out[False][name], err_msg=name)
    assert np.all(out[True]["obj_status"] == 1)


def test_capped_selections_and_host_gather_equal_in_kernel_paths(synth, tmp_path):
    """With max_models small enough that some stars are capped (Gumbel top-k) and
    others not: vmapped groups, with the selected models gathered by numpy or in
    the kernel, give the results of one star per call gathering in the kernel."""
    models, *_, grid = synth
    kw, _ = simulate(models, 8, seed=13, plx_err=1.0)
    ref = BruteForce(grid, verbose=False, group_bytes=0)
    ref._host_gather = False
    a = read(ref.fit(save_file=tmp_path / "r.h5", rstate=7, verbose=False, batch_size=8, max_models=600, **kw))
    assert np.all(np.isfinite(a["obj_log_evid"]))
    for host in (True, False):
        bf = BruteForce(grid, verbose=False, group_bytes=1 << 40)
        bf._host_gather = host
        b = read(bf.fit(save_file=tmp_path / f"h{host}.h5", rstate=7, verbose=False, batch_size=8, max_models=600,
                        **kw))
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)

RESUME_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, jax
    jax.config.update("jax_enable_x64", True)  # as in the test process
    sys.path.insert(0, {tests!r})
    from test_bruteforce import simulate
    from brutus_jax.analysis import BruteForce, fit_io
    from brutus_jax.core import StarGrid
    from brutus_jax.data.synthetic import make_synthetic_grid
    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    kw, _ = simulate(models, 16, seed=11)
    orig = fit_io.FitOutput.write
    def write(self, rows, res):
        orig(self, rows, res)
        print("WROTE", len(rows), flush=True)
    fit_io.FitOutput.write = write
    BruteForce(grid, verbose=False).fit(save_file={path!r}, rstate=9, verbose=False, batch_size=4, **kw)
    print("DONE", flush=True)
""")


def test_killed_run_resumes_identically(synth, tmp_path):
    models, *_, grid = synth
    path = str(tmp_path / "resume.h5")
    script = RESUME_SCRIPT.format(tests=os.path.dirname(__file__), path=path)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("WROTE"):
            proc.send_signal(signal.SIGKILL)  # killed after its first batch
            break
    proc.wait()
    with h5py.File(path, "r") as f:
        status = f["obj_status"][()]
    assert 0 < np.sum(status == 1) < 16
    kw, _ = simulate(models, 16, seed=11)
    bf = BruteForce(grid, verbose=False)
    bf.fit(save_file=path, rstate=9, verbose=False, batch_size=4, **kw)  # same arguments: resumes
    full = bf.fit(save_file=tmp_path / "full.h5", rstate=9, verbose=False, batch_size=4, **kw)
    a, b = read(path), read(full)
    assert np.all(a["obj_status"] == 1)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)



DEVICES_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import h5py, numpy as np, jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    from test_bruteforce import simulate
    from brutus_jax.analysis import BruteForce
    from brutus_jax.core import StarGrid
    from brutus_jax.data.synthetic import make_synthetic_grid
    assert len(jax.devices()) == 4
    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    kw, _ = simulate(models, 14, seed=15)
    kw["data_err"][3] = -1.0  # a star without usable bands among the batches
    out = {{}}
    for n, threads in ((1, 1), (4, 1), (1, 3)):
        path = BruteForce(grid, verbose=False, devices=jax.devices()[:n], threads_per_device=threads).fit(
            save_file={path!r} + str(n) + str(threads), rstate=21, verbose=False, batch_size=4, **kw)
        with h5py.File(path, "r") as f:
            out[n, threads] = {{k: f[k][()] for k in f}}
    ref = out[1, 1]
    assert ref["obj_status"][3] == 2 and np.all(np.delete(ref["obj_status"], 3) == 1)
    for k in ref:
        np.testing.assert_array_equal(ref[k], out[4, 1][k], err_msg=k)
        np.testing.assert_array_equal(ref[k], out[1, 3][k], err_msg=k)
    print("IDENTICAL", len(ref))
""")


def test_local_devices_give_one_device_results(tmp_path):
    """Batches spread over 4 (simulated CPU) devices, one host thread each, or over 3
    host threads sharing one device, write exactly the file of a one-thread run."""
    script = DEVICES_SCRIPT.format(tests=os.path.dirname(__file__), path=str(tmp_path / "dev"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IDENTICAL" in proc.stdout

def test_float32_matches_float64(synth, jax_fit, tmp_path):
    """float32 (accelerator default) vs float64: same posteriors within MC noise."""
    models, *_, grid = synth
    kw, _, out64 = jax_fit
    out32 = read(BruteForce(grid, verbose=False, dtype=jax.numpy.float32).fit(
        save_file=tmp_path / "f32.h5", rstate=42, verbose=False, batch_size=8, **kw))
    np.testing.assert_allclose(out32["obj_chi2min"], out64["obj_chi2min"], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(out32["obj_log_evid"], out64["obj_log_evid"], atol=0.05)
    for name in ("samps_dist", "samps_red"):
        qa = np.percentile(out32[name], [16, 50, 84], axis=1)
        qb = np.percentile(out64[name], [16, 50, 84], axis=1)
        assert np.max(np.abs(qa[1] - qb[1]) / (0.5 * (qb[2] - qb[0]))) < 0.5, name


@pytest.mark.oracle
def test_loglike_and_logpost_grid_match_brutus(synth, brutus_oracle):
    """Single-star API: same lnl/selection as brutus, MC-integrated lnp within MC noise."""
    import brutus.analysis
    import brutus.core

    models, labels, params, filters, grid = synth
    kw, _ = simulate(models, 3, seed=12)
    bg = brutus.core.StarGrid(np.asarray(models), labels, params, filters=list(filters), verbose=False)
    bb = brutus.analysis.BruteForce(bg, verbose=False)
    bb.models_labels = rfn.merge_arrays([labels, params], flatten=True)
    bf = BruteForce(grid, verbose=False)
    for i in range(3):
        args = (kw["data"][i], kw["data_err"][i], kw["data_mask"][i])
        pk = dict(parallax=kw["parallax"][i], parallax_err=kw["parallax_err"][i])
        ours = bf.loglike_grid(*args, return_vals=True, **pk)
        ref = bb.loglike_grid(*args, return_vals=True, **pk)
        top = ref[0] > ref[0].max() - 20
        np.testing.assert_allclose(ours[0][top], ref[0][top], rtol=1e-6, atol=1e-6)
        assert ours[1] == ref[1]
        coord = kw["data_coords"][i]
        lp = bf.logpost_grid(ours, coord=coord, Nmc_prior=2000, rstate=1, **pk)
        lr = bb.logpost_grid(ref, coord=coord, Nmc_prior=2000, rstate=np.random.RandomState(2), **pk)
        np.testing.assert_array_equal(np.sort(lp[0]), np.sort(lr[0]))
        order_p, order_r = np.argsort(lp[0]), np.argsort(lr[0])
        lnp_p, lnp_r = lp[2][order_p], lr[2][order_r]
        good = lnp_r > lnp_r.max() - 5
        np.testing.assert_allclose(lnp_p[good], lnp_r[good], atol=0.05)
        np.testing.assert_allclose(lp[1][order_p][good], lr[1][order_r][good], rtol=1e-4, atol=1e-10)


def _dust_map(path):
    """A whole-sky nside=1 map: A_V jumps from 0.05 to 1.0 (sigma 0.05) at 0.5 kpc."""
    from brutus_jax.dust.bayestar import write_bayestar

    dists = np.linspace(0.05, 5.0, 60)
    mu = np.where(dists < 0.5, 0.05, 1.0)
    npix = 12
    write_bayestar(path, np.ones(npix, int), np.arange(npix), dists, np.tile(mu, (npix, 1)),
                   np.full((npix, dists.size), 0.05), converged=np.ones(npix, bool),
                   dm_reliable_min=np.full(npix, 4.0), dm_reliable_max=np.full(npix, 17.0))
    return str(path)


def test_dust_map_prior_tightens_av(synth, tmp_path):
    models, *_, grid = synth
    kw, truth = simulate(models, 8, seed=13, plx_err=0.02)
    # re-simulate with the map's A_V at each star's distance
    rng = np.random.default_rng(14)
    d = truth["d"]
    av = np.where(d < 0.5, 0.05, 1.0)
    m = np.asarray(get_seds(np.asarray(models)[truth["idx"]].astype(float), av=av, rv=3.3)) + 5 * np.log10(d)[:, None]
    flux = 10 ** (-0.4 * m)
    kw["data_err"] = 0.1 * flux  # poor photometry in 3 bands: A_V is weakly constrained by the data
    kw["data"] = flux + kw["data_err"] * rng.normal(size=flux.shape)
    kw["data_mask"][:, 3:] = False
    bf = BruteForce(grid, verbose=False)
    dust = _dust_map(tmp_path / "map.h5")
    with_map = read(bf.fit(save_file=tmp_path / "dust.h5", dustfile=dust, rstate=2, verbose=False, batch_size=8, **kw))
    without = read(bf.fit(save_file=tmp_path / "nodust.h5", rstate=2, verbose=False, batch_size=8, **kw))
    w_map = np.diff(np.percentile(with_map["samps_red"], [16, 84], axis=1), axis=0)[0]
    w_none = np.diff(np.percentile(without["samps_red"], [16, 84], axis=1), axis=0)[0]
    err_map = np.abs(np.median(with_map["samps_red"], axis=1) - av)
    assert np.median(w_map) < 0.5 * np.median(w_none), (w_map, w_none)
    assert np.median(err_map) < 0.1, err_map


def test_parallax_preselection_uses_marginal_scale_error():
    """brutus 1.2.0 audit finding: the parallax pre-selection prior must use the MARGINAL
    error of the scale (sqrt of the (0,0) element of the inverse Fisher matrix), not the
    conditional one (1/sqrt(I00)), which is far too small when s and A_V are correlated."""
    from brutus_jax.analysis.bruteforce import _marginal_scale_err

    rng = np.random.default_rng(0)
    sd = rng.uniform(0.1, 2.0, size=(50, 3))
    rho = rng.uniform(0.9, 0.99, size=50)  # strong scale - A_V correlation
    corr = np.tile(np.eye(3), (50, 1, 1))
    corr[:, 0, 1] = corr[:, 1, 0] = rho
    cov = corr * sd[:, :, None] * sd[:, None, :]
    icov = np.linalg.inv(cov)
    marg = np.sqrt(cov[:, 0, 0])
    got = np.asarray(_marginal_scale_err(jax.numpy.asarray(icov)))
    np.testing.assert_allclose(got, marg, rtol=1e-10)
    assert np.all(got > 1.5 / np.sqrt(icov[:, 0, 0]))  # differs from the conditional error


def test_skycoord_jax_key_and_buffered_io(synth, tmp_path, jax_fit):
    """data_coords as an astropy SkyCoord, rstate as a JAX key, running_io=False: same results."""
    # astropy comes with dust-extinction (a dependency); a bare GPU image may lack it
    SkyCoord = pytest.importorskip("astropy.coordinates").SkyCoord

    models, *_, grid = synth
    kw, _ = simulate(models, 4, seed=15)
    bf = BruteForce(grid, verbose=False)
    a = read(bf.fit(save_file=tmp_path / "a.h5", rstate=jax.random.key(3), verbose=False, batch_size=8, **kw))
    sky = SkyCoord(l=kw["data_coords"][:, 0], b=kw["data_coords"][:, 1], unit="deg", frame="galactic")
    b = read(bf.fit(save_file=tmp_path / "b.h5", rstate=jax.random.key(3), verbose=False, batch_size=8,
                    running_io=False, **{**kw, "data_coords": sky.icrs}))
    for name in ("samps_dist", "samps_red", "obj_log_evid", "model_idx"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.mist
def test_seed_typical_usage_runs_unchanged(tmp_path):
    """The seed document's field-star example, with brutus -> brutus_jax, on a 5-band MIST grid
    named grid_mist_v9.h5 (the example loads every band of that file and has 5 magnitudes)."""
    from brutus_jax.data import build_grid

    seed = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "seed-brutus-analysis.txt")
    if not os.path.exists(seed):
        pytest.skip("seed document not present")
    text = open(seed).read()
    start = text.index("from brutus.analysis import BruteForce")
    end = text.index('print(f"Extinction:', start)
    lines = text[start:text.index("\n", end)].replace("brutus.", "brutus_jax.").splitlines()
    # the seed is a scraped web page that lost the indentation of the final `with` block
    w = next(i for i, line in enumerate(lines) if line.startswith("with "))
    code = "\n".join(lines[:w + 1] + ["    " + line for line in lines[w + 1:]])
    build_grid("small", filters=["PS_g", "PS_r", "PS_i", "PS_z", "PS_y"], output_file=tmp_path / "grid_mist_v9.h5",
               verbose=False)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = float(proc.stdout.split("Distance:")[1].split("pc")[0])
    assert 330 < dist < 480  # parallax 2.5 +- 0.1 mas
    assert "Extinction:" in proc.stdout


def test_resume_without_explicit_seed(synth, tmp_path):
    """rstate=None: the drawn seed is stored, and re-running the same call resumes with it."""
    models, *_, grid = synth
    kw, _ = simulate(models, 4, seed=16)
    bf = BruteForce(grid, verbose=False)
    path = bf.fit(save_file=tmp_path / "r.h5", verbose=False, batch_size=8, **kw)
    first = read(path)
    with h5py.File(path, "r+") as f:  # pretend the run stopped before the last two stars
        f["obj_status"][2:] = 0
    bf.fit(save_file=path, verbose=False, batch_size=8, **kw)
    again = read(path)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)


def test_default_group_bytes_follows_the_device():
    """2 GiB on CPU; a tenth of an accelerator's memory (at least 2 GiB); 2 GiB when
    the backend reports no memory statistics."""
    from types import SimpleNamespace

    from brutus_jax.analysis.bruteforce import default_group_bytes

    def dev(platform, stats):
        def memory_stats():
            if stats is None:
                raise RuntimeError("no statistics")
            return stats
        return SimpleNamespace(platform=platform, memory_stats=memory_stats)

    assert default_group_bytes(jax.devices()[0]) == (2 << 30 if jax.default_backend() == "cpu"
                                                    else max(2 << 30, jax.devices()[0].memory_stats()["bytes_limit"] // 10))
    assert default_group_bytes(dev("gpu", {"bytes_limit": 80 * 10**9})) == 8 * 10**9
    assert default_group_bytes(dev("gpu", {"bytes_limit": 8 * 10**9})) == 2 << 30
    assert default_group_bytes(dev("gpu", None)) == 2 << 30


def test_default_batch_size_and_threads_follow_the_device():
    """CPU: batches from mem_lim (at most 64), one host thread; accelerators: batches
    from the device's memory (at most 1024; 2 threads in flight: 512 on an 80 GB
    H100, 1024 with the 105 GiB JAX takes of an H200, for 600k models x 8 bands in
    float32), two host threads; never more stars than needed."""
    from types import SimpleNamespace

    from brutus_jax.analysis.fit_runner import batch_size_for, threads_for

    def dev(platform, limit):
        def memory_stats():
            if limit is None:
                raise RuntimeError("no statistics")
            return {"bytes_limit": limit}
        return SimpleNamespace(platform=platform, memory_stats=memory_stats)

    grid = (600_287, 8, 4)
    assert batch_size_for(*grid, 8000.0, 10**6) == 36  # 8000 MB / 230 MB per star
    assert batch_size_for(*grid, 8000.0, 10**6, dev("cpu", None)) == 36
    assert batch_size_for(*grid, 8000.0, 10**6, dev("gpu", 60 * 10**9), 2) == 512  # 75 % of an H100
    assert batch_size_for(*grid, 8000.0, 10**6, dev("gpu", int(104.9 * 2**30)), 2) == 1024  # H200
    assert batch_size_for(*grid, 8000.0, 10**6, dev("gpu", int(104.9 * 2**30)), 1) == 1024  # at most 1024
    assert batch_size_for(*grid, 8000.0, 10**6, dev("gpu", None), 2) == 128  # 16 GiB assumed
    assert batch_size_for(*grid, 8000.0, 300, dev("gpu", 60 * 10**9), 2) == 512  # a padded 300
    assert batch_size_for(*grid, 8000.0, 3, dev("gpu", 60 * 10**9), 2) == 4
    bf = SimpleNamespace(threads_per_device=None)
    assert threads_for(bf, dev("cpu", None)) == 1 and threads_for(bf, dev("gpu", None)) == 2
    assert threads_for(SimpleNamespace(threads_per_device=3), dev("cpu", None)) == 3
