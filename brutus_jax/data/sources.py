"""Where the real stellar-model data come from, and the on-disk cache.

brutus_jax never commits third-party data.  The default grid is built from two
files that ship inside pinned PyPI wheels:

* ``lachesis_grids/grids/mist_v2.5_vvcrit0.4.h5`` in ``lachesis-grids==0.0.9``
  (MIST v1.2 isochrones, v/vcrit = 0.4; Choi et al. 2016, Dotter 2016);
* ``lachesis/Datafiles/BC_tables/bc_tables.h5`` in ``astroLACHESIS==1.0.9``
  (MIST/C3K bolometric corrections with an A_V axis at R_V = 3.1; MIT).

Neither package is imported (astroLACHESIS pulls a heavy dependency tree and
lachesis-grids declares no license).  The wheels are fetched with
``pip download --no-deps`` into the data cache, checked against pinned SHA256
digests, and only the two members are extracted.  If the packages are already
installed (``pip install --no-deps lachesis-grids==0.0.9 astroLACHESIS==1.0.9``)
their files are used directly.

Cache location: ``$BRUTUS_JAX_DATA_DIR`` if set, else the user cache directory
(``platformdirs.user_cache_dir("brutus_jax")``, e.g. ``~/.cache/brutus_jax``).
Offline machines: copy a pre-built grid file into ``<data_dir>/grids/`` (see
``brutus_jax.data.default_grid_path``), or put the two wheels into
``$BRUTUS_JAX_WHEEL_DIR`` (or ``<data_dir>/wheels``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass

__all__ = ["data_dir", "source_file", "SOURCES", "WheelSource", "sha256sum"]


@dataclass(frozen=True)
class WheelSource:
    """A data file inside a pinned wheel on PyPI."""

    project: str  # PyPI project name
    version: str
    wheel: str  # wheel file name
    sha256: str  # of the wheel
    package: str  # import name (to find an installed copy)
    member: str  # path of the file inside the wheel / package root
    citation: str
    sdist_prefix: str = ""  # for source distributions (.tar.gz): the archive's top folder


SOURCES = {
    "mist_isochrones": WheelSource(
        project="lachesis-grids",
        version="0.0.9",
        wheel="lachesis_grids-0.0.9-py3-none-any.whl",
        sha256="87e2bb19abf65f701c20805ed6daab7411d287ef14667d9a1a111675b2638907",
        package="lachesis_grids",
        member="lachesis_grids/grids/mist_v2.5_vvcrit0.4.h5",
        citation="MIST v1.2 isochrones (Choi et al. 2016, ApJ 823, 102; Dotter 2016, ApJS 222, 8), "
        "EEP-aligned by lachesis-grids 0.0.9",
    ),
    "mist_bc_tables": WheelSource(
        project="astroLACHESIS",
        version="1.0.9",
        wheel="astrolachesis-1.0.9-py3-none-any.whl",
        sha256="979becefc1aeb04cfe2e35541dd8b9721dc92ec53cd2d1745ace5e32a69e46fc",
        package="lachesis",
        member="lachesis/Datafiles/BC_tables/bc_tables.h5",
        citation="MIST/C3K bolometric correction tables (Choi et al. 2016; C3K atmospheres, "
        "Conroy et al.), as shipped in astroLACHESIS 1.0.9 (MIT)",
    ),
    "gyrointerp_clusters": WheelSource(
        project="gyrointerp",
        version="0.7",
        wheel="gyrointerp-0.7.tar.gz",
        sha256="cb0d785a7d1a4bccacb93227bab654064cd4e3a55c9da9c62a2c09740e838183",
        package="gyrointerp",
        member="gyrointerp/data/interim/",
        citation="Gaia DR3 cluster members as compiled in gyrointerp 0.7 (Bouma et al. 2023; MIT; "
        "Pleiades: Rebull et al. 2016, Praesepe: Rampalli et al. 2021; Gaia data CC BY-SA 3.0 IGO)",
        sdist_prefix="gyrointerp-0.7/",
    ),
    "dustapprox": WheelSource(
        project="dustapprox",
        version="0.2.0",
        wheel="dustapprox-0.2.0-py3-none-any.whl",
        sha256="0bf5d338b8619b25e00daba80fc416ee9b689148a6af089dd80d18cf6d8e3dfd",
        package="dustapprox",
        member="dustapprox/data/precomputed/polynomial/G23/kurucz/",
        citation="dustapprox 0.2.0 (Fouesneau et al. 2022), Kurucz + G23 polynomials (BSD-3)",
    ),
}


def data_dir() -> pathlib.Path:
    """The brutus_jax data cache (``$BRUTUS_JAX_DATA_DIR`` or the user cache dir)."""
    env = os.environ.get("BRUTUS_JAX_DATA_DIR")
    if env:
        path = pathlib.Path(env).expanduser()
    else:
        import platformdirs

        path = pathlib.Path(platformdirs.user_cache_dir("brutus_jax"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256sum(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed_member(src: WheelSource):
    """Path of the member inside an installed copy of the package, if any."""
    try:
        spec = importlib.util.find_spec(src.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = pathlib.Path(next(iter(spec.submodule_search_locations))).parent
    path = root / src.member
    return path if path.exists() else None


def _wheel_dirs():
    dirs = []
    if os.environ.get("BRUTUS_JAX_WHEEL_DIR"):
        dirs.append(pathlib.Path(os.environ["BRUTUS_JAX_WHEEL_DIR"]).expanduser())
    dirs.append(data_dir() / "wheels")
    return dirs


def _fetch_wheel(src: WheelSource, verbose=True) -> pathlib.Path:
    """Find (or download with pip) the pinned wheel and verify its SHA256."""
    for d in _wheel_dirs():
        cand = d / src.wheel
        if cand.exists():
            digest = sha256sum(cand)
            if digest != src.sha256:
                raise RuntimeError(
                    f"{cand} has SHA256 {digest}, expected {src.sha256} for "
                    f"{src.project}=={src.version}; delete it and retry."
                )
            return cand
    target = data_dir() / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"brutus_jax: downloading {src.project}=={src.version} (data only, no dependencies) "
              f"into {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        binary = "--no-binary=:all:" if src.sdist_prefix else "--only-binary=:all:"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", binary,
               "--disable-pip-version-check", "-q", "-d", tmp, f"{src.project}=={src.version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = pathlib.Path(tmp) / src.wheel
        if proc.returncode != 0 or not got.exists():
            raise RuntimeError(
                f"could not download {src.project}=={src.version} ({' '.join(cmd)}):\n"
                f"{proc.stderr.strip()}\nOn an offline machine, copy {src.wheel} into "
                f"{target} or $BRUTUS_JAX_WHEEL_DIR, or copy a pre-built grid file into "
                f"{data_dir() / 'grids'}."
            )
        digest = sha256sum(got)
        if digest != src.sha256:
            raise RuntimeError(f"downloaded {src.wheel} has SHA256 {digest}, expected {src.sha256}")
        final = target / src.wheel
        os.replace(got, final)
    return final


def source_file(key: str, verbose=True) -> pathlib.Path:
    """Local path of a pinned data file (see ``SOURCES``), fetching it if needed.

    For directory members (ending in '/') the extracted directory is returned.
    """
    if key not in SOURCES:
        raise ValueError(f"unknown data source {key!r}; known: {sorted(SOURCES)}")
    src = SOURCES[key]
    installed = _installed_member(src)
    if installed is not None:
        return installed
    dest = data_dir() / "sources" / f"{src.project}-{src.version}" / src.member
    done = dest.parent / (dest.name + ".complete") if not src.member.endswith("/") else dest / ".complete"
    if done.exists():
        return dest
    archive = _fetch_wheel(src, verbose=verbose)
    root = data_dir() / "sources" / f"{src.project}-{src.version}"

    def wanted(name):
        return name == src.member or (src.member.endswith("/") and name.startswith(src.member)
                                      and not name.endswith("/"))

    def extract(members, opener):
        if not members:
            raise RuntimeError(f"{src.member} not found in {archive}")
        for m in members:
            out = root / m
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            with opener(m) as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, out)

    if src.sdist_prefix:
        import tarfile

        with tarfile.open(archive, "r:gz") as tf:
            files = {m.name[len(src.sdist_prefix):]: m for m in tf.getmembers()
                     if m.isfile() and m.name.startswith(src.sdist_prefix)}
            extract([n for n in files if wanted(n)], lambda n: tf.extractfile(files[n]))
    else:
        with zipfile.ZipFile(archive) as zf:
            extract([m for m in zf.namelist() if wanted(m)], zf.open)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("ok\n")
    return dest
