"""Catalogues streamed block by block (BruteForce.fit_stream, CatalogReader), kill-safe outputs,
corrupt / foreign / mismatched outputs refused, Slurm shards."""

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from brutus_jax.analysis import BruteForce
from brutus_jax.catalog import CatalogReader, read_catalog
from brutus_jax.cli import resolve_shard
from test_bruteforce import read, simulate, synth  # noqa: F401 (fixture)

KW = dict(rstate=5, verbose=False, batch_size=4, Ndraws=20)


@pytest.fixture(scope="module")
def stars(synth):
    models, *_, grid = synth
    kw, _ = simulate(models, 10, seed=21)
    kw["data_mask"][7] = False  # a star without bands: flagged in its block
    return grid, kw


def _reader(kw):
    return lambda a, b: {k: v[a:b] for k, v in kw.items()}


def test_stream_in_blocks_equals_one_fit(stars, tmp_path):
    grid, kw = stars
    bf = BruteForce(grid, verbose=False)
    whole = read(bf.fit(save_file=tmp_path / "whole.h5", **KW, **kw))
    path = bf.fit_stream(_reader(kw), 10, tmp_path / "stream.h5", chunk_size=3, **KW)
    got = read(path)
    assert got["chunk_keys"].shape == (4,) and all(len(k) == 64 for k in got["chunk_keys"])
    assert set(got) - {"chunk_keys"} == set(whole)
    for k in whole:
        np.testing.assert_array_equal(got[k], whole[k], err_msg=k)
    assert got["obj_status"][7] == 2 and np.all(np.delete(got["obj_status"], 7) == 1)
    # a shard of the same stars (rows 4..9 with key_offset 4) gives the same rows
    sub = {k: v[4:] for k, v in kw.items()}
    part = read(bf.fit_stream(_reader(sub), 6, tmp_path / "part.h5", chunk_size=4, key_offset=4, **KW))
    for k in whole:
        np.testing.assert_array_equal(part[k], whole[k][4:], err_msg=k)
    with pytest.raises(TypeError, match="data_labels"):
        bf.fit_stream(_reader(kw), 10, tmp_path / "x.h5", data_labels=np.arange(10))


def test_interrupted_stream_resumes_and_refuses_a_changed_catalogue(stars, tmp_path):
    grid, kw = stars
    bf = BruteForce(grid, verbose=False)
    calls = []

    def failing(a, b):
        calls.append((a, b))
        if a >= 6:
            raise KeyboardInterrupt  # killed while reading the third block
        return _reader(kw)(a, b)

    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt):
        bf.fit_stream(failing, 10, path, chunk_size=3, **KW)
    st = read(path)["obj_status"]
    assert np.all(st[:6] > 0) and np.all(st[6:] == 0)
    bf.fit_stream(_reader(kw), 10, path, chunk_size=3, **KW)
    full = read(bf.fit_stream(_reader(kw), 10, tmp_path / "full.h5", chunk_size=3, **KW))
    got = read(path)
    for k in full:
        np.testing.assert_array_equal(got[k], full[k], err_msg=k)
    # resumed: the first block is always read (it defines the file), finished ones are not
    seen = []
    bf.fit_stream(lambda a, b: seen.append(a) or _reader(kw)(a, b), 10, path, chunk_size=3, **KW)
    assert seen == [0]
    # the catalogue changed under a started output: refused, file untouched
    changed = {k: v.copy() for k, v in kw.items()}
    changed["data"][1] *= 1.01
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"rows 0:3 differ"):
        bf.fit_stream(_reader(changed), 10, path, chunk_size=3, **KW)
    assert path.read_bytes() == before
    # other options -> another fit: refused unless overwrite
    with pytest.raises(ValueError, match="other data or settings"):
        bf.fit_stream(_reader(kw), 10, path, chunk_size=5, **KW)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    from test_bruteforce import simulate
    from brutus_jax.analysis import BruteForce, fit_io
    from brutus_jax.core import StarGrid
    from brutus_jax.data.synthetic import make_synthetic_grid
    models, labels, params, filters = make_synthetic_grid(n_mini=20, n_eep=30, n_feh=8)
    grid = StarGrid(models, labels, params, filters=filters, verbose=False)
    kw, _ = simulate(models, 12, seed=23)
    orig = fit_io.FitOutput.write
    def write(self, rows, res, offset=0):
        # the results of a batch are written, its status not yet: killed here
        for k, v in res.items():
            if k != "obj_status":
                self._f[k][rows[0] + offset:rows[-1] + offset + 1] = v
        self._f.flush()
        print("MID", flush=True)
        time.sleep(60)
    fit_io.FitOutput.write = write
    BruteForce(grid, verbose=False).fit_stream(lambda a, b: {{k: v[a:b] for k, v in kw.items()}}, 12, {path!r},
                                               chunk_size=8, rstate=5, verbose=False, batch_size=4, Ndraws=20)
""")


def test_kill_in_the_middle_of_a_write_leaves_a_resumable_file(synth, tmp_path):
    models, *_, grid = synth
    path = str(tmp_path / "killed.h5")
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(tests=os.path.dirname(__file__), path=path)],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("MID"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    with h5py.File(path, "r") as f:  # readable, the half-written batch still pending
        assert np.all(f["obj_status"][()] == 0)
        assert np.any(f["model_idx"][:4] != -99)
    kw, _ = simulate(models, 12, seed=23)
    bf = BruteForce(grid, verbose=False)
    opts = dict(chunk_size=8, rstate=5, verbose=False, batch_size=4, Ndraws=20)
    bf.fit_stream(_reader(kw), 12, path, **opts)
    full = read(bf.fit_stream(_reader(kw), 12, tmp_path / "full.h5", **opts))
    got = read(path)
    for k in full:
        np.testing.assert_array_equal(got[k], full[k], err_msg=k)


def test_corrupt_foreign_and_damaged_outputs_are_refused_untouched(stars, tmp_path):
    grid, kw = stars
    bf = BruteForce(grid, verbose=False)
    good = tmp_path / "good.h5"
    bf.fit(save_file=good, **KW, **kw)
    data = good.read_bytes()
    cases = {}
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    cases["trunc.h5"] = "not a readable HDF5 file"
    (tmp_path / "text.h5").write_text("not hdf5")
    cases["text.h5"] = "not a readable HDF5 file"
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    cases["foreign.h5"] = "not a brutus_jax fit output"
    (tmp_path / "damaged.h5").write_bytes(data)
    with h5py.File(tmp_path / "damaged.h5", "a") as f:
        del f["mc_ess"]
    cases["damaged.h5"] = "damaged: dataset 'mc_ess'"
    for name, msg in cases.items():
        p = tmp_path / name
        before = p.read_bytes()
        with pytest.raises(ValueError, match=msg):
            bf.fit(save_file=p, **KW, **kw)
        assert p.read_bytes() == before, name
    # overwrite=True replaces it with a complete fit
    p = bf.fit(save_file=tmp_path / "trunc.h5", overwrite=True, **KW, **kw)
    ref = read(good)
    for k, v in read(p).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)


def test_readers_stream_blocks_equal_to_the_whole_table(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 23
    cols = {"obj_id": np.arange(1000, 1000 + n), "g": rng.normal(15, 1, n), "g_err": rng.uniform(0.01, 0.1, n)}
    csv = tmp_path / "c.csv"
    np.savetxt(csv, np.column_stack(list(cols.values())), delimiter=",", header=",".join(cols), comments="",
               fmt="%.17g")
    monkeypatch.setattr(CatalogReader, "_CSV_STRIDE", 4)  # blocks straddle the index stride
    dt = np.dtype([(k, "f8") for k in cols])
    tab = np.zeros(n, dt)
    for k in cols:
        tab[k] = cols[k]
    h5 = tmp_path / "p.h5"
    with h5py.File(h5, "w") as f:  # brutus-style pixel tables of unequal sizes
        f["photometry/a"], f["photometry/b"], f["photometry/c"] = tab[:5], tab[5:6], tab[6:]
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        for k, v in cols.items():
            f[k] = v
    for path in (csv, h5, flat):
        r = CatalogReader(path)
        assert r.nrows == n
        whole = read_catalog(path)
        for a, b in [(0, 3), (3, 9), (9, 10), (10, 23), (22, 40)]:
            part = r.read(a, b)
            for k in cols:
                np.testing.assert_allclose(np.asarray(part[k], float), cols[k][a:b], rtol=1e-12)
                np.testing.assert_allclose(np.asarray(whole[k], float)[a:b], cols[k][a:b], rtol=1e-12)
    (tmp_path / "bad.h5").write_text("x")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        CatalogReader(tmp_path / "bad.h5")


def test_resume_flag_requires_an_output(tmp_path, capsys):
    from brutus_jax.cli import main

    csv = tmp_path / "c.csv"
    csv.write_text("g,g_err\n15,0.1\n")
    assert main(["fit", str(csv), "--grid", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o.h5"),
                 "--resume", "--quiet"]) == 2
    assert "no output" in capsys.readouterr().err


def test_slurm_shards():
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "10"}
    assert resolve_shard("slurm", env) == "6/10"
    assert resolve_shard("2/5", env) == "2/5" and resolve_shard(None, env) is None
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID"):
        resolve_shard("slurm", {})


def test_writes_do_not_grow_the_file(tmp_path):
    """Every chunk is allocated at creation: writing rows changes data only (what makes a kill
    during a write harmless), and unwritten rows keep brutus's fill values."""
    from brutus_jax.analysis.fit_io import FitOutput

    out = FitOutput(tmp_path / "o.h5", np.arange(1000), 50, True, "k")
    size = os.path.getsize(out.path)
    rng = np.random.default_rng(0)
    rows = np.arange(300, 812)
    res = {k: rng.normal(size=(rows.size,) + shape[1:]).astype(dt) for k, (shape, dt, _) in out.spec.items()}
    res["obj_status"] = np.ones(rows.size, np.int8)
    out.write(rows, res)
    out.close()
    assert os.path.getsize(out.path) == size
    got = read(out.path)
    np.testing.assert_array_equal(got["ml_av"][rows], res["ml_av"])
    assert np.all(got["model_idx"][:300] == -99) and np.all(np.isnan(got["samps_dist"][812:]))
    assert np.all(got["obj_status"] == np.isin(np.arange(1000), rows))


@pytest.mark.slow
def test_random_kills_then_resume_equal_an_uninterrupted_run(synth, tmp_path):
    """`brutus-jax fit` SIGKILLed at random moments (start-up, compilation, fitting, writing),
    restarted each time; the final file equals an uninterrupted run's."""
    import time

    from brutus_jax.data import write_models

    models, labels, params, grid = synth[0], synth[1], synth[2], synth[4]
    gpath = str(write_models(tmp_path / "grid.h5", models, labels, params, filters=grid.filters))
    kw, _ = simulate(models, 4000, seed=29)
    cols = {"obj_id": np.arange(4000)}
    mag = -2.5 * np.log10(kw["data"])
    for j, f in enumerate(grid.filters):
        cols[f], cols[f"{f}_err"] = mag[:, j], 2.5 / np.log(10) * kw["data_err"][:, j] / kw["data"][:, j]
    cols.update(parallax=kw["parallax"], parallax_error=kw["parallax_err"], l=kw["data_coords"][:, 0],
                b=kw["data_coords"][:, 1])
    cat = tmp_path / "cat.h5"
    with h5py.File(cat, "w") as f:
        for k, v in cols.items():
            f[k] = v
    cmd = [sys.executable, "-m", "brutus_jax.cli", "fit", str(cat), "--grid", gpath, "--quiet", "--batch-size", "16",
           "--chunk-size", "1000", "--ndraws", "50", "--jax-cache", str(tmp_path / "jc")]
    assert subprocess.run(cmd + ["--out", str(tmp_path / "ref.h5")]).returncode == 0
    rng = np.random.default_rng(1)
    out = str(tmp_path / "killed.h5")
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(cmd + ["--out", out], stdout=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(1.0, 10.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            break
        if os.path.exists(out):
            with h5py.File(out, "r") as f:  # always readable
                f["obj_status"][()]
        time.sleep(0.1)
    assert kills >= 3
    assert subprocess.run(cmd + ["--out", out]).returncode == 0
    a, b = read(out), read(tmp_path / "ref.h5")
    assert set(a) == set(b)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)