"""MediaPipe HandLandmarker in VIDEO mode behind a small ROS-free interface.

VIDEO mode tracks hands between frames (cheaper than detecting every frame) and requires strictly
increasing timestamps; this wrapper checks them itself and raises :class:`NonIncreasingTimestampError`
instead of letting MediaPipe fail deep inside its graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


class VideoModeRunner:
    """Runs one MediaPipe landmarker in VIDEO mode: strictly increasing timestamps (checked here),
    track reset on a scene cut, and a single close. Hands and pose detectors both delegate to it."""

    def __init__(self, landmarker, name: str) -> None:
        self._landmarker = landmarker
        self._name = name
        self._guard = TimestampGuard()
        self._closed = False

    def run(self, image_rgb: np.ndarray, timestamp_ms: int, new_scene: bool):  # -> MediaPipe result
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


@dataclass(frozen=True)
class DetectedHand:
    """One hand: handedness ("Left"/"Right" as MediaPipe labels it), its score, 21 normalised image
    points (x, y in 0..1, z relative depth) and 21 world points (metres, hand-centred)."""

    handedness: str
    score: float
    image_points: np.ndarray  # (21, 3) float32
    world_points_m: np.ndarray  # (21, 3) float32


class HandDetector:
    """HandLandmarker (VIDEO mode). Use as a context manager or call :meth:`close`."""

    def __init__(self, model_path: Path | str, *, num_hands: int = 2, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        if num_hands < 1:
            raise ValueError(f"num_hands must be >= 1, got {num_hands}")
        path = checked_model_path(model_path, "hand landmarker", min_detection_confidence=min_detection_confidence,
                                  min_presence_confidence=min_presence_confidence,
                                  min_tracking_confidence=min_tracking_confidence)
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO, num_hands=num_hands,
            min_hand_detection_confidence=min_detection_confidence,
            min_hand_presence_confidence=min_presence_confidence,
            min_tracking_confidence=min_tracking_confidence)
        self._runner = VideoModeRunner(vision.HandLandmarker.create_from_options(options), "HandDetector")

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False) -> list[DetectedHand]:
        """Hands in one frame. Raises NonIncreasingTimestampError (frame not processed) or ValueError.

        ``new_scene``: the frame does not continue the previous one (scene cut): tracks are dropped first.
        """
        result = self._runner.run(image_rgb, timestamp_ms, new_scene)
        hands = []
        for landmarks, world, handedness in zip(result.hand_landmarks, result.hand_world_landmarks,
                                                result.handedness, strict=False):
            category = handedness[0] if handedness else None
            hands.append(DetectedHand(
                handedness=(category.category_name if category else "") or "",
                score=float(category.score) if category and category.score is not None else 0.0,
                image_points=np.array([[p.x, p.y, p.z] for p in landmarks], dtype=np.float32),
                world_points_m=np.array([[p.x, p.y, p.z] for p in world], dtype=np.float32)))
        return hands

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> HandDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
