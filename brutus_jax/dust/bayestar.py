"""Bayestar 3-D dust map: HDF5 reader, vectorised multi-resolution HEALPix lookup, writer.

Host-side (numpy + h5py) counterpart of ``brutus.dust.Bayestar`` and
``brutus.dust.lb2pix`` of astro-brutus 1.2.0.  The map is read once into
memory; ``query`` returns the per-sightline distance profiles that the pure
kernel `brutus_jax.kernels.priors.logp_extinction` consumes.

File format (brutus's ``bayestar2019_v1.h5``)
---------------------------------------------
``/pixel_info``  compound (Npix,): ``nside``, ``healpix_index`` (NESTED
                 ordering) and optionally ``converged``, ``DM_reliable_min``,
                 ``DM_reliable_max`` (distance moduli [mag]);
``/dists``       (Ndist,) distance bins [kpc];
``/av_mean``, ``/av_std``  (Npix, Ndist) A_V mean and standard deviation [mag].

Pixels of different ``nside`` tile the footprint (multi-resolution map).  A
position is located with a single nested ``ang2pix`` at the finest ``nside``
(`lb2pix`, implemented here: healpy is not needed), right-shifted by two bits
per level for coarser levels, and a ``searchsorted`` per level; positions in
no pixel get NaN profiles.  With the reliability mask (default) the bins at
``d < 10**(DM_reliable_min/5 - 2)`` or ``d > 10**(DM_reliable_max/5 - 2)``
kpc, and all bins of non-converged pixels, are NaN as well (a NaN DM limit
masks the whole pixel), exactly as in brutus.
"""

from __future__ import annotations

import math
import os
import warnings

import h5py
import numpy as np

__all__ = ["lb2pix", "DustMap", "Bayestar", "write_bayestar"]

_INV_HALFPI = 2.0 / math.pi
_TWOTHIRD = 2.0 / 3.0
_RELIABILITY_FIELDS = ("converged", "DM_reliable_min", "DM_reliable_max")


# ---------------------------------------------------------------------------
# HEALPix ang2pix
# ---------------------------------------------------------------------------


def _spread_bits(v):
    """Interleave zeros between the bits of non-negative int64 ``v`` (< 2**31)."""
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def _ang2pix(nside, theta, phi, nest):
    """HEALPix ``ang2pix`` (Gorski et al. 2005; the healpix_cxx ``loc2pix`` branches).

    ``theta`` colatitude, ``phi`` longitude [rad], valid float64 arrays.
    Near the poles (``theta < 0.01`` or ``> pi - 0.01``) the cap coordinate
    uses ``sin(theta)`` instead of ``sqrt(1 - |z|)`` for precision, as healpy does.
    """
    order = nside.bit_length() - 1
    z = np.cos(theta)
    za = np.abs(z)
    sth = np.sin(theta)
    use_sth = ((theta < 0.01) | (theta > 3.14159 - 0.01)) & (za >= 0.99)
    tt = phi * _INV_HALFPI  # fmodulo(phi / (pi/2), 4) in [0, 4)
    neg = tt < 0.0
    tt = np.where(tt >= 4.0, np.fmod(tt, 4.0), tt)
    wrapped = np.fmod(tt, 4.0) + 4.0
    tt = np.where(neg, np.where(wrapped == 4.0, 0.0, wrapped), tt)

    # equatorial belt |z| <= 2/3
    t1 = nside * (0.5 + tt)
    t2 = nside * (z * 0.75)
    jp_e = (t1 - t2).astype(np.int64)  # ascending edge line
    jm_e = (t1 + t2).astype(np.int64)  # descending edge line

    # polar caps
    ntt = np.minimum(3, tt.astype(np.int64))
    tp = tt - ntt
    with np.errstate(invalid="ignore"):
        tmp = np.where(use_sth, nside * sth / np.sqrt((1.0 + za) / 3.0), nside * np.sqrt(3.0 * (1.0 - za)))
    jp_p = (tp * tmp).astype(np.int64)
    jm_p = ((1.0 - tp) * tmp).astype(np.int64)
    equatorial = za <= _TWOTHIRD

    if nest:
        ifp = jp_e >> order
        ifm = jm_e >> order
        face_e = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
        ix_e = jm_e & (nside - 1)
        iy_e = nside - (jp_e & (nside - 1)) - 1
        jp_p = np.minimum(jp_p, nside - 1)
        jm_p = np.minimum(jm_p, nside - 1)
        north = z >= 0.0
        face_p = np.where(north, ntt, ntt + 8)
        ix_p = np.where(north, nside - jm_p - 1, jp_p)
        iy_p = np.where(north, nside - jp_p - 1, jm_p)
        face = np.where(equatorial, face_e, face_p)
        ix = np.where(equatorial, ix_e, ix_p)
        iy = np.where(equatorial, iy_e, iy_p)
        return (face << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)

    # RING scheme
    nl4 = 4 * nside
    ncap = 2 * nside * (nside - 1)
    npix = 12 * nside * nside
    ir_e = nside + 1 + jp_e - jm_e  # ring number counted from z = 2/3, in [1, 2 nside + 1]
    kshift = 1 - (ir_e & 1)
    ip_e = ((jp_e + jm_e - nside + kshift + 1 + 2 * nl4) >> 1) % nl4
    pix_e = ncap + (ir_e - 1) * nl4 + ip_e
    tp_r = tt - tt.astype(np.int64)
    jp_r = (tp_r * tmp).astype(np.int64)
    jm_r = ((1.0 - tp_r) * tmp).astype(np.int64)
    ir_p = jp_r + jm_r + 1  # ring number counted from the closest pole
    ip_p = (tt * ir_p).astype(np.int64)
    pix_p = np.where(z > 0.0, 2 * ir_p * (ir_p - 1) + ip_p, npix - 2 * ir_p * (ir_p + 1) + ip_p)
    return np.where(equatorial, pix_e, pix_p)


def lb2pix(nside, l, b, nest=True):  # noqa: E741 (brutus's argument name)
    """HEALPix pixel indices of Galactic positions (healpy ``ang2pix`` semantics).

    ``theta = radians(90 - b)``, ``phi = radians(l)``; identical to
    ``healpy.ang2pix(nside, theta, phi, nest=nest)``, but written in numpy
    (healpy is not a dependency).

    Parameters
    ----------
    nside : int
        HEALPix resolution, a power of two in ``[1, 2**29]`` (any positive
        integer up to ``2**29`` for ``nest=False``).
    l, b : float or array_like, broadcastable
        Galactic longitude and latitude [deg]; any ``l`` (wrapped).
    nest : bool, optional
        NESTED (default, the Bayestar ordering) or RING ordering.

    Returns
    -------
    int or numpy.ndarray of int64
        Pixel indices; ``-1`` where ``|b| > 90``, ``b`` or ``l`` is non-finite.
        A Python ``int`` for scalar ``l`` and ``b``.
    """
    nside = int(nside)
    if not (1 <= nside <= 2**29) or (nest and nside & (nside - 1)):
        raise ValueError(f"nside must be a power of two in [1, 2**29] (NESTED ordering), got {nside}")
    scalar = np.ndim(l) == 0 and np.ndim(b) == 0
    try:
        l_arr, b_arr = np.broadcast_arrays(np.asarray(l, dtype=np.float64), np.asarray(b, dtype=np.float64))
    except ValueError as exc:
        raise ValueError(f"l and b have incompatible shapes {np.shape(l)} and {np.shape(b)}") from exc
    valid = (b_arr >= -90.0) & (b_arr <= 90.0) & np.isfinite(l_arr)
    theta = np.radians(90.0 - np.where(valid, b_arr, 0.0))
    phi = np.radians(np.where(valid, l_arr, 0.0))
    pix = np.where(valid, _ang2pix(nside, theta, phi, nest), -1).astype(np.int64)
    return int(pix) if scalar else pix


# ---------------------------------------------------------------------------
# map classes
# ---------------------------------------------------------------------------


def _degrees(x):
    """Plain float64 degrees from a number, an array or an astropy Quantity."""
    if hasattr(x, "to_value"):
        x = x.to_value("deg")
    return np.asarray(x, dtype=np.float64)


class DustMap:
    """Base class of queryable dust maps (brutus ``DustMap`` interface).

    Subclasses implement ``query(coords)``; this class adds ``__call__`` and the
    ``query_gal`` / ``query_equ`` conveniences.
    """

    def __call__(self, coords, **kwargs):
        """Alias of `query`."""
        return self.query(coords, **kwargs)

    def query(self, coords, **kwargs):
        """Query the map (implemented by subclasses)."""
        raise NotImplementedError("DustMap.query must be implemented by subclasses.")

    def query_gal(self, l, b, d=None, **kwargs):  # noqa: E741
        """Query at Galactic coordinates.

        Parameters
        ----------
        l, b : float, array_like or astropy Quantity
            Galactic longitude and latitude [deg]; broadcast to 1-D.
        d : ignored
            Distance, accepted for API compatibility (HEALPix maps return
            whole profiles).
        **kwargs
            Passed to `query`.

        Returns
        -------
        The result of ``query`` for the ``(N, 2)`` array of ``(l, b)``: always
        2-D profiles ``(N, Ndist)``, also for scalar input.
        """
        l_arr, b_arr = np.broadcast_arrays(np.atleast_1d(_degrees(l)), np.atleast_1d(_degrees(b)))
        return self.query(np.column_stack([l_arr.ravel(), b_arr.ravel()]), **kwargs)

    def query_equ(self, ra, dec, d=None, frame="icrs", **kwargs):
        """Query at equatorial coordinates (needs astropy for the frame transformation).

        Parameters
        ----------
        ra, dec : float, array_like or astropy Quantity
            Right ascension and declination [deg].
        d : ignored
            Distance, accepted for API compatibility.
        frame : {'icrs', 'fk4', 'fk5', 'fk4noeterms'}, optional
            Equatorial frame (default 'icrs').
        **kwargs
            Passed to `query`.

        Raises
        ------
        ValueError
            For an unsupported ``frame``.
        ImportError
            If astropy is not installed.
        """
        valid_frames = ("icrs", "fk4", "fk5", "fk4noeterms")
        if frame not in valid_frames:
            raise ValueError(f"Frame '{frame}' not supported. Must be one of {list(valid_frames)}.")
        try:
            import astropy.units as u
            from astropy.coordinates import SkyCoord
        except ImportError as exc:
            raise ImportError(
                "query_equ needs astropy for the equatorial -> Galactic transformation "
                "(pip install astropy), or convert to Galactic (l, b) yourself and use query_gal."
            ) from exc
        coords = SkyCoord(_degrees(ra) * u.deg, _degrees(dec) * u.deg, frame=frame)
        return self.query(coords, **kwargs)


class Bayestar(DustMap):
    """Bayestar 3-D dust map (Green et al. 2019) read from brutus's HDF5 file.

    The whole map is loaded into memory (numpy arrays); queries are
    vectorised over positions.

    Parameters
    ----------
    dustfile : str or os.PathLike, optional
        HDF5 file in the format described in this module's docstring
        (default ``'bayestar2019_v1.h5'``; `write_bayestar` writes one).
    apply_reliability_mask : bool, optional
        Default of `query`: NaN for bins outside each pixel's reliable distance
        range and for non-converged pixels.  If the file has no reliability
        fields, masking is skipped with a ``RuntimeWarning`` (default True).

    Attributes
    ----------
    distances : numpy.ndarray, (Ndist,)
        Distance bins [kpc].
    av_mean, av_std : numpy.ndarray, (Npix, Ndist)
        Unmasked A_V mean and standard deviation [mag] (file dtype).
    nside, healpix_index : numpy.ndarray of int64, (Npix,)
        Resolution and NESTED index of every pixel.
    d_reliable_min, d_reliable_max : numpy.ndarray, (Npix,) or None
        Reliable distance range [kpc] (NaN DM limits -> +inf / -inf).
    converged : numpy.ndarray of bool, (Npix,) or None
        Convergence flags.
    nside_levels : numpy.ndarray of int64
        Distinct resolutions, increasing.

    Raises
    ------
    FileNotFoundError
        If ``dustfile`` does not exist.
    OSError
        If it is not a readable HDF5 file.
    ValueError
        If datasets or fields are missing or have inconsistent shapes.
    """

    def __init__(self, dustfile="bayestar2019_v1.h5", apply_reliability_mask=True):
        path = os.fspath(dustfile)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Bayestar dust map '{path}' not found (brutus's fetch_dustmaps() downloads "
                "bayestar2019_v1.h5; brutus_jax.dust.write_bayestar writes synthetic maps)."
            )
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise OSError(f"'{path}' is not a readable HDF5 dust map: {exc}") from exc
        with f:
            missing = [k for k in ("pixel_info", "dists", "av_mean", "av_std") if k not in f]
            if missing:
                raise ValueError(
                    f"'{path}' is not a Bayestar map: missing dataset(s) {missing} "
                    "(expected /pixel_info, /dists, /av_mean, /av_std)."
                )
            pixel_info = f["pixel_info"][()]
            self.distances = np.asarray(f["dists"][()])
            self.av_mean = np.asarray(f["av_mean"][()])
            self.av_std = np.asarray(f["av_std"][()])
        self.dustfile = path
        self._load_pixel_info(pixel_info, path, apply_reliability_mask)
        self._build_lookup()

    # -- loading -------------------------------------------------------------

    def _load_pixel_info(self, pixel_info, path, apply_reliability_mask):
        names = set(getattr(pixel_info.dtype, "names", None) or ())
        if not {"nside", "healpix_index"} <= names:
            raise ValueError(f"'{path}': /pixel_info must be a compound dataset with fields 'nside' and 'healpix_index'.")
        npix, ndist = pixel_info.shape[0], self.distances.shape[0]
        if self.distances.ndim != 1 or self.av_mean.shape != (npix, ndist) or self.av_std.shape != (npix, ndist):
            raise ValueError(
                f"'{path}': inconsistent shapes: pixel_info {pixel_info.shape}, dists {self.distances.shape}, "
                f"av_mean {self.av_mean.shape}, av_std {self.av_std.shape} (expected (Npix, Ndist))."
            )
        self.pixel_info = pixel_info
        self.nside = pixel_info["nside"].astype(np.int64)
        self.healpix_index = pixel_info["healpix_index"].astype(np.int64)
        if np.any(self.nside < 1) or np.any(self.nside & (self.nside - 1)):
            raise ValueError(f"'{path}': every pixel's nside must be a power of two.")
        if set(_RELIABILITY_FIELDS) <= names:
            with np.errstate(over="ignore"):
                d_min = 10.0 ** (pixel_info["DM_reliable_min"].astype(np.float64) / 5.0 - 2.0)
                d_max = 10.0 ** (pixel_info["DM_reliable_max"].astype(np.float64) / 5.0 - 2.0)
            # a NaN limit means "no reliable range": mask the whole profile
            self.d_reliable_min = np.where(np.isnan(d_min), np.inf, d_min)
            self.d_reliable_max = np.where(np.isnan(d_max), -np.inf, d_max)
            self.converged = pixel_info["converged"].astype(bool)
        else:
            self.d_reliable_min = self.d_reliable_max = self.converged = None
            if apply_reliability_mask:
                warnings.warn(
                    f"Dust map file '{path}' lacks reliability metadata (converged, DM_reliable_min, "
                    "DM_reliable_max); queries will return unmasked extinction profiles.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        self.apply_reliability_mask = bool(apply_reliability_mask)

    def _build_lookup(self):
        """Per resolution level: sorted HEALPix indices and the rows they map to."""
        self.nside_levels = np.unique(self.nside)
        self._sorted_hpix, self._rows = [], []
        for level in self.nside_levels:
            rows = np.flatnonzero(self.nside == level)
            order = np.argsort(self.healpix_index[rows], kind="stable")
            self._rows.append(rows[order])
            self._sorted_hpix.append(self.healpix_index[rows[order]])

    # -- lookup --------------------------------------------------------------

    def find_pixels(self, l, b):  # noqa: E741
        """Row of the map holding each position, ``-1`` outside the footprint.

        Parameters
        ----------
        l, b : array_like, broadcastable
            Galactic longitude and latitude [deg].

        Returns
        -------
        numpy.ndarray of int64, broadcast shape
            Row indices into ``av_mean`` / ``av_std``.
        """
        if self.nside_levels.size == 0:  # an empty map covers nothing
            return np.full(np.broadcast(np.asarray(l), np.asarray(b)).shape, -1, dtype=np.int64)
        nside_max = int(self.nside_levels[-1])
        order_max = nside_max.bit_length() - 1
        ipix_max = np.asarray(lb2pix(nside_max, l, b, nest=True), dtype=np.int64)
        rows = np.full(ipix_max.shape, -1, dtype=np.int64)
        for level, hpix, level_rows in zip(self.nside_levels, self._sorted_hpix, self._rows):
            ipix = ipix_max >> (2 * (order_max - (int(level).bit_length() - 1)))  # -1 stays -1
            pos = np.minimum(np.searchsorted(hpix, ipix, side="left"), hpix.size - 1)
            hit = (hpix[pos] == ipix) & (ipix >= 0)
            rows = np.where(hit, level_rows[pos], rows)  # finer levels win, as in brutus
        return rows

    def query(self, coords, apply_reliability_mask=None):
        """A_V profiles along the lines of sight to ``coords``.

        Parameters
        ----------
        coords : array_like or astropy SkyCoord
            One ``(l, b)`` pair, an ``(N, 2)`` array of Galactic ``(l, b)``
            [deg], or a SkyCoord (any frame, any shape).
        apply_reliability_mask : bool, optional
            Override the constructor's setting for this query.

        Returns
        -------
        distances : numpy.ndarray, (Ndist,)
            Distance bins [kpc] (a copy).
        av_mean, av_std : numpy.ndarray, (N, Ndist)
            A_V mean and standard deviation [mag]; ``(Ndist,)`` for a single
            pair or a scalar SkyCoord, ``coords.shape + (Ndist,)`` for a
            SkyCoord array.  NaN outside the footprint and, with the
            reliability mask, in unreliable bins.
        """
        if apply_reliability_mask is None:
            apply_reliability_mask = self.apply_reliability_mask
        if hasattr(coords, "galactic") or hasattr(coords, "l"):
            gal = coords.galactic if hasattr(coords, "galactic") else coords
            l_deg, b_deg = np.asarray(gal.l.deg, dtype=np.float64), np.asarray(gal.b.deg, dtype=np.float64)
            squeeze = l_deg.ndim == 0
        else:
            arr = np.asarray(coords, dtype=np.float64)
            if arr.shape[-1:] != (2,) or arr.ndim > 2:
                raise ValueError(f"coords must be an (l, b) pair or an (N, 2) array in degrees; got shape {arr.shape}")
            squeeze = arr.ndim == 1
            arr = np.atleast_2d(arr)
            l_deg, b_deg = arr[:, 0], arr[:, 1]
        rows = np.atleast_1d(self.find_pixels(l_deg, b_deg))
        if self.nside.size == 0:  # empty map: nothing is covered
            nan = np.full(rows.shape + self.distances.shape, np.nan, dtype=np.result_type(self.av_mean, np.float32))
            return self.distances.copy(), (nan[0] if squeeze else nan), (nan[0].copy() if squeeze else nan.copy())
        safe = np.maximum(rows, 0)
        bad = (rows < 0)[..., None]
        if apply_reliability_mask and self.converged is not None:
            d = self.distances
            bad = (
                bad
                | (d < self.d_reliable_min[safe][..., None])
                | (d > self.d_reliable_max[safe][..., None])
                | ~self.converged[safe][..., None]
            )
        av_mean = np.where(bad, np.nan, self.av_mean[safe]).astype(self.av_mean.dtype, copy=False)
        av_std = np.where(bad, np.nan, self.av_std[safe]).astype(self.av_std.dtype, copy=False)
        if squeeze:
            av_mean, av_std = av_mean[0], av_std[0]
        return self.distances.copy(), av_mean, av_std

    def __repr__(self):
        return (
            f"Bayestar('{self.dustfile}': {self.nside.size} pixels, nside {self.nside_levels.tolist()}, "
            f"{self.distances.size} distance bins)"
        )


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------


def write_bayestar(
    path,
    nside_per_pixel,
    healpix_index,
    dists,
    av_mean,
    av_std,
    converged=None,
    dm_reliable_min=None,
    dm_reliable_max=None,
):
    """Write a dust map in brutus's Bayestar HDF5 format (synthetic maps, tests).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (overwritten).
    nside_per_pixel : array_like of int, (Npix,)
        HEALPix resolution of each pixel (powers of two).
    healpix_index : array_like of int, (Npix,)
        NESTED pixel index of each pixel at its own resolution.
    dists : array_like, (Ndist,)
        Distance bins [kpc].
    av_mean, av_std : array_like, (Npix, Ndist)
        A_V mean and standard deviation [mag], written in their own float dtype.
    converged : array_like of bool, (Npix,), optional
        Convergence flags.
    dm_reliable_min, dm_reliable_max : array_like, (Npix,), optional
        Reliable distance-modulus range [mag].  If any of the three
        reliability arrays is given, all three fields are written (defaults:
        converged, ``-inf``, ``+inf``).

    Returns
    -------
    str
        The path written.
    """
    nside = np.asarray(nside_per_pixel, dtype=np.int64).ravel()
    hpix = np.asarray(healpix_index, dtype=np.int64).ravel()
    dists = np.asarray(dists, dtype=np.float64).ravel()
    av_mean = np.asarray(av_mean)
    av_std = np.asarray(av_std)
    npix, ndist = nside.size, dists.size
    if hpix.shape != (npix,) or av_mean.shape != (npix, ndist) or av_std.shape != (npix, ndist):
        raise ValueError(
            f"shapes disagree: nside {nside.shape}, healpix_index {hpix.shape}, dists {dists.shape}, "
            f"av_mean {av_mean.shape}, av_std {av_std.shape}"
        )
    if np.any(nside < 1) or np.any(nside & (nside - 1)):
        raise ValueError("nside_per_pixel must be powers of two")
    if np.any(hpix < 0) or np.any(hpix >= 12 * nside * nside):
        raise ValueError("healpix_index out of range [0, 12 nside**2)")
    fields = [("nside", "<u4"), ("healpix_index", "<u8")]
    with_rel = any(x is not None for x in (converged, dm_reliable_min, dm_reliable_max))
    if with_rel:
        fields += [("converged", "u1"), ("DM_reliable_min", "<f4"), ("DM_reliable_max", "<f4")]
    info = np.zeros(npix, dtype=fields)
    info["nside"] = nside
    info["healpix_index"] = hpix
    if with_rel:
        info["converged"] = np.ones(npix, bool) if converged is None else np.asarray(converged, bool)
        info["DM_reliable_min"] = -np.inf if dm_reliable_min is None else dm_reliable_min
        info["DM_reliable_max"] = np.inf if dm_reliable_max is None else dm_reliable_max
    path = os.fspath(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("pixel_info", data=info)
        f.create_dataset("dists", data=dists)
        f.create_dataset("av_mean", data=av_mean)
        f.create_dataset("av_std", data=av_std)
    return path
