"""Execute the notebooks with small settings (they must run top to bottom)."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.mist
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    assert NOTEBOOKS, "no notebooks found"
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if path.name.startswith("01_"):
        assert "Sun-like model: M_G = 4.5" in text or "Sun-like model: M_G = 4.6" in text
    if path.name.startswith("02_"):
        # the Pleiades is at ~135 pc
        med = float(text.split("median distance ")[1].split(" pc")[0])
        assert 125 < med < 145, med
    if path.name.startswith("03_"):
        for name in ("pleiades", "praesepe"):
            resid = float(text.split(f"{name}: median colour residual (data - isochrone) over ")[1].split(": ")[1].split(" mag")[0])
            assert abs(resid) < 0.06, (name, resid)
        peak = float(text.split("lnL peaks at ")[1].split(" pc")[0])
        inv_plx = float(text.split("1/mean parallax = ")[1].split(" pc")[0])
        assert abs(peak - inv_plx) < 5, (peak, inv_plx)
    if path.name.startswith("04_"):
        # injected offsets recovered after two fits; the cloud found where it was put
        dev = float(text.split("max |recovered - injected|: ")[1].split(" after two")[0].split(", ")[1])
        assert dev < 0.02, dev
        med = float(text.split("cloud distance modulus: median ")[1].split(",")[0])
        assert abs(med - 9.5) < 0.3, med
        assert "-> best: 1" in text
    if path.name.startswith("05_"):
        # NUTS on a simulated cluster: the truth inside the 95 % intervals, distance within 3 %
        k, n = (int(x) for x in text.split("truth inside the 95 % interval: ")[1].split(" ")[0].split("/"))
        assert k >= n - 1, (k, n)
        dist = float(text.split("posterior median distance ")[1].split(" pc")[0])
        assert abs(dist - 800.0) < 24.0, dist
        # SMC + independence-MH chains with fit_cluster's defaults: converged, the truth inside every 95 % interval
        k, n = (int(x) for x in text.split("SMC: truth inside the 95 % interval: ")[1].split(" ")[0].split("/"))
        assert k == n, (k, n)
        assert "SMC + IMH (incl. compilation): converged True" in text
    if path.name.startswith("06_"):
        # real Pleiades members with the MIST StellarPop: the distance agrees with the parallaxes
        x = float(text.split("posterior median distance ")[1].split(" pc")[0])
        y = float(text.split("1/mean parallax ")[1].split(" pc")[0])
        assert abs(x - y) / y < 0.03, (x, y)
