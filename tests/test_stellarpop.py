"""StellarPop: binary rules vs astro-brutus, BC-table magnitudes vs the grid, gradients.

References: astro-brutus 1.2.0's ``StellarPop`` + ``Isochrone`` + ``FastNNPredictor``
on the same synthetic isochrone and neural-network files (exact NaN pattern and
values); the grid builder's (m0, a, b) models (``data.build``); central finite
differences (float64); the float64 evaluation for float32.
"""

import functools

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.core import Isochrone, StellarPop
from brutus_jax.kernels.bc_sed import bc_table_mags
from brutus_jax.kernels.popgrid import PopSEDGrid

from test_isochrone import _same as _same_nan_pattern
from test_isochrone import write_synthetic_isochrones

NN_FILTERS = ["PS_g", "PS_r", "2MASS_J"]


def write_synthetic_nn(path, filters=NN_FILTERS, seed=3):
    """brutus nn_c3k.h5 layout with random weights; bounds cut part of the synthetic isochrones."""
    rng = np.random.default_rng(seed)
    h1, h2 = 7, 5
    with h5py.File(path, "w") as f:
        for b in filters:
            g = f.create_group(b)
            g["w1"] = rng.normal(size=(h1, 6))
            g["b1"] = rng.normal(size=(h1, 1))
            g["w2"] = rng.normal(size=(h2, h1))
            g["b2"] = rng.normal(size=(h2, 1))
            g["w3"] = rng.normal(size=(1, h2))
            g["b3"] = rng.normal(size=(1, 1))
            g["xmin"] = np.array([3300.0, 2.5, -1.0, -0.5, 0.0, 2.0])
            g["xmax"] = np.array([9000.0, 6.0, 0.5, 0.5, 4.0, 5.0])
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("pop")
    return str(write_synthetic_isochrones(d / "iso.h5")), str(write_synthetic_nn(d / "nn.h5"))


@pytest.fixture(scope="module")
def pop():
    return StellarPop(verbose=False)


_same = functools.partial(_same_nan_pattern, rtol=1e-9, atol=1e-9)


@pytest.mark.oracle
def test_binaries_match_astro_brutus(synth, brutus_oracle):
    """seds, params1, params2 of get_seds / get_seds_smf_grid equal brutus's, NaN pattern included."""
    from brutus.core.populations import Isochrone as BIso
    from brutus.core.populations import StellarPop as BPop

    iso_path, nn_path = synth
    ref = BPop(BIso(mistfile=iso_path, verbose=False), filters=NN_FILTERS, nnfile=nn_path, verbose=False)
    ours = StellarPop(Isochrone(iso_path, verbose=False, interp="linear"), filters=NN_FILTERS, nnfile=nn_path,
                      verbose=False)
    smf = np.array([0.0, 0.2, 0.45, 0.7, 0.95, 1.0, 1.3])
    cases = [dict(feh=0.1, loga=9.1, av=0.3, rv=3.1, dist=800.0),
             dict(feh=-0.2, loga=9.33, eep=np.linspace(200.0, 560.0, 80), av=0.8, rv=3.6, dist=2500.0,
                  mini_bound=0.3, eep_binary_max=430.0),
             dict(feh=0.0, loga=9.0, eep=np.linspace(230.0, 520.0, 41), mini_bound=0.2, apply_corr=False)]
    counts = np.zeros(3)
    for kw in cases:
        a = ours.get_seds_smf_grid(smf, **kw)
        b = ref.get_seds_smf_grid(smf, **kw)
        grid = ours.get_seds_smf_grid_jax(smf, **kw)
        assert isinstance(grid, PopSEDGrid) and grid.mags.shape == (smf.size, b[0][0].shape[0], 3)
        for k, ((sa, pa, qa), (sb, pb, qb)) in enumerate(zip(a, b)):
            _same(sa, sb)
            assert list(pa) == list(pb) and list(qa) == list(qb)
            for n in pb:
                _same(pa[n], pb[n])
                _same(qa[n], qb[n])
            # the JAX contract: masks are brutus's NaN pattern, values equal where defined
            np.testing.assert_array_equal(np.asarray(grid.sed_ok[k]), np.isfinite(sb).all(axis=1))
            np.testing.assert_array_equal(np.asarray(grid.mini_ok[k]), np.isfinite(pb["mini"]))
            ok = np.isfinite(sb[:, 0])
            np.testing.assert_allclose(np.asarray(grid.mags[k])[ok], sb[ok], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(np.asarray(grid.mini[k])[ok], pb["mini"][ok], rtol=1e-12)
            assert np.all(np.isfinite(np.asarray(grid.mags))) and np.all(np.isfinite(np.asarray(grid.mini)))
            if 0 < smf[k] < 1:
                counts += [np.isfinite(qb["mini"]).sum(), (np.isfinite(sb[:, 0]) & ~np.isfinite(qb["mini"])).sum(),
                           (~np.isfinite(sb[:, 0])).sum()]
    assert np.all(counts > 0)  # binaries, single stars and missing SEDs all exercised
    # get_seds and return_dict=False conventions
    for q in (0.0, 0.5, 1.0):
        sa, pa, qa = ours.get_seds(feh=0.1, loga=9.1, binary_fraction=q, return_dict=False)
        sb, pb, qb = ref.get_seds(feh=0.1, loga=9.1, binary_fraction=q, return_dict=False)
        _same(sa, sb)
        _same(pa, pb)
        _same(qa, qb)


def test_bad_arguments(synth, pop):
    iso_path, nn_path = synth
    with pytest.raises(ValueError, match="filters.*PS_g"):
        StellarPop(Isochrone(iso_path, verbose=False), filters=["PS_g", "Johnson_Q"], nnfile=nn_path, verbose=False)
    with pytest.raises(ValueError, match=r"filters.*Johnson_Q.*available.*Gaia_G_EDR3"):
        StellarPop(pop.isochrone, filters=["Gaia_G_EDR3", "Johnson_Q"], verbose=False)
    with pytest.raises(ValueError, match="corr_params"):
        pop.get_seds(corr_params=(0.1,))


# ---------------------------------------------------------------- real MIST + BC table


def _grid_models():
    """A few grid models (m0, a, b per band) with their parameters, from the grid builder."""
    from brutus_jax.data.build import default_grid_path, make_grid_arrays
    from brutus_jax.data.filters import DEFAULT_FILTERS

    path = default_grid_path("default")
    if path.exists():
        with h5py.File(path, "r") as f:
            n = f["labels"].shape[0]
            idx = np.sort(np.random.default_rng(1).choice(n, 400, replace=False))
            labels, params = f["labels"][idx], f["parameters"][idx]
            coeffs = np.stack([f["mag_coeffs"][idx][b] for b in DEFAULT_FILTERS], axis=1)
        return coeffs, labels, params
    models, labels, params = make_grid_arrays(np.array([0.7, 1.0, 1.4]), np.array([250.0, 350.0, 420.0, 500.0, 620.0]),
                                              np.array([-0.5, 0.0]), DEFAULT_FILTERS, verbose=False)
    return models, labels, params


@pytest.mark.mist
def test_bc_magnitudes_match_grid_models(pop):
    coeffs, labels, params = _grid_models()
    table = pop.sed_data(jnp.float64)
    f = jax.jit(bc_table_mags)
    fc = jax.jit(lambda *a: bc_table_mags(*a, feh_cubic=True))
    for av, rv in ((0.0, 3.3), (1.0, 3.1), (1.0, 4.0)):
        ours = np.asarray(f(table, params["logt"], params["logg"], labels["feh"], params["logl"], av, rv, 1000.0))
        ref = coeffs[..., 0] + av * (coeffs[..., 1] + rv * coeffs[..., 2])
        # same forward model as the grid builder: float32 storage of the grid is the only difference
        assert np.abs(ours - ref).max() < 1e-4, (av, rv, np.abs(ours - ref).max())
        # StellarPop's default (cubic in [Fe/H], C1 across nodes) stays within 0.01 mag of the grid
        cub = np.asarray(fc(table, params["logt"], params["logg"], labels["feh"], params["logl"], av, rv, 1000.0))
        assert np.abs(cub - ref).max() < 0.01
        node = np.isin(np.round(labels["feh"], 6), np.asarray(table.feh))
        assert node.any() and np.abs(cub - ref)[node].max() < 1e-4


@pytest.mark.mist
def test_population_matches_grid_at_same_star(pop):
    """StellarPop at a grid model's (feh, loga, eep) reproduces its mini and magnitudes."""
    coeffs, labels, params = _grid_models()
    sel = (labels["eep"] < 454) & (labels["eep"] >= 250) & (labels["feh"] >= -1.0)
    sel = np.nonzero(sel)[0][:12]
    dm, dmag = [], []
    for i in sel:
        s, p, _ = pop.get_seds(feh=labels["feh"][i], loga=params["loga"][i], eep=[labels["eep"][i]], dist=1000.0,
                               av=0.0, mini_bound=0.0, apply_corr=False)
        dm.append(p["mini"][0] - labels["mini"][i])
        dmag.append(s[0] - coeffs[i, :, 0])
    dm, dmag = np.abs(dm), np.abs(dmag)
    assert np.all(np.isfinite(dmag))
    assert np.median(dm) < 2e-3 and dm.max() < 0.01
    assert np.median(dmag) < 0.01 and dmag.max() < 0.05


@pytest.mark.mist
def test_gradients_match_finite_differences(pop):
    smf = np.array([0.0, 0.5, 1.0])
    eep = np.linspace(260.0, 560.0, 33)
    w = np.random.default_rng(0).uniform(0.5, 1.5, (3, 33, pop.NFILT))

    data = pop.jax_data(jnp.float64)

    def total(th, data):
        g = pop.get_seds_smf_grid_jax(smf, feh=th[0], loga=th[1], eep=eep, av=th[2], rv=th[3], dist=th[4],
                                      mini_bound=0.3, data=data)
        return jnp.sum(jnp.where(g.sed_ok[..., None], w * g.mags, 0.0)), g.sed_ok

    vg = jax.jit(jax.value_and_grad(total, has_aux=True))
    f = jax.jit(lambda th, d: total(th, d)[0])
    steps = np.array([1e-6, 1e-6, 1e-6, 1e-6, 1e-3])
    # second point: loga = 10.1 is an isochrone node and A_V = 0 (regression: jnp.clip halves derivatives
    # at ties), old enough for rows beyond the end of the isochrone
    for th in (np.array([0.05, 9.27, 0.45, 3.3, 900.0]), np.array([-0.6, 10.1, 0.0, 2.8, 100.0])):
        (_, ok), g = vg(jnp.asarray(th), data)
        ok, g = np.asarray(ok), np.asarray(g)
        assert 0 < ok.sum() < ok.size or th[1] < 10.0  # old: rows beyond the isochrone end
        assert np.all(np.isfinite(g))
        for j in range(5):
            e = np.zeros(5)
            e[j] = steps[j]
            fd = (float(f(jnp.asarray(th + e), data)) - float(f(jnp.asarray(th - e), data))) / (2 * steps[j])
            np.testing.assert_allclose(g[j], fd, rtol=1e-4, atol=1e-6 * abs(fd) + 1e-8)


@pytest.mark.mist
def test_float32_matches_float64(pop):
    smf = np.array([0.0, 0.5, 1.0])
    eep = np.linspace(260.0, 560.0, 33)
    kw = dict(feh=0.1, loga=9.5, eep=eep, av=0.5, rv=3.1, dist=500.0)
    g64 = pop.get_seds_smf_grid_jax(smf, **kw)
    g32 = pop.get_seds_smf_grid_jax(jnp.asarray(smf, jnp.float32), **kw)
    assert g32.mags.dtype == jnp.float32 and g64.mags.dtype == jnp.float64
    both = np.asarray(g32.sed_ok & g64.sed_ok)
    assert both.sum() >= 0.98 * np.asarray(g64.sed_ok).sum() and both.sum() > 50
    d = np.abs(np.asarray(g32.mags, float) - np.asarray(g64.mags))[both]
    assert d.max() < 5e-3


def test_with_data_equals_direct_call_under_jit(pop):
    """pop.with_data(data) inside jit (tables as an argument) gives the same SEDs as the plain call."""
    data = pop.jax_data()
    kw = dict(feh=0.1, loga=9.3, av=0.4, rv=3.2, dist=500.0, eep=np.linspace(250.0, 500.0, 16))
    smf = np.array([0.0, 0.5])
    jitted = jax.jit(lambda d: pop.with_data(d).get_seds_smf_grid_jax(smf, **kw))(data)
    direct = pop.get_seds_smf_grid_jax(smf, **kw)
    np.testing.assert_array_equal(np.asarray(jitted.sed_ok), np.asarray(direct.sed_ok))
    ok = np.asarray(direct.sed_ok)
    np.testing.assert_allclose(np.asarray(jitted.mags)[ok], np.asarray(direct.mags)[ok], rtol=0, atol=1e-10)
    assert ok.any()
    assert pop.with_data(data).filters == pop.filters
