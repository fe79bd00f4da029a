"""Paths of the built assets, the registry downloads, the manifest and the data items of ``hrc-fl setup-assets``.

This module only locates, fetches and unpacks files; the items that train a model on those files (the
gesture and arm-signal classifiers) are added above perception, in :mod:`hrc_fl.setup_assets`, which
runs the whole build through :func:`build_items`.

Cache layout (:func:`hrc_fl.paths.cache_dir`, git-ignored):
``downloads/`` registry packages as fetched (kept, so rebuilding works offline);
``assets/`` models (MediaPipe ``.task`` files, trained classifier weights + JSON meta);
``data/`` extracted data sets and photos; ``training/`` metrics and confusion matrices of the
classifiers; ``manifest.json`` with, per item, the recipe it was built by and the SHA-256 of every file.

An item is rebuilt when a file is missing, its SHA-256 differs from the manifest, or its recipe changed
(a recipe names the pinned package versions and, for trained models, the hash of the training code and
data). A warm run therefore only hashes the outputs. Downloads are fetched only when an item needs them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hrc_fl.data import datasets
from hrc_fl.data.atomic_io import atomic_copy, atomic_write_bytes, atomic_write_text
from hrc_fl.data.registry_fetch import FetchError, apt_deb, npm_tarball, pip_wheel, sha256_file
from hrc_fl.paths import assets_dir, cache_dir, data_dir

SETUP_COMMAND = "hrc-fl setup-assets"

#: Asset names accepted by :func:`asset_path`.
ASSET_NAMES: tuple[str, ...] = (
    "hand_landmarker.task", "pose_landmarker_lite.task", "pose_landmarker_full.task",
    "pose_landmarker_heavy.task", "gesture_classifier.safetensors", "gesture_classifier.json",
    "arm_signal_classifier.safetensors", "arm_signal_classifier.json",
)

# Pinned registry packages. PyPI and npm files never change once published, so their SHA-256 is pinned.
MEDIAPIPE_WHEEL_REQ = "mediapipe==0.10.21"
MEDIAPIPE_WHEEL_PLATFORM = "manylinux_2_28_x86_64"
MEDIAPIPE_WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
PCK_WHEEL_REQ = "pose-classification-kit==1.1.5"
PCK_WHEEL_SHA256 = "c3ea7053f67422f779572449d4f4a9d2270233904fd56fddc5c465d102be41c8"
NPM_POSE_SPEC = "@mediapipe/pose@0.5.1675469404"
NPM_POSE_SHA256 = "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84"
APT_OPENCV_DOC = datasets.OPENCV_DOC_PACKAGE  # the photos' package (their list: datasets.PHOTOS)

Log = Callable[[str], None]


def asset_path(name: str) -> Path:
    """Path of a built asset (see :data:`ASSET_NAMES`); FileNotFoundError names the setup command."""
    if name not in ASSET_NAMES:
        raise KeyError(f"unknown asset {name!r}; known: {', '.join(ASSET_NAMES)}")
    path = assets_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"asset {name} not found at {path}; run `{SETUP_COMMAND}` first")
    return path


def manifest_path() -> Path:
    return cache_dir() / "manifest.json"


def downloads_dir() -> Path:
    return cache_dir() / "downloads"


def training_dir() -> Path:
    """Metrics, confusion matrices of the classifiers trained by setup."""
    return cache_dir() / "training"


# ---------------------------------------------------------------------------------------------- downloads

class Downloads:
    """Registry packages, fetched on first use, reused (after a checksum check) from ``downloads/``."""

    def __init__(self, manifest: dict, log: Log) -> None:
        self._manifest = manifest.setdefault("downloads", {})
        self._log = log
        self._cache: dict[str, Path] = {}

    def _get(self, key: str, fetch: Callable[[Path], Path], pinned_sha256: str | None) -> Path:
        if key in self._cache:
            return self._cache[key]
        entry = self._manifest.get(key)
        if entry is not None:
            path = cache_dir() / entry["file"]
            if path.is_file() and sha256_file(path) == entry["sha256"] and (
                    pinned_sha256 is None or entry["sha256"] == pinned_sha256):
                self._cache[key] = path
                return path
        self._log(f"fetching {key}")
        t0 = time.monotonic()
        path = fetch(downloads_dir())
        self._manifest[key] = {"file": str(path.relative_to(cache_dir())), "sha256": sha256_file(path)}
        self._log(f"fetched {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
        self._cache[key] = path
        return path

    def mediapipe_wheel(self) -> Path:
        return self._get(MEDIAPIPE_WHEEL_REQ, lambda d: pip_wheel(
            MEDIAPIPE_WHEEL_REQ, d, expected_sha256=MEDIAPIPE_WHEEL_SHA256, platform=MEDIAPIPE_WHEEL_PLATFORM),
            MEDIAPIPE_WHEEL_SHA256)

    def pck_wheel(self) -> Path:
        return self._get(PCK_WHEEL_REQ, lambda d: pip_wheel(PCK_WHEEL_REQ, d, expected_sha256=PCK_WHEEL_SHA256),
                         PCK_WHEEL_SHA256)

    def npm_pose(self) -> Path:
        return self._get(NPM_POSE_SPEC, lambda d: npm_tarball(NPM_POSE_SPEC, d, expected_sha256=NPM_POSE_SHA256),
                         NPM_POSE_SHA256)

    def opencv_doc(self) -> Path:
        return self._get(APT_OPENCV_DOC, lambda d: apt_deb(APT_OPENCV_DOC, d), None)


# ---------------------------------------------------------------------------------------------- items

@dataclass(frozen=True)
class Item:
    """One unit of the build: ``outputs`` (paths relative to the cache) made by ``build``."""

    name: str
    outputs: tuple[str, ...]
    recipe: str
    build: Callable[[Downloads, Log], None]


def source_hash(*modules: str) -> str:
    """Hash of the source files of modules (a trained model is rebuilt when its code changes)."""
    import importlib.util

    digest = hashlib.sha256()
    for mod in modules:
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise ImportError(f"module {mod} not found")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def _build_hand_task(dl: Downloads, log: Log) -> None:
    from hrc_fl.data.mediapipe_tasks import build_hand_task

    build_hand_task(dl.mediapipe_wheel(), assets_dir() / "hand_landmarker.task")


def _build_pose_tasks(dl: Downloads, log: Log) -> None:
    from hrc_fl.data.mediapipe_tasks import (
        WHEEL_POSE_DETECTOR,
        build_pose_task,
        read_npm_member,
        read_zip_member,
        unpack_metadata_writer,
    )

    wheel, npm = dl.mediapipe_wheel(), dl.npm_pose()
    detector = read_zip_member(wheel, WHEEL_POSE_DETECTOR)
    with tempfile.TemporaryDirectory(prefix="hrc_fl_writer_") as tmp:
        unpack_metadata_writer(wheel, Path(tmp))
        for variant in ("lite", "full", "heavy"):
            log(f"building pose_landmarker_{variant}.task")
            build_pose_task(detector, read_npm_member(npm, f"pose_landmark_{variant}.tflite"), Path(tmp),
                            assets_dir() / f"pose_landmarker_{variant}.task")


def _build_watch(dl: Downloads, log: Log) -> None:
    import io

    import numpy as np
    import seglearn.datasets

    raw = seglearn.datasets.load_watch()  # a pickled .npy inside seglearn; converted to a pickle-free npz
    if list(raw["X_labels"]) != ["ax", "ay", "az", "wx", "wy", "wz"]:
        raise ValueError(f"unexpected watch channels {raw['X_labels']}")
    if list(raw["y_labels"]) != list(datasets.WATCH_CLASSES):
        raise ValueError(f"unexpected watch classes {raw['y_labels']}")
    lengths = [len(x) for x in raw["X"]]
    buf = io.BytesIO()
    np.savez(buf, imu=np.concatenate(raw["X"]).astype(np.float32),
             offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
             label=np.asarray(raw["y"], dtype=np.int64), subject=np.asarray(raw["subject"], dtype=np.int64),
             side=np.asarray(raw["side"], dtype=np.int64))
    atomic_write_bytes(data_dir() / datasets.WATCH_FILE, buf.getvalue())


def _build_pck(dl: Downloads, log: Log) -> None:
    from hrc_fl.data.mediapipe_tasks import read_zip_member

    wheel = dl.pck_wheel()
    folder = data_dir() / "pose_classification_kit"
    for name in ("HandPose_Dataset.csv", "BodyPose_Dataset.csv"):
        atomic_write_bytes(folder / name, read_zip_member(wheel, f"pose_classification_kit/datasets/{name}"))
    atomic_write_bytes(folder / "LICENSE", read_zip_member(wheel, "LICENSE"))


def _build_photos(dl: Downloads, log: Log) -> None:
    import matplotlib

    by_package: dict[str, dict[str, str]] = {}
    for name, photo in datasets.PHOTOS.items():
        by_package.setdefault(photo.package, {})[name] = photo.member
    unknown = set(by_package) - {APT_OPENCV_DOC, datasets.MATPLOTLIB_PACKAGE}
    if unknown:
        raise ValueError(f"datasets.PHOTOS names packages setup cannot unpack: {sorted(unknown)}")
    deb = dl.opencv_doc()
    opencv_doc = by_package.get(APT_OPENCV_DOC, {})
    with tempfile.TemporaryDirectory(prefix="hrc_fl_deb_") as tmp:
        members = [f"./{p}" for p in opencv_doc.values()]
        # unpack only the photos: dpkg-deb streams the data tar, tar picks the members
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as deb_proc:
            tar = subprocess.run(["tar", "-x", "-C", tmp, *members], stdin=deb_proc.stdout,
                                 capture_output=True, text=True, check=False)
        if tar.returncode != 0 or deb_proc.returncode != 0:
            raise RuntimeError(f"could not unpack photos from {deb.name}: {tar.stderr.strip()[-200:]}")
        for name, member in opencv_doc.items():
            atomic_copy(Path(tmp) / member, data_dir() / datasets.PHOTO_DIR / name)
    for name, member in by_package.get(datasets.MATPLOTLIB_PACKAGE, {}).items():
        atomic_copy(Path(matplotlib.get_data_path()) / member, data_dir() / datasets.PHOTO_DIR / name)


def data_items() -> list[Item]:
    """The MediaPipe models and real data sets setup builds, in build order (the classifiers trained on
    them follow in :func:`hrc_fl.setup_assets.items`)."""
    task_code = source_hash("hrc_fl.data.mediapipe_tasks")
    mp_recipe = f"{MEDIAPIPE_WHEEL_REQ}:{MEDIAPIPE_WHEEL_SHA256[:12]}+{task_code}"
    writer_code = source_hash("hrc_fl.data.pose_metadata_script")
    pose_recipe = f"{mp_recipe}+{NPM_POSE_SPEC}:{NPM_POSE_SHA256[:12]}+{writer_code}"
    photos = tuple(f"data/{datasets.PHOTO_DIR}/{n}" for n in datasets.PHOTOS)
    pck = ("data/" + datasets.HAND_POSE_FILE, "data/" + datasets.BODY_POSE_FILE,
           "data/pose_classification_kit/LICENSE")
    return [
        Item("hand_landmarker", ("assets/hand_landmarker.task",), mp_recipe, _build_hand_task),
        Item("pose_landmarkers", tuple(f"assets/pose_landmarker_{v}.task" for v in ("lite", "full", "heavy")),
             pose_recipe, _build_pose_tasks),
        Item("watch_data", ("data/" + datasets.WATCH_FILE,), "seglearn==1.2.5:v1", _build_watch),
        Item("pose_classification_kit", pck, f"{PCK_WHEEL_REQ}:{PCK_WHEEL_SHA256[:12]}", _build_pck),
        Item("photos", photos, f"{APT_OPENCV_DOC}+matplotlib:v1", _build_photos),
    ]


# ---------------------------------------------------------------------------------------------- manifest

def _load_manifest() -> dict:
    path = manifest_path()
    if not path.is_file():
        return {"version": 1, "items": {}, "downloads": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"version": 1, "items": {}, "downloads": {}}  # a damaged manifest means: verify by rebuilding
    manifest.setdefault("items", {})
    manifest.setdefault("downloads", {})
    return manifest


def _save_manifest(manifest: dict) -> None:
    atomic_write_text(manifest_path(), json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def item_is_valid(item: Item, manifest: dict) -> bool:
    """True when the manifest's recipe matches and every output exists with its recorded SHA-256."""
    entry = manifest.get("items", {}).get(item.name)
    if entry is None or entry.get("recipe") != item.recipe:
        return False
    files = entry.get("files", {})
    for rel in item.outputs:
        path = cache_dir() / rel
        if rel not in files or not path.is_file() or sha256_file(path) != files[rel]:
            return False
    return True


def build_items(items: Sequence[Item], *, force: bool = False, log: Log = print) -> dict[str, str]:
    """Build every missing or invalid one of ``items`` (in order); returns ``{item: "ok" | "built"}``.

    Raises :class:`FetchError` (one-line message) when a registry cannot be reached.
    """
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two setups at once (e.g. two terminals) take turns
        manifest = _load_manifest()
        downloads = Downloads(manifest, log)
        result: dict[str, str] = {}
        for item in items:
            if not force and item_is_valid(item, manifest):
                result[item.name] = "ok"
                continue
            log(f"building {item.name}")
            t0 = time.monotonic()
            item.build(downloads, log)
            manifest["items"][item.name] = {
                "recipe": item.recipe,
                "files": {rel: sha256_file(cache_dir() / rel) for rel in item.outputs},
            }
            _save_manifest(manifest)  # after each item, so an interrupted setup keeps what it finished
            log(f"built {item.name} in {time.monotonic() - t0:.1f} s")
            result[item.name] = "built"
        _save_manifest(manifest)
    return result


def require_assets() -> None:
    """Raise FileNotFoundError naming the setup command when any built file is missing (cheap: no hashing):
    the outputs of the data items and every asset of :data:`ASSET_NAMES` (the trained classifiers' too)."""
    required = {rel for item in data_items() for rel in item.outputs} | {f"assets/{n}" for n in ASSET_NAMES}
    missing = sorted(rel for rel in required if not (cache_dir() / rel).is_file())
    if missing:
        raise FileNotFoundError(f"{len(missing)} asset/data files missing under {cache_dir()} "
                                f"(e.g. {missing[0]}); run `{SETUP_COMMAND}` first")


def remove_cache() -> None:
    """Delete the whole cache (downloads included)."""
    shutil.rmtree(cache_dir(), ignore_errors=True)


__all__ = ["ASSET_NAMES", "Downloads", "FetchError", "Item", "asset_path", "build_items", "data_items",
           "require_assets", "source_hash"]
