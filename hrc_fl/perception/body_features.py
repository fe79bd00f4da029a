"""Normalised upper-body features in MediaPipe's 33-point pose layout, and the BODY_25 -> 33 mapping.

Points are 2D image-like coordinates, x right, y down (MediaPipe normalised image coordinates with
``aspect_ratio = width / height``, or the BodyPose data set's OpenPose coordinates). Features use the
upper body only (nose, shoulders, elbows, wrists, hips: legs are often hidden by a workbench), with the
shoulder midpoint as origin and the torso length (shoulder midpoint to hip midpoint) as unit; when the
hips are not visible the shoulder width stands in, divided by its typical ratio to the torso length.
Every joint gives (x, y, present); a joint that is not visible gives (0, 0, 0).
"""

from __future__ import annotations

import numpy as np

from hrc_fl.data.datasets import BODY_25_NAMES

NUM_POSE_POINTS = 33
#: MediaPipe pose landmark names, index == landmark index.
MEDIAPIPE_POSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
#: BODY_25 joints with a MediaPipe namesake (by name); neck and mid-hip have none, toes map to foot_index.
BODY25_TO_MEDIAPIPE: dict[str, str] = {
    **{n: n for n in BODY_25_NAMES if n in MEDIAPIPE_POSE_NAMES},
    "left_big_toe": "left_foot_index", "right_big_toe": "right_foot_index",
}
NOSE, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 0, 11, 12, 23, 24
#: Joints the features use, in order.
FEATURE_JOINTS: tuple[int, ...] = (0, 11, 12, 13, 14, 15, 16, 23, 24)
BODY_FEATURE_DIM = 3 * len(FEATURE_JOINTS)
#: Median shoulder width / torso length over the upright postures of the BodyPose data (0.57-0.62).
SHOULDER_TO_TORSO_RATIO = 0.58
DEFAULT_MIN_VISIBILITY = 0.5
MIN_BODY_SIZE = 1e-6


def _mirror_permutation() -> np.ndarray:
    perm = np.arange(NUM_POSE_POINTS)
    for i, name in enumerate(MEDIAPIPE_POSE_NAMES):
        for a, b in (("left", "right"), ("right", "left")):
            if a in name:
                perm[i] = MEDIAPIPE_POSE_NAMES.index(name.replace(a, b))
    return perm


MIRROR_PERMUTATION = _mirror_permutation()


def body25_to_mediapipe33(points25: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 25, 2) BODY_25 (NaN = missing) -> points (N, 33, 2) NaN where unknown, visibility (N, 33) 0/1."""
    p25 = np.asarray(points25, dtype=np.float64)
    if p25.ndim != 3 or p25.shape[1:] != (25, 2):
        raise ValueError(f"BODY_25 points must be (N, 25, 2), got {p25.shape}")
    out = np.full((len(p25), NUM_POSE_POINTS, 2), np.nan)
    for src, dst in BODY25_TO_MEDIAPIPE.items():
        out[:, MEDIAPIPE_POSE_NAMES.index(dst)] = p25[:, BODY_25_NAMES.index(src)]
    vis = np.all(np.isfinite(out), axis=2).astype(np.float64)
    return out, vis


def normalise_bodies(points: np.ndarray, visibility: np.ndarray, aspect_ratio: float = 1.0,
                     min_visibility: float = DEFAULT_MIN_VISIBILITY) -> tuple[np.ndarray, np.ndarray]:
    """(N, 33, >=2) points + (N, 33) visibility -> (features (N, 27) float32, usable (N,) bool).

    A body is usable when both shoulders are visible and it has a non-zero size; features of unusable
    bodies are zeros.
    """
    pts = np.asarray(points, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] != NUM_POSE_POINTS or pts.shape[2] < 2 or vis.shape != pts.shape[:2]:
        raise ValueError(f"pose must be (N, 33, 2) with visibility (N, 33), got {pts.shape} and {vis.shape}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    pts = pts[:, :, :2].copy()
    pts[:, :, 0] *= aspect_ratio
    present = (vis >= min_visibility) & np.all(np.isfinite(pts), axis=2)
    pts = np.where(present[:, :, None], pts, 0.0)
    shoulders_ok = present[:, L_SHOULDER] & present[:, R_SHOULDER]
    hips_ok = present[:, L_HIP] & present[:, R_HIP]
    origin = (pts[:, L_SHOULDER] + pts[:, R_SHOULDER]) / 2
    torso = np.linalg.norm(origin - (pts[:, L_HIP] + pts[:, R_HIP]) / 2, axis=1)
    width = np.linalg.norm(pts[:, L_SHOULDER] - pts[:, R_SHOULDER], axis=1) / SHOULDER_TO_TORSO_RATIO
    scale = np.where(hips_ok, torso, width)
    usable = shoulders_ok & (scale > MIN_BODY_SIZE)
    safe_scale = np.where(usable, scale, 1.0)
    joints = list(FEATURE_JOINTS)
    rel = (pts[:, joints] - origin[:, None]) / safe_scale[:, None, None]
    mask = present[:, joints]
    feats = np.concatenate([rel * mask[:, :, None], mask[:, :, None]], axis=2).reshape(len(pts), -1)
    feats[~usable] = 0.0
    return feats.astype(np.float32), usable


def normalise_body(points: np.ndarray, visibility: np.ndarray, aspect_ratio: float = 1.0,
                   min_visibility: float = DEFAULT_MIN_VISIBILITY) -> np.ndarray:
    """One body (33, 2 or 3) + (33,) -> features (27,); ValueError when the shoulders are not visible."""
    feats, usable = normalise_bodies(np.asarray(points)[None], np.asarray(visibility)[None], aspect_ratio,
                                     min_visibility)
    if not usable[0]:
        raise ValueError("body not usable: both shoulders must be visible")
    return feats[0]


def augment_bodies(points: np.ndarray, visibility: np.ndarray, rng: np.random.Generator, *,
                   max_rotation_rad: float = 0.15, max_anisotropy: float = 0.1, noise: float = 0.02,
                   hide_hips_p: float = 0.3, hide_nose_p: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Small rotation/anisotropic scale/noise, 50 % left-right mirror, randomly hidden hips and nose."""
    pts = np.asarray(points, dtype=np.float64)[:, :, :2].copy()
    vis = np.asarray(visibility, dtype=np.float64).copy()
    n = len(pts)
    mirror = rng.random(n) < 0.5
    pts[mirror] = pts[mirror][:, MIRROR_PERMUTATION]
    vis[mirror] = vis[mirror][:, MIRROR_PERMUTATION]
    pts[mirror, :, 0] *= -1.0
    angle = rng.uniform(-max_rotation_rad, max_rotation_rad, n)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)
    pts = np.einsum("nij,npj->npi", rot, pts)
    pts *= 1.0 + rng.uniform(-max_anisotropy, max_anisotropy, (n, 1, 2))
    pts += rng.normal(0.0, noise, pts.shape)
    hide = rng.random(n) < hide_hips_p
    vis[hide, L_HIP] = 0.0
    vis[hide, R_HIP] = 0.0
    vis[rng.random(n) < hide_nose_p, NOSE] = 0.0
    return pts, vis
