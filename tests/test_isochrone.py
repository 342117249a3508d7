"""Isochrone: brutus-format reader vs astro-brutus, MIST nodes and Sun, smoothness.

References: astro-brutus 1.2.0's ``Isochrone`` on the same synthetic file
(exact, ``interp='linear'``), the raw lachesis MIST file read independently
(node reproduction), solar values (Sun check) and finite differences.
"""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.core import Isochrone
from brutus_jax.kernels.isochrone_interp import isochrone_predictions

LABELS = ["mini", "mass", "logl", "logt", "logr", "logg", "feh_surf", "afe_surf", "loga"]


def write_synthetic_isochrones(path):
    """A small isochrone set in brutus's HDF5 format with ragged ends and holes."""
    feh = np.array([-0.5, 0.0, 0.25])
    afe = np.array([0.0])
    loga = np.array([8.8, 9.0, 9.2, 9.4, 9.6])
    eep = np.arange(200.0, 600.0, 5.0)
    F, L, E = np.meshgrid(feh, loga, eep, indexing="ij")
    x = (E - 200.0) / 400.0
    mini = 0.2 + 2.2 * x ** 1.5 * (1.0 - 0.15 * (L - 8.8)) * (1 + 0.05 * F) + 0.01 * (L - 8.8) ** 2
    logt = 3.5 + 0.25 * np.log10(mini / 0.2) - 0.05 * F + 0.03 * np.sin(3 * L) * x - 0.2 * np.clip(x - 0.6, 0, None)
    logl = 3.5 * np.log10(mini) + 0.1 * F + 0.5 * np.clip(x - 0.6, 0, None) + 0.02 * np.cos(2 * L)
    logr = 0.5 * logl - 2 * (logt - 3.7617)
    logg = 4.438 + np.log10(mini) - 2 * logr
    pred = np.stack([mini, 0.98 * mini, logl, logt, logr, logg, F - 0.03, np.zeros_like(F), L + 0 * E], axis=-1)
    # ragged ends: each (feh, loga) isochrone stops at a different EEP
    for i in range(feh.size):
        for k in range(loga.size):
            end = 560.0 - 35.0 * k - 10.0 * i
            pred[i, k, eep > end] = np.nan
    pred[1, 2, 10] = np.nan  # interior hole (filled by brutus)
    pred[2, 1, 20, 3] = np.nan  # partially missing row (filled too)
    pred[0, 4, 5:] = np.nan  # one isochrone that is almost empty
    pred = pred[:, None]  # afe axis
    with h5py.File(path, "w") as f:
        f["feh"], f["afe"], f["loga"], f["eep"] = feh, afe, loga, eep
        f["predictions"] = pred
        f["predictions"].attrs["labels"] = np.array([s.encode() for s in LABELS])
    return path


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    return write_synthetic_isochrones(tmp_path_factory.mktemp("iso") / "iso_synth.h5")


@pytest.fixture(scope="module")
def mist():
    return Isochrone(verbose=False)


def _same(a, b, rtol=1e-10, atol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=rtol, atol=atol)


@pytest.mark.oracle
def test_brutus_format_matches_astro_brutus(synth_file, brutus_oracle):
    from brutus.core.populations import Isochrone as BIsochrone

    ref = BIsochrone(mistfile=str(synth_file), verbose=False)
    ours = Isochrone(str(synth_file), verbose=False, interp="linear")
    np.testing.assert_array_equal(ours.eep_u, ref.eep_u)
    eeps = [None, np.array([199.0, 200.0, 201.3, 333.3, 455.0, 480.5, 530.0, 561.0, 599.0, 600.0])]
    points = [(0.0, 9.0), (0.1, 9.1), (-0.5, 8.8), (0.25, 9.6), (0.2, 9.55), (-0.3, 9.43), (0.3, 9.0),
              (0.0, 8.7), (-0.25, 9.5)]
    n_nan = 0
    for feh, loga in points:
        for eep in eeps:
            for corr in (True, False):
                a = ours.get_predictions(feh=feh, loga=loga, eep=eep, apply_corr=corr)
                b = ref.get_predictions(feh=feh, loga=loga, eep=eep, apply_corr=corr)
                _same(a, b)
                n_nan += np.isnan(a[:, 0]).sum()
    assert n_nan > 0  # the NaN pattern was exercised
    # corr_params, afe off the single node, predictions subset/reordering
    _same(ours.get_predictions(0.1, 0.0, 9.1, corr_params=(0.05, -0.1, 20.0, 0.3)),
          ref.get_predictions(0.1, 0.0, 9.1, corr_params=(0.05, -0.1, 20.0, 0.3)))
    assert np.all(np.isnan(ours.get_predictions(afe=0.1)))
    sub = Isochrone(str(synth_file), predictions=["logt", "mini"], verbose=False, interp="linear")
    refsub = BIsochrone(mistfile=str(synth_file), predictions=["logt", "mini"], verbose=False)
    _same(sub.get_predictions(0.1, 0.0, 9.1), refsub.get_predictions(0.1, 0.0, 9.1))


def test_cubic_exact_at_nodes_and_smooth_synthetic(synth_file):
    lin = Isochrone(str(synth_file), verbose=False, interp="linear")
    cub = Isochrone(str(synth_file), verbose=False, interp="cubic")
    for feh, loga in [(0.0, 9.0), (-0.5, 9.2), (0.25, 9.4)]:
        _same(cub.get_predictions(feh, 0.0, loga, apply_corr=False),
              lin.get_predictions(feh, 0.0, loga, apply_corr=False), rtol=1e-12, atol=1e-12)
    # same validity pattern off-node (brutus's bracketing rule)
    for feh, loga in [(0.1, 9.1), (-0.2, 9.5), (0.2, 9.33)]:
        a = cub.get_predictions(feh, 0.0, loga)
        b = lin.get_predictions(feh, 0.0, loga)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) < 0.1


def test_bad_arguments(synth_file, tmp_path):
    with pytest.raises(ValueError, match="interp"):
        Isochrone(str(synth_file), verbose=False, interp="quadratic")
    with pytest.raises(ValueError, match="predictions"):
        Isochrone(str(synth_file), predictions=["mini", "Mr"], verbose=False)
    with pytest.raises(ValueError, match="mistfile"):
        Isochrone(str(tmp_path / "missing.h5"), verbose=False)
    with pytest.raises(ValueError, match="corr_params"):
        Isochrone(str(synth_file), verbose=False).get_predictions(corr_params=(1.0, 2.0))


# ---------------------------------------------------------------- real MIST data


@pytest.mark.mist
def test_mist_nodes_reproduce_file(mist):
    from brutus_jax.data.mist import read_lachesis_isochrones

    raw = read_lachesis_isochrones(mist.mistfile, columns=("initial_mass", "log_Teff", "log_L", "log_g"))
    for feh, loga in [(0.0, 9.0), (-1.0, 9.65), (0.25, 8.5)]:
        i = int(np.argmin(np.abs(raw["feh"] - feh)))
        k = int(np.argmin(np.abs(raw["loga"] - loga)))
        p = mist.get_predictions(feh=raw["feh"][i], loga=raw["loga"][k], apply_corr=False)
        for col, name in (("initial_mass", "mini"), ("log_Teff", "logt"), ("log_L", "logl"), ("log_g", "logg")):
            ref = raw["data"][col][i, k]
            ok = np.isfinite(ref) & np.isfinite(p[:, 0])
            assert ok.sum() > 300
            np.testing.assert_allclose(p[ok, mist.predictions.index(name)], ref[ok], rtol=0, atol=1e-9)


@pytest.mark.mist
def test_mist_sun(mist):
    loga = np.log10(4.57e9)
    p = mist.get_predictions(feh=0.0, loga=loga, eep=np.arange(202.0, 454.0), apply_corr=False)
    mini, logt, logl = (p[:, mist.predictions.index(n)] for n in ("mini", "logt", "logl"))
    j = int(np.nanargmin(np.abs(mini - 1.0)))
    assert abs(mini[j] - 1.0) < 0.01
    assert abs(10 ** logt[j] - 5772.0) < 120.0  # MIST (v/vcrit 0.4) Sun within 2 %
    assert abs(logl[j]) < 0.06
    # between the bracketing node isochrones at the same EEP
    e = np.array([202.0 + j])
    lo = mist.get_predictions(feh=0.0, loga=9.65, eep=e, apply_corr=False)[0]
    hi = mist.get_predictions(feh=0.0, loga=9.70, eep=e, apply_corr=False)[0]
    for n in ("logt", "logl"):
        c = mist.predictions.index(n)
        assert min(lo[c], hi[c]) - 1e-3 <= p[j, c] <= max(lo[c], hi[c]) + 1e-3


def _dlogt_dloga(iso, feh, eep):
    """jitted (d logt / d loga, (logt, ok)) over a vector of ages; the table is an argument."""
    table = iso.jax_table(jnp.float64)
    e = jnp.asarray(eep)
    col = iso.column("logt")

    def f(loga, t):
        p, ok = isochrone_predictions(t, feh, 0.0, loga, e, iso.corr_cols, iso.interp, False)
        return p[:, col], ok

    g = jax.jit(jax.vmap(jax.jacfwd(lambda a, t: f(a, t)[0]), in_axes=(0, None)))
    v = jax.jit(jax.vmap(f, in_axes=(0, None)))
    return (lambda x: g(x, table)), (lambda x: v(x, table))


@pytest.mark.mist
def test_gradient_continuous_across_loga_node(mist):
    """d logt / d loga just left and right of MIST nodes: linear jumps, cubic does not.

    Off a [Fe/H] node (feh = 0.07: the four [Fe/H] nodes enter) and over EEPs
    down to the low-mass start of the isochrones, where neighbouring nodes
    end at different EEPs (ghost nodes keep the tangents consistent there).
    """
    lin = Isochrone(verbose=False, interp="linear")
    eep = np.linspace(205.0, 600.0, 80)
    nodes = np.array([9.1, 9.15, 9.6])
    eps = 1e-7
    x = np.concatenate([nodes - eps, nodes + eps])
    jumps = {}
    for name, iso in (("cubic", mist), ("linear", lin)):
        g, f = _dlogt_dloga(iso, 0.07, eep)
        d = np.asarray(g(jnp.asarray(x)))  # (6, n_eep)
        ok = np.asarray(f(jnp.asarray(x))[1])
        both = ok[:3] & ok[3:]
        assert both.sum() > 200 and np.all(np.isfinite(d))
        jumps[name] = np.where(both, np.abs(d[3:] - d[:3]), 0.0)
        scale = np.abs(np.where(ok, d, 0.0)).max()
        # the gradient agrees with central finite differences inside the cells
        inner = np.concatenate([nodes - 2e-5, nodes + 2e-5])
        okin = np.asarray(f(jnp.asarray(inner))[1])
        fd_in = (np.asarray(f(jnp.asarray(inner + 1e-6))[0]) - np.asarray(f(jnp.asarray(inner - 1e-6))[0])) / 2e-6
        np.testing.assert_allclose(fd_in[okin], np.asarray(g(jnp.asarray(inner)))[okin], rtol=1e-4,
                                   atol=1e-6 * scale)
    # cubic: derivative continuous to 1e-4 of its size; linear: jumps of order of the derivative
    assert jumps["cubic"].max() < 1e-4 * scale
    assert jumps["linear"].max() > 100 * jumps["cubic"].max()


@pytest.mark.mist
def test_kernel_gradients_finite_beyond_isochrone_end(mist):
    table = mist.jax_table(jnp.float64)
    eep = jnp.linspace(202.0, 1700.0, 64)

    def loss(th, t):
        p, ok = isochrone_predictions(t, th[0], 0.0, th[1], eep, mist.corr_cols, "cubic", True)
        return jnp.sum(jnp.where(ok[:, None], p, 0.0)), ok

    (v, ok), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(jnp.array([0.1, 9.8]), table)
    assert 0 < int(ok.sum()) < eep.size  # some rows beyond the end
    assert np.all(np.isfinite(np.asarray(g))) and np.isfinite(float(v))
    # float32 table gives the same to float32 precision
    t32 = mist.jax_table(jnp.float32)
    pred = jax.jit(lambda t, f, a, e: isochrone_predictions(t, f, 0.0, a, e, mist.corr_cols, "cubic", True))
    p32, ok32 = pred(t32, jnp.float32(0.1), jnp.float32(9.8), eep.astype(jnp.float32))
    p64, ok64 = pred(table, 0.1, 9.8, eep)
    assert p32.dtype == jnp.float32
    both = np.asarray(ok32 & ok64)
    assert both.sum() >= ok64.sum() - 1
    np.testing.assert_allclose(np.asarray(p32)[both], np.asarray(p64)[both], rtol=2e-5, atol=2e-4)
