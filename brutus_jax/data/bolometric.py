"""MIST/C3K bolometric-correction tables (``bc_tables.h5`` of astroLACHESIS).

Each photometric-system group holds ``data`` (n_feh, n_rows, 5 + n_band) with
columns ``Teff, logg, [Fe/H], A_V, R_V, BC...`` (R_V = 3.1 everywhere) and
``band_names``.  Rows are the full product of the A_V, Teff and logg axes.
Absolute magnitude: ``M_band = Mbol - BC(Teff, logg, [Fe/H], A_V)``.

We interpolate linearly in (log10 Teff, logg, [Fe/H], A_V).  Points outside
the table are clamped to its edges (the table itself fills unphysical corners
by extrapolation; models beyond 2500 K or outside the logg range are rare in
the default grid and flagged by ``BCTable.inside``).
"""

from __future__ import annotations

import h5py
import numpy as np
from scipy.interpolate import RegularGridInterpolator

from .filters import FILTER_GROUPS, check_filters

__all__ = ["BCTable"]


class BCTable:
    """Bolometric corrections for a set of bands on a regular 4-D lattice.

    Parameters
    ----------
    path : path to ``bc_tables.h5``.
    filters : sequence of band names (see ``brutus_jax.data.FILTERS``).
    """

    def __init__(self, path, filters):
        self.filters = check_filters(filters)
        groups = {}
        for band in self.filters:
            groups.setdefault(FILTER_GROUPS[band], []).append(band)
        tables = {}
        with h5py.File(path, "r") as f:
            for group, bands in groups.items():
                g = f[group]
                names = [b.decode() if isinstance(b, bytes) else str(b) for b in g["band_names"][:]]
                data = g["data"][:].astype(np.float64)  # (n_feh, n_rows, 5 + nb)
                feh_nodes = np.asarray(g["feh_values"][:], float)
                first = data[0]
                teff = np.unique(first[:, 0])
                logg = np.unique(first[:, 1])
                av = np.unique(first[:, 3])
                if not np.allclose(data[:, :, 4], 3.1):
                    raise ValueError(f"{path}:{group}: expected R_V = 3.1 throughout")
                n_av, n_t, n_g = av.size, teff.size, logg.size
                if n_av * n_t * n_g != first.shape[0]:
                    raise ValueError(f"{path}:{group}: rows are not a full (A_V, Teff, logg) product")
                # place rows by value (robust to ordering)
                ia = np.searchsorted(av, first[:, 3])
                it = np.searchsorted(teff, first[:, 0])
                ig = np.searchsorted(logg, first[:, 1])
                cols = [5 + names.index(b) for b in bands]
                cube = np.empty((feh_nodes.size, av.size, teff.size, logg.size, len(bands)))
                for kf in range(feh_nodes.size):
                    cube[kf, ia, it, ig] = data[kf][:, cols]
                tables[group] = (bands, feh_nodes, av, teff, logg, cube)
        self._interp = {}
        axes = None
        for group, (bands, feh_nodes, av, teff, logg, cube) in tables.items():
            ax = (feh_nodes, av, np.log10(teff), logg)
            self._interp[group] = (bands, RegularGridInterpolator(ax, cube, method="linear",
                                                                    bounds_error=False, fill_value=None))
            axes = ax
        self.feh_nodes, self.av_nodes, self.logt_nodes, self.logg_nodes = axes
        self.feh_range = (axes[0][0], axes[0][-1])
        self.logt_range = (axes[2][0], axes[2][-1])
        self.logg_range = (axes[3][0], axes[3][-1])

    def inside(self, logt, logg, feh):
        """True where (logt, logg, feh) lies inside the table (no clamping needed)."""
        return ((logt >= self.logt_range[0]) & (logt <= self.logt_range[1])
                & (logg >= self.logg_range[0]) & (logg <= self.logg_range[1])
                & (feh >= self.feh_range[0]) & (feh <= self.feh_range[1]))

    def bc(self, logt, logg, feh, av):
        """BC for every band: arrays broadcast to (...), result (..., n_band)."""
        logt, logg, feh, av = np.broadcast_arrays(*(np.asarray(x, float) for x in (logt, logg, feh, av)))
        pts = np.stack([
            np.clip(feh, *self.feh_range),
            np.clip(av, self.av_nodes[0], self.av_nodes[-1]),
            np.clip(logt, *self.logt_range),
            np.clip(logg, *self.logg_range),
        ], axis=-1)
        flat = pts.reshape(-1, 4)
        out = np.empty((flat.shape[0], len(self.filters)))
        for bands, interp in self._interp.values():
            idx = [self.filters.index(b) for b in bands]
            out[:, idx] = interp(flat)
        return out.reshape(logt.shape + (len(self.filters),))

    def abs_mag(self, mbol, logt, logg, feh, av=0.0):
        """Absolute magnitudes M = Mbol - BC, shape (..., n_band)."""
        return np.asarray(mbol, float)[..., None] - self.bc(logt, logg, feh, av)
