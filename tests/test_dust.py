"""Tests for brutus_jax.dust (Bayestar reader, lb2pix) and the dust prior.

References: healpy's ``ang2pix`` and astro-brutus 1.2.0's ``Bayestar`` /
``logp_extinction`` (``oracle`` tests); HEALPix's defining properties
(nested hierarchy, equal areas), hand-computed reliability masks, and
scipy's truncated normal (independent tests).
"""

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from brutus_jax.dust import Bayestar, lb2pix, write_bayestar
from brutus_jax.kernels import priors as kp
from brutus_jax.priors import logp_extinction

EXT = jax.jit(kp.logp_extinction, static_argnames="avlim")
TRUNCNORM = jax.jit(kp.logp_av_truncnorm, static_argnames="avlim")
NDIST = 24
DISTS = 10.0 ** (np.linspace(4.0, 19.0, NDIST) / 5.0 - 2.0)  # DM 4..19 -> kpc


def _make_map(seed=7):
    """Multi-resolution synthetic map: nside 8 / 16 / 32 pixels, holes, unreliable bins."""
    rng = np.random.default_rng(seed)
    nsides, hpix = [], []
    for p in range(12 * 8 * 8):
        u = rng.uniform()
        if u < 0.2:  # outside the footprint
            continue
        if u < 0.6:
            nsides.append(8)
            hpix.append(p)
            continue
        for c in range(4 * p, 4 * p + 4):  # subdivide into nside-16 children
            if rng.uniform() < 0.3:
                nsides += [32] * 4
                hpix += list(range(4 * c, 4 * c + 4))
            else:
                nsides.append(16)
                hpix.append(c)
    nsides, hpix = np.array(nsides), np.array(hpix)
    perm = rng.permutation(nsides.size)  # rows in no particular order
    nsides, hpix = nsides[perm], hpix[perm]
    npix = nsides.size
    av_mean = np.cumsum(rng.uniform(0.0, 0.3, (npix, NDIST)), axis=1).astype(np.float32)
    av_std = (0.05 + 0.3 * av_mean * rng.uniform(0.5, 1.0, (npix, NDIST))).astype(np.float32)
    converged = rng.uniform(size=npix) > 0.1
    dm_min = rng.uniform(3.0, 9.0, npix)
    dm_max = rng.uniform(11.0, 20.0, npix)
    dm_min[rng.uniform(size=npix) < 0.03] = np.nan
    dm_max[rng.uniform(size=npix) < 0.03] = np.nan
    return dict(
        nside_per_pixel=nsides,
        healpix_index=hpix,
        dists=DISTS,
        av_mean=av_mean,
        av_std=av_std,
        converged=converged,
        dm_reliable_min=dm_min,
        dm_reliable_max=dm_max,
    )


@pytest.fixture(scope="module")
def map_data():
    return _make_map()


@pytest.fixture(scope="module")
def map_file(tmp_path_factory, map_data):
    return write_bayestar(tmp_path_factory.mktemp("dust") / "bayestar_synth.h5", **map_data)


@pytest.fixture(scope="module")
def dustmap(map_file):
    return Bayestar(map_file)


def _sky(rng, n):
    """Uniform positions on the sphere (deg) plus the poles and l = 0 / 360."""
    l = rng.uniform(0.0, 360.0, n)
    b = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    l[:4], b[:4] = [0.0, 360.0, 0.0, 180.0], [90.0, -90.0, 0.0, 0.0]
    return l, b


# ---------------------------------------------------------------------------
# lb2pix
# ---------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("nest", [True, False])
def test_lb2pix_equals_healpy(brutus_oracle, rng, nest):
    hp = pytest.importorskip("healpy")
    n = 20000
    l = rng.uniform(-360.0, 720.0, n)
    b = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    special_b = [90.0, -90.0, 89.9999, -89.9999, 90.0 - math.degrees(0.01), math.degrees(math.asin(2 / 3)),
                 -math.degrees(math.asin(2 / 3)), math.degrees(math.asin(0.99)), 0.0, 41.8, 30.0, 60.0]
    special_l = [0.0, 360.0, -0.0, 720.0, 45.0, 90.0, 180.0, 270.0, 359.999999, 1e-12]
    ls, bs = np.meshgrid(special_l, special_b)
    l = np.concatenate([l, ls.ravel(), rng.uniform(0, 360, 500)])
    b = np.concatenate([b, bs.ravel(), rng.uniform(89.0, 90.0, 250), rng.uniform(-90.0, -89.0, 250)])
    for k in range(11):  # nside 1 ... 1024
        nside = 2**k
        ref = hp.ang2pix(nside, np.radians(90.0 - b), np.radians(l), nest=nest)
        np.testing.assert_array_equal(lb2pix(nside, l, b, nest=nest), ref, err_msg=f"nside={nside}")
    # brutus's own lb2pix, scalar and invalid latitude
    assert lb2pix(64, 10.0, 20.0) == brutus_oracle.dust.lb2pix(64, 10.0, 20.0)
    assert lb2pix(64, 10.0, 95.0) == brutus_oracle.dust.lb2pix(64, 10.0, 95.0) == -1


def test_lb2pix_nested_hierarchy_and_equal_area(rng):
    """Parent of a nested pixel = index >> 2; uniform points fill pixels equally."""
    l, b = _sky(rng, 200_000)
    fine = lb2pix(64, l, b)
    for nside in (1, 2, 4, 8, 16, 32):
        shift = 2 * (6 - int(math.log2(nside)))
        np.testing.assert_array_equal(lb2pix(nside, l, b), fine >> shift)
    for nest in (True, False):
        counts = np.bincount(lb2pix(4, l, b, nest=nest), minlength=192)
        assert counts.size == 192
        expected = l.size / 192
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert stats.chi2.sf(chi2, 191) > 1e-4, chi2
    # ring and nested orderings label the same partition of the sphere
    ring, nest = lb2pix(8, l, b, nest=False), lb2pix(8, l, b, nest=True)
    pairs = np.unique(np.stack([ring, nest]), axis=1)
    assert pairs.shape[1] == 768 and np.unique(pairs[0]).size == 768


def test_lb2pix_scalar_invalid_and_errors():
    assert isinstance(lb2pix(16, 10.0, 20.0), int)
    np.testing.assert_array_equal(lb2pix(16, [0.0, 0.0, np.nan, 10.0], [95.0, np.nan, 0.0, -90.5]), -1)
    assert lb2pix(1, 0.0, 0.0) == lb2pix(1, 360.0, 0.0) == lb2pix(1, -360.0, 0.0)
    with pytest.raises(ValueError, match="power of two"):
        lb2pix(3, 0.0, 0.0)
    with pytest.raises(ValueError, match="incompatible"):
        lb2pix(4, np.zeros(3), np.zeros(2))


# ---------------------------------------------------------------------------
# Bayestar reader
# ---------------------------------------------------------------------------


@pytest.mark.oracle
def test_bayestar_query_equals_brutus(brutus_oracle, map_file, dustmap, rng):
    ref = brutus_oracle.dust.Bayestar(map_file)
    l, b = _sky(rng, 5000)
    coords = np.column_stack([l, b])
    for mask in (True, False):
        d0, m0, s0 = ref.query(coords, apply_reliability_mask=mask)
        d1, m1, s1 = dustmap.query(coords, apply_reliability_mask=mask)
        np.testing.assert_array_equal(d1, d0)
        assert m1.dtype == m0.dtype and m1.shape == m0.shape == (l.size, NDIST)
        np.testing.assert_array_equal(m1, m0)
        np.testing.assert_array_equal(s1, s0)
    # the synthetic map exercises every case
    rows = dustmap.find_pixels(l, b)
    assert (rows < 0).any() and set(dustmap.nside[rows[rows >= 0]]) == {8, 16, 32}
    assert np.isnan(m0).any() and np.isfinite(m0).any()
    # single pair and query_gal
    for out, want in zip(dustmap.query([l[7], b[7]]), ref.query([l[7], b[7]])):
        assert out.shape == want.shape
        np.testing.assert_array_equal(out, want)
    for out, want in zip(dustmap.query_gal(l[:9], b[:9]), ref.query_gal(l[:9], b[:9])):
        np.testing.assert_array_equal(out, want)
    for out, want in zip(dustmap.query_gal(l[9], b[9]), ref.query_gal(l[9], b[9])):
        np.testing.assert_array_equal(out, want)


@pytest.mark.oracle
def test_bayestar_skycoord_and_equatorial_equal_brutus(brutus_oracle, map_file, dustmap, rng):
    coordinates = pytest.importorskip("astropy.coordinates")
    u = pytest.importorskip("astropy.units")
    ref = brutus_oracle.dust.Bayestar(map_file)
    ra, dec = rng.uniform(0, 360, 300), rng.uniform(-90, 90, 300)
    sc = coordinates.SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    for got, want in ((dustmap.query(sc), ref.query(sc)), (dustmap.query(sc[3]), ref.query(sc[3])),
                      (dustmap.query_equ(ra, dec, frame="fk5"), ref.query_equ(ra, dec, frame="fk5"))):
        for out, w in zip(got, want):
            assert out.shape == w.shape
            np.testing.assert_array_equal(out, w)
    with pytest.raises(ValueError, match="not supported"):
        dustmap.query_equ(ra, dec, frame="galactic")


def test_bayestar_lookup_and_mask_by_hand(map_data, dustmap, rng):
    """Each position lands in the map pixel that contains it at that pixel's nside."""
    l, b = _sky(rng, 4000)
    rows = dustmap.find_pixels(l, b)
    nside, hpix = map_data["nside_per_pixel"], map_data["healpix_index"]
    inside = rows >= 0
    for r, li, bi in zip(rows[inside], l[inside], b[inside]):
        assert hpix[r] == lb2pix(int(nside[r]), li, bi)
    # outside: no map pixel at any level contains the position
    keys = set(zip(nside.tolist(), hpix.tolist()))
    for li, bi in zip(l[~inside], b[~inside]):
        assert all((n, lb2pix(n, li, bi)) not in keys for n in (8, 16, 32))

    dists, m, s = dustmap.query(np.column_stack([l, b]))
    assert np.all(np.isnan(m[~inside])) and np.all(np.isnan(s[~inside]))
    for i in np.flatnonzero(inside)[:300]:
        r = rows[i]
        dmin = 10 ** (map_data["dm_reliable_min"][r] / 5 - 2)
        dmax = 10 ** (map_data["dm_reliable_max"][r] / 5 - 2)
        ok = (dists >= dmin) & (dists <= dmax) & map_data["converged"][r]  # NaN limits -> all False
        np.testing.assert_array_equal(np.isfinite(m[i]), ok)
        np.testing.assert_array_equal(m[i][ok], map_data["av_mean"][r][ok])
        np.testing.assert_array_equal(s[i][ok], map_data["av_std"][r][ok])
    _, m_raw, _ = dustmap.query(np.column_stack([l, b]), apply_reliability_mask=False)
    np.testing.assert_array_equal(m_raw[inside], map_data["av_mean"][rows[inside]])


def test_bayestar_file_errors(tmp_path, map_data):
    with pytest.raises(FileNotFoundError, match="not found"):
        Bayestar(tmp_path / "nope.h5")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"this is not HDF5" * 10)
    with pytest.raises(OSError, match="not a readable HDF5"):
        Bayestar(bad)
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f["dists"] = DISTS
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['pixel_info', 'av_mean', 'av_std'\]"):
        Bayestar(partial)
    with pytest.raises(ValueError, match="shapes disagree"):
        write_bayestar(tmp_path / "x.h5", [8], [0], DISTS, np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="powers of two"):
        write_bayestar(tmp_path / "x.h5", [6], [0], DISTS, np.zeros((1, NDIST)), np.zeros((1, NDIST)))
    with pytest.raises(ValueError, match="out of range"):
        write_bayestar(tmp_path / "x.h5", [1], [12], DISTS, np.zeros((1, NDIST)), np.zeros((1, NDIST)))


def test_bayestar_without_reliability_fields(tmp_path, map_data):
    path = write_bayestar(
        tmp_path / "norel.h5",
        *(map_data[k] for k in ("nside_per_pixel", "healpix_index", "dists", "av_mean", "av_std")),
    )
    with pytest.warns(RuntimeWarning, match="lacks reliability metadata"):
        dm = Bayestar(path)
    assert dm.converged is None
    quiet = Bayestar(path, apply_reliability_mask=False)
    l, b = np.array([10.0, 100.0, 200.0]), np.array([5.0, -40.0, 60.0])
    rows = dm.find_pixels(l, b)
    _, m, _ = quiet.query(np.column_stack([l, b]))
    for i, r in enumerate(rows):
        if r >= 0:
            np.testing.assert_array_equal(m[i], map_data["av_mean"][r])
        else:
            assert np.all(np.isnan(m[i]))


def test_query_rejects_bad_shapes_and_empty_map(dustmap, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        dustmap.query(np.zeros((4, 3)))
    empty = Bayestar(write_bayestar(tmp_path / "empty.h5", [], [], DISTS, np.zeros((0, NDIST)),
                                    np.zeros((0, NDIST)), converged=np.zeros(0, bool)))
    _, m, s = empty.query([[10.0, 20.0], [30.0, -5.0]])
    assert m.shape == (2, NDIST) and np.all(np.isnan(m)) and np.all(np.isnan(s))


# ---------------------------------------------------------------------------
# dust prior
# ---------------------------------------------------------------------------


def _los(dustmap, rng):
    """A line of sight whose profile has both masked and valid bins."""
    for _ in range(1000):
        lb = [rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))]
        _, m, _ = dustmap.query(lb)
        if np.isfinite(m).sum() >= 5 and np.isnan(m).any():
            return lb
    raise AssertionError("no suitable line of sight in the synthetic map")


@pytest.mark.oracle
def test_logp_extinction_equals_brutus(brutus_oracle, dustmap, map_file, rng):
    ref_map = brutus_oracle.dust.Bayestar(map_file)
    ref = brutus_oracle.priors.logp_extinction
    for _ in range(4):
        lb = _los(dustmap, rng)
        for n in (500, 3000):  # brutus: numpy path below 1000 points, numba above
            avs = rng.uniform(0.0, 6.0, n)
            dist = 10 ** rng.uniform(-1.5, 1.6, n)
            dist[:len(DISTS)] = DISTS  # exactly on the nodes
            dist[-3:] = [1e-3, 1e3, DISTS[-1]]
            want = ref(avs, ref_map, lb, distance=dist)
            got = logp_extinction(avs, dustmap, lb, distance=dist)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
            assert np.any(want == 0.0) and np.any(want != 0.0)
        w, (wm, ws) = ref(avs[:50], ref_map, lb, distance=dist[:50], return_components=True)
        g, (gm, gs) = logp_extinction(avs[:50], dustmap, lb, distance=dist[:50], return_components=True)
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(gm), wm, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(gs), ws, rtol=1e-12)
        np.testing.assert_allclose(
            np.asarray(logp_extinction(avs[:50], dustmap, lb, distance=dist[:50], avlim=None)),
            ref(avs[:50], ref_map, lb, distance=dist[:50], avlim=None), rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(logp_extinction(avs, dustmap, lb)), ref(avs, ref_map, lb))


def test_logp_extinction_kernel_vs_scipy(rng):
    dists = np.array([0.1, 0.5, 1.0, 2.0, 5.0])
    mean = np.array([np.nan, 0.2, 0.8, 1.5, 1.6])
    std = np.array([np.nan, 0.1, 0.2, 0.0, 0.3])
    d = np.array([0.05, 0.3, 0.5, 0.75, 1.0, 1.2, 2.0, 5.0, 9.0, np.nan])  # 2.0: sigma = 0 node
    avs = rng.uniform(0.0, 3.0, d.size)
    got = np.asarray(EXT(avs, dists, mean, std, d, avlim=(0.0, 2.5)))
    mu = np.interp(d, dists, mean)
    sig = np.interp(d, dists, std)
    ok = np.isfinite(mu) & np.isfinite(sig) & (sig > 0)
    want = np.zeros_like(avs)
    want[ok] = stats.truncnorm.logpdf(avs[ok], (0 - mu[ok]) / sig[ok], (2.5 - mu[ok]) / sig[ok], mu[ok], sig[ok])
    # truncnorm gives -inf beyond 2.5; the prior does not check the support
    inside = avs <= 2.5
    np.testing.assert_allclose(got[inside], want[inside], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ok, [False, False, True, True, True, True, False, True, True, False])
    assert np.all(got[~ok] == 0.0)


def test_logp_extinction_tail_stable():
    """Map mean 40 sigma below the support: exact truncated-normal normalisation."""
    mu, sig, a = -40.0, 1.0, 0.5
    got = float(TRUNCNORM(a, mu, sig, avlim=(0.0, 20.0)))
    # Mills-ratio expansion of Phi(-40): log mass = log phi(40) - log 40 + log(1 - 1/40^2 + 3/40^4 - 15/40^6)
    x = 40.0
    lnmass = -0.5 * x * x - 0.5 * math.log(2 * math.pi) - math.log(x) + math.log1p(-1 / x**2 + 3 / x**4 - 15 / x**6)
    want = -0.5 * ((a - mu) ** 2 / sig**2 + math.log(2 * math.pi * sig**2)) - lnmass
    assert math.isfinite(got)
    assert abs(got - want) < 1e-9 * abs(want)


def test_logp_extinction_grad_jit_vmap_dtype(rng):
    dists = jnp.asarray(DISTS)
    mean = jnp.asarray(np.linspace(0.0, 3.0, NDIST))
    std = jnp.asarray(np.where(np.arange(NDIST) < 3, np.nan, 0.2 + 0.1 * np.linspace(0, 1, NDIST)))
    f = EXT
    g = jax.jit(jax.grad(lambda a, d: jnp.sum(kp.logp_extinction(a, dists, mean, std, d)), argnums=(0, 1)))
    avs = jnp.asarray(rng.uniform(0.1, 3.0, 64))
    d = jnp.asarray(10 ** rng.uniform(-1.5, 1.5, 64))
    ga, gd = g(avs, d)
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gd))
    masked = np.asarray(d) < DISTS[3]
    assert masked.any() and np.all(np.asarray(ga)[masked] == 0.0)
    # float32 follows the input dtype and agrees with float64
    out32 = f(avs.astype(jnp.float32), dists.astype(jnp.float32), mean.astype(jnp.float32),
              std.astype(jnp.float32), d.astype(jnp.float32))
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, f(avs, dists, mean, std, d), rtol=2e-5, atol=2e-5)
    # several lines of sight: vmap over stars == per-star calls
    means = jnp.stack([mean, mean * 0.5, mean + 1.0])
    stds = jnp.stack([std, std, std * 2.0])
    A = jnp.asarray(rng.uniform(0, 3, (3, 10)))
    D = jnp.asarray(10 ** rng.uniform(-1, 1, (3, 10)))
    vm = np.asarray(jax.jit(jax.vmap(kp.logp_extinction, in_axes=(0, None, 0, 0, 0)))(A, dists, means, stds, D))
    A, D, means, stds = (np.asarray(x) for x in (A, D, means, stds))
    for i in range(3):
        np.testing.assert_allclose(vm[i], f(A[i], dists, means[i], stds[i], D[i]), rtol=1e-13)


def test_logp_extinction_wrapper_several_sightlines_and_errors(dustmap, rng):
    lbs = np.array([_los(dustmap, rng) for _ in range(3)])
    avs = rng.uniform(0, 3, (3, 7))
    dist = 10 ** rng.uniform(-1, 1, (3, 7))
    got = np.asarray(logp_extinction(avs, dustmap, lbs, distance=dist))
    for i in range(3):
        np.testing.assert_allclose(got[i], np.asarray(logp_extinction(avs[i], dustmap, lbs[i], distance=dist[i])))
    with pytest.raises(ValueError, match="leading axis 3"):
        logp_extinction(avs[:2], dustmap, lbs, distance=dist[:2])
    with pytest.raises(TypeError, match="no query"):
        logp_extinction(avs, "bayestar2019_v1.h5", lbs[0], distance=1.0)
    with pytest.raises(ValueError, match="avlim"):
        logp_extinction(avs, dustmap, lbs[0], distance=1.0, avlim=(2.0, 1.0))
