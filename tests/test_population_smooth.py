"""The smooth row measure of the population likelihood (issue #5).

brutus's grid measure drops the isochrone's last valid row (its mass gradient
needs the invalid next row), so the integral's end jumps by one EEP cell when a
terminal row switches validity with age: O(1)-nat steps of the likelihood.
``row_measure="smooth"`` gives the straddling cell the fraction below the
terminal EEP.  References: brutus's measure itself (where the two must agree),
analytic integrals, finite differences.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from brutus_jax.analysis import generate_isochrone_population_grid, isochrone_population_loglike
from brutus_jax.data.toy_population import ToyPopulation, simulate_cluster
from brutus_jax.kernels.population import population_row_weights, terminal_fractions

TRUTH = np.array([0.0, 9.6, 0.3, 3.3, 800.0, 0.1])
EEP = np.linspace(202.0, 808.0, 120)
SMF = np.linspace(0.0, 1.0, 4)


@pytest.fixture(scope="module")
def pop():
    return ToyPopulation(4)


@pytest.fixture(scope="module")
def cluster(pop):
    return simulate_cluster(pop, TRUTH, 30, seed=5)


def _kernel_inputs(e_valid_end, n=40, dtype=jnp.float64):
    eep = jnp.asarray(np.linspace(300.0, 700.0, n), dtype)
    ok = eep <= e_valid_end
    mini = jnp.where(ok, 0.1 + 2.0 * ((eep - 300.0) / 400.0) ** 1.5, 1.0)
    okb = jnp.broadcast_to(ok, (3, n))
    return jnp.broadcast_to(mini, (3, n)), okb, okb, eep, jnp.linspace(0.0, 1.0, 3, dtype=dtype)


def test_terminal_fractions_analytic():
    eep = jnp.asarray([0.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(terminal_fractions(eep, 1.25), [1.0, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(terminal_fractions(eep, 3.0), [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(terminal_fractions(eep, 5.0), [1.0, 1.0, 1.0, 0.5])  # last: previous spacing


@pytest.mark.parametrize("where", ["node", "beyond"])
def test_smooth_equals_brutus_without_partial_cell(where):
    """eep_end past the grid: identical weights; on a grid node e_25 (row 25's cell fraction
    is 0): identical except row 24, whose central mass difference becomes the one-sided
    one (O(h^3): the jacobian must not depend on row 25's validity)."""
    e_end = 700.0 + 1e3 if where == "beyond" else float(np.linspace(300.0, 700.0, 40)[25])
    args = _kernel_inputs(e_end)
    b = population_row_weights(*args, eep_binary_max=480.0)
    s = population_row_weights(*args, eep_binary_max=480.0, eep_end=e_end)
    for x, y in zip(b, s):
        x, y = np.asarray(x), np.asarray(y)
        if where == "node":
            np.testing.assert_allclose(y[:, 24], x[:, 24], rtol=1e-3)
            x, y = np.delete(x, 24, axis=1), np.delete(y, 24, axis=1)
        np.testing.assert_array_equal(x, y)


def test_smooth_measure_is_linear_between_brutus_values():
    """Between two nodes the total mass measure goes linearly from brutus's value with the
    end at the lower node to brutus's value with the end at the upper node."""
    eep = np.linspace(300.0, 700.0, 40)
    lo, hi = eep[25], eep[26]

    def total(e_valid_end, e_end):
        mj, sj, lw = population_row_weights(*_kernel_inputs(e_valid_end), eep_binary_max=480.0, eep_end=e_end)
        return float(jnp.sum(jnp.where(jnp.isfinite(lw), jnp.exp(lw), 0.0)))

    brutus = [float(jnp.sum(jnp.where(jnp.isfinite(w), jnp.exp(w), 0.0)))
              for w in (population_row_weights(*_kernel_inputs(e), eep_binary_max=480.0)[2] for e in (lo, hi))]
    for t in (0.0, 0.3, 0.7, 0.999999):
        expect = brutus[0] + t * (brutus[1] - brutus[0])
        got = total(lo + 1e-9, lo + t * (hi - lo))
        # one-sided jacobian of the straddling row vs the central one it gets later: O(h^3)
        np.testing.assert_allclose(got, expect, rtol=2e-4)


def test_row_weight_gradients(pop):
    """Gradients of the smooth weights in eep_end and the masses (finite differences)."""
    eep = np.linspace(300.0, 700.0, 40)
    e_end0 = 0.4 * eep[25] + 0.6 * eep[26]
    mini, ok, sok, e, smf = _kernel_inputs(e_end0)

    def f(e_end, mini):
        _, _, lw = population_row_weights(mini, ok, sok, e, smf, 480.0, eep_end=e_end)
        return jnp.sum(jnp.where(jnp.isfinite(lw), jnp.exp(lw), 0.0))

    check_grads(f, (jnp.asarray(e_end0), mini), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)


def _scan(pop, d, measure, logas, dtype=jnp.float64):
    f = jax.jit(jax.vmap(lambda th: isochrone_population_loglike(
        th, pop, jnp.asarray(d["flux"], dtype), jnp.asarray(d["err"] * 3.0, dtype),
        parallax=jnp.asarray(d["parallax"], dtype), parallax_err=jnp.asarray(d["parallax_err"], dtype),
        smf_grid=SMF, eep_grid=EEP, row_measure=measure)))
    th = np.tile(TRUTH, (logas.size, 1))
    th[:, 1] = logas
    return np.asarray(f(jnp.asarray(th, dtype)))


def test_loglike_continuous_in_log_age(pop, cluster):
    """A fine scan over log age across three terminal-row switches (the end moves 120 EEP per
    dex, the rows are 5.1 EEP apart): brutus's likelihood jumps, the smooth one does not."""
    logas = np.linspace(9.6, 9.73, 521)
    jumps = {}
    for m in ("brutus", "smooth"):
        v = _scan(pop, cluster, m, logas)
        assert np.all(np.isfinite(v))
        dv = np.diff(v)
        jumps[m] = np.abs(dv[1:-1] - 0.5 * (dv[:-2] + dv[2:])).max()  # step beyond the local slope
    assert jumps["brutus"] > 0.2
    assert jumps["smooth"] < 0.02 and jumps["smooth"] < jumps["brutus"] / 30


def test_gradient_through_smooth_measure(pop, cluster):
    """d lnL / d theta (incl. the terminal fraction's dependence on log age) against central
    differences at a point where the terminal cell is partial; no NaN in float32 either."""
    d = cluster
    th0 = TRUTH.copy()
    th0[1] = 9.613  # eep_end = 698.44: half way through a terminal cell (rows 5.09 EEP apart)

    def lnl(th, dtype=jnp.float64):
        return isochrone_population_loglike(
            th, pop, jnp.asarray(d["flux"], dtype), jnp.asarray(d["err"] * 3.0, dtype),
            parallax=jnp.asarray(d["parallax"], dtype), parallax_err=jnp.asarray(d["parallax_err"], dtype),
            smf_grid=SMF, eep_grid=EEP, row_measure="smooth")

    vg = jax.jit(jax.value_and_grad(lnl))
    v0, g = vg(jnp.asarray(th0))
    g = np.asarray(g)
    for i, h in [(0, 1e-5), (1, 1e-6), (2, 1e-6), (4, 1e-4), (5, 1e-6)]:
        e = np.zeros(6)
        e[i] = h
        fd = (float(vg(jnp.asarray(th0 + e))[0]) - float(vg(jnp.asarray(th0 - e))[0])) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-4, atol=1e-3)
    v32, g32 = jax.jit(jax.value_and_grad(lambda t: lnl(t, jnp.float32)))(jnp.asarray(th0, jnp.float32))
    assert np.isfinite(float(v32)) and np.all(np.isfinite(np.asarray(g32)))
    np.testing.assert_allclose(float(v32), float(v0), rtol=1e-4)


def test_terminal_eep_by_probing_matches_the_hook(pop):
    """Without an ``eep_end`` hook the end is located by probing the population (to 1/32 of
    a cell); an explicit value is used as given; option errors."""

    class NoHook:
        def get_seds_smf_grid_jax(self, *a, **k):
            return pop.get_seds_smf_grid_jax(*a, **k)

    kw = dict(smf_grid=SMF, eep_grid=EEP)
    loga = 9.613
    gen = jax.jit(lambda p, e: generate_isochrone_population_grid(p, 0.0, loga, 0.3, 3.3, 800.0, row_measure="smooth",
                                                                  eep_end=e, **kw), static_argnums=0)
    g_hook, g_probe = gen(pop, None), gen(NoHook(), None)
    de = EEP[1] - EEP[0]
    assert float(g_hook["eep_end"]) == pytest.approx(pop.eep_end(loga))
    assert 0.0 <= float(g_hook["eep_end"] - g_probe["eep_end"]) <= de / 32 + 1e-9
    g_val = gen(NoHook(), pop.eep_end(loga))
    np.testing.assert_allclose(np.asarray(g_val["log_weights"]), np.asarray(g_hook["log_weights"]))
    with pytest.raises(ValueError, match="row_measure"):
        isochrone_population_loglike(TRUTH, pop, np.ones((2, 4)), np.ones((2, 4)), row_measure="x")
    with pytest.raises(TypeError, match="eep_end"):
        generate_isochrone_population_grid(pop.numpy(), 0.0, loga, 0.3, 3.3, 800.0, row_measure="smooth", **kw)
