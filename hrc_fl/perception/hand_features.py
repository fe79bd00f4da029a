"""Features of 21 hand landmarks (MediaPipe hand order) that separate hand *shape* from hand *direction*.

Input points are 2D image-like coordinates, x right and y down, in any unit and origin: MediaPipe's
normalised image coordinates (x / width, y / height; pass ``aspect_ratio = width / height`` so both axes
get the same unit) or the HandPose data set's OpenPose coordinates.

Feature vector (:data:`HAND_FEATURE_DIM` = 46, float32), layout :data:`HAND_FEATURE_LAYOUT`:

- ``[0:42]`` shape: the 21 points in a canonical hand frame: origin at the wrist, unit = mean palm
  segment length (:data:`PALM_SEGMENTS`), rotated so that the hand axis (wrist -> mean of the four
  finger bases) points to -y ("up"). Translation-, scale- and in-plane-rotation-invariant, so STOP,
  fist, pointing and OK look alike however the hand is turned in the image.
- ``[42:44]`` hand direction: (sin, -cos) of the hand axis in the image = its unit vector (x, y).
- ``[44:46]`` thumb direction: unit vector of thumb MCP -> thumb tip in the image (zero when the thumb
  has no length), which is what tells THUMB_UP from THUMB_DOWN (same shape, opposite direction).

Left hands are mirrored (x -> -x) before all of that, so both hands share one model; training mirrors
at random too (:func:`random_views`), because MediaPipe's handedness label depends on whether the image
is mirrored, and a palm seen from the back is the mirror image of the palm seen from the front.
MediaPipe's 3D world landmarks are not used: the training data (HandPose) is 2D only, so a model
trained on it cannot read depth; out-of-plane rotations are covered by training on 3D-rotated views.
"""

from __future__ import annotations

import numpy as np

NUM_HAND_POINTS = 21
WRIST = 0
THUMB_MCP, THUMB_TIP = 2, 4
FINGER_BASES: tuple[int, ...] = (5, 9, 13, 17)
#: Palm segments whose mean length is the scale: wrist to each finger base, and index base to pinky base.
PALM_SEGMENTS: tuple[tuple[int, int], ...] = ((0, 5), (0, 9), (0, 13), (0, 17), (5, 17))
SHAPE_DIM = NUM_HAND_POINTS * 2
HAND_FEATURE_DIM = SHAPE_DIM + 4
#: Name of the feature layout, stored with trained weights; a model trained on another layout is refused.
HAND_FEATURE_LAYOUT = "hand_features.canonical_shape+direction/2"
MIN_PALM_SIZE = 1e-6


def is_left(handedness: str) -> bool:
    """True for "left"/"Left" (case-insensitive); ValueError for anything but left/right."""
    h = handedness.strip().lower()
    if h not in ("left", "right"):
        raise ValueError(f"handedness must be 'left' or 'right', got {handedness!r}")
    return h == "left"


_PALM_A = np.array([a for a, _ in PALM_SEGMENTS])
_PALM_B = np.array([b for _, b in PALM_SEGMENTS])
_BASES = np.array(FINGER_BASES)


def _unit(vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (x, y components) of the vectors (vx, vy), each (N,); shorter than
    :data:`MIN_PALM_SIZE` become zero."""
    n = np.sqrt(vx * vx + vy * vy)
    inv = np.where(n > MIN_PALM_SIZE, 1.0 / np.maximum(n, MIN_PALM_SIZE), 0.0)
    return vx * inv, vy * inv


def normalise_hands(points_xy: np.ndarray, mirror: np.ndarray, aspect_ratio: float = 1.0) -> np.ndarray:
    """Batch version: points (N, 21, >=2) and mirror flags (N,) -> features (N, 46) float32.

    Raises ValueError on a wrong shape, non-finite points or a degenerate (zero-size) palm.
    Written with few, plain numpy operations (sums, not ``mean``, no ``stack``): the hands node calls
    it for every hand of every frame.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] != NUM_HAND_POINTS or pts.shape[2] < 2:
        raise ValueError(f"hand points must be (N, 21, 2 or 3), got {pts.shape}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    if not np.isfinite(pts[:, :, :2]).all():
        raise ValueError("hand points contain non-finite values")
    sign = np.where(np.asarray(mirror, dtype=bool), -aspect_ratio, aspect_ratio)[:, None]
    x = (pts[:, :, 0] - pts[:, WRIST:WRIST + 1, 0]) * sign  # wrist at the origin, one unit, left mirrored
    y = pts[:, :, 1] - pts[:, WRIST:WRIST + 1, 1]
    dx, dy = x[:, _PALM_A] - x[:, _PALM_B], y[:, _PALM_A] - y[:, _PALM_B]
    palm = np.sqrt(dx * dx + dy * dy).sum(axis=1) * (1.0 / len(PALM_SEGMENTS))
    if (palm < MIN_PALM_SIZE).any():
        raise ValueError("degenerate hand: palm size is zero")
    inv_palm = (1.0 / palm)[:, None]
    x, y = x * inv_palm, y * inv_palm
    ux, uy = _unit(x[:, _BASES].sum(axis=1), y[:, _BASES].sum(axis=1))  # hand axis, image frame
    none = (ux == 0.0) & (uy == 0.0)
    uy[none] = -1.0  # finger bases on the wrist: no direction, keep the image frame
    out = np.empty((len(pts), HAND_FEATURE_DIM), dtype=np.float32)
    ux2, uy2 = ux[:, None], uy[:, None]
    # rotation taking the axis to (0, -1): canonical x = (-uy, ux) . p, canonical y = -(ux, uy) . p
    out[:, 0:SHAPE_DIM:2] = y * ux2 - x * uy2
    out[:, 1:SHAPE_DIM:2] = -(x * ux2 + y * uy2)
    out[:, SHAPE_DIM] = ux
    out[:, SHAPE_DIM + 1] = uy
    tx, ty = _unit(x[:, THUMB_TIP] - x[:, THUMB_MCP], y[:, THUMB_TIP] - y[:, THUMB_MCP])
    out[:, SHAPE_DIM + 2] = tx
    out[:, SHAPE_DIM + 3] = ty
    return out


def normalise_hand(points_xy: np.ndarray, handedness: str, aspect_ratio: float = 1.0) -> np.ndarray:
    """One hand (21, 2 or 3) -> features (46,) float32; see the module docstring."""
    return normalise_hands(np.asarray(points_xy)[None], np.array([is_left(handedness)]), aspect_ratio)[0]


def rotate_hands(points_xy: np.ndarray, in_plane_rad: np.ndarray, tilt_x_rad: np.ndarray, tilt_y_rad: np.ndarray,
                 *, distance_palms: np.ndarray | float = 8.0) -> np.ndarray:
    """The hands (N, 21, 2) seen after a 3D rotation, through a pinhole camera (N, 21, 2).

    The 2D hand is lifted to 3D with depth 0 (a hand parallel to the image plane, as the data set's
    hands mostly are), turned out of plane by ``tilt_x_rad`` (about the image x axis, i.e. the top of
    the hand towards or away from the camera) and ``tilt_y_rad`` (about y), then in plane by
    ``in_plane_rad`` (positive = clockwise on screen, since y points down), and projected with
    perspective from ``distance_palms`` palm sizes away. Centroid and scale are kept.
    """
    pts = np.asarray(points_xy, dtype=np.float64)[:, :, :2]
    n = len(pts)
    centre = pts.mean(axis=1, keepdims=True)
    xy = pts - centre
    a = np.linalg.norm(xy[:, list(FINGER_BASES)].mean(axis=1), axis=1)  # ~ palm size, for the distance
    xyz = np.concatenate([xy, np.zeros((n, NUM_HAND_POINTS, 1))], axis=2)
    cx, sx = np.cos(tilt_x_rad), np.sin(tilt_x_rad)
    cy, sy = np.cos(tilt_y_rad), np.sin(tilt_y_rad)
    cz, sz = np.cos(in_plane_rad), np.sin(in_plane_rad)
    one, zero = np.ones(n), np.zeros(n)
    rx = np.stack([np.stack([one, zero, zero], 1), np.stack([zero, cx, -sx], 1), np.stack([zero, sx, cx], 1)], 1)
    ry = np.stack([np.stack([cy, zero, sy], 1), np.stack([zero, one, zero], 1), np.stack([-sy, zero, cy], 1)], 1)
    rz = np.stack([np.stack([cz, -sz, zero], 1), np.stack([sz, cz, zero], 1), np.stack([zero, zero, one], 1)], 1)
    rot = np.einsum("nij,njk,nkl->nil", rz, ry, rx)
    turned = np.einsum("nij,npj->npi", rot, xyz)
    depth = np.broadcast_to(np.asarray(distance_palms, dtype=np.float64), (n,)) * np.maximum(a, MIN_PALM_SIZE)
    projected = turned[:, :, :2] * (depth[:, None, None] / (depth[:, None, None] + turned[:, :, 2:3]))
    return projected + centre


#: Landmark chains of the five fingers, from the joint the finger turns about to the tip.
FINGER_CHAINS: tuple[tuple[int, ...], ...] = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16),
                                             (17, 18, 19, 20))


def vary_fingers(points_xy: np.ndarray, rng: np.random.Generator, *, max_length_scale: float = 0.15,
                 max_bend_rad: float = np.deg2rad(8.0)) -> np.ndarray:
    """Other people's hands (N, 21, 2): each finger's bones scaled by one random factor (1 +- ``max_length_scale``)
    and each bone turned by a small random angle (+- ``max_bend_rad``), finger bases kept in place."""
    pts = np.asarray(points_xy, dtype=np.float64)[:, :, :2].copy()
    n = len(pts)
    for chain in FINGER_CHAINS:
        scale = 1.0 + rng.uniform(-max_length_scale, max_length_scale, (n, 1))
        base = pts[:, chain[0]].copy()
        bones = np.diff(pts[:, list(chain)], axis=1)  # (N, 3, 2)
        turn = rng.uniform(-max_bend_rad, max_bend_rad, (n, bones.shape[1]))
        c, s = np.cos(turn), np.sin(turn)
        bones = np.stack([c * bones[..., 0] - s * bones[..., 1], s * bones[..., 0] + c * bones[..., 1]], axis=-1)
        pts[:, list(chain[1:])] = base[:, None, :] + np.cumsum(bones * scale[:, :, None], axis=1)
    return pts


def random_views(points_xy: np.ndarray, rng: np.random.Generator, *, max_in_plane_rad: float | np.ndarray,
                 max_tilt_rad: float, max_anisotropy: float = 0.05, jitter_palms: float = 0.03,
                 mirror_share: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random camera views of the hands (N, 21, 2): 3D rotation (:func:`rotate_hands`) with in-plane
    angle uniform in +-``max_in_plane_rad`` (scalar or per hand) and both out-of-plane tilts uniform in
    +-``max_tilt_rad``, perspective from 5-15 palm sizes, a small anisotropic scale (lens / aspect
    errors), per-landmark jitter of up to ``jitter_palms`` palm sizes (MediaPipe's frame-to-frame noise)
    and a mirror for ``mirror_share`` of the hands.

    Returns (points, in-plane angle (N,) rad, mirrored (N,) bool); the angle is what a label that depends
    on direction (THUMB_UP / THUMB_DOWN) must follow. Mirroring never changes a direction's up/down.
    """
    pts = np.asarray(points_xy, dtype=np.float64)[:, :, :2]
    n = len(pts)
    limit = np.broadcast_to(np.asarray(max_in_plane_rad, dtype=np.float64), (n,))
    angle = rng.uniform(-1.0, 1.0, n) * limit
    out = rotate_hands(pts, angle, rng.uniform(-max_tilt_rad, max_tilt_rad, n),
                       rng.uniform(-max_tilt_rad, max_tilt_rad, n), distance_palms=rng.uniform(5.0, 15.0, n))
    centre = out.mean(axis=1, keepdims=True)
    out = (out - centre) * (1.0 + rng.uniform(-max_anisotropy, max_anisotropy, (n, 1, 2)))
    size = np.linalg.norm(out, axis=2).mean(axis=1)
    out += rng.normal(0.0, 1.0, out.shape) * (rng.uniform(0.0, jitter_palms, n) * size)[:, None, None]
    mirrored = rng.random(n) < mirror_share
    out[mirrored, :, 0] *= -1.0
    return out + centre, angle, mirrored
