"""MediaPipe HandLandmarker in VIDEO mode behind a small ROS-free interface (runner: mediapipe_runner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrc_fl.perception.mediapipe_runner import HAND_LANDMARKER, VideoLandmarkerDetector

# Kept importable from here for callers that catch it beside HandDetector.
from hrc_fl.perception.mediapipe_runner import NonIncreasingTimestampError as NonIncreasingTimestampError


@dataclass(frozen=True)
class DetectedHand:
    """One hand: handedness ("Left"/"Right" as MediaPipe labels it), its score, 21 normalised image
    points (x, y in 0..1, z relative depth) and 21 world points (metres, hand-centred)."""

    handedness: str
    score: float
    image_points: np.ndarray  # (21, 3) float32
    world_points_m: np.ndarray  # (21, 3) float32


class HandDetector(VideoLandmarkerDetector[DetectedHand]):
    """HandLandmarker (VIDEO mode): :meth:`detect` gives the hands in one frame. Use as a context manager
    or call :meth:`close`."""

    def __init__(self, model_path: Path | str, *, num_hands: int = 2, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        super().__init__(HAND_LANDMARKER, model_path, num_hands, min_detection_confidence,
                         min_presence_confidence, min_tracking_confidence)

    def _detections(self, result: Any) -> list[DetectedHand]:
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
