"""Build MediaPipe Tasks ``.task`` bundles from the models inside registry packages.

A ``.task`` file is a zip of TFLite models with fixed member names. mediapipe 1.2.2 ships no models, so:
- hand: ``palm_detection_full.tflite`` + ``hand_landmark_full.tflite`` from the mediapipe 0.10.21 wheel;
- pose: ``pose_detection.tflite`` (0.10.21 wheel) + a landmark model (full from the wheel; lite, full,
  heavy from npm ``@mediapipe/pose``) that first gets NormalizationOptions metadata (mean 0, std 255),
  written by 0.10.21's metadata writer in a subprocess (see :mod:`hrc_fl.data.pose_metadata_script`).
Zip members carry a fixed date so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from hrc_fl.data.atomic_io import atomic_write_bytes

WHEEL_PALM_DETECTOR = "mediapipe/modules/palm_detection/palm_detection_full.tflite"
WHEEL_HAND_LANDMARKS = "mediapipe/modules/hand_landmark/hand_landmark_full.tflite"
WHEEL_POSE_DETECTOR = "mediapipe/modules/pose_detection/pose_detection.tflite"
#: Folders of the 0.10.21 wheel that the metadata writer needs (FACTS.md).
WRITER_FOLDERS = ("mediapipe/tasks/python/metadata/", "mediapipe/tasks/metadata/",
                  "mediapipe/tasks/cc/metadata/python/")
#: Parent packages that need an (empty) ``__init__.py`` so the unpacked writer imports.
WRITER_INIT_PACKAGES = ("mediapipe", "mediapipe/tasks", "mediapipe/tasks/cc", "mediapipe/tasks/cc/metadata",
                        "mediapipe/tasks/python", "mediapipe/tasks/metadata",
                        "mediapipe/tasks/python/metadata/flatbuffers_lib")
_ZIP_DATE = (2025, 1, 1, 0, 0, 0)
ALIGN_BYTES = 64
_PAD_EXTRA_ID = 0xD935  # zipalign's alignment extra field
METADATA_TIMEOUT_S = 300.0


def read_zip_member(archive: Path, member: str) -> bytes:
    """Bytes of one member of a zip (wheel); KeyError names the archive if missing."""
    with zipfile.ZipFile(archive) as z:
        try:
            return z.read(member)
        except KeyError:
            raise KeyError(f"{member} not found in {archive.name}") from None


def read_npm_member(tarball: Path, name: str) -> bytes:
    """Bytes of ``package/<name>`` inside an npm tarball."""
    with tarfile.open(tarball, "r:gz") as t:
        f = t.extractfile(f"package/{name}")
        if f is None:
            raise KeyError(f"package/{name} not found in {tarball.name}")
        return f.read()


def bundle_task(members: dict[str, bytes], out_path: Path) -> None:
    """Write a ``.task`` zip (stored, fixed dates, members aligned) atomically.

    Each member's data starts on a :data:`ALIGN_BYTES` boundary (padding in the local header's extra
    field, as Android's zipalign does), so TFLite can use the weights in place instead of copying
    "unaligned buffers" when it loads the models.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            header_end = buf.tell() + 30 + len(name.encode()) + 4  # local header + padding field header
            pad = -header_end % ALIGN_BYTES
            info.extra = _PAD_EXTRA_ID.to_bytes(2, "little") + pad.to_bytes(2, "little") + bytes(pad)
            z.writestr(info, data)
    atomic_write_bytes(out_path, buf.getvalue())


def build_hand_task(mediapipe_wheel: Path, out_path: Path) -> None:
    """hand_landmarker.task from the 0.10.21 wheel (works without extra metadata)."""
    bundle_task({
        "hand_detector.tflite": read_zip_member(mediapipe_wheel, WHEEL_PALM_DETECTOR),
        "hand_landmarks_detector.tflite": read_zip_member(mediapipe_wheel, WHEEL_HAND_LANDMARKS),
    }, out_path)


def unpack_metadata_writer(mediapipe_wheel: Path, dest: Path) -> None:
    """Unpack 0.10.21's metadata writer (pure Python + two small extension modules) into ``dest``."""
    with zipfile.ZipFile(mediapipe_wheel) as z:
        for name in z.namelist():
            if name.startswith(WRITER_FOLDERS) and not name.endswith("/"):
                z.extract(name, dest)
    for pkg in WRITER_INIT_PACKAGES:
        init = dest / pkg / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")


def add_pose_normalisation(landmark_tflite: bytes, writer_dir: Path) -> bytes:
    """The landmark model with NormalizationOptions metadata, via the writer in a subprocess."""
    script = Path(__file__).with_name("pose_metadata_script.py")
    with tempfile.TemporaryDirectory(prefix="hrc_fl_posemd_") as tmp:
        src, dst = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        src.write_bytes(landmark_tflite)
        # cwd = temp folder so nothing from the repository shadows the unpacked writer
        proc = subprocess.run([sys.executable, str(script), str(writer_dir), str(src), str(dst)],
                              cwd=tmp, capture_output=True, text=True, timeout=METADATA_TIMEOUT_S, check=False)
        if proc.returncode != 0 or not dst.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"pose metadata writer failed: {tail[0]}")
        return dst.read_bytes()


def build_pose_task(pose_detector: bytes, landmark_tflite: bytes, writer_dir: Path, out_path: Path) -> None:
    """pose_landmarker_<variant>.task from a detector and a landmark model."""
    bundle_task({
        "pose_detector.tflite": pose_detector,
        "pose_landmarks_detector.tflite": add_pose_normalisation(landmark_tflite, writer_dir),
    }, out_path)
