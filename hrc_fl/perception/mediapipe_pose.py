"""MediaPipe PoseLandmarker (lite or full model) in VIDEO mode behind a small ROS-free interface
(runner: mediapipe_runner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrc_fl.perception.mediapipe_runner import POSE_LANDMARKER, VideoLandmarkerDetector

POSE_MODELS = {"lite": "pose_landmarker_lite.task", "full": "pose_landmarker_full.task"}


@dataclass(frozen=True)
class DetectedPose:
    """One body: 33 normalised image points (x, y in 0..1, z relative), 33 world points (metres,
    hip-centred, camera-aligned axes), 33 visibilities (0..1) and a score (mean visibility of the torso)."""

    image_points: np.ndarray  # (33, 3) float32
    world_points_m: np.ndarray  # (33, 3) float32
    visibility: np.ndarray  # (33,) float32
    score: float


class PoseDetector(VideoLandmarkerDetector[DetectedPose]):
    """PoseLandmarker (VIDEO mode): :meth:`detect` gives the bodies in one frame. Use as a context manager
    or call :meth:`close`."""

    def __init__(self, model_path: Path | str, *, num_poses: int = 2, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        super().__init__(POSE_LANDMARKER, model_path, num_poses, min_detection_confidence,
                         min_presence_confidence, min_tracking_confidence)

    def _detections(self, result: Any) -> list[DetectedPose]:
        poses = []
        for landmarks, world in zip(result.pose_landmarks, result.pose_world_landmarks, strict=False):
            vis = np.array([p.visibility if p.visibility is not None else 0.0 for p in landmarks],
                           dtype=np.float32)
            poses.append(DetectedPose(
                image_points=np.array([[p.x, p.y, p.z] for p in landmarks], dtype=np.float32),
                world_points_m=np.array([[p.x, p.y, p.z] for p in world], dtype=np.float32),
                visibility=vis, score=float(np.mean(vis[[11, 12, 23, 24]]))))
        return poses
