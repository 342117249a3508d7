"""`ClusterResult`: the posterior returned by `fit_cluster` (NUTS or SMC)."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import diagnostics as diag
from .cluster_params import PARAMS

__all__ = ["ClusterResult"]


@dataclasses.dataclass
class ClusterResult:
    """Posterior of a cluster fit.

    Attributes
    ----------
    samples : dict name -> array (chains, draws)
        feh [dex], loga [log10 yr], av [mag], rv, dist [pc], field_frac; fixed
        parameters are constant arrays.  With ``method="smc"`` the "chains"
        are independent SMC runs and the "draws" their equally weighted
        particles (in genealogical order) or, with ``smc_imh_steps`` > 0, the
        states of the independence-MH chains the particles start (one chain
        after the other).
    logdensity : array (chains, draws)
        Log posterior density on the sampled (unconstrained) space.
    diagnostics : dict
        ``method`` ("nuts" or "smc"), ``rhat``, ``ess_bulk``, ``ess_tail``
        (dicts keyed like samples, free parameters only), ``init`` (the optima
        found; None for SMC from the prior, which does not optimise), ``timing`` [s] and ``ess_per_s`` (min bulk ESS / sampling wall
        time).  NUTS: ``divergences``, ``step_size``, ``acceptance``,
        ``mean_num_steps`` (arrays per chain).  SMC: ``smc`` (per run: ``ln Z``
        estimates, tempering steps, mean acceptance, whether beta reached 1,
        the fraction of distinct particles, ``imh_steps`` and ``imh_acceptance``).
    converged : bool
    flags : list of str
        Why the run is not called converged (empty when it is).
    free, fixed : list of str, dict
        Sampled parameters; fixed parameters and their values.
    map_theta : array (6,)
        The best optimum found during initialisation (SMC from the prior: the
        draw of highest posterior density).
    """

    samples: dict
    logdensity: np.ndarray
    diagnostics: dict
    converged: bool
    flags: list
    free: list
    fixed: dict
    map_theta: np.ndarray

    def theta(self):
        """All draws as theta vectors, shape (chains * draws, 6)."""
        return np.stack([self.samples[n].ravel() for n in PARAMS], axis=-1)

    def summary_table(self):
        """dict name -> mean, sd, quantiles, rhat, ess_bulk, ess_tail."""
        return diag.summarize({n: self.samples[n] for n in self.free})

    def summary(self):
        """The summary table as text."""
        head = f"{'param':>10} {'mean':>10} {'sd':>9} {'2.5%':>10} {'50%':>10} {'97.5%':>10} " \
               f"{'R-hat':>6} {'ESS_bulk':>8} {'ESS_tail':>8}"
        lines = [head]
        for n, r in self.summary_table().items():
            lines.append(f"{n:>10} {r['mean']:10.4g} {r['sd']:9.3g} {r['q2_5']:10.4g} {r['q50']:10.4g} "
                         f"{r['q97_5']:10.4g} {r['rhat']:6.3f} {r['ess_bulk']:8.0f} {r['ess_tail']:8.0f}")
        for n, v in self.fixed.items():
            lines.append(f"{n:>10} {v:10.4g} (fixed)")
        d = self.diagnostics
        state = "converged" if self.converged else "NOT converged: " + "; ".join(self.flags)
        if d.get("method") == "smc":
            sm = d["smc"]
            lines.append(f"SMC: {len(sm['n_steps'])} runs, tempering steps {sm['n_steps'].tolist()}, ln Z "
                         f"{np.array2string(np.asarray(sm['log_evidence']), precision=2)}, distinct particles "
                         f"{np.array2string(np.asarray(sm['unique_fraction']), precision=2)}"
                         + ("" if not sm.get("imh_steps") else f", {sm['imh_steps']} independence-MH steps per "
                            f"particle, acceptance {np.array2string(np.asarray(sm['imh_acceptance']), precision=2)}")
                         + f"; {state}")
            return "\n".join(lines)
        lines.append(f"divergences {int(np.sum(d['divergences']))}, step sizes "
                     f"{np.array2string(np.asarray(d['step_size']), precision=3)}, acceptance "
                     f"{np.array2string(np.asarray(d['acceptance']), precision=2)}; "
                     + state)
        return "\n".join(lines)

    def to_arviz(self):
        """An ``arviz.InferenceData`` (needs the optional ``arviz`` package)."""
        try:
            import arviz as az
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_arviz() needs arviz: pip install arviz") from e
        stats = {"lp": self.logdensity}
        if self.diagnostics.get("method", "nuts") == "nuts":
            stats.update(diverging=self.diagnostics["diverging"], acceptance_rate=self.diagnostics["accept_draws"],
                         n_steps=self.diagnostics["n_steps_draws"])
        return az.from_dict(posterior={n: self.samples[n] for n in self.free}, sample_stats=stats,
                            attrs={"fixed": repr(self.fixed), "converged": str(self.converged)})
