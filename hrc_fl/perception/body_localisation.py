"""Body keypoints in the workstation frame from one camera (ROS-free).

MediaPipe gives, per body, normalised image points and *world* points: metres, centred on the hip
midpoint, axes aligned with the camera (x right, y down, z away from the camera). What is missing is
where the hip centre is. Two ways to get it:

* **depth image** (:func:`hip_depth_from_depth_image`): median depth at the visible torso keypoints;
* **monocular** (:func:`monocular_hip_depth`): the pinhole model ``Z = f * L / l`` with nominal body
  lengths L (shoulder width, torso length) and their lengths l in the image. MediaPipe's world points
  give each segment's 3-D direction, so the foreshortening of a segment seen at an angle is corrected
  before the division. The 1-sigma depth error combines the spread of real body sizes (a configured
  relative error of the nominal lengths) and the disagreement between the segments.

Camera-frame points are then ``hip_cam + world_point`` and are mapped to the workstation frame
(the robot base, ``base_link``) with the configured camera extrinsics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# MediaPipe pose landmark indices used here.
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
TORSO = (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP)


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Focal lengths and principal point in pixels for an image of width x height pixels."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int

    def __post_init__(self) -> None:
        if not (self.fx_px > 0 and self.fy_px > 0):
            raise ValueError("focal lengths must be positive")
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError("image size must be positive")


def rotation_from_rpy(roll_rad: float, pitch_rad: float, yaw_rad: float) -> np.ndarray:
    """3x3 rotation R = Rz(yaw) Ry(pitch) Rx(roll) (REP-103 fixed-axis roll, pitch, yaw)."""
    cr, sr = math.cos(roll_rad), math.sin(roll_rad)
    cp, sp = math.cos(pitch_rad), math.sin(pitch_rad)
    cy, sy = math.cos(yaw_rad), math.sin(yaw_rad)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class CameraExtrinsics:
    """Pose of the camera optical frame in the workstation frame: p_ws = rotation @ p_cam + translation_m."""

    rotation: np.ndarray  # (3, 3)
    translation_m: np.ndarray  # (3,)

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, dtype=np.float64)
        t = np.asarray(self.translation_m, dtype=np.float64)
        if r.shape != (3, 3) or t.shape != (3,):
            raise ValueError("extrinsics need a 3x3 rotation and a 3-vector translation")
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
            raise ValueError("extrinsics must be finite")
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise ValueError("extrinsics rotation must be a proper rotation matrix")

    @staticmethod
    def from_xyz_rpy(xyz_m: tuple[float, float, float] | list[float],
                     rpy_rad: tuple[float, float, float] | list[float]) -> CameraExtrinsics:
        if len(xyz_m) != 3 or len(rpy_rad) != 3:
            raise ValueError("camera extrinsics need 3 translation and 3 rotation values")
        return CameraExtrinsics(rotation_from_rpy(*rpy_rad), np.asarray(xyz_m, dtype=np.float64))

    def to_workstation(self, points_cam_m: np.ndarray) -> np.ndarray:
        return points_cam_m @ np.asarray(self.rotation).T + np.asarray(self.translation_m)


@dataclass(frozen=True)
class BodyScale:
    """Nominal adult body lengths (metres) and their relative 1-sigma spread across people."""

    shoulder_width_m: float = 0.36  # biacromial breadth, adult mean (ISO 7250 / anthropometric tables)
    torso_length_m: float = 0.50  # shoulder midpoint to hip midpoint
    relative_sigma: float = 0.10
    min_visibility: float = 0.5

    def __post_init__(self) -> None:
        if not (self.shoulder_width_m > 0 and self.torso_length_m > 0):
            raise ValueError("nominal body lengths must be positive")
        if not 0 <= self.relative_sigma < 1:
            raise ValueError("relative_sigma must be in [0, 1)")


@dataclass(frozen=True)
class DepthEstimate:
    """Depth of the hip centre along the optical axis and its 1-sigma error, metres."""

    depth_m: float
    sigma_m: float


def _pixels(image_points: np.ndarray, intrinsics: PinholeIntrinsics) -> np.ndarray:
    return np.asarray(image_points)[:, :2] * np.array([intrinsics.width_px, intrinsics.height_px])


def monocular_hip_depth(image_points: np.ndarray, world_points_m: np.ndarray, visibility: np.ndarray,
                        intrinsics: PinholeIntrinsics,
                        scale: BodyScale = BodyScale()) -> DepthEstimate | None:
    """Hip-centre depth from nominal shoulder width and torso length; None if the torso is not visible.

    ``image_points``: (33, 2+) normalised; ``world_points_m``: (33, 3) MediaPipe world points;
    ``visibility``: (33,). Each segment's image length is divided by the cosine-like factor
    |d_xy| / |d| of its 3-D direction d (from the world points) to undo foreshortening.
    """
    px = _pixels(image_points, intrinsics)
    world = np.asarray(world_points_m, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.float64)
    f_px = 0.5 * (intrinsics.fx_px + intrinsics.fy_px)
    segments = []
    mid = {"shoulders": (LEFT_SHOULDER, RIGHT_SHOULDER), "hips": (LEFT_HIP, RIGHT_HIP)}
    if vis[LEFT_SHOULDER] >= scale.min_visibility and vis[RIGHT_SHOULDER] >= scale.min_visibility:
        segments.append((px[LEFT_SHOULDER] - px[RIGHT_SHOULDER],
                         world[LEFT_SHOULDER] - world[RIGHT_SHOULDER], scale.shoulder_width_m))
    if all(vis[i] >= scale.min_visibility for i in TORSO):
        sh_px, hip_px = px[list(mid["shoulders"])].mean(0), px[list(mid["hips"])].mean(0)
        sh_w, hip_w = world[list(mid["shoulders"])].mean(0), world[list(mid["hips"])].mean(0)
        segments.append((sh_px - hip_px, sh_w - hip_w, scale.torso_length_m))
    estimates = []
    for d_px, d_world, nominal_m in segments:
        length_px = float(np.linalg.norm(d_px))
        norm_w = float(np.linalg.norm(d_world))
        if length_px < 2.0 or not math.isfinite(length_px) or not (norm_w > 1e-6 and math.isfinite(norm_w)):
            continue
        # Fraction of the segment that lies across the optical axis; floor it so that a segment seen
        # almost end-on cannot blow the depth up.
        across = max(float(np.linalg.norm(d_world[:2])) / norm_w, 0.3)
        estimates.append(f_px * nominal_m * across / length_px)
    if not estimates:
        return None
    depth_m = float(np.mean(estimates))
    spread_m = float(np.std(estimates)) if len(estimates) > 1 else 0.0
    sigma_m = math.hypot(scale.relative_sigma * depth_m, spread_m)
    return DepthEstimate(depth_m, sigma_m)


def hip_depth_from_depth_image(image_points: np.ndarray, visibility: np.ndarray, depth_image_m: np.ndarray,
                               *, body_offset_m: float = 0.10, sigma_m: float = 0.05,
                               min_visibility: float = 0.5, window_px: int = 2) -> DepthEstimate | None:
    """Hip-centre depth from a depth image (metres, same size and view as the colour image).

    Median of the valid depths around the visible torso keypoints, plus ``body_offset_m`` because the
    camera sees the body surface, not its centre. None when no valid depth is found.
    """
    depth = np.asarray(depth_image_m, dtype=np.float64)
    h, w = depth.shape[:2]
    vis = np.asarray(visibility)
    pts = np.asarray(image_points)[:, :2] * np.array([w, h])
    samples = []
    for i in TORSO:
        if vis[i] < min_visibility:
            continue
        u, v = pts[i]
        if not (math.isfinite(u) and math.isfinite(v)):
            continue
        u0, v0 = round(u), round(v)
        if not (0 <= u0 < w and 0 <= v0 < h):
            continue
        patch = depth[max(0, v0 - window_px):v0 + window_px + 1, max(0, u0 - window_px):u0 + window_px + 1]
        good = patch[np.isfinite(patch) & (patch > 0)]
        samples.extend(good.ravel().tolist())
    if not samples:
        return None
    return DepthEstimate(float(np.median(samples)) + body_offset_m, sigma_m)


@dataclass(frozen=True)
class DepthImageModel:
    """How a registered depth image is read: ``body_offset_m`` from the seen body surface to the skeleton
    and the camera's 1-sigma depth error ``sigma_m`` at working range, metres."""

    body_offset_m: float
    sigma_m: float

    def __post_init__(self) -> None:
        if not (self.body_offset_m >= 0 and self.sigma_m > 0):
            raise ValueError("depth body offset must be >= 0 and its sigma positive")


def hip_depth(image_points: np.ndarray, world_points_m: np.ndarray, visibility: np.ndarray,
              intrinsics: PinholeIntrinsics, scale: BodyScale, depth_image_m: np.ndarray | None,
              depth_model: DepthImageModel) -> tuple[DepthEstimate | None, bool]:
    """(hip-centre depth, whether the depth image gave it): the depth image where it has valid depth at
    the visible torso, else the monocular estimate; (None, False) when neither works."""
    if depth_image_m is not None:
        measured = hip_depth_from_depth_image(image_points, visibility, depth_image_m,
                                              body_offset_m=depth_model.body_offset_m,
                                              sigma_m=depth_model.sigma_m, min_visibility=scale.min_visibility)
        if measured is not None:
            return measured, True
    return monocular_hip_depth(image_points, world_points_m, visibility, intrinsics, scale), False


def torso_centroid(image_points: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(2,) visibility-weighted mean of the torso keypoints in normalised image coordinates (what the
    tracker associates across frames)."""
    vis = np.asarray(visibility)[list(TORSO)]
    pts = np.asarray(image_points)[list(TORSO), :2]
    weights = np.clip(vis, 1e-3, None)
    return (pts * weights[:, None]).sum(0) / weights.sum()


@dataclass(frozen=True)
class WorkstationBody:
    """Keypoints in the workstation frame (33, 3) metres (NaN where not computable) and their 1-sigma
    position uncertainty (metres, one value for the body)."""

    points_m: np.ndarray
    position_uncertainty_m: float
    depth_used: bool


def locate_body(image_points: np.ndarray, world_points_m: np.ndarray, visibility: np.ndarray,
                intrinsics: PinholeIntrinsics, extrinsics: CameraExtrinsics, depth: DepthEstimate,
                *, depth_used: bool, landmark_sigma_m: float = 0.05) -> WorkstationBody:
    """Place the body: back-project the hip midpoint at ``depth``, add the world points, transform.

    Uncertainty = depth error (along the ray) combined with the lateral error it causes and
    MediaPipe's own landmark error ``landmark_sigma_m``.
    """
    px = _pixels(image_points, intrinsics)
    hip_uv = px[[LEFT_HIP, RIGHT_HIP]].mean(0)
    z = depth.depth_m
    ray = np.array([(hip_uv[0] - intrinsics.cx_px) / intrinsics.fx_px,
                    (hip_uv[1] - intrinsics.cy_px) / intrinsics.fy_px, 1.0])
    hip_cam = ray * z
    points_cam = hip_cam + np.asarray(world_points_m, dtype=np.float64)
    points_ws = extrinsics.to_workstation(points_cam)
    # Depth error moves the point along the ray: its length scales with |ray|.
    sigma = math.hypot(depth.sigma_m * float(np.linalg.norm(ray)), landmark_sigma_m)
    return WorkstationBody(points_ws, sigma, depth_used)
