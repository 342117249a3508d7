"""Shared pytest configuration.

* float64 is enabled for the whole suite (references are float64); float32
  behaviour is tested explicitly by passing float32 arrays.
* ``slow`` tests run only with ``--runslow`` or ``BRUTUS_JAX_RUN_SLOW=1``;
  ``gpu`` tests only when JAX sees a GPU.
"""

import os

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow") or os.environ.get("BRUTUS_JAX_RUN_SLOW") == "1"
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    skip_slow = pytest.mark.skip(reason="slow: use --runslow or BRUTUS_JAX_RUN_SLOW=1")
    skip_gpu = pytest.mark.skip(reason="needs a GPU backend")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    """A seeded numpy Generator (explicit seeds everywhere)."""
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def brutus_oracle():
    """astro-brutus 1.2.0, the reference implementation (optional dependency)."""
    return pytest.importorskip("brutus", reason="astro-brutus 1.2.0 not installed (pip install astro-brutus==1.2.0)")
