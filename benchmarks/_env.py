"""The environment line every benchmark prints (versions, device, threads, load)."""

import os
import platform

import numpy as np


def env_summary(note=""):
    """Python/numpy/jax versions, backend and device, x64, cores, load, XLA/BLAS/numba
    thread settings and the astro-brutus version (if installed); ``note`` is appended."""
    import jax

    lines = [
        f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__}, "
        f"backend {jax.default_backend()} ({jax.devices()[0].device_kind} x{len(jax.devices())}), "
        f"x64 {jax.config.jax_enable_x64}, {platform.machine()} {os.cpu_count()} cores, "
        f"load avg {os.getloadavg()[0]:.2f}",
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', '')!r} NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', '')!r}",
    ]
    try:
        import brutus

        lines.append(f"astro-brutus {getattr(brutus, '__version__', '?')} {note}".rstrip())
    except ImportError:
        lines.append("astro-brutus not installed (no side-by-side comparison)")
    return "\n".join(lines)
