"""brutus-jax fit / merge: catalogue readers, column mapping, shards equal to a whole-catalogue fit."""

import h5py
import numpy as np
import pytest

from brutus_jax.analysis import BruteForce
from brutus_jax.catalog import catalog_inputs, merge_fits, read_catalog, shard_rows
from brutus_jax.cli import main
from brutus_jax.core import StarGrid
from brutus_jax.data import write_models
from brutus_jax.data.synthetic import make_synthetic_grid
from test_bruteforce import read, simulate


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cat")
    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    gpath = write_models(tmp / "grid.h5", models, labels, params, filters=filters)
    kw, _ = simulate(models, 10, seed=31)
    mag = -2.5 * np.log10(kw["data"])
    merr = 2.5 / np.log(10) * kw["data_err"] / kw["data"]
    mag[4, :] = -999.0  # a star without photometry (brutus's missing value)
    mag[6, 2] = np.nan  # one missing band
    cols = {"obj_id": np.arange(100, 110)}
    for j, f in enumerate(filters):
        cols[f], cols[f"{f}_err"] = mag[:, j], merr[:, j]
    cols.update(plx=kw["parallax"], parallax_error=kw["parallax_err"], l=kw["data_coords"][:, 0],
                b=kw["data_coords"][:, 1])
    csv = tmp / "cat.csv"
    names = list(cols)
    np.savetxt(csv, np.column_stack([cols[n] for n in names]), delimiter=",", header=",".join(names),
               comments="", fmt="%.10g")
    return dict(tmp=tmp, grid=str(gpath), csv=str(csv), filters=filters, cols=cols, models=models, labels=labels,
                params=params)


def test_catalog_fit_equals_direct_fit_and_shards_merge_to_it(setup):
    tmp, filters = setup["tmp"], setup["filters"]
    # --jax-cache none: the CLI's persistent compilation cache would stay on for the rest of the session
    base = ["fit", setup["csv"], "--grid", setup["grid"], "--seed", "3", "--batch-size", "4", "--quiet",
            "--jax-cache", "none", "--columns", "parallax=plx"]
    assert main(base + ["--out", str(tmp / "all.h5")]) == 0
    whole = read(tmp / "all.h5")
    assert list(whole["labels"]) == list(range(100, 110))
    assert whole["obj_status"][4] == 2 and whole["obj_Nbands"][4] == 0  # flagged, not fatal
    assert np.all(np.delete(whole["obj_status"], 4) == 1)
    assert whole["obj_Nbands"][6] == len(filters) - 1 + 1  # one band masked, + parallax
    # the same stars passed to BruteForce.fit directly
    tab = read_catalog(setup["csv"])
    kw = catalog_inputs(tab, filters, {"parallax": "plx"})
    grid = StarGrid(setup["models"], setup["labels"], setup["params"], filters=filters, verbose=False)
    direct = read(BruteForce(grid, verbose=False).fit(save_file=tmp / "direct.h5", rstate=3, verbose=False,
                                                      batch_size=4, **kw))
    for k in direct:
        np.testing.assert_array_equal(whole[k], direct[k], err_msg=k)
    # two shards (rows 0-4, 5-9), merged: the whole-catalogue file
    for i in (0, 1):
        assert main(base + ["--out", str(tmp / "s.h5"), "--shard", f"{i}/2"]) == 0
    shards = [str(tmp / f"s.shard{i:04d}of0002.h5") for i in (0, 1)]
    assert main(["merge", *shards, "--out", str(tmp / "merged.h5")]) == 0
    merged = read(tmp / "merged.h5")
    assert set(merged) == set(whole) - {"chunk_keys"}  # per-file bookkeeping
    for k in merged:
        np.testing.assert_array_equal(merged[k], whole[k], err_msg=k)
    # an existing merged file is not overwritten silently
    assert main(["merge", *shards, "--out", str(tmp / "merged.h5")]) == 2
    # shards in any order are put in row order; a missing or repeated shard is refused
    assert main(["merge", *shards[::-1], "--out", str(tmp / "rev.h5")]) == 0
    assert np.array_equal(read(tmp / "rev.h5")["labels"], whole["labels"])
    with pytest.raises(ValueError, match="rows 0:5 are missing"):
        merge_fits(shards[1:], tmp / "m1.h5")
    with pytest.raises(ValueError, match="rows 5:10 of the catalogue are missing"):
        merge_fits(shards[:1], tmp / "m2.h5")
    with pytest.raises(ValueError, match="overlaps"):
        merge_fits([shards[0], shards[0], shards[1]], tmp / "m3.h5")


def test_brutus_photometry_layout_and_errors(setup, tmp_path, capsys):
    filters, cols = setup["filters"], setup["cols"]
    n = len(cols["obj_id"])
    dt = np.dtype([("obj_id", "u8"), ("l", "f8"), ("b", "f8"), ("mag", "f4", (len(filters),)),
                   ("err", "f4", (len(filters),)), ("parallax", "f4"), ("parallax_error", "f4")])
    tab = np.zeros(n, dt)
    tab["obj_id"], tab["l"], tab["b"] = cols["obj_id"], cols["l"], cols["b"]
    tab["mag"] = np.column_stack([cols[f] for f in filters])
    tab["err"] = np.column_stack([cols[f"{f}_err"] for f in filters])
    tab["parallax"], tab["parallax_error"] = cols["plx"], cols["parallax_error"]
    path = tmp_path / "orion_like.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("photometry/pixel 0-0", data=tab[:6])
        f.create_dataset("photometry/pixel 0-1", data=tab[6:])
    kw = catalog_inputs(read_catalog(path), filters)
    assert kw["data"].shape == (n, len(filters))
    assert not kw["data_mask"][4].any() and kw["data_mask"][6].sum() == len(filters) - 1
    ok = kw["data_mask"][0]
    np.testing.assert_allclose(-2.5 * np.log10(kw["data"][0][ok]), tab["mag"][0][ok], rtol=1e-6)
    np.testing.assert_allclose(kw["parallax"], tab["parallax"])
    with pytest.raises(ValueError, match="filters"):
        catalog_inputs(read_catalog(path), filters[:3])
    # a missing column is named, with the remedy; exit code 2, no traceback
    assert main(["fit", setup["csv"], "--grid", setup["grid"], "--out", str(tmp_path / "x.h5"), "--quiet"]) == 2
    assert "'parallax'" in capsys.readouterr().err  # the catalogue calls it 'plx'
    with pytest.raises(ValueError, match="shard"):
        shard_rows(10, "2/2")
    assert [shard_rows(10, f"{i}/3") for i in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]


def test_merge_refuses_incomplete_or_mismatched_shards(tmp_path):
    def shard(name, status, width=3):
        with h5py.File(tmp_path / name, "w") as f:
            f["obj_status"] = np.asarray(status, np.int8)
            f["model_idx"] = np.zeros((len(status), width), np.int32)
        return str(tmp_path / name)

    a, b = shard("a.h5", [1, 1]), shard("b.h5", [1, 0])
    with pytest.raises(ValueError, match="incomplete"):
        merge_fits([a, b], tmp_path / "m.h5")
    c = shard("c.h5", [1], width=4)
    with pytest.raises(ValueError, match="does not match"):
        merge_fits([a, c], tmp_path / "m.h5")
    out = merge_fits([a, shard("d.h5", [2])], tmp_path / "m.h5")
    with h5py.File(out) as f:
        assert list(f["obj_status"][()]) == [1, 1, 2]
