"""XLA compiler options of `BruteForce`'s jitted stages (`stage_jit`).

On x86-64 CPUs with AVX-512 the stages are compiled with
``xla_cpu_prefer_vector_width=512``: XLA:CPU vectorises its loop fusions for
256-bit registers by default, and the fit's per-model loops (the magnitude
stage's grid passes, the Monte-Carlo pass of stage 2) are elementwise over
models.  On the project's 2-core AMD EPYC (Zen 4) host the whole fit was
~10 % faster with it (benchmarks/README.md, session 16).  The option only
changes how the elementwise loops are vectorised, not the arithmetic of an
element; sums over models may run in another order (float rounding).

Where an accelerator plugin of JAX is installed (``jax-cuda*``, ``jax-rocm*``,
``libtpu``) the option is not set by default: the stages compile for the GPU
exactly as before (measured there without it; not yet measured with it).
``BRUTUS_JAX_CPU_VECTOR_WIDTH`` (read once, at import) overrides the choice:
``256`` or ``512`` force that width, ``default`` leaves XLA's own.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os

import jax

__all__ = ["stage_compiler_options", "stage_jit"]

_ENV = "BRUTUS_JAX_CPU_VECTOR_WIDTH"


def _cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (a set; empty where /proc/cpuinfo is not readable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _accelerator_plugin():
    """Whether a JAX accelerator plugin (CUDA, ROCm, TPU) is installed."""
    prefixes = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
    try:
        return any((d.metadata["Name"] or "").lower().startswith(prefixes) for d in importlib.metadata.distributions())
    except Exception:
        return False


def stage_compiler_options(env=None, flags=None, accelerator=None):
    """XLA compiler options for the fit's stages: ``{"xla_cpu_prefer_vector_width": 512}``
    where the CPU has AVX-512 (``avx512f``) and no accelerator plugin is installed,
    else none; ``env`` (default: the ``BRUTUS_JAX_CPU_VECTOR_WIDTH`` variable)
    overrides: ``"256"``/``"512"`` force a width, ``"default"`` gives none.
    ``flags``: the CPU flags, ``accelerator``: whether a plugin is installed
    (default: both looked up)."""
    env = os.environ.get(_ENV, "") if env is None else env
    env = env.strip().lower()
    if env == "default":
        return {}
    if env in ("256", "512"):
        return {"xla_cpu_prefer_vector_width": int(env)}
    if env:
        raise ValueError(f"{_ENV}: expected 256, 512 or default, got {env!r}")
    if _accelerator_plugin() if accelerator is None else accelerator:
        return {}
    flags = _cpu_flags() if flags is None else flags
    return {"xla_cpu_prefer_vector_width": 512} if "avx512f" in flags else {}


_OPTIONS = stage_compiler_options()


def stage_jit(**kwargs):
    """``functools.partial(jax.jit, compiler_options=<stage_compiler_options()>, **kwargs)``:
    the decorator of `BruteForce`'s stage functions."""
    return functools.partial(jax.jit, compiler_options=_OPTIONS or None, **kwargs)
