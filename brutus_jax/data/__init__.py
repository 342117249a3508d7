"""Model grids and data files (brutus.data).

* ``load_models`` / ``write_models``: brutus's grid HDF5 format (``/mag_coeffs``,
  ``/labels``, ``/parameters``).
* ``build_grid``: build (or find cached) a brutus-format grid from real MIST
  isochrones (lachesis-grids) and MIST/C3K bolometric corrections (astroLACHESIS).
* ``FILTERS``: the band names brutus_jax grids can carry.
"""

from .gridio import load_models, write_models, load_offsets, write_offsets  # noqa: F401
from .filters import FILTERS, DEFAULT_FILTERS  # noqa: F401
from .build import build_grid, default_grid_path, GRID_PRESETS  # noqa: F401
from .sources import data_dir  # noqa: F401

__all__ = [
    "load_models",
    "write_models",
    "load_offsets",
    "write_offsets",
    "build_grid",
    "default_grid_path",
    "GRID_PRESETS",
    "FILTERS",
    "DEFAULT_FILTERS",
    "data_dir",
]
