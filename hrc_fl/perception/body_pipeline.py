"""One frame's detected bodies -> tracked, smoothed, located and classified bodies (ROS-free).

What the pose node does with MediaPipe's output, in order, each step in its own module: stable ids
(:mod:`~hrc_fl.perception.body_tracker`), One Euro smoothing per id (:mod:`~hrc_fl.perception.one_euro`),
the hip depth from a registered depth image or else the monocular estimate, and the keypoints in the
workstation frame (:mod:`~hrc_fl.perception.body_localisation`), then the arm signal
(:mod:`~hrc_fl.perception.arm_signal_classifier`). The node only turns the result into messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hrc_fl.perception.arm_signal_classifier import ARM_SIGNAL_NAMES, ArmSignalClassifier
from hrc_fl.perception.body_localisation import (
    BodyScale,
    CameraExtrinsics,
    DepthImageModel,
    PinholeIntrinsics,
    hip_depth,
    locate_body,
    torso_centroid,
)
from hrc_fl.perception.body_tracker import BodyTracker
from hrc_fl.perception.landmark_mlp_numpy import thresholded_class
from hrc_fl.perception.mediapipe_pose import DetectedPose
from hrc_fl.perception.one_euro import OneEuroFilterBank

NUM_POINTS = 33  # MediaPipe pose landmarks


@dataclass(frozen=True)
class LocatedBody:
    """One tracked body of a frame.

    ``image_points`` (33, 3) normalised image coordinates and ``world_points_m`` (33, 3) MediaPipe's
    hip-centred metres, both smoothed; ``visibility`` (33,) 0..1 as detected; ``workstation_points_m``
    (33, 3) metres in the workstation frame, NaN with ``position_uncertainty_m`` inf when no depth could
    be found; ``arm_signal`` an index of ``ARM_SIGNAL_NAMES`` with its probability.
    """

    body_id: str
    score: float
    image_points: np.ndarray
    world_points_m: np.ndarray
    visibility: np.ndarray
    workstation_points_m: np.ndarray
    position_uncertainty_m: float
    depth_used: bool
    arm_signal: int
    arm_signal_confidence: float


@dataclass(frozen=True)
class FrameBodies:
    """A frame's bodies (detection order), the ids whose tracks ended, and one line per body that could
    not be classified (degenerate landmarks; its arm signal is then NONE with confidence 0)."""

    bodies: list[LocatedBody]
    dropped_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class BodyPipeline:
    """Per-frame state (tracks, filters) and settings of the pose node's post-processing."""

    def __init__(self, *, tracker: BodyTracker, smoothing: OneEuroFilterBank, scale: BodyScale,
                 extrinsics: CameraExtrinsics, depth_model: DepthImageModel, landmark_sigma_m: float,
                 arm_classifier: ArmSignalClassifier, arm_signal_min_confidence: float) -> None:
        if not landmark_sigma_m >= 0:
            raise ValueError(f"landmark_sigma_m must be >= 0, got {landmark_sigma_m}")
        self.tracker = tracker
        self.smoothing = smoothing
        self.scale = scale
        self.extrinsics = extrinsics
        self.depth_model = depth_model
        self.landmark_sigma_m = landmark_sigma_m
        self.arm_classifier = arm_classifier
        self.arm_signal_min_confidence = arm_signal_min_confidence

    def process(self, poses: Sequence[DetectedPose], t_s: float, intrinsics: PinholeIntrinsics,
                depth_image_m: np.ndarray | None = None) -> FrameBodies:
        """The bodies of one frame captured at ``t_s`` (seconds; the smoothing clock) whose pixels
        ``intrinsics`` describe; ``depth_image_m``: the newest registered depth image, metres."""
        update = self.tracker.update([torso_centroid(p.image_points, p.visibility) for p in poses])
        for body_id in update.dropped_ids:
            self.smoothing.forget(body_id)
        problems: list[str] = []
        bodies = [self._body(pose, body_id, t_s, intrinsics, depth_image_m, problems)
                  for pose, body_id in zip(poses, update.ids, strict=True)]
        return FrameBodies(bodies, list(update.dropped_ids), problems)

    def _body(self, pose: DetectedPose, body_id: str, t_s: float, intrinsics: PinholeIntrinsics,
              depth_image_m: np.ndarray | None, problems: list[str]) -> LocatedBody:
        smoothed = self.smoothing(body_id, np.concatenate([pose.image_points, pose.world_points_m]), t_s)
        image_points, world_points = smoothed[:NUM_POINTS], smoothed[NUM_POINTS:]
        depth, depth_used = hip_depth(image_points, world_points, pose.visibility, intrinsics, self.scale,
                                      depth_image_m, self.depth_model)
        if depth is None:
            points_ws, sigma_m = np.full((NUM_POINTS, 3), math.nan), math.inf
        else:
            located = locate_body(image_points, world_points, pose.visibility, intrinsics, self.extrinsics,
                                  depth, depth_used=depth_used, landmark_sigma_m=self.landmark_sigma_m)
            points_ws, sigma_m = located.points_m, float(located.position_uncertainty_m)
        code, confidence = self._arm_signal(image_points, pose.visibility,
                                            intrinsics.width_px / intrinsics.height_px, problems)
        return LocatedBody(body_id, float(pose.score), image_points, world_points, pose.visibility, points_ws,
                           sigma_m, depth_used, code, confidence)

    def _arm_signal(self, image_points: np.ndarray, visibility: np.ndarray, aspect_ratio: float,
                    problems: list[str]) -> tuple[int, float]:
        try:
            probs = np.asarray(self.arm_classifier.predict_proba(image_points[:, :2], visibility,
                                                                 aspect_ratio=aspect_ratio), dtype=np.float64)
        except ValueError as exc:  # degenerate landmarks
            problems.append(f"body not classified: {exc}")
            probs = np.zeros(len(ARM_SIGNAL_NAMES))
        return thresholded_class(probs, self.arm_signal_min_confidence)
