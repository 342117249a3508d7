"""An analytic stellar population for tests, benchmarks and examples (no data files).

:class:`ToyPopulation` behaves like :class:`brutus_jax.core.StellarPop` for the
population likelihood: ``get_seds_smf_grid_jax`` returns a
:class:`~brutus_jax.kernels.popgrid.PopSEDGrid` (traceable, differentiable in
feh, loga, av, rv, dist), and :meth:`ToyPopulation.numpy` gives a brutus-style
face (``get_seds`` / ``get_seds_smf_grid``, numpy, NaN where invalid) that
astro-brutus's own likelihood accepts (duck typing).  The isochrone:

* initial mass grows with EEP as ``0.09 + 2.2 u^1.6 exp(-(loga - 9.6)/2) (1 + 0.05 feh)``,
  ``u = (eep - 202) / 606``; EEPs beyond ``700 - 120 (loga - 9.6)`` are invalid
  (the oldest stars have died);
* absolute magnitudes ``4.7 + off_b - (5.5 + slope_b) log10(M) - post-MS
  brightening + 0.25 feh (b + 0.25) + 0.1 (loga - 9.6)`` with band index
  ``b`` in [0, 1] (blue to red), extinction ``A_V (a_b + b_b (R_V - 3.1))``
  and distance modulus;
* binaries by brutus's StellarPop rules (secondary at mass ``q M`` on the same
  isochrone, only for ``eep <= eep_binary_max``, ``q = 1`` is twice the flux).

:func:`simulate_cluster` draws an observed cluster from it.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..kernels.popgrid import PopSEDGrid

__all__ = ["ToyPopulation", "simulate_cluster"]

LOG2_MAG = 2.5 * math.log10(2.0)


class ToyPopulation:
    """Analytic population with ``nfilt`` bands (see the module docstring)."""

    def __init__(self, nfilt=4):
        b = np.linspace(0.0, 1.0, nfilt)
        self.off, self.slope = 0.9 - 1.1 * b, 1.2 - 1.3 * b
        self.ea, self.eb = 1.3 - 0.8 * b, 0.1 - 0.15 * b
        self.b = b
        self.filters = [f"toy{k}" for k in range(nfilt)]
        self.NFILT = nfilt

    # -------------------------------------------------------------- physics (numpy or jnp)
    @staticmethod
    def eep_end(loga):
        return 700.0 - 120.0 * (loga - 9.6)

    @staticmethod
    def mini(xp, eep, loga, feh):
        u = (eep - 202.0) / 606.0
        return 0.09 + 2.2 * u ** 1.6 * xp.exp(-0.5 * (loga - 9.6)) * (1.0 + 0.05 * feh)

    def mags(self, xp, mini, eep, feh, loga, av, rv, dist):
        dt = mini.dtype
        c = [xp.asarray(v, dtype=dt) for v in (self.off, self.slope, self.ea, self.eb, self.b)]
        lm = xp.log10(mini)[..., None]
        post = (xp.logaddexp(0.0, (eep - 470.0) / 15.0) * 0.15)[..., None]
        absmag = (4.7 + c[0] - (5.5 + c[1]) * lm - post * (1.0 + 0.2 * c[4])
                  + 0.25 * feh * (c[4] + 0.25) + 0.1 * (loga - 9.6))
        return absmag + av * (c[2] + c[3] * (rv - 3.1)) + 5.0 * xp.log10(dist / 10.0)

    @staticmethod
    def add_mag(xp, m1, m2):
        return -2.5 * xp.log10(10.0 ** (-0.4 * m1) + 10.0 ** (-0.4 * m2))

    # -------------------------------------------------------------- JAX contract
    def get_seds_smf_grid_jax(self, smf_values, feh=0.0, afe=0.0, loga=8.5, eep=None, av=0.0, rv=3.3,
                              dist=1000.0, mini_bound=0.5, eep_binary_max=480.0, apply_corr=True,
                              corr_params=None):
        """SEDs on the (smf, eep) grid as a PopSEDGrid (see StellarPop.get_seds_smf_grid_jax)."""
        dt = jnp.result_type(feh, loga, av, rv, dist)
        eep = jnp.asarray(np.linspace(202.0, 808.0, 1000) if eep is None else eep, dtype=dt)
        q = jnp.asarray(smf_values, dtype=dt)[:, None]
        ok = eep <= self.eep_end(loga)
        mini = self.mini(jnp, eep, loga, feh)
        sed1 = self.mags(jnp, mini, eep, feh, loga, av, rv, dist)
        xp = jnp.where(ok, mini, 1e3 + eep)  # monotone; invalid tail beyond every q * mini
        tgt = q * mini[None, :]
        eep2 = jnp.interp(tgt, xp, eep)
        e2_ok = (tgt >= xp[0]) & (eep2 <= eep_binary_max) & (eep <= eep_binary_max)
        eep2 = jnp.where(e2_ok, eep2, eep[0])
        mini2 = self.mini(jnp, eep2, loga, feh)
        sec = e2_ok & (mini2 >= mini_bound) & (q > 0.0) & (q < 1.0)
        comb = jnp.where(sec[..., None], self.add_mag(jnp, sed1[None], self.mags(
            jnp, mini2, eep2, feh, loga, av, rv, dist)), sed1[None])
        comb = jnp.where(((q == 1.0) & (eep <= eep_binary_max))[..., None], sed1[None] - LOG2_MAG, comb)
        sed_ok = jnp.broadcast_to(ok & (mini >= mini_bound), comb.shape[:2])
        shape = comb.shape[:2]
        return PopSEDGrid(jnp.where(sed_ok[..., None], comb, 0.0), sed_ok,
                          jnp.broadcast_to(jnp.where(ok, mini, 1.0), shape),
                          jnp.broadcast_to(ok, shape), eep, q[:, 0])

    def numpy(self):
        """The brutus-style (numpy) face of this population."""
        return _ToyNumpy(self)


class _ToyNumpy:
    """brutus-style face of :class:`ToyPopulation` (numpy, NaN where invalid)."""

    def __init__(self, toy):
        self.t = toy
        self.filters, self.NFILT = toy.filters, toy.NFILT
        self.calls = []  # binary_fraction of every get_seds call (to check how callers plumb SMFs)

    def get_seds(self, feh=0.0, afe=0.0, loga=8.5, eep=None, av=0.0, rv=3.3, binary_fraction=0.0,
                 dist=1000.0, mini_bound=0.5, eep_binary_max=480.0, apply_corr=True,
                 corr_params=None, return_dict=True):
        self.calls.append(binary_fraction)
        t, eep = self.t, np.asarray(eep, dtype=float)
        ok = eep <= t.eep_end(loga)
        mini = np.where(ok, t.mini(np, eep, loga, feh), np.nan)
        with np.errstate(invalid="ignore"):
            sed = t.mags(np, mini, eep, feh, loga, av, rv, dist)
            sed[~(mini >= mini_bound)] = np.nan
        q = float(binary_fraction)
        mini2 = np.full_like(mini, np.nan)
        if 0.0 < q < 1.0:
            fin = np.isfinite(mini)
            srt = np.argsort(mini[fin])
            eep2 = np.interp(mini * q, mini[fin][srt], eep[fin][srt], left=np.nan, right=np.nan)
            with np.errstate(invalid="ignore"):
                eep2[(eep2 > eep_binary_max) | (eep > eep_binary_max)] = np.nan
                mini2 = t.mini(np, eep2, loga, feh)
                sed2 = t.mags(np, mini2, eep2, feh, loga, av, rv, dist)
                has = (mini2 >= mini_bound) & np.all(np.isfinite(sed2), axis=1)
            sed[has] = t.add_mag(np, sed[has], sed2[has])
        elif q == 1.0:
            with np.errstate(invalid="ignore"):
                isb = (eep <= eep_binary_max) & ~np.isnan(sed[:, 0])
            sed[isb] -= LOG2_MAG
            mini2 = np.where(isb, mini, np.nan)
        return sed, {"mini": mini}, {"mini": mini2}

    def get_seds_smf_grid(self, smf_values, **kw):
        return [self.get_seds(binary_fraction=float(q), **kw) for q in np.atleast_1d(smf_values)]


def simulate_cluster(pop, theta, n_stars, seed, binary_frac=0.3, mag_err=(0.003, 0.01),
                     plx_err=(0.02, 0.1), eep_max=None, n_eep=4000):
    """Observed photometry of a cluster drawn from a population with ``get_seds_smf_grid_jax``.

    Members (a fraction ``1 - theta[5]``) are drawn uniformly in initial mass
    along the isochrone at ``theta = [feh, loga, av, rv, dist_pc, field_frac]``
    (the likelihood's own mass measure); a fraction ``binary_frac`` of them are
    binaries with mass ratio q ~ U(0.2, 1) (brutus's rules; primaries beyond
    ``eep_binary_max`` stay single).  Field stars (``theta[5]``) are spread
    uniformly over the members' magnitude range plus N(0, 1 mag) per band, with
    parallaxes U(0.2, 3) mas.  Errors: fractional flux errors U(``mag_err``) / 1.0857
    per band per star (Gaia-like to 2MASS-like), parallax errors U(``plx_err``) mas.

    Returns ``dict(flux, err, parallax, parallax_err, member, q)`` (numpy float64).
    """
    rng = np.random.default_rng(seed)
    feh, loga, av, rv, dist, ffrac = (float(x) for x in theta)
    eep = np.linspace(202.0, 808.0 if eep_max is None else eep_max, n_eep)
    qs = np.linspace(0.0, 1.0, 81)
    g = pop.get_seds_smf_grid_jax(qs, feh=feh, loga=loga, av=av, rv=rv, eep=eep, dist=dist, mini_bound=0.08)
    mags, ok = np.asarray(g.mags, float), np.asarray(g.sed_ok)
    mini = np.asarray(g.mini[0], float)
    good = np.flatnonzero(ok[0])
    n_field = int(round(ffrac * n_stars))
    n_mem = n_stars - n_field
    # uniform in initial mass: invert the (monotone) mass-EEP relation on the valid rows
    m = rng.uniform(mini[good].min(), mini[good].max(), n_mem)
    rows = good[np.clip(np.searchsorted(mini[good], m), 0, good.size - 1)]
    is_bin = rng.uniform(size=n_mem) < binary_frac
    q = np.where(is_bin, rng.uniform(0.2, 1.0, n_mem), 0.0)
    qi = np.rint(q * (qs.size - 1)).astype(int)
    mem = mags[qi, rows]
    bad = ~ok[qi, rows]
    mem[bad] = mags[0, rows[bad]]
    field = (rng.uniform(mem.min(0), mem.max(0), (n_field, mem.shape[1]))
             + rng.normal(0.0, 1.0, (n_field, mem.shape[1])))
    allm = np.vstack([mem, field])
    flux = 10 ** (-0.4 * allm)
    frac = rng.uniform(*mag_err, allm.shape) / 1.0857
    err = frac * flux
    flux = flux + err * rng.normal(size=flux.shape)
    plx_true = np.concatenate([np.full(n_mem, 1000.0 / dist), rng.uniform(0.2, 3.0, n_field)])
    perr = rng.uniform(*plx_err, n_stars)
    plx = plx_true + perr * rng.normal(size=n_stars)
    member = np.concatenate([np.ones(n_mem, bool), np.zeros(n_field, bool)])
    return dict(flux=flux, err=err, parallax=plx, parallax_err=perr, member=member,
                q=np.concatenate([q, np.zeros(n_field)]))
