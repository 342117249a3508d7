"""Cluster parameters for `fit_cluster`: bounds, priors and the unconstrained space.

theta = [feh, loga, av, rv, dist, field_frac] (the order of
``isochrone_population_loglike``).  Each free parameter lives on
``(lo, hi)`` and is sampled as ``z`` in R through one of two maps
(``ParamSpec.transform``):

* ``"logit"`` (a bijection; default for ``dist``)::

      x = lo + (hi - lo) * sigmoid(z),   ln|dx/dz| = ln(hi - lo) + ln s(z) + ln s(-z)

* ``"reflect"`` (default for the others): z is x itself, folded back into
  ``(lo, hi)`` by mirror reflections at the bounds (a triangle wave of period
  ``2 (hi - lo)``), ``|dx/dz| = 1``.  The sampled density ``p(x(z))`` is
  periodic; HMC/NUTS on it is HMC on a torus (the dynamics commute with the
  period shifts), and the fold maps the torus 2-to-1 onto ``(lo, hi)`` with
  equal density on both halves, so ``x`` has exactly the stated posterior.
  Why: a posterior that reaches a bound with non-zero density (A_V near 0, a
  field fraction near 0, [Fe/H] at the grid's edge) becomes, under the
  logit, an exponential tail in z whose length scale is unrelated to the
  posterior's width and that bends the [Fe/H]-A_V ridge into a banana:
  short NUTS steps, long trees, divergences.  Under the fold it is the
  posterior itself, mirrored (a kink of the log density at the bound, no
  tail).  ``to_z`` returns the principal copy ``z = x``.

The sampled density is ``ln p(x(z)) + ln|dx/dz|`` (the Jacobian makes the
prior on x what is stated, not a prior on z).

Default priors (documented, brutus-like):

=============  ===========================  =========================================
parameter      default bounds               default prior inside the bounds
=============  ===========================  =========================================
feh            the isochrone's [Fe/H] range  uniform   (toy/no isochrone: -2.0, 0.5)
               (within -4 .. 1)
loga           the isochrone's log age range uniform   (toy/no isochrone: 7.0, 10.13)
av             0 .. 6 mag                    uniform
rv             1 .. 8                        N(3.32, 0.18)  (brutus's R_V prior)
dist           10 .. 20000 pc                uniform in distance
field_frac     0 .. 1                        uniform
=============  ===========================  =========================================

User priors (``priors={name: spec}``): ``(lo, hi)`` -- uniform on new bounds;
a callable -- ``logpdf(x)`` (jnp, traceable) inside the default bounds;
``(lo, hi, logpdf)``; or a number -- the parameter is fixed (not sampled).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PARAMS", "TRANSFORMS", "DEFAULT_TRANSFORMS", "ParamSpec", "default_specs", "build_specs", "free_names", "to_theta", "to_z",
           "log_prior_jacobian"]

PARAMS = ("feh", "loga", "av", "rv", "dist", "field_frac")
_RV_MEAN, _RV_SD = 3.32, 0.18


def _rv_logpdf(x):
    return -0.5 * ((x - _RV_MEAN) / _RV_SD) ** 2


TRANSFORMS = ("logit", "reflect")
#: default map of each parameter to the sampled space (module docstring)
DEFAULT_TRANSFORMS = {"feh": "reflect", "loga": "reflect", "av": "reflect", "rv": "reflect", "dist": "logit",
                      "field_frac": "reflect"}


class ParamSpec(NamedTuple):
    """One parameter: bounds, prior log-density (None: uniform) or a fixed value, and the
    map to the sampled space ("logit" or "reflect")."""

    name: str
    lo: float
    hi: float
    logpdf: Callable | None = None
    fixed: float | None = None
    transform: str = "logit"


def _isochrone_range(stellarpop, attr, default, clip):
    iso = getattr(stellarpop, "isochrone", None)
    vals = getattr(iso, attr, None)
    if vals is None:
        return default
    vals = np.asarray(vals, float)
    return float(max(vals.min(), clip[0])), float(min(vals.max(), clip[1]))


def default_specs(stellarpop=None):
    """The documented default bounds and priors (see the module docstring)."""
    feh = _isochrone_range(stellarpop, "feh_u", (-2.0, 0.5), (-4.0, 1.0))
    loga = _isochrone_range(stellarpop, "loga_u", (7.0, 10.13), (5.0, 10.3))
    specs = {
        "feh": ParamSpec("feh", *feh),
        "loga": ParamSpec("loga", *loga),
        "av": ParamSpec("av", 0.0, 6.0),
        "rv": ParamSpec("rv", 1.0, 8.0, _rv_logpdf),
        "dist": ParamSpec("dist", 10.0, 20000.0),
        "field_frac": ParamSpec("field_frac", 0.0, 1.0),
    }
    return {n: s._replace(transform=DEFAULT_TRANSFORMS[n]) for n, s in specs.items()}


def build_specs(stellarpop=None, priors=None, transform=None):
    """Default specs updated by the user's ``priors`` dict; ValueError on a bad entry.

    ``transform``: None (the per-parameter defaults, `DEFAULT_TRANSFORMS`), one
    of `TRANSFORMS` for every parameter, or a dict ``{name: transform}``.
    """
    specs = default_specs(stellarpop)
    if transform is not None:
        tr = transform if isinstance(transform, dict) else dict.fromkeys(PARAMS, transform)
        for name, t in tr.items():
            if name not in specs:
                raise ValueError(f"transform: unknown parameter {name!r} (parameters: {', '.join(PARAMS)})")
            if t not in TRANSFORMS:
                raise ValueError(f"transform[{name!r}]: one of {TRANSFORMS}, got {t!r}")
            specs[name] = specs[name]._replace(transform=t)
    for name, spec in (priors or {}).items():
        if name not in specs:
            raise ValueError(f"priors: unknown parameter {name!r} (parameters: {', '.join(PARAMS)})")
        d = specs[name]
        if isinstance(spec, (int, float, np.floating, np.integer)):
            specs[name] = d._replace(fixed=float(spec))
        elif callable(spec):
            specs[name] = d._replace(logpdf=spec)
        elif isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
            lo, hi = float(spec[0]), float(spec[1])
            fn = spec[2] if len(spec) == 3 else None
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"priors[{name!r}]: bounds must be finite with lo < hi, got {spec[:2]}")
            if fn is not None and not callable(fn):
                raise ValueError(f"priors[{name!r}]: third entry must be a callable log-density")
            specs[name] = ParamSpec(name, lo, hi, fn, transform=d.transform)
        else:
            raise ValueError(f"priors[{name!r}]: expected (lo, hi), (lo, hi, logpdf), a callable or a number")
    if specs["dist"].fixed is None and specs["dist"].lo <= 0:
        raise ValueError("priors['dist']: the lower bound must be > 0 pc")
    ff = specs["field_frac"]
    if ff.fixed is None and (ff.lo < 0 or ff.hi > 1):
        raise ValueError("priors['field_frac']: bounds must lie within [0, 1]")
    return [specs[n] for n in PARAMS]


def free_names(specs):
    return [s.name for s in specs if s.fixed is None]


def to_theta(z, specs):
    """Unconstrained free parameters z (..., n_free) -> theta (..., 6) and ln|dx/dz| (...)."""
    cols, logjac, k = [], 0.0, 0
    for s in specs:
        if s.fixed is not None:
            cols.append(jnp.full(z.shape[:-1], s.fixed, z.dtype))
            continue
        zk = z[..., k]
        k += 1
        if s.transform == "reflect":
            w = jnp.mod((zk - s.lo) / (s.hi - s.lo), 2.0)  # triangle wave, |dx/dz| = 1
            cols.append(s.lo + (s.hi - s.lo) * jnp.where(w > 1.0, 2.0 - w, w))
            continue
        cols.append(s.lo + (s.hi - s.lo) * jax.nn.sigmoid(zk))
        logjac = logjac + jnp.log(s.hi - s.lo) + jax.nn.log_sigmoid(zk) + jax.nn.log_sigmoid(-zk)
    return jnp.stack(cols, axis=-1), jnp.broadcast_to(jnp.asarray(logjac, z.dtype), z.shape[:-1])


def to_z(theta_free, specs):
    """Inverse of `to_theta` for the free parameters (numpy; values clipped inside the bounds;
    "reflect": the principal copy z = x)."""
    free = [s for s in specs if s.fixed is None]
    out = []
    for k, s in enumerate(free):
        x = np.asarray(theta_free, float)[..., k]
        if s.transform == "reflect":
            out.append(np.clip(x, s.lo, s.hi))
            continue
        u = (x - s.lo) / (s.hi - s.lo)
        u = np.clip(u, 1e-6, 1 - 1e-6)
        out.append(np.log(u) - np.log1p(-u))
    return np.stack(out, axis=-1)


def log_prior_jacobian(z, specs):
    """(theta, ln prior(theta) + ln|dtheta/dz|) for unconstrained z (n_free,)."""
    theta, logjac = to_theta(z, specs)
    lp = logjac
    for k, s in enumerate(specs):
        if s.fixed is None and s.logpdf is not None:
            lp = lp + s.logpdf(theta[..., k])
    return theta, lp
