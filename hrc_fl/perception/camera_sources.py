"""Frame sources for the camera node (ROS-free): V4L2 devices, video files, image folders/lists.

All sources yield BGR ``uint8`` frames (OpenCV's order) through one small interface. Devices that
disappear are wrapped by :class:`ReopeningSource`, which reopens them with exponential back-off.
The calibration loader reads the ROS ``camera_info`` YAML format (as written by camera_calibration).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import yaml

from hrc_fl.perception.body_localisation import PinholeIntrinsics

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


class SourceError(RuntimeError):
    """A source that cannot be opened or read."""


class FrameSource(Protocol):
    """Something that yields frames. ``read`` returns a BGR uint8 frame, or None when none is ready."""

    description: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def fit_frame(frame: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Scale ``frame`` to fit inside width x height keeping its aspect ratio, padded with black.

    ``width_px`` or ``height_px`` of 0 keeps the native size.
    """
    if width_px <= 0 or height_px <= 0:
        return frame
    h, w = frame.shape[:2]
    if (w, h) == (width_px, height_px):
        return frame
    scale = min(width_px / w, height_px / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((height_px, width_px, *frame.shape[2:]), dtype=frame.dtype)
    x0, y0 = (width_px - new_w) // 2, (height_px - new_h) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = resized
    return out


class ImageListSource:
    """Still images played as an endless stream (loops), each repeated for ``hold_frames`` reads (a
    slideshow, so trackers see continuous views between cuts). Decoded once; unreadable files raise."""

    def __init__(self, paths: Sequence[Path | str], *, width_px: int = 0, height_px: int = 0,
                 hold_frames: int = 1) -> None:
        if not paths:
            raise SourceError("image list source needs at least one image")
        if hold_frames < 1:
            raise ValueError(f"hold_frames must be >= 1, got {hold_frames}")
        self._hold_frames = hold_frames
        self._held = 0
        self._frames: list[np.ndarray] = []
        for path in paths:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise SourceError(f"cannot decode image {path}")
            self._frames.append(fit_frame(frame, width_px, height_px))
        self._index = 0
        self.description = f"{len(self._frames)} image(s) from {Path(paths[0]).parent}"

    def read(self) -> np.ndarray | None:
        frame = self._frames[self._index]
        self._held += 1
        if self._held >= self._hold_frames:
            self._held = 0
            self._index = (self._index + 1) % len(self._frames)
        return frame

    def close(self) -> None:
        self._frames.clear()


def folder_images(folder: Path | str) -> list[Path]:
    """Image files of a folder in name order; SourceError when there are none."""
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return paths


class VideoFileSource:
    """A video file played in a loop (rewinds at the end)."""

    def __init__(self, path: Path | str, *, width_px: int = 0, height_px: int = 0, loop: bool = True) -> None:
        self._path = str(path)
        self._cap = cv2.VideoCapture(self._path)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video file {path}")
        self._size = (width_px, height_px)
        self._loop = loop
        self.description = f"video file {path}"

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok and self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok:
            raise SourceError(f"no frame from video file {self._path}")
        return fit_frame(frame, *self._size)

    def close(self) -> None:
        self._cap.release()


class DeviceSource:
    """A V4L2 camera (``/dev/videoN`` or an index). A failed read raises SourceError (device gone)."""

    def __init__(self, device: str | int, *, width_px: int = 0, height_px: int = 0, fps: float = 0.0) -> None:
        self._device = device
        self._cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open camera device {device}")
        if width_px > 0 and height_px > 0:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width_px)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height_px)
        if fps > 0:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of stale ones
        self._size = (width_px, height_px)
        self.description = f"V4L2 device {device}"

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"camera device {self._device} returned no frame")
        return fit_frame(frame, *self._size)

    def close(self) -> None:
        self._cap.release()


@dataclass(frozen=True)
class SourceEvent:
    """Something the operator should see on /diagnostics: ``kind`` is "lost", "reopened" or "open_failed"."""

    kind: str
    message: str


class ReopeningSource:
    """Wraps a source factory; when opening or reading fails, retries with exponential back-off.

    ``read`` never raises :class:`SourceError`: while the source is down it returns None and calls
    ``on_event`` for losses, failed attempts and successful reopens. ``clock`` is injectable (seconds,
    monotonic) for tests.
    """

    def __init__(self, factory: Callable[[], FrameSource], *, initial_backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, on_event: Callable[[SourceEvent], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, description: str = "") -> None:
        if not (initial_backoff_s > 0 and math.isfinite(initial_backoff_s)):
            raise ValueError(f"initial_backoff_s must be positive, got {initial_backoff_s}")
        if not max_backoff_s >= initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        self._factory = factory
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._on_event = on_event or (lambda event: None)
        self._clock = clock
        self._source: FrameSource | None = None
        self._backoff_s = initial_backoff_s
        self._next_attempt_s = clock()
        self._ever_opened = False
        self._last_wait_s = initial_backoff_s
        self.reopen_count = 0
        self.description = description

    @property
    def is_open(self) -> bool:
        return self._source is not None

    @property
    def backoff_s(self) -> float:
        return self._backoff_s

    def _try_open(self) -> None:
        try:
            self._source = self._factory()
        except SourceError as exc:
            self._schedule_retry()
            self._on_event(SourceEvent("open_failed", f"{exc}; retry in {self._last_wait_s:.1f} s"))
            return
        self.description = self._source.description
        if self._ever_opened:
            self.reopen_count += 1
            self._on_event(SourceEvent("reopened", f"{self.description} reopened"))
        self._ever_opened = True
        self._backoff_s = self._initial_backoff_s

    def _schedule_retry(self) -> None:
        self._last_wait_s = self._backoff_s
        self._next_attempt_s = self._clock() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2.0, self._max_backoff_s)

    def read(self) -> np.ndarray | None:
        if self._source is None:
            if self._clock() < self._next_attempt_s:
                return None
            self._try_open()
            if self._source is None:
                return None
        try:
            return self._source.read()
        except SourceError as exc:
            self._source.close()
            self._source = None
            self._schedule_retry()
            self._on_event(SourceEvent("lost", f"{exc}; reopening in {self._last_wait_s:.1f} s"))
            return None

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def parse_source(spec: str) -> tuple[str, str]:
    """Classify a ``source`` parameter: returns (kind, value) with kind one of
    "replay" (empty spec), "topic", "scenario" (``scenario:<file>``, hrc_fl.sim.scenario), "device",
    "video", "folder", "images" (comma-separated list).
    """
    spec = spec.strip()
    if not spec:
        return "replay", ""
    if spec.startswith("topic:"):
        name = spec[len("topic:"):].strip()
        if not name:
            raise ValueError("source 'topic:' needs a topic name, e.g. topic:/camera/color/image_raw")
        return "topic", name
    if spec.startswith("scenario:"):
        name = spec[len("scenario:"):].strip()
        if not name:
            raise ValueError("source 'scenario:' needs a scenario file, e.g. scenario:run/scenario.yaml")
        return "scenario", name
    if spec.isdigit() or spec.startswith("/dev/"):
        return "device", spec
    if "," in spec:
        return "images", spec
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", str(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images", str(path)
    raise ValueError(f"cannot tell what camera source {spec!r} is: not a device, folder, video or image")


def open_source(kind: str, value: str, *, width_px: int = 0, height_px: int = 0, fps: float = 0.0,
                replay_images: Sequence[Path] = (), hold_frames: int = 1) -> FrameSource:
    """Open a source classified by :func:`parse_source` (not "topic"). Raises SourceError.
    ``hold_frames``: how many reads each still image lasts (image sources only)."""
    size = {"width_px": width_px, "height_px": height_px}
    if kind == "replay":
        return ImageListSource(list(replay_images), **size, hold_frames=hold_frames)
    if kind == "device":
        device: str | int = int(value) if value.isdigit() else value
        return DeviceSource(device, width_px=width_px, height_px=height_px, fps=fps)
    if kind == "video":
        return VideoFileSource(value, width_px=width_px, height_px=height_px)
    if kind == "folder":
        return ImageListSource(folder_images(value), **size, hold_frames=hold_frames)
    if kind == "images":
        paths = [Path(p.strip()).expanduser() for p in value.split(",") if p.strip()]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SourceError(f"image file(s) not found: {', '.join(missing)}")
        return ImageListSource(paths, **size, hold_frames=hold_frames)
    raise ValueError(f"source kind {kind!r} is not a frame source")


@dataclass(frozen=True)
class CameraCalibration:
    """Pinhole calibration in the ROS ``sensor_msgs/CameraInfo`` layout (row-major arrays)."""

    width_px: int
    height_px: int
    camera_name: str
    distortion_model: str
    k: tuple[float, ...]  # 3x3 intrinsics
    d: tuple[float, ...]  # distortion coefficients
    r: tuple[float, ...]  # 3x3 rectification
    p: tuple[float, ...]  # 3x4 projection

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError(f"calibration image size must be positive, got {self.width_px}x{self.height_px}")
        for name, values, size in (("camera_matrix", self.k, 9), ("rectification_matrix", self.r, 9),
                                   ("projection_matrix", self.p, 12)):
            if len(values) != size:
                raise ValueError(f"{name} needs {size} values, got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} has non-finite values")
        if not (self.k[0] > 0 and self.k[4] > 0):
            raise ValueError("camera_matrix focal lengths fx, fy must be positive")

    @property
    def fx(self) -> float:
        return self.k[0]

    @property
    def fy(self) -> float:
        return self.k[4]

    @property
    def cx(self) -> float:
        return self.k[2]

    @property
    def cy(self) -> float:
        return self.k[5]

    def pinhole(self) -> PinholeIntrinsics:
        """The camera matrix as the pinhole model body localisation uses (distortion ignored)."""
        return PinholeIntrinsics(self.fx, self.fy, self.cx, self.cy, self.width_px, self.height_px)

    def scaled_to(self, width_px: int, height_px: int) -> CameraCalibration:
        """The same camera at another resolution (intrinsics scaled per axis)."""
        sx, sy = width_px / self.width_px, height_px / self.height_px
        k = list(self.k)
        k[0] *= sx
        k[2] *= sx
        k[4] *= sy
        k[5] *= sy
        p = list(self.p)
        p[0] *= sx
        p[2] *= sx
        p[3] *= sx
        p[5] *= sy
        p[6] *= sy
        p[7] *= sy
        return CameraCalibration(width_px, height_px, self.camera_name, self.distortion_model,
                                 tuple(k), self.d, self.r, tuple(p))

    @staticmethod
    def nominal(width_px: int, height_px: int, horizontal_fov_deg: float = 60.0) -> CameraCalibration:
        """An uncalibrated pinhole guess: principal point at the centre, square pixels."""
        f = (width_px / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
        cx, cy = width_px / 2.0, height_px / 2.0
        return CameraCalibration(width_px, height_px, "nominal", "plumb_bob",
                                 (f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0), (0.0,) * 5,
                                 (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
                                 (f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0))


def _matrix(doc: dict, key: str, rows: int, cols: int, path: Path) -> tuple[float, ...]:
    try:
        entry = doc[key]
        data = [float(v) for v in entry["data"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: '{key}' must be a mapping with a numeric 'data' list") from exc
    if rows and cols and len(data) != rows * cols:
        raise ValueError(f"{path}: '{key}' needs {rows * cols} values, got {len(data)}")
    return tuple(data)


def load_calibration(path: Path | str) -> CameraCalibration:
    """Read a ROS camera_info YAML (image_width, image_height, camera_name, camera_matrix,
    distortion_model, distortion_coefficients, rectification_matrix, projection_matrix)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a camera_info mapping")
    try:
        width, height = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: image_width and image_height are required integers") from exc
    d_entry = doc.get("distortion_coefficients", {"data": []})
    return CameraCalibration(
        width_px=width, height_px=height, camera_name=str(doc.get("camera_name", "camera")),
        distortion_model=str(doc.get("distortion_model", "plumb_bob")),
        k=_matrix(doc, "camera_matrix", 3, 3, path),
        d=_matrix({"distortion_coefficients": d_entry}, "distortion_coefficients", 0, 0, path),
        r=_matrix(doc, "rectification_matrix", 3, 3, path) if "rectification_matrix" in doc
        else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        p=_matrix(doc, "projection_matrix", 3, 4, path),
    )
