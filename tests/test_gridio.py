"""Grid and offsets file I/O (brutus_jax.data.gridio) and the synthetic grid."""

import os
import pickle
import warnings

import h5py
import numpy as np
import pytest

from brutus_jax.data.gridio import GridModels, load_models, load_offsets, write_models, write_offsets
from brutus_jax.data.synthetic import make_synthetic_grid

DEFAULT_OUT = ["mini", "feh", "eep", "loga", "logl", "logt", "logg", "agewt"]


@pytest.fixture(scope="module")
def grid():
    return make_synthetic_grid(n_mini=6, n_eep=10, n_feh=4, seed=3)


def _expected_labels(labels, params, names):
    out = {}
    for n in names:
        out[n] = labels[n] if n in labels.dtype.names else params[n]
    return out


def _binary_grid(grid):
    """Duplicate the grid with smf = 0 and smf = 0.5 rows and two afe values."""
    models, labels, params, filters = grid
    n = len(labels)
    lab = np.empty(2 * n, dtype=[("mini", "f8"), ("eep", "f8"), ("feh", "f8"), ("afe", "f8"), ("smf", "f8")])
    for k in ("mini", "eep", "feh"):
        lab[k] = np.tile(labels[k], 2)
    lab["afe"] = 0.2
    lab["smf"] = np.repeat([0.0, 0.5], n)
    par = np.concatenate([params, params])
    mod = np.concatenate([models, models + 0.25]).astype(np.float32)
    return mod, lab, par, filters


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,compression", [("f4", "gzip"), ("f8", None), ("f4", None), ("f8", "gzip")])
def test_round_trip(tmp_path, grid, dtype, compression):
    models, labels, params, filters = grid
    path = tmp_path / "g.h5"
    write_models(path, models, labels, params, filters=filters, dtype=dtype, compression=compression)
    with h5py.File(path, "r") as f:
        assert f["mag_coeffs"].dtype[filters[0]].base == np.dtype("<" + dtype)
        assert f["mag_coeffs"].compression == compression
        assert f["labels"].dtype.names == ("mini", "eep", "feh", "afe", "smf")
        assert f.attrs["reference_distance_pc"] == 1000.0
        assert [x.decode() for x in f.attrs["filters"]] == list(filters)
        assert f.attrs["n_models_valid"] == len(models)
        assert "creation_date" in f.attrs and "brutus_jax_version" in f.attrs
    m, lab, mask = load_models(path, verbose=False)
    assert isinstance(m, GridModels) and m.dtype == np.float32 and m.filters == filters
    np.testing.assert_array_equal(m, models)
    assert list(lab.dtype.names) == DEFAULT_OUT
    exp = _expected_labels(labels, params, DEFAULT_OUT)
    for n in DEFAULT_OUT:
        np.testing.assert_array_equal(lab[n], exp[n])
    assert mask.shape == (1,) and mask.dtype.names == lab.dtype.names
    assert [n for n in DEFAULT_OUT if mask[n][0]] == ["mini", "feh", "eep"]
    assert not any(os.path.basename(p).endswith(".tmp") for p in os.listdir(tmp_path))


def test_f8_values_are_cast_to_float32(tmp_path, grid):
    models, labels, params, filters = grid
    m64 = models.astype(np.float64) + 1e-9  # not representable in float32
    write_models(tmp_path / "g.h5", m64, labels, params, filters=filters, dtype="f8", compression=None)
    m, _, _ = load_models(tmp_path / "g.h5", verbose=False)
    np.testing.assert_array_equal(m, m64.astype(np.float32))


def test_filters_subset_and_order(tmp_path, grid):
    models, labels, params, filters = grid
    write_models(tmp_path / "g.h5", models, labels, params)  # filters from models.filters
    pick = ["2MASS_Ks", "PS_g", "PS_i"]
    m, _, _ = load_models(tmp_path / "g.h5", filters=pick, verbose=False)
    cols = [filters.index(p) for p in pick]
    np.testing.assert_array_equal(m, np.asarray(models)[:, cols])
    assert m.filters == tuple(pick)


def test_include_ms_postms(tmp_path, grid):
    models, labels, params, filters = grid
    write_models(tmp_path / "g.h5", models, labels, params)
    ms = labels["eep"] <= 454.0
    assert ms.any() and (~ms).any()
    m, lab, _ = load_models(tmp_path / "g.h5", include_postms=False, verbose=False)
    np.testing.assert_array_equal(lab["eep"], labels["eep"][ms])
    np.testing.assert_array_equal(m, models[ms])
    m, lab, _ = load_models(tmp_path / "g.h5", include_ms=False, verbose=False)
    np.testing.assert_array_equal(lab["mini"], labels["mini"][~ms])
    with pytest.raises(ValueError, match="include_ms"):
        load_models(tmp_path / "g.h5", include_ms=False, include_postms=False, verbose=False)


def test_binaries_and_afe(tmp_path, grid):
    mod, lab, par, filters = _binary_grid(grid)
    write_models(tmp_path / "b.h5", mod, lab, par, filters=filters)
    m, out, mask = load_models(tmp_path / "b.h5", verbose=False)
    single = lab["smf"] == 0.0
    np.testing.assert_array_equal(m, mod[single])
    assert "smf" not in out.dtype.names and "afe" not in out.dtype.names  # constant afe dropped
    m, out, mask = load_models(tmp_path / "b.h5", include_binaries=True, verbose=False)
    np.testing.assert_array_equal(m, mod)
    assert mask["smf"][0] and "afe" not in out.dtype.names
    np.testing.assert_array_equal(out["smf"], lab["smf"])
    # explicitly requested labels are honoured, constant or not
    _, out, mask = load_models(tmp_path / "b.h5", labels=["mini", "afe", "loga", "nope"], verbose=False)
    assert out.dtype.names == ("mini", "afe", "loga") and mask["afe"][0] and not mask["loga"][0]
    np.testing.assert_array_equal(out["afe"], 0.2)
    # a multi-valued afe is kept with the default labels
    lab2 = lab.copy()
    lab2["afe"] = np.where(np.arange(len(lab)) % 2, 0.2, 0.0)
    write_models(tmp_path / "c.h5", mod, lab2, par, filters=filters)
    _, out, mask = load_models(tmp_path / "c.h5", verbose=False)
    assert "afe" in out.dtype.names and mask["afe"][0]


def test_split_when_params_none_and_nonfinite_rows(tmp_path, grid):
    models, labels, params, filters = grid
    merged = np.empty(len(labels), dtype=labels.dtype.descr + params.dtype.descr)
    for n in labels.dtype.names + params.dtype.names:
        merged[n] = labels[n] if n in labels.dtype.names else params[n]
    bad = np.array(models, copy=True)
    bad[3, 1, 2] = np.nan
    bad[7, 0, 0] = np.inf
    write_models(tmp_path / "g.h5", GridModels(bad, filters), merged)
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert set(f["parameters"].dtype.names) == set(params.dtype.names)
        assert f.attrs["n_models_valid"] == len(models) - 2
    m, lab, _ = load_models(tmp_path / "g.h5", labels=["mini", "feh_surf"], verbose=False)
    keep = np.ones(len(models), bool)
    keep[[3, 7]] = False
    np.testing.assert_array_equal(m, models[keep])
    np.testing.assert_array_equal(lab["feh_surf"], params["feh_surf"][keep])


def test_verbose_summary(tmp_path, grid, capsys):
    models, labels, params, filters = grid
    write_models(tmp_path / "g.h5", models, labels, params)
    load_models(tmp_path / "g.h5")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{len(models)}" in err


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_unknown_filter(tmp_path, grid):
    models, labels, params, filters = grid
    write_models(tmp_path / "g.h5", models, labels, params)
    with pytest.raises(ValueError, match="filters") as exc:
        load_models(tmp_path / "g.h5", filters=["PS_g", "Gaia_G_XYZ"], verbose=False)
    assert "Gaia_G_XYZ" in str(exc.value) and all(f in str(exc.value) for f in filters)


def test_bad_files(tmp_path, grid):
    models, labels, params, filters = grid
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        load_models(tmp_path / "nothere.h5", verbose=False)
    txt = tmp_path / "text.h5"
    txt.write_text("this is not hdf5\n" * 100)
    with pytest.raises(ValueError, match="text.h5.*HDF5"):
        load_models(txt, verbose=False)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="mag_coeffs"):
        load_models(tmp_path / "other.h5", verbose=False)
    # truncated: cut a valid uncompressed file in half
    write_models(tmp_path / "g.h5", models, labels, params, dtype="f8", compression=None)
    raw = (tmp_path / "g.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="t.h5"):
        load_models(tmp_path / "t.h5", verbose=False)
    # corrupt gzip chunk inside an otherwise intact file: error at read time
    write_models(tmp_path / "z.h5", models, labels, params)
    with h5py.File(tmp_path / "z.h5", "r") as f:
        off = f["mag_coeffs"].id.get_chunk_info(0).byte_offset
    raw = bytearray((tmp_path / "z.h5").read_bytes())
    raw[off + 10 : off + 200] = bytes(190)
    (tmp_path / "z.h5").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="z.h5.*mag_coeffs|mag_coeffs.*z.h5"):
        load_models(tmp_path / "z.h5", verbose=False)


def test_write_validation(tmp_path, grid):
    models, labels, params, filters = grid
    p = tmp_path / "x.h5"
    with pytest.raises(ValueError, match="models"):
        write_models(p, np.asarray(models)[:, :, :2], labels, params, filters=filters)
    with pytest.raises(ValueError, match="filters"):
        write_models(p, models, labels, params, filters=filters[:-1])
    with pytest.raises(ValueError, match="filters"):
        write_models(p, np.asarray(models), labels, params)
    with pytest.raises(ValueError, match="labels"):
        write_models(p, models, labels[:-1], params)
    with pytest.raises(ValueError, match="params"):
        write_models(p, models, labels, params[:-1])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------------------
# GridModels
# ---------------------------------------------------------------------------


def test_gridmodels_behaves_like_ndarray(grid):
    models = grid[0]
    assert isinstance(models, np.ndarray) and models.dtype == np.float32
    assert models[2:5].filters == models.filters
    assert models[:, [2, 0]].filters == (models.filters[2], models.filters[0])
    assert models[:, 1:3].filters == models.filters[1:3]
    assert models[:, 0].filters is None  # no band axis left
    assert (models + 1.0).filters == models.filters
    s = models.sum()
    assert np.isscalar(s) and not isinstance(s, GridModels)
    back = pickle.loads(pickle.dumps(models))
    assert back.filters == models.filters
    np.testing.assert_array_equal(back, models)
    assert type(np.asarray(models)) is np.ndarray


def test_synthetic_grid_is_plausible(grid):
    models, labels, params, filters = grid
    n = len(labels)
    assert models.shape == (n, len(filters), 3) and n < 6 * 10 * 4  # incomplete lattice
    assert np.all(models[..., 1] > 0) and np.all(np.abs(models[..., 2]) < 0.1)
    assert np.all(np.isfinite(params["agewt"])) and np.all(params["loga"] <= 10.14)
    assert np.all((models[..., 0] > 5) & (models[..., 0] < 30))


# ---------------------------------------------------------------------------
# offsets
# ---------------------------------------------------------------------------


def test_offsets_round_trip(tmp_path):
    p = tmp_path / "off.txt"
    write_offsets(p, ["PS_g", "PS_r", "2MASS_J"], [1.01, 0.995, 1.0])
    np.testing.assert_array_equal(load_offsets(p, verbose=False), [1.01, 0.995, 1.0])
    got = load_offsets(p, filters=["2MASS_J", "WISE_W1", "PS_g"], verbose=False)
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.01])
    (tmp_path / "dup.txt").write_text("PS_g 1.0\nPS_g 1.1\n")
    with pytest.raises(ValueError, match="PS_g"):
        load_offsets(tmp_path / "dup.txt", verbose=False)
    with pytest.raises(FileNotFoundError):
        load_offsets(tmp_path / "none.txt")


# ---------------------------------------------------------------------------
# oracle: brutus's load_models / load_offsets
# ---------------------------------------------------------------------------


def _compare_with_brutus(brutus_oracle, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bm, bl, bk = brutus_oracle.data.load_models(str(path), verbose=False, **kw)
    m, lab, mask = load_models(path, verbose=False, **kw)
    np.testing.assert_array_equal(np.asarray(m), bm)
    assert m.dtype == bm.dtype
    assert lab.dtype.names == bl.dtype.names and mask.dtype.names == bk.dtype.names
    for n in bl.dtype.names:
        np.testing.assert_array_equal(lab[n], bl[n])
        assert mask[n][0] == bk[n][0]
    assert mask.shape == bk.shape


@pytest.mark.oracle
@pytest.mark.parametrize("dtype,compression", [("f4", "gzip"), ("f8", None)])
def test_written_files_load_in_brutus(brutus_oracle, tmp_path, grid, dtype, compression):
    mod, lab, par, filters = _binary_grid(grid)
    lab["afe"] = np.where(np.arange(len(lab)) % 3, 0.0, 0.2)
    path = tmp_path / "g.h5"
    write_models(path, mod, lab, par, filters=filters, dtype=dtype, compression=compression)
    # the synthetic bands are in brutus's FILTERS order, so filters=None agrees too
    for kw in (
        {},
        dict(filters=["PS_y", "PS_g", "2MASS_Ks"]),
        dict(include_postms=False),
        dict(include_ms=False, include_binaries=True),
        dict(labels=["mini", "eep", "afe", "smf", "logt", "feh_surf"]),
    ):
        _compare_with_brutus(brutus_oracle, path, **kw)


@pytest.mark.oracle
def test_published_style_file_loads_identically(brutus_oracle, tmp_path, grid):
    """A grid in the published layout ('<f8', uncompressed, no attrs) written with h5py."""
    models, labels, params, filters = grid
    n = len(labels)
    coeffs = np.empty(n, dtype=[(f, "<f8", (3,)) for f in filters])
    for i, f in enumerate(filters):
        coeffs[f] = np.asarray(models, dtype=np.float64)[:, i] + 1e-10 * i
    lab = np.zeros(n, dtype=[(k, "<f8") for k in ("mini", "eep", "feh", "afe", "smf")])
    for k in ("mini", "eep", "feh"):
        lab[k] = labels[k]
    par = np.empty(n, dtype=[(k, "<f8") for k in params.dtype.names])
    for k in params.dtype.names:
        par[k] = params[k]
    par["agewt"][:5] = np.nan  # a partly-NaN column stays
    path = tmp_path / "pub.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("mag_coeffs", data=coeffs)
        f.create_dataset("labels", data=lab)
        f.create_dataset("parameters", data=par)
    for kw in ({}, dict(filters=["2MASS_J", "PS_r"], include_ms=False)):
        _compare_with_brutus(brutus_oracle, path, **kw)


@pytest.mark.oracle
def test_offsets_match_brutus(brutus_oracle, tmp_path):
    p = tmp_path / "off.txt"
    write_offsets(p, ["PS_g", "PS_r", "2MASS_J"], [1.012, 0.9951, 1.0])
    want = ["2MASS_J", "WISE_W1", "PS_g", "PS_r"]
    ref = brutus_oracle.data.load_offsets(str(p), filters=want, verbose=False)
    np.testing.assert_array_equal(load_offsets(p, filters=want, verbose=False), ref)
