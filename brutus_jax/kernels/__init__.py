"""Pure JAX kernels, one module per concept.

Every function here is a pure function of arrays: no I/O, no globals, no
Python loops over stars or models.  They are safe to ``jit``, ``vmap`` and
differentiate.  Host classes (``StarGrid``, later ``BruteForce``) hold arrays
and call these kernels.

Dtype policy: kernels compute in the dtype of their inputs (float32 on
accelerators by default, float64 when ``jax_enable_x64`` is on and float64
arrays are passed).  Python-float constants are weakly typed, so they never
promote a float32 computation to float64.
"""
