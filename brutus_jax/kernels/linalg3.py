"""Closed-form 3x3 linear algebra for batches of (scale, A_V, R_V) matrices.

Everything works on arrays of shape (..., 3, 3) with explicit element
formulas (no ``jnp.linalg``: for 3x3 systems the closed forms are much faster
on XLA:CPU and vectorise across models and stars).
"""

import jax.numpy as jnp

__all__ = ["det3", "inv3", "min_eig_sym3", "inverse3", "cholesky3"]


def det3(A):
    """Determinant of (..., 3, 3)."""
    return (A[..., 0, 0] * (A[..., 1, 1] * A[..., 2, 2] - A[..., 1, 2] * A[..., 2, 1])
            - A[..., 0, 1] * (A[..., 1, 0] * A[..., 2, 2] - A[..., 1, 2] * A[..., 2, 0])
            + A[..., 0, 2] * (A[..., 1, 0] * A[..., 2, 1] - A[..., 1, 1] * A[..., 2, 0]))


def inv3(A):
    """Analytic inverse (adjugate / determinant) of (..., 3, 3); inf/NaN if singular."""
    a, b, c = A[..., 0, 0], A[..., 0, 1], A[..., 0, 2]
    d, e, f = A[..., 1, 0], A[..., 1, 1], A[..., 1, 2]
    g, h, i = A[..., 2, 0], A[..., 2, 1], A[..., 2, 2]
    co = jnp.stack([
        jnp.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
        jnp.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
        jnp.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1),
    ], -2)
    return co / det3(A)[..., None, None]


def min_eig_sym3(A):
    """Smallest eigenvalue of symmetric (..., 3, 3) matrices (trigonometric closed form)."""
    a11, a22, a33 = A[..., 0, 0], A[..., 1, 1], A[..., 2, 2]
    a12, a13, a23 = A[..., 0, 1], A[..., 0, 2], A[..., 1, 2]
    p1 = a12 * a12 + a13 * a13 + a23 * a23
    q = (a11 + a22 + a33) / 3.0
    d11, d22, d33 = a11 - q, a22 - q, a33 - q
    p = jnp.sqrt((d11 * d11 + d22 * d22 + d33 * d33 + 2.0 * p1) / 6.0)
    ps = jnp.where(p > 0, p, 1.0)
    b11, b22, b33, b12, b13, b23 = d11 / ps, d22 / ps, d33 / ps, a12 / ps, a13 / ps, a23 / ps
    detb = b11 * (b22 * b33 - b23 * b23) - b12 * (b12 * b33 - b23 * b13) + b13 * (b12 * b23 - b22 * b13)
    phi = jnp.arccos(jnp.clip(detb / 2.0, -1.0, 1.0)) / 3.0
    eig = q + 2.0 * p * jnp.cos(phi + 2.0 * jnp.pi / 3.0)
    diag_min = jnp.minimum(jnp.minimum(a11, a22), a33)
    return jnp.where(p1 == 0, diag_min, eig)


def inverse3(P, regularize=True, min_eigenval_threshold=1e-12):
    """Covariance from a 3x3 precision matrix, robustly (brutus's ``inverse3``).

    With ``regularize``: diagonal preconditioning ``P_hat = sym(P)/(d d^T)``
    with ``d = sqrt(max(P_ii, 1e-30))``; if ``|det P_hat| < 1e-10`` add 1e-3 I;
    analytic inverse; a non-finite result falls back to the diagonal
    ``1/max(P_ii, 1e-30)``; the symmetrised inverse gets its diagonal raised so
    its smallest eigenvalue is at least ``min_eigenval_threshold``; then
    ``C = C_hat/(d d^T)``.  Without: the plain analytic inverse.
    """
    if not regularize:
        return inv3(P)
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(P, axis1=-2, axis2=-1), 1e-30))
    dd = d[..., :, None] * d[..., None, :]
    Pn = 0.5 * (P + jnp.swapaxes(P, -1, -2)) / dd
    eye = jnp.eye(3, dtype=P.dtype)
    Pn = jnp.where((jnp.abs(det3(Pn)) < 1e-10)[..., None, None], Pn + 1e-3 * eye, Pn)
    Cn = inv3(Pn)
    ok = jnp.all(jnp.isfinite(Cn), axis=(-2, -1))
    Cs = 0.5 * (Cn + jnp.swapaxes(Cn, -1, -2))
    shift = jnp.maximum(min_eigenval_threshold - min_eig_sym3(Cs), 0.0)
    Cs = Cs + shift[..., None, None] * eye
    C = Cs / dd
    diag = eye / jnp.maximum(jnp.diagonal(P, axis1=-2, axis2=-1), 1e-30)[..., None, :]
    return jnp.where(ok[..., None, None], C, diag)


def cholesky3(C, eps=1e-30):
    """Lower Cholesky factor of symmetric PSD (..., 3, 3) (+ eps I), closed form."""
    c00 = C[..., 0, 0] + eps
    c11 = C[..., 1, 1] + eps
    c22 = C[..., 2, 2] + eps
    l00 = jnp.sqrt(jnp.maximum(c00, 0.0))
    l00s = jnp.where(l00 > 0, l00, 1.0)
    l10 = C[..., 1, 0] / l00s
    l20 = C[..., 2, 0] / l00s
    l11 = jnp.sqrt(jnp.maximum(c11 - l10 * l10, 0.0))
    l11s = jnp.where(l11 > 0, l11, 1.0)
    l21 = (C[..., 2, 1] - l20 * l10) / l11s
    l22 = jnp.sqrt(jnp.maximum(c22 - l20 * l20 - l21 * l21, 0.0))
    z = jnp.zeros_like(l00)
    return jnp.stack([jnp.stack([l00, z, z], -1), jnp.stack([l10, l11, z], -1),
                      jnp.stack([l20, l21, l22], -1)], -2)
