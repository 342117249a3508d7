"""Statistical inference (brutus.analysis).

``BruteForce`` fits individual stars (see ``bruteforce``); the population
(cluster) likelihood and its five steps live in ``populations`` (jit-able and
differentiable with a population offering ``get_seds_smf_grid_jax``);
``fit_cluster`` samples it with blackjax NUTS (see ``cluster``);
``photometric_offsets`` calibrates bands from posterior draws (``offsets``);
``los_dust`` holds brutus's line-of-sight cloud model and ``fit_los_clouds``
samples it (tempered SMC, evidence for the number of clouds).
"""

from .bruteforce import BruteForce  # noqa: F401
from .cluster import ClusterResult, fit_cluster  # noqa: F401
from .cluster_selection import box_selection  # noqa: F401
from .los_dust import (  # noqa: F401
    kernel_gauss,
    kernel_lorentz,
    kernel_tophat,
    los_clouds_loglike_samples,
    los_clouds_priortransform,
)
from .los_fit import compare_nclouds, fit_los_clouds  # noqa: F401
from .los_results import LOSFitResult, NCloudsComparison  # noqa: F401
from .offsets import (  # noqa: F401
    PhotometricOffsetsConfig,
    offsets_from_fit,
    photometric_offsets,
    read_fit_draws,
    write_offsets,
)
from .populations import (  # noqa: F401
    apply_isochrone_mixture_model,
    compute_isochrone_cluster_loglike,
    compute_isochrone_outlier_loglike,
    generate_isochrone_population_grid,
    isochrone_population_loglike,
    marginalize_isochrone_grid,
)

__all__ = [
    "BruteForce",
    "isochrone_population_loglike",
    "generate_isochrone_population_grid",
    "compute_isochrone_cluster_loglike",
    "compute_isochrone_outlier_loglike",
    "apply_isochrone_mixture_model",
    "marginalize_isochrone_grid",
    "fit_cluster",
    "ClusterResult",
    "box_selection",
    "photometric_offsets",
    "PhotometricOffsetsConfig",
    "offsets_from_fit",
    "read_fit_draws",
    "write_offsets",
    "los_clouds_priortransform",
    "los_clouds_loglike_samples",
    "kernel_tophat",
    "kernel_gauss",
    "kernel_lorentz",
    "fit_los_clouds",
    "compare_nclouds",
    "LOSFitResult",
    "NCloudsComparison",
]
