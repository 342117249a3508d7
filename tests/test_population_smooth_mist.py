"""The smooth row measure with the real MIST ``StellarPop`` (issue #5).

The interpolated MIST isochrone ends (last EEP with valid predictions) at a step
function of ([Fe/H], log age) that jumps at the table's nodes, so brutus's
measure makes the likelihood jump there.  ``StellarPop.eep_end`` is a continuous
lower bound of that end.  References: the isochrone's own validity mask (the
bound), brutus's measure (the jumps it has), central finite differences.

A young cluster (log age 6.1, where the isochrone ends at EEP ~350 inside the
EEP grid) is scanned in narrow windows around the log-age nodes 6.05, 6.10 and
6.15: with a scan step of 1e-5 dex the likelihood's local slope contributes
~1e-5 nats to the jump metric, a discontinuity its full size.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis import generate_isochrone_population_grid, isochrone_population_loglike
from brutus_jax.data.toy_population import simulate_cluster
from brutus_jax.kernels.isochrone_interp import isochrone_on_nodes, terminal_eep

BANDS = ("Gaia_G_EDR3", "Gaia_BP_EDR3", "Gaia_RP_EDR3", "2MASS_Ks")
TRUTH = np.array([0.0, 6.1, 0.3, 3.3, 400.0, 0.1])
EEP = np.linspace(202.0, 420.0, 219)  # 1-EEP rows; the isochrone ends at EEP ~340-360 here
SMF = np.linspace(0.0, 1.0, 4)
NODES = (6.05, 6.10, 6.15)


@pytest.fixture(scope="module")
def pop():
    from brutus_jax.core import StellarPop

    return StellarPop(filters=list(BANDS), verbose=False)


@pytest.fixture(scope="module")
def cluster(pop):
    return simulate_cluster(pop, TRUTH, 20, seed=3, eep_max=420.0, n_eep=1000)


def _lnl(pop, d, measure, dtype=jnp.float64):
    def f(th, data):
        return isochrone_population_loglike(
            th, pop.with_data(data), jnp.asarray(d["flux"], dtype), jnp.asarray(d["err"] * 3.0, dtype),
            parallax=jnp.asarray(d["parallax"], dtype), parallax_err=jnp.asarray(d["parallax_err"], dtype),
            smf_grid=SMF, eep_grid=EEP, row_measure=measure)
    return f


def test_terminal_eep_bounds_the_isochrone_end(pop):
    """Never beyond the interpolated isochrone's last valid EEP (random points and a fine age
    scan through nodes), continuous across nodes, finite gradients in float32 and float64."""
    table = pop.isochrone.jax_table(jnp.float64)

    def both(x):
        _, ok = isochrone_on_nodes(table, x[0], 0.0, x[1], "cubic")
        end = jnp.max(jnp.where(ok, table.eep, -1.0))
        return terminal_eep(table, x[0], 0.0, x[1], "cubic"), end

    rng = np.random.default_rng(1)
    x = np.r_[np.c_[rng.uniform(-4.0, 0.5, 3000), rng.uniform(5.0, 10.3, 3000)],
              np.c_[np.zeros(2001), np.linspace(5.0, 7.0, 2001)]]
    e_c, e_b = (np.asarray(a) for a in jax.jit(jax.vmap(both))(jnp.asarray(x)))
    assert np.all(e_c <= e_b + 1e-9)
    assert np.median(e_b - e_c) < 3.0  # a tight bound, not a trivial one
    scan = e_c[3000:]
    # steps of 0.001 dex: e_c moves at most ~1.5 x (node difference) / 50 per step, no jumps
    assert np.abs(np.diff(scan)).max() < 15.0
    assert np.abs(np.diff(e_b[3000:])).max() > 200.0  # the isochrone's own end does jump (6.40 -> 6.45)
    for dt in (jnp.float32, jnp.float64):
        g = jax.grad(lambda la: pop.eep_end(jnp.asarray(0.1, dt), la))(jnp.asarray(6.123, dt))
        assert g.dtype == dt and np.isfinite(float(g)) and float(g) > 0.0


def test_loglike_continuous_across_age_nodes(pop, cluster):
    """brutus's measure jumps by O(0.1-1) nats at log-age nodes; the smooth one is continuous."""
    h, n = 1e-5, 21
    logas = np.concatenate([np.linspace(x - h * (n // 2), x + h * (n // 2), n) for x in NODES])
    th = np.tile(TRUTH, (logas.size, 1))
    th[:, 1] = logas
    data = pop.jax_data(jnp.float64)
    jumps = {}
    for m in ("brutus", "smooth"):
        v = np.asarray(jax.jit(jax.vmap(_lnl(pop, cluster, m), in_axes=(0, None)))(jnp.asarray(th), data))
        assert np.all(np.isfinite(v))
        dv = np.diff(v.reshape(len(NODES), n), axis=1)
        jumps[m] = np.abs(dv[:, 1:-1] - 0.5 * (dv[:, :-2] + dv[:, 2:])).max(axis=1)  # step beyond the slope
    assert jumps["brutus"].max() > 0.3
    assert jumps["smooth"].max() < 1e-3
    assert np.all(jumps["smooth"] < jumps["brutus"] / 100)


def test_gradient_in_log_age(pop, cluster):
    """jax.grad of the smooth lnL in log age (through the terminal EEP and the isochrone) vs
    central differences between nodes; finite in float32."""
    data = pop.jax_data(jnp.float64)
    f = _lnl(pop, cluster, "smooth")
    vg = jax.jit(jax.value_and_grad(f))
    th0 = TRUTH.copy()
    th0[1] = 6.123
    v0, g = vg(jnp.asarray(th0), data)
    assert np.all(np.isfinite(np.asarray(g)))
    h = 2e-6
    e = np.zeros(6)
    e[1] = h
    fd = (float(vg(jnp.asarray(th0 + e), data)[0]) - float(vg(jnp.asarray(th0 - e), data)[0])) / (2 * h)
    np.testing.assert_allclose(float(g[1]), fd, rtol=1e-4, atol=1e-2)
    grid = jax.jit(lambda la, data: generate_isochrone_population_grid(
        pop.with_data(data), 0.0, la, 0.3, 3.3, 400.0, smf_grid=SMF, eep_grid=EEP, row_measure="smooth")["eep_end"])
    assert float(jax.grad(grid)(jnp.asarray(6.123), data)) > 0.0  # the end moves with age (the probe's did not)
    data32 = pop.jax_data(jnp.float32)
    v32, g32 = jax.jit(jax.value_and_grad(_lnl(pop, cluster, "smooth", jnp.float32)))(
        jnp.asarray(th0, jnp.float32), data32)
    assert np.isfinite(float(v32)) and np.all(np.isfinite(np.asarray(g32)))
    np.testing.assert_allclose(float(v32), float(v0), rtol=1e-3)


def test_brutus_measure_stays_the_default():
    for fn in (isochrone_population_loglike, generate_isochrone_population_grid):
        assert inspect.signature(fn).parameters["row_measure"].default == "brutus"


def test_fresh_population_under_two_jits():
    """A new StellarPop whose device tables are first built inside a jit trace: the cached
    tables must be concrete arrays, so a second, different jitted function still works
    (they used to be the first trace's tracers: UnexpectedTracerError)."""
    from brutus_jax.core import StellarPop

    pop = StellarPop(filters=list(BANDS), verbose=False)
    flux = 10 ** (-0.4 * np.array([[10.0, 10.4, 9.5, 8.6]]))
    err = 0.02 * flux
    kw = dict(smf_grid=SMF, eep_grid=EEP)
    f1 = jax.jit(lambda th: isochrone_population_loglike(th, pop, flux, err, **kw))
    f2 = jax.jit(lambda th: isochrone_population_loglike(th, pop, flux, err, row_measure="smooth", **kw))
    th = jnp.asarray([0.0, 8.5, 0.1, 3.3, 200.0, 0.1])
    v1, v2 = float(f1(th)), float(f2(th))
    assert np.isfinite(v1) and np.isfinite(v2)
    assert not isinstance(pop.isochrone.jax_table().values, jax.core.Tracer)
