"""The grid built from real MIST models: physics and bookkeeping checks.

Needs the MIST data (pinned wheels, fetched into the data cache on first use).
The reference numbers in ``REFERENCE`` are an independent computation from the
same MIST isochrones + BC tables with a *different* interpolation scheme
(isochrone-based: linear in initial mass along each node isochrone, then
bilinear in ([Fe/H], logAge)); see shared/reference/DATA_SOURCES.md §12.
"""

import numpy as np
import pytest

from brutus_jax.core import StarGrid
from brutus_jax.data import build_grid, load_models
from brutus_jax.data.mist import isochrones_to_tracks, read_lachesis_isochrones
from brutus_jax.data.sources import source_file

pytestmark = pytest.mark.mist

# (M, age Gyr, [Fe/H]) -> Teff, logg, logL, G, BP, RP, J, Ks, PS g, PS r, PS i, W1
REFERENCE = [
    ((0.8, 10.0, -1.0), (6229, 4.347, 0.125, 4.407, 4.646, 4.008, 3.562, 3.249, 4.665, 4.424, 4.353, 3.237)),
    ((0.8, 1.0, 0.0), (4913, 4.626, -0.566, 6.182, 6.652, 5.552, 4.797, 4.205, 6.796, 6.138, 5.910, 4.182)),
    ((1.0, 1.0, 0.0), (5740, 4.521, -0.094, 4.884, 5.202, 4.402, 3.881, 3.505, 5.251, 4.861, 4.750, 3.493)),
    ((1.5, 1.0, 0.0), (7067, 4.176, 0.788, 2.677, 2.836, 2.400, 2.130, 1.963, 2.809, 2.705, 2.739, 1.960)),
    ((2.0, 1.0, 0.0), (6894, 3.655, 1.391, 1.152, 1.321, 0.859, 0.564, 0.381, 1.295, 1.175, 1.200, 0.374)),
    ((1.0, 4.57, 0.0), (5834, 4.427, 0.028, 4.573, 4.877, 4.107, 3.607, 3.249, 4.920, 4.554, 4.454, 3.238)),
]
# Not used: (1.2 Msun, 4.57 Gyr, [Fe/H] 0) -> Teff 6059.  Between the node isochrones
# logAge 9.65 and 9.70 this star crosses the MS hook (EEP 385 -> 449); the reference
# blends the two node isochrones bilinearly in age (6059 K) while EEP-based tracks
# follow the hook (6196 K).  At the node ages both agree to 1 K (6070/6069 K,
# 6017.6/6017.5 K), which test_tracks_reproduce_isochrone_nodes covers.
REF_BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_J", "2MASS_Ks", "PS_g", "PS_r", "PS_i",
             "WISE_W1")


@pytest.fixture(scope="session")
def fine_grid(tmp_path_factory):
    """A fine-EEP grid around the reference stars (real MIST data)."""
    path = build_grid(
        preset="small",
        mini_grid=[0.8, 1.0, 1.2, 1.5, 2.0],
        eep_grid=np.arange(202, 500, 1),
        feh_grid=[-1.0, 0.0],
        output_file=tmp_path_factory.mktemp("grid") / "fine.h5",
        verbose=False,
    )
    models, labels, mask = load_models(path, verbose=False)
    return StarGrid(models, labels, mask, verbose=False)


def _at_age(grid, mini, feh, age_gyr):
    """EEP of the star (mini, feh) at the given age, by interpolating loga along
    its track (the grid's own models at that mass and [Fe/H] node)."""
    lab = grid.labels
    on = np.isclose(lab["mini"], mini) & np.isclose(lab["feh"], feh)
    order = np.argsort(lab["eep"][on])
    eeps, la = lab["eep"][on][order], lab["loga"][on][order]
    assert eeps.size > 10 and np.all(np.diff(la) > 0), "age must increase along a track"
    return float(np.interp(np.log10(age_gyr * 1e9), la, eeps))


@pytest.mark.parametrize("star,ref", REFERENCE, ids=[f"{m}Msun-{a}Gyr-feh{f}" for (m, a, f), _ in REFERENCE])
def test_reference_stars(fine_grid, star, ref):
    mini, age, feh = star
    eep = _at_age(fine_grid, mini, feh, age)
    sed, pred, _ = fine_grid.get_seds(mini=mini, eep=eep, feh=feh, dist=10.0)
    sed = dict(zip(fine_grid.filters, np.asarray(sed)))
    assert 10 ** float(pred["logt"]) == pytest.approx(ref[0], abs=25)
    assert float(pred["logg"]) == pytest.approx(ref[1], abs=0.01)
    assert float(pred["logl"]) == pytest.approx(ref[2], abs=0.01)
    got = np.array([sed[b] for b in REF_BANDS])
    np.testing.assert_allclose(got, ref[3:], atol=0.02)


def test_sun_issue_ranges(fine_grid):
    """Issue #2's physical checks for 1 Msun, 4.57 Gyr, [Fe/H] = 0.

    MIST (v/vcrit = 0.4) gives log L = +0.028 at 4.57 Gyr, so M_G = 4.573 is
    0.03 mag brighter than the issue's 4.6-4.7 (the real Sun: 4.67); the
    independent reference computation gives the same 4.573, so we test the
    MIST value with that documented margin.
    """
    eep = _at_age(fine_grid, 1.0, 0.0, 4.57)
    sed = dict(zip(fine_grid.filters, np.asarray(fine_grid.get_seds(mini=1.0, eep=eep, feh=0.0, dist=10.0)[0])))
    assert 4.55 <= sed["Gaia_G_EDR3"] <= 4.70
    assert 0.75 <= sed["Gaia_BP_EDR3"] - sed["Gaia_RP_EDR3"] <= 0.85
    assert 3.15 <= sed["2MASS_Ks"] <= 3.35
    red = dict(zip(fine_grid.filters, np.asarray(
        fine_grid.get_seds(mini=1.0, eep=eep, feh=0.0, dist=10.0, av=1.0, rv=3.1)[0])))
    ag = red["Gaia_G_EDR3"] - sed["Gaia_G_EDR3"]
    assert 0.80 <= ag <= 0.90
    # Ordering of extinction with wavelength
    a = [red[b] - sed[b] for b in ("PS_g", "PS_r", "PS_i", "PS_z", "PS_y", "2MASS_J", "2MASS_H", "2MASS_Ks",
                                   "WISE_W1", "WISE_W2")]
    assert np.all(np.diff(a) < 0)


def test_tracks_reproduce_isochrone_nodes():
    """At an isochrone's own (feh node, EEP, initial mass) the re-sampled track
    returns that isochrone's Teff, logg, logL and age exactly."""
    iso = read_lachesis_isochrones(source_file("mist_isochrones", verbose=False), max_eep=808)
    rng = np.random.default_rng(3)
    feh_nodes = iso["feh"]
    checked = 0
    for jf in (4, 8, 12, 14):  # [Fe/H] = -2, -1, 0, +0.5
        for eep in (210, 300, 400, 454, 500, 605, 700):
            masses = iso["data"]["initial_mass"][jf, :, eep]
            ok = np.flatnonzero(np.isfinite(masses) & (masses > 0.3) & (masses < 3.0)
                                & (iso["loga"] <= 10.14))
            if ok.size == 0:
                continue
            ka = rng.choice(ok)
            out = isochrones_to_tracks(iso, [masses[ka]], [eep], [feh_nodes[jf]])
            for col, name in (("log_Teff", "logt"), ("log_g", "logg"), ("log_L", "logl"), ("age", "loga")):
                np.testing.assert_allclose(out[name][0, 0, 0], iso["data"][col][jf, ka, eep], atol=1e-6,
                                           err_msg=f"{name} at feh={feh_nodes[jf]}, eep={eep}")
            checked += 1
    assert checked >= 20


def test_reddening_linearisation_vs_bc_table(fine_grid):
    """m0 + A_V (a + 3.1 b) reproduces the BC table's reddened magnitudes
    (the A_V axis of the MIST/C3K tables) to the accuracy of a linear law."""
    from brutus_jax.data.bolometric import BCTable

    bc = BCTable(source_file("mist_bc_tables", verbose=False), fine_grid.filters)
    rows = np.random.default_rng(1).choice(fine_grid.nmodels, 200, replace=False)
    p = fine_grid.labels[rows]
    for av, tol in ((0.3, 0.01), (1.0, 0.03), (2.0, 0.08)):
        m_tab = -bc.bc(p["logt"], p["logg"], p["feh"], av) + bc.bc(p["logt"], p["logg"], p["feh"], 0.0)
        c = np.asarray(fine_grid.models)[rows]
        m_lin = av * (c[..., 1] + 3.1 * c[..., 2])
        assert np.max(np.abs(m_lin - m_tab)) < tol, av


def test_small_preset_loads_and_is_valid():
    path = build_grid("small", verbose=False)
    models, labels, mask = load_models(path, verbose=False)
    assert models.filters[:3] == ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3")
    assert np.all(np.isfinite(np.asarray(models)))
    assert np.all(labels["agewt"] > 0) and np.all(labels["loga"] <= 10.14)
    assert set(np.unique(labels["feh"])) == {-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5}
    # a (reddening per A_V) positive and decreasing from optical to IR for every model
    a31 = models[..., 1] + 3.1 * models[..., 2]
    i = {f: k for k, f in enumerate(models.filters)}
    assert np.all(a31 > 0)
    assert np.all(a31[:, i["PS_g"]] > a31[:, i["PS_r"]])
    assert np.all(a31[:, i["2MASS_J"]] > a31[:, i["2MASS_Ks"]])
    # cache: a second call returns the same file without rebuilding
    mtime = path.stat().st_mtime_ns
    assert build_grid("small", verbose=False) == path and path.stat().st_mtime_ns == mtime


def test_build_grid_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        build_grid("huge", output_file=tmp_path / "x.h5")
    with pytest.raises(ValueError, match="filters.*PS_q"):
        build_grid("small", filters=["PS_g", "PS_q"], output_file=tmp_path / "x.h5")
    with pytest.raises(ValueError, match="feh_grid"):
        build_grid("small", feh_grid=[-5.0, 0.0], output_file=tmp_path / "x.h5")
    with pytest.raises(ValueError, match="eep_grid"):
        build_grid("small", eep_grid=[300.5, 400], output_file=tmp_path / "x.h5")


def test_wheel_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    from brutus_jax.data import sources

    src = sources.SOURCES["mist_bc_tables"]
    monkeypatch.setenv("BRUTUS_JAX_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BRUTUS_JAX_WHEEL_DIR", str(tmp_path / "wheels"))
    monkeypatch.setattr(sources, "_installed_member", lambda s: None)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / src.wheel).write_bytes(b"not the real wheel")
    with pytest.raises(RuntimeError, match="SHA256"):
        sources.source_file("mist_bc_tables", verbose=False)


@pytest.mark.slow
def test_default_grid_size_and_coverage():
    path = build_grid(verbose=False)
    models, labels, mask = load_models(path, verbose=False)
    assert models.shape[0] >= 300_000
    assert labels["feh"].min() == pytest.approx(-2.0) and labels["feh"].max() == pytest.approx(0.5)
    assert labels["eep"].max() >= 700  # through the RGB into core helium burning
    assert labels["mini"].min() <= 0.5 and labels["mini"].max() >= 2.0
