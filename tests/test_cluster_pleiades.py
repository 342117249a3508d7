"""`fit_cluster` on real Pleiades members with the MIST StellarPop (issue #5; slow).

Reference: the members' parallaxes (1000 / mean parallax, 136.0 pc for this
selection; the literature distance is 135.2 pc).  Only the distance is checked:
with these bands the MIST/C3K single-star sequence at the literature parameters
([Fe/H] 0, log age 8.05, A_V 0.12) is ~0.05 mag bluer in BP-RP and ~0.07 mag in
G-Ks than the members, and the posterior prefers old, metal-poor solutions
(log age ~9.4) with a large field fraction; NUTS does not mix between them
(R-hat of feh / loga / A_V ~1.5) within this budget.  The distance, set by the
parallaxes, is robust to that.  ~6 min on one CPU core.
"""

import numpy as np
import pytest

BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks")


def _fit_members(name, color_range, nmax, priors, err_floor, smf_grid, eep_grid):
    """fit_cluster (2 chains x 150 + 150) on up to ``nmax`` members with all four bands inside
    ``color_range`` in BP-RP, evenly spaced in G; returns (result, selected parallaxes)."""
    from brutus_jax.analysis import fit_cluster
    from brutus_jax.core import StellarPop
    from brutus_jax.data.clusters import load_cluster_members

    pop = StellarPop(filters=list(BANDS), verbose=False)
    d = load_cluster_members(name, verbose=False)
    color = d["mag"][:, 1] - d["mag"][:, 2]
    ok = np.flatnonzero((color > color_range[0]) & (color < color_range[1]) & d["mask"].all(axis=1))
    sel = ok[np.argsort(d["mag"][ok, 0])][np.linspace(0, ok.size - 1, min(nmax, ok.size)).astype(int)]
    r = fit_cluster(pop, d["flux"][sel], d["flux_err"][sel], d["parallax"][sel], d["parallax_err"][sel],
                    mask=d["mask"][sel], num_chains=2, num_warmup=150, num_samples=150, seed=1, progress=False,
                    priors=priors, max_num_doublings=6, row_measure="smooth", err_floor=err_floor,
                    smf_grid=smf_grid, eep_grid=eep_grid)
    return r, d["parallax"][sel]


def _check_distance(r, parallax, literature):
    assert all(np.all(np.isfinite(v)) for v in r.samples.values())
    dist = np.median(r.samples["dist"])
    assert dist == pytest.approx(1000.0 / np.mean(parallax), rel=0.03)
    assert dist == pytest.approx(literature, rel=0.03)
    assert r.diagnostics["rhat"]["dist"] < 1.1
    assert int(np.sum(r.diagnostics["divergences"])) <= 5


@pytest.mark.slow
def test_pleiades_distance_from_parallaxes():
    r, plx = _fit_members("pleiades", (0.4, 2.0), 100, {"rv": 3.3}, 0.05, np.linspace(0.0, 1.0, 6),
                          np.linspace(100.0, 808.0, 300))
    _check_distance(r, plx, 135.2)


@pytest.mark.slow
def test_praesepe_distance_from_parallaxes():
    """Praesepe with the settings of benchmarks/bench_real_clusters.py (80 members with
    -0.3 < BP-RP < 1.5 -- the catalogue has nothing bluer than 0.56 --, [Fe/H] prior N(+0.15, 0.05),
    R_V 3.3, 0.03 mag floor, 500 EEP rows over the main sequence 150-500).  The distance is checked
    against the parallaxes and the literature (186 pc).  The age is not: the catalogue has no
    A stars or giants, and the population likelihood (uniform in initial mass, normalised over the
    whole isochrone) then puts the turn-off at the brightest member (log age ~9.5 against the
    literature 8.8-8.9; benchmarks/README.md, "Real clusters").  ~6 min on one CPU core."""
    r, plx = _fit_members("praesepe", (-0.3, 1.5), 80,
                          {"rv": 3.3, "feh": (-1.0, 0.5, lambda x: -0.5 * ((x - 0.15) / 0.05) ** 2)}, 0.03,
                          np.linspace(0.0, 1.0, 4), np.linspace(150.0, 500.0, 500))
    _check_distance(r, plx, 186.0)
