"""One MediaPipe Tasks landmarker in VIDEO mode behind a small ROS-free interface; hands and pose compose it.

VIDEO mode tracks between frames (cheaper than detecting every frame) and requires strictly increasing
timestamps; the runner checks them itself and raises :class:`NonIncreasingTimestampError` instead of letting
MediaPipe fail deep inside its graph. Here live, once: option validation and model loading, the running
mode, the timestamp guard, the track reset on a scene cut, the ``detect_for_video`` call (it releases the
GIL, so two landmarkers on two threads run in about the time of one) and closing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import numpy as np

T = TypeVar("T")


class NonIncreasingTimestampError(ValueError):
    """A frame's timestamp is not later than the previous frame's (VIDEO mode needs strictly increasing)."""

    key = "non_increasing_stamp"


class TimestampGuard:
    """Remembers the last accepted timestamp (milliseconds) and rejects ones that do not increase."""

    def __init__(self) -> None:
        self.last_ms: int | None = None

    def check(self, timestamp_ms: int) -> None:
        if self.last_ms is not None and timestamp_ms <= self.last_ms:
            raise NonIncreasingTimestampError(
                f"frame timestamp {timestamp_ms} ms is not after the previous one ({self.last_ms} ms); "
                "frame skipped")

    def accept(self, timestamp_ms: int) -> None:
        self.last_ms = timestamp_ms


def check_rgb(image_rgb: np.ndarray) -> np.ndarray:
    """MediaPipe wants a C-contiguous (H, W, 3) uint8 RGB array."""
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.dtype} {image_rgb.shape}")
    return np.ascontiguousarray(image_rgb)


def blank_image():  # -> mp.Image
    """A small black frame: feeding it in VIDEO mode makes MediaPipe lose its tracks."""
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))


def checked_model_path(model_path: Path | str, what: str, **confidences: float) -> Path:
    """Validate the landmarker's confidence thresholds (0..1) and that its model file exists."""
    for name, value in confidences.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} model not found: {path}")
    return path


@dataclass(frozen=True)
class LandmarkerKind:
    """How one MediaPipe Tasks landmarker is named: its class in ``vision`` (the options class is that
    name + ``Options``), the option keywords that differ between landmarkers, and its name in messages."""

    task: str
    count_option: str
    detection_option: str
    presence_option: str
    label: str


HAND_LANDMARKER = LandmarkerKind("HandLandmarker", "num_hands", "min_hand_detection_confidence",
                                 "min_hand_presence_confidence", "hand landmarker")
POSE_LANDMARKER = LandmarkerKind("PoseLandmarker", "num_poses", "min_pose_detection_confidence",
                                 "min_pose_presence_confidence", "pose landmarker")


def open_video_landmarker(kind: LandmarkerKind, model_path: Path | str, count: int,
                          min_detection_confidence: float, min_presence_confidence: float,
                          min_tracking_confidence: float) -> Any:
    """Validate the options (count >= 1, confidences in 0..1, model file present) and create the landmarker
    in VIDEO mode. Raises ValueError or FileNotFoundError."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    if count < 1:
        raise ValueError(f"{kind.count_option} must be >= 1, got {count}")
    path = checked_model_path(model_path, kind.label, min_detection_confidence=min_detection_confidence,
                              min_presence_confidence=min_presence_confidence,
                              min_tracking_confidence=min_tracking_confidence)
    options = getattr(vision, kind.task + "Options")(
        base_options=BaseOptions(model_asset_path=str(path)), running_mode=vision.RunningMode.VIDEO,
        min_tracking_confidence=min_tracking_confidence,
        **{kind.count_option: count, kind.detection_option: min_detection_confidence,
           kind.presence_option: min_presence_confidence})
    return getattr(vision, kind.task).create_from_options(options)


class VideoModeRunner:
    """Runs one MediaPipe landmarker in VIDEO mode: strictly increasing timestamps (checked here),
    track reset on a scene cut, and a single close."""

    def __init__(self, landmarker: Any, name: str) -> None:
        self._landmarker = landmarker
        self._name = name
        self._guard = TimestampGuard()
        self._closed = False

    def run(self, image_rgb: np.ndarray, timestamp_ms: int, new_scene: bool) -> Any:  # -> MediaPipe result
        """Raises NonIncreasingTimestampError (frame not processed), ValueError or RuntimeError (closed)."""
        import mediapipe as mp

        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        self._guard.check(timestamp_ms)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=check_rgb(image_rgb))
        if new_scene and timestamp_ms - 1 > (self._guard.last_ms if self._guard.last_ms is not None else -1):
            # Drop the tracks: tracking on an empty frame loses them, so this frame is detected afresh.
            self._landmarker.detect_for_video(blank_image(), timestamp_ms - 1)
        result = self._landmarker.detect_for_video(image, timestamp_ms)
        self._guard.accept(timestamp_ms)
        return result

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._landmarker.close()


class VideoLandmarkerDetector(ABC, Generic[T]):
    """A detector over one VIDEO-mode landmarker: subclasses turn MediaPipe's result into their own
    detections. Use as a context manager or call :meth:`close`."""

    def __init__(self, kind: LandmarkerKind, model_path: Path | str, count: int, min_detection_confidence: float,
                 min_presence_confidence: float, min_tracking_confidence: float) -> None:
        landmarker = open_video_landmarker(kind, model_path, count, min_detection_confidence,
                                           min_presence_confidence, min_tracking_confidence)
        self._runner = VideoModeRunner(landmarker, type(self).__name__)

    @abstractmethod
    def _detections(self, result: Any) -> list[T]:
        """MediaPipe's result for one frame as this detector's detections."""

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False) -> list[T]:
        """Detections in one RGB frame stamped ``timestamp_ms`` (milliseconds). Raises
        NonIncreasingTimestampError (frame not processed) or ValueError.

        ``new_scene``: the frame does not continue the previous one (scene cut): tracks are dropped first.
        """
        return self._detections(self._runner.run(image_rgb, timestamp_ms, new_scene))

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
