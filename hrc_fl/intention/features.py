"""Model input features from hand landmarks (21 points) and body pose (33 points).

Both work in normalised image coordinates (x right, y down, 0..1 of width/height), so the same
features come from MediaPipe at run time and from the 2-D keypoint data sets used for training.
Features are translation- and scale-invariant: a worker standing nearer or further from the camera
gives the same vector.
"""

from __future__ import annotations

import numpy as np

HAND_POINTS = 21
POSE_POINTS = 33
HAND_FEATURE_DIM = 2 * HAND_POINTS
#: MediaPipe pose indices used as features: nose, eyes, ears, shoulders, elbows, wrists, hips. Upper
#: body only: at a workbench the legs are often hidden, and these joints exist in BODY_25 too.
POSE_FEATURE_POINTS: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24)
POSE_FEATURE_DIM = 2 * len(POSE_FEATURE_POINTS)
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = 11, 12, 23, 24
_MIN_SCALE = 1e-4


def _xy(points: np.ndarray, count: int, what: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1 and p.size in (2 * count, 3 * count):
        p = p.reshape(count, -1)
    if p.ndim != 2 or p.shape[0] != count or p.shape[1] not in (2, 3):
        raise ValueError(f"{what} must have shape ({count}, 2|3) or be flat, got {p.shape}")
    return p[:, :2]


def hand_features(image_points: np.ndarray, handedness: str) -> np.ndarray:
    """(42,) float32: the 21 landmarks relative to the wrist, divided by the largest wrist distance.

    Left hands are mirrored (x -> -x) so one classifier serves both hands. Raises ValueError for a
    wrong shape, non-finite values or a degenerate (zero-size) hand.
    """
    xy = _xy(image_points, HAND_POINTS, "hand image_points")
    if not np.all(np.isfinite(xy)):
        raise ValueError("hand landmarks contain non-finite values")
    rel = xy - xy[0]
    scale = float(np.max(np.linalg.norm(rel, axis=1)))
    if scale < _MIN_SCALE:
        raise ValueError("hand landmarks are degenerate (all points at the wrist)")
    rel /= scale
    if handedness.strip().lower() == "left":
        rel[:, 0] = -rel[:, 0]
    return rel.reshape(-1).astype(np.float32)


def pose_features(image_points: np.ndarray, visibility: np.ndarray | None = None,
                  min_visibility: float = 0.5) -> np.ndarray:
    """(26,) float32: upper-body joints relative to the shoulder midpoint, divided by the shoulder
    width (or half the torso length when that is larger, so a side view does not blow up).

    Joints with visibility below ``min_visibility`` or non-finite coordinates are zeros. Raises
    ValueError when the shoulders are not usable (nothing to normalise by).
    """
    xy = _xy(image_points, POSE_POINTS, "pose image_points")
    vis = np.ones(POSE_POINTS) if visibility is None else np.asarray(visibility, dtype=np.float64).reshape(-1)
    if vis.shape != (POSE_POINTS,):
        raise ValueError(f"visibility must have {POSE_POINTS} values, got {vis.shape}")
    usable = np.isfinite(xy).all(axis=1) & np.isfinite(vis) & (vis >= min_visibility)
    if not (usable[_L_SHOULDER] and usable[_R_SHOULDER]):
        raise ValueError("both shoulders must be visible for pose features")
    centre = 0.5 * (xy[_L_SHOULDER] + xy[_R_SHOULDER])
    scale = float(np.linalg.norm(xy[_L_SHOULDER] - xy[_R_SHOULDER]))
    if usable[_L_HIP] and usable[_R_HIP]:
        hip = 0.5 * (xy[_L_HIP] + xy[_R_HIP])
        scale = max(scale, 0.5 * float(np.linalg.norm(hip - centre)))
    if scale < _MIN_SCALE:
        raise ValueError("pose is degenerate (shoulders coincide)")
    idx = np.array(POSE_FEATURE_POINTS)
    rel = (xy[idx] - centre) / scale
    rel[~usable[idx]] = 0.0
    return rel.reshape(-1).astype(np.float32)
