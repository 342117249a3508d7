"""`analysis.compile_options`: the XLA:CPU vector width of the fit's stages.

The option must only change how XLA vectorises the per-model loops, never the
results beyond float rounding: the float32 fit of every model of a small grid
compiled for 512-bit and for 256-bit vectors must agree (and select the same
models for the flux stage)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brutus_jax.analysis.compile_options import stage_compiler_options, stage_jit
from brutus_jax.data.synthetic import make_synthetic_grid
from brutus_jax.kernels.sedfit import fit_star, to_band_major
from test_sedfit import _simulate


def test_options_follow_the_cpu_and_the_environment():
    kw = dict(env="", accelerator=False)
    assert stage_compiler_options(flags={"sse2", "avx2", "avx512f"}, **kw) == {"xla_cpu_prefer_vector_width": 512}
    assert stage_compiler_options(flags={"sse2", "avx2"}, **kw) == {}
    assert stage_compiler_options(env="", flags={"avx512f"}, accelerator=True) == {}  # GPU installs: as before
    assert stage_compiler_options(env="256", flags={"avx512f"}) == {"xla_cpu_prefer_vector_width": 256}
    assert stage_compiler_options(env=" 512 ", flags=set()) == {"xla_cpu_prefer_vector_width": 512}
    assert stage_compiler_options(env="Default", flags={"avx512f"}) == {}
    with pytest.raises(ValueError, match="BRUTUS_JAX_CPU_VECTOR_WIDTH"):
        stage_compiler_options(env="1024")


def test_vector_width_does_not_change_the_fit():
    models = np.asarray(make_synthetic_grid(n_mini=20, n_eep=20, n_feh=8, dtype=np.float64)[0])
    grid = to_band_major(models, np.float32)
    # test_sedfit's stars: masked bands, a negative flux, NaN data, some parallaxes
    flux, err, mask, plx, plx_err, _ = _simulate(models, np.random.default_rng(3), 8)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    fits = {}
    for width in (256, 512):
        fn = jax.jit(jax.vmap(lambda *a: fit_star(grid, *a)), compiler_options={"xla_cpu_prefer_vector_width": width})
        fits[width] = jax.device_get(fn(f32(flux), f32(err), mask, f32(plx), f32(plx_err)))
    a, b = fits[256], fits[512]
    np.testing.assert_array_equal(a.flux_stage, b.flux_stage)
    np.testing.assert_array_equal(a.n_iter_mag, b.n_iter_mag)
    np.testing.assert_array_equal(a.n_iter_flux, b.n_iter_flux)
    for name in ("lnl", "chi2", "scale", "av", "rv"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == np.float32
        # measured on the AVX-512 host: identical (each model's band sums run in the same order)
        np.testing.assert_allclose(y, x, rtol=2e-6, atol=1e-6, err_msg=name)


def test_stage_jit_passes_the_options():
    deco = stage_jit(static_argnames=("k",))
    assert deco.func is jax.jit
    assert deco.keywords["compiler_options"] == (stage_compiler_options() or None)
    assert deco.keywords["static_argnames"] == ("k",)
    assert float(deco(lambda x, k: x * k)(jnp.float32(2.0), k=3)) == 6.0
