"""MediaPipe PoseLandmarker (lite or full model) in VIDEO mode behind a small ROS-free interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrc_fl.perception.mediapipe_hands import VideoModeRunner, checked_model_path

POSE_MODELS = {"lite": "pose_landmarker_lite.task", "full": "pose_landmarker_full.task"}


@dataclass(frozen=True)
class DetectedPose:
    """One body: 33 normalised image points (x, y in 0..1, z relative), 33 world points (metres,
    hip-centred, camera-aligned axes), 33 visibilities (0..1) and a score (mean visibility of the torso)."""

    image_points: np.ndarray  # (33, 3) float32
    world_points_m: np.ndarray  # (33, 3) float32
    visibility: np.ndarray  # (33,) float32
    score: float


class PoseDetector:
    """PoseLandmarker (VIDEO mode). Use as a context manager or call :meth:`close`."""

    def __init__(self, model_path: Path | str, *, num_poses: int = 2, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        if num_poses < 1:
            raise ValueError(f"num_poses must be >= 1, got {num_poses}")
        path = checked_model_path(model_path, "pose landmarker", min_detection_confidence=min_detection_confidence,
                                  min_presence_confidence=min_presence_confidence,
                                  min_tracking_confidence=min_tracking_confidence)
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO, num_poses=num_poses,
            min_pose_detection_confidence=min_detection_confidence,
            min_pose_presence_confidence=min_presence_confidence,
            min_tracking_confidence=min_tracking_confidence)
        self._runner = VideoModeRunner(vision.PoseLandmarker.create_from_options(options), "PoseDetector")

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False) -> list[DetectedPose]:
        """Bodies in one frame. Raises NonIncreasingTimestampError (frame not processed) or ValueError.

        ``new_scene``: the frame does not continue the previous one (scene cut): tracks are dropped first.
        """
        result = self._runner.run(image_rgb, timestamp_ms, new_scene)
        poses = []
        for landmarks, world in zip(result.pose_landmarks, result.pose_world_landmarks, strict=False):
            vis = np.array([p.visibility if p.visibility is not None else 0.0 for p in landmarks],
                           dtype=np.float32)
            poses.append(DetectedPose(
                image_points=np.array([[p.x, p.y, p.z] for p in landmarks], dtype=np.float32),
                world_points_m=np.array([[p.x, p.y, p.z] for p in world], dtype=np.float32),
                visibility=vis, score=float(np.mean(vis[[11, 12, 23, 24]]))))
        return poses

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> PoseDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
