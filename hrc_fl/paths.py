"""Where hrc_fl finds its configuration and its built assets.

Two layouts are supported: a source checkout with a virtual environment (config in ``<repo>/config``,
assets in ``<repo>/.cache/hrc_fl``), and a colcon install (config in the package's share directory,
assets in ``$XDG_CACHE_HOME/hrc_fl``).
``HRC_FL_CACHE`` and ``HRC_FL_CONFIG`` override either.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "hrc_fl"
REPO_ROOT = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    """Folder that holds the YAML parameter files, rviz config and Fast DDS profile."""
    override = os.environ.get("HRC_FL_CONFIG")
    if override:
        return Path(override)
    local = REPO_ROOT / "config"
    if local.is_dir():
        return local
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as exc:  # pragma: no cover - only without ROS and without a checkout
        raise FileNotFoundError("hrc_fl config folder not found and ament_index_python missing") from exc
    return Path(get_package_share_directory(PACKAGE)) / "config"


def config_file(name: str) -> Path:
    """Path of one file in :func:`config_dir`; raises FileNotFoundError with the path if missing."""
    path = config_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"hrc_fl config file not found: {path}")
    return path


def resolve_param_file(name: str) -> str:
    """A parameter file named in a node spec or a node parameter: absolute paths as given, bare names
    from :func:`config_dir` (not checked for existence here; the node that opens it says so)."""
    path = Path(name)
    return str(path if path.is_absolute() else config_dir() / path)


def cache_dir() -> Path:
    """Git-ignored folder for downloaded packages, built models and extracted data sets."""
    override = os.environ.get("HRC_FL_CACHE")
    if override:
        return Path(override)
    if (REPO_ROOT / "setup.py").is_file():  # a source checkout (editable install)
        return REPO_ROOT / ".cache" / PACKAGE
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / PACKAGE


def assets_dir() -> Path:
    """Built model files (MediaPipe .task files, trained classifier weights)."""
    return cache_dir() / "assets"


def data_dir() -> Path:
    """Extracted real data sets (watch IMU, HandPose/BodyPose CSVs, photos)."""
    return cache_dir() / "data"


def runtime_dir() -> Path:
    """Per-run state: model stores, sample stores, checkpoints, reports (override: HRC_FL_RUNTIME)."""
    override = os.environ.get("HRC_FL_RUNTIME")
    return Path(override) if override else cache_dir() / "runtime"
