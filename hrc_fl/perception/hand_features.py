"""Normalised features of 21 hand landmarks (MediaPipe hand order), independent of the detector.

Input points are 2D image-like coordinates, x right and y down, in any unit and origin: MediaPipe's
normalised image coordinates (x / width, y / height; pass ``aspect_ratio = width / height`` so both axes
get the same unit) or the HandPose data set's OpenPose coordinates. The features are invariant to
translation (wrist at the origin) and scale (divided by the palm size) but keep the orientation in the
image, which tells THUMB_UP from THUMB_DOWN. Left hands are mirrored (x -> -x) so that both hands share
one model.
"""

from __future__ import annotations

import numpy as np

NUM_HAND_POINTS = 21
WRIST = 0
#: Palm segments whose mean length is the scale: wrist to each finger base, and index base to pinky base.
PALM_SEGMENTS: tuple[tuple[int, int], ...] = ((0, 5), (0, 9), (0, 13), (0, 17), (5, 17))
HAND_FEATURE_DIM = NUM_HAND_POINTS * 2
MIN_PALM_SIZE = 1e-6


def is_left(handedness: str) -> bool:
    """True for "left"/"Left" (case-insensitive); ValueError for anything but left/right."""
    h = handedness.strip().lower()
    if h not in ("left", "right"):
        raise ValueError(f"handedness must be 'left' or 'right', got {handedness!r}")
    return h == "left"


def normalise_hands(points_xy: np.ndarray, mirror: np.ndarray, aspect_ratio: float = 1.0) -> np.ndarray:
    """Batch version: points (N, 21, >=2) and mirror flags (N,) -> features (N, 42) float32.

    Raises ValueError on a wrong shape, non-finite points or a degenerate (zero-size) palm.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] != NUM_HAND_POINTS or pts.shape[2] < 2:
        raise ValueError(f"hand points must be (N, 21, 2 or 3), got {pts.shape}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    pts = pts[:, :, :2].copy()
    if not np.all(np.isfinite(pts)):
        raise ValueError("hand points contain non-finite values")
    pts[:, :, 0] *= aspect_ratio
    pts -= pts[:, WRIST:WRIST + 1, :]
    pts[np.asarray(mirror, dtype=bool), :, 0] *= -1.0
    a = np.array([s[0] for s in PALM_SEGMENTS])
    b = np.array([s[1] for s in PALM_SEGMENTS])
    palm = np.linalg.norm(pts[:, a] - pts[:, b], axis=2).mean(axis=1)
    if np.any(palm < MIN_PALM_SIZE):
        raise ValueError("degenerate hand: palm size is zero")
    return (pts / palm[:, None, None]).reshape(len(pts), -1).astype(np.float32)


def normalise_hand(points_xy: np.ndarray, handedness: str, aspect_ratio: float = 1.0) -> np.ndarray:
    """One hand (21, 2 or 3) -> features (42,) float32; see the module docstring."""
    return normalise_hands(np.asarray(points_xy)[None], np.array([is_left(handedness)]), aspect_ratio)[0]


def augment_hands(points_xy: np.ndarray, rng: np.random.Generator, *, max_rotation_rad: float = 0.3,
                  max_anisotropy: float = 0.15, noise: float = 0.02) -> np.ndarray:
    """Random small rotation, anisotropic scale, per-point noise, and a 50 % mirror (N, 21, 2).

    Mirroring makes the model indifferent to a wrong handedness label (MediaPipe's label depends on
    whether the camera image is mirrored); none of the HRC gestures changes meaning when mirrored.
    """
    pts = np.asarray(points_xy, dtype=np.float64)[:, :, :2]
    n = len(pts)
    angle = rng.uniform(-max_rotation_rad, max_rotation_rad, n)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)  # (N, 2, 2)
    centred = pts - pts.mean(axis=1, keepdims=True)
    out = np.einsum("nij,npj->npi", rot, centred)
    out *= 1.0 + rng.uniform(-max_anisotropy, max_anisotropy, (n, 1, 2))
    size = np.linalg.norm(out - out.mean(axis=1, keepdims=True), axis=2).mean(axis=1)
    out += rng.normal(0.0, 1.0, out.shape) * noise * size[:, None, None]
    out[rng.random(n) < 0.5, :, 0] *= -1.0
    return out
