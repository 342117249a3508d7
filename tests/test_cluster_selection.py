"""Selection functions in the population likelihood (analysis.cluster_selection).

References: a numpy float64 evaluation of the selection-normalised mixture from
the likelihood's own components; the no-selection identity; and injection-
recovery of the age of a simulated cluster whose brightest stars were not
observed (biased without the selection function, recovered with it).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from brutus_jax.analysis import isochrone_population_loglike
from brutus_jax.analysis.cluster_selection import box_selection
from brutus_jax.data.toy_population import ToyPopulation, simulate_cluster

TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
GRIDS = dict(smf_grid=np.linspace(0.0, 1.0, 6), eep_grid=np.linspace(202.0, 808.0, 600), row_measure="smooth")
FLOOR = 0.1  # mag, added to the errors (a smooth likelihood in log age with 600 EEP rows)


@pytest.fixture(scope="module")
def pop():
    return ToyPopulation(4)


@pytest.fixture(scope="module")
def cut_cluster(pop):
    """300 simulated stars of which only those fainter than the 25 % brightest in band 0
    are kept: the catalogue misses the turn-off and the giants."""
    d = simulate_cluster(pop, TRUTH, 300, seed=11)
    mag = -2.5 * np.log10(d["flux"])
    cut = float(np.quantile(mag[:, 0], 0.25))
    keep = mag[:, 0] > cut
    out = {k: v[keep] for k, v in d.items() if isinstance(v, np.ndarray) and len(v) == len(keep)}
    err = np.sqrt(out["err"] ** 2 + (FLOOR * np.log(10) / 2.5 * out["flux"]) ** 2)
    return out, err, cut


def test_box_selection_values_and_errors():
    f = box_selection(mag={0: (10.0, None)}, colour={(1, 2): (None, 1.0)}, width=0.1)
    m = jnp.asarray([[10.0, 0.0, 0.0], [11.0, 2.0, 0.5], [9.0, 3.0, 0.0]])
    k = 1.702 / 0.1  # logistic matching Phi(x / width)
    expect = np.log(expit(k * (m[:, 0] - 10.0))) + np.log(expit(k * (1.0 - (m[:, 1] - m[:, 2]))))
    np.testing.assert_allclose(np.asarray(f(m)), expect, rtol=1e-12)
    for kw, msg in [(dict(mag={0: (1.0, 0.0)}), "lo < hi"), (dict(), "at least one"),
                    (dict(mag={0: (1.0, None)}, width=0.0), "width")]:
        with pytest.raises(ValueError, match=msg):
            box_selection(**kw)


def test_selection_normalises_the_cluster_term_numpy_reference(pop, cut_cluster):
    d, err, cut = cut_cluster
    sel = box_selection(mag={0: (cut, None)}, colour={(0, 3): (None, 4.0)}, width=0.05)  # 0.05/1.702 logistic
    th = jnp.asarray(TRUTH)
    kw = dict(parallax=d["parallax"], parallax_err=d["parallax_err"], **GRIDS)
    tot, comp = isochrone_population_loglike(th, pop, d["flux"], err, return_components=True, selection=sel, **kw)
    g = comp["isochrone_grid"]
    lw = np.asarray(g["log_weights"], float)
    lc = np.asarray(comp["lnl_cluster"], float)
    lo = np.asarray(comp["lnl_outlier"], float)[0]
    phot = np.asarray(g["photometry"], float)
    good = np.all(phot > 0, axis=1)
    m = -2.5 * np.log10(np.where(phot > 0, phot, 1.0))
    k = 1.702 / 0.05
    log_s = np.where(good, np.log(expit(k * (m[:, 0] - cut))) + np.log(expit(k * (4.0 - (m[:, 0] - m[:, 3])))), 0.0)
    rows = np.isfinite(lw)
    ln_zs = logsumexp(lw[rows] + log_s[rows])
    a = logsumexp(np.where(np.isfinite(lc[rows]), lc[rows] + lw[rows, None], -np.inf), axis=0)
    wc = 0.95 * (1 - TRUTH[5])
    expect = np.logaddexp(np.log(wc) + a - ln_zs, np.log1p(-wc) + lo)
    np.testing.assert_allclose(np.asarray(comp["lnl_per_object"]), expect, rtol=1e-10, atol=1e-10)
    assert float(tot) == pytest.approx(expect.sum(), rel=1e-12)
    # S = 1 is the plain likelihood
    plain = isochrone_population_loglike(th, pop, d["flux"], err, **kw)
    one = isochrone_population_loglike(th, pop, d["flux"], err, selection=lambda mags: jnp.zeros(mags.shape[0]), **kw)
    assert float(one) == pytest.approx(float(plain), rel=1e-13)
    assert float(tot) > float(plain)  # normalising over less of the isochrone raises every member's density
    with pytest.raises(ValueError, match="one log-probability per grid row"):
        isochrone_population_loglike(th, pop, d["flux"], err, selection=lambda mags: mags, **kw)


def test_missing_bright_stars_bias_the_age_unless_selected(pop, cut_cluster):
    """Profile log-likelihood in log age (other parameters at the truth) of a cluster whose
    brightest quarter (turn-off, giants) was not observed.  Without the selection function
    the likelihood is confidently wrong: its maximum is old and the truth is excluded by
    > 5 nats (an older isochrone normalises over less mass).  With it (edges as soft as the
    likelihood's errors) the remaining main-sequence stars correctly leave the age
    unconstrained (the whole 0.45 dex scan within 3 nats, truth included)."""
    d, err, cut = cut_cluster
    sel = box_selection(mag={0: (cut, None)}, width=FLOOR)
    kw = dict(parallax=d["parallax"], parallax_err=d["parallax_err"], **GRIDS)
    ages = np.concatenate([np.linspace(9.45, 9.9, 91), [TRUTH[1]]])

    def scan(selection):
        f = jax.jit(jax.vmap(lambda a: isochrone_population_loglike(
            jnp.asarray(TRUTH).at[1].set(a), pop, d["flux"], err, selection=selection, **kw)))
        return np.asarray(f(jnp.asarray(ages)))

    plain, with_sel = scan(None), scan(sel)
    assert ages[np.argmax(plain)] > TRUTH[1] + 0.1
    assert plain.max() - plain[-1] > 5.0, plain.max() - plain[-1]
    assert with_sel.max() - with_sel.min() < 3.0, with_sel.max() - with_sel.min()
    assert plain.max() - plain.min() > 10.0
    g = jax.grad(lambda th: isochrone_population_loglike(th, pop, d["flux"], err, selection=sel, **kw))(
        jnp.asarray(TRUTH))
    assert np.all(np.isfinite(np.asarray(g)))


def test_imf_weights_rows_numpy_reference(pop, cut_cluster):
    """imf="kroupa": every row's weight times xi(M_primary), in numerator and normaliser
    (numpy float64 reference from the likelihood's components); a flat callable is the
    brutus measure; a bad value is refused."""
    from brutus_jax.kernels.priors import logp_imf

    d, err, cut = cut_cluster
    th = jnp.asarray(TRUTH)
    kw = dict(parallax=d["parallax"], parallax_err=d["parallax_err"], **GRIDS)
    tot, comp = isochrone_population_loglike(th, pop, d["flux"], err, return_components=True, imf="kroupa", **kw)
    g = comp["isochrone_grid"]
    lw = np.asarray(g["log_weights"], float)
    rows = np.isfinite(lw)
    lw = lw[rows] + np.asarray(logp_imf(jnp.asarray(np.asarray(g["masses"])[rows])), float)
    lc = np.asarray(comp["lnl_cluster"], float)[rows]
    lo = np.asarray(comp["lnl_outlier"], float)[0]
    a = logsumexp(np.where(np.isfinite(lc), lc + lw[:, None], -np.inf), axis=0)
    wc = 0.95 * (1 - TRUTH[5])
    expect = np.logaddexp(np.log(wc) + a - logsumexp(lw), np.log1p(-wc) + lo)
    np.testing.assert_allclose(np.asarray(comp["lnl_per_object"]), expect, rtol=1e-10, atol=1e-10)
    plain = isochrone_population_loglike(th, pop, d["flux"], err, **kw)
    flat = isochrone_population_loglike(th, pop, d["flux"], err, imf=lambda m: jnp.zeros_like(m) + 3.0, **kw)
    assert float(flat) == pytest.approx(float(plain), rel=1e-13)
    assert abs(float(tot) - float(plain)) > 1.0
    with pytest.raises(ValueError, match="imf"):
        isochrone_population_loglike(th, pop, d["flux"], err, imf="salpeter", **kw)
