"""Human-robot distance: robot as capsules (segment + radius), human as keypoints, all in the robot base
frame (``base_link``, metres, REP-103).

Capsules come either from a TCP pose plus a tool capsule, or from joint positions through a standard
Denavit-Hartenberg chain (one capsule per link between consecutive frame origins, plus the tool).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

import numpy as np

from hrc_fl.safety.kernels import capsule_distances, dh_frames, dh_segments, kernel_array
from hrc_fl.safety.records import frozen_record


@dataclass(frozen=True)
class Capsules:
    """M capsules: segment starts (M,3), ends (M,3) and radii (M,), base frame, metres (stored as
    C-contiguous float64, the form the compiled kernels take)."""

    starts: np.ndarray
    ends: np.ndarray
    radii_m: np.ndarray

    def __post_init__(self) -> None:
        for name in ("starts", "ends", "radii_m"):
            object.__setattr__(self, name, kernel_array(getattr(self, name)))
        if self.starts.shape != self.ends.shape or self.starts.ndim != 2 or self.starts.shape[1] != 3:
            raise ValueError(f"capsule starts/ends must both be (M,3), got {self.starts.shape}, {self.ends.shape}")
        if self.radii_m.shape != (self.starts.shape[0],):
            raise ValueError(f"capsule radii must be (M,), got {self.radii_m.shape}")
        if self.starts.shape[0] == 0:
            raise ValueError("a robot needs at least one capsule")

    @classmethod
    def from_segments(cls, segments: np.ndarray, radii_m: np.ndarray) -> Capsules:
        """Capsules from a kernel's (2,M,3) [starts; ends] (float64, C order, M >= 1) and radii (M,)
        float64: views, no copy, no checks (the hot path: :meth:`DhChain.capsules`)."""
        capsules = frozen_record(cls, starts=segments[0], ends=segments[1], radii_m=radii_m)
        capsules.__dict__["segments"] = segments  # what functools.cached_property stores
        return capsules

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.starts).all() and np.isfinite(self.ends).all()
                    and np.isfinite(self.radii_m).all())

    @cached_property
    def segments(self) -> np.ndarray:
        """(2,M,3) [starts; ends]: the layout of :mod:`hrc_fl.safety.kernels`."""
        return np.stack([self.starts, self.ends])

    @cached_property
    def endpoints(self) -> np.ndarray:
        """(2M,3) all segment end points, starts first."""
        return self.segments.reshape(-1, 3)


@dataclass(frozen=True)
class SeparationResult:
    """Minimum surface distance and where it is. NaN/-1 fields when there is no human point."""

    min_distance_m: float          # min over all pairs of |p - segment| - radius (negative: inside)
    point_index: int               # index of the closest human keypoint
    capsule_index: int             # index of the closest capsule
    pair_distances_m: np.ndarray   # (N,M) every keypoint-capsule surface distance
    closest_point_m: np.ndarray | None = None  # (3,) the closest human keypoint (None without points)
    capsules: Capsules | None = None           # the capsules measured against

    @cached_property
    def closest_robot_point(self) -> np.ndarray:
        """(3,) closest point on the closest capsule's surface (computed on demand: only markers need it)."""
        if self.capsules is None or self.closest_point_m is None or self.capsule_index < 0:
            return np.full(3, np.nan)
        m, caps = self.capsule_index, self.capsules
        a, b, p = caps.starts[m].tolist(), caps.ends[m].tolist(), self.closest_point_m.tolist()
        ab = [b[k] - a[k] for k in range(3)]
        denom = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]
        t = 0.0 if denom == 0.0 else min(1.0, max(0.0, sum((p[k] - a[k]) * ab[k] for k in range(3)) / denom))
        on_axis = [a[k] + t * ab[k] for k in range(3)]
        direction = [p[k] - on_axis[k] for k in range(3)]
        norm = math.sqrt(sum(c * c for c in direction))
        scale = 0.0 if norm == 0.0 else float(caps.radii_m[m]) / norm
        return np.array([on_axis[k] + direction[k] * scale for k in range(3)])

    @cached_property
    def point_distances_m(self) -> np.ndarray:
        """(N,) per keypoint minimum over capsules (computed on demand: only markers need it)."""
        if self.pair_distances_m.shape[0] == 0:
            return np.zeros(0)
        return self.pair_distances_m.min(axis=1)


def _points_array(points: np.ndarray) -> np.ndarray:
    """Keypoints as (N,3) C-contiguous float64 (the kernels' form); ValueError for another shape."""
    points = kernel_array(points)
    shape = points.shape
    if len(shape) != 2 or shape[1] != 3:
        raise ValueError(f"human keypoints must be (N,3), got {points.shape}")
    return points


def point_capsule_distances(points: np.ndarray, capsules: Capsules) -> np.ndarray:
    """(N,M) surface distance from each point (N,3) to each capsule (negative inside a capsule): with
    a = start, u = end - start, t = clip((p - a).u / |u|^2, 0, 1) (t = 0 for a zero-length capsule),
    |p - a - t u| - radius (:func:`hrc_fl.safety.kernels.capsule_distances`)."""
    return capsule_distances(_points_array(points), capsules.segments, capsules.radii_m)[0]


def min_separation(points: np.ndarray, capsules: Capsules) -> SeparationResult:
    """Minimum surface distance between keypoints (N,3) and capsules over all pairs, in one compiled
    pass (NaN when a keypoint is NaN; ties: the first pair in row-major order)."""
    points = _points_array(points)
    if points.shape[0] == 0:
        return SeparationResult(math.inf, -1, -1, np.zeros((0, capsules.starts.shape[0])))
    dist, flat = capsule_distances(points, capsules.segments, capsules.radii_m)
    n, m = divmod(flat, dist.shape[1])
    return frozen_record(SeparationResult, min_distance_m=dist.item(flat), point_index=n, capsule_index=m,
                         pair_distances_m=dist, closest_point_m=points[n], capsules=capsules)


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Rotation matrix (3,3) of a quaternion; raises ValueError if it is not (close to) unit length."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or abs(norm - 1.0) > 1e-2:
        raise ValueError(f"orientation quaternion must be unit length, |q| = {norm!r}")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass(frozen=True)
class ToolCapsule:
    """Tool (plus flange) capsule: from the flange/TCP origin along its +z axis, metres."""

    length_m: float
    radius_m: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.length_m) and self.length_m >= 0.0):
            raise ValueError(f"tool length must be finite and >= 0, got {self.length_m!r}")
        if not (math.isfinite(self.radius_m) and self.radius_m > 0.0):
            raise ValueError(f"tool radius must be finite and > 0, got {self.radius_m!r}")


@dataclass(frozen=True)
class StaticCapsule:
    """A fixed capsule in the base frame (pedestal, fixtures)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius_m: float


def _static_arrays(static: Sequence[StaticCapsule]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.array([c.start for c in static], dtype=float).reshape(-1, 3)
    ends = np.array([c.end for c in static], dtype=float).reshape(-1, 3)
    radii = np.array([c.radius_m for c in static], dtype=float)
    return starts, ends, radii


def tcp_capsules(position: Sequence[float], orientation_xyzw: Sequence[float], *, tool: ToolCapsule,
                 static: Sequence[StaticCapsule] = ()) -> Capsules:
    """Capsules from a TCP pose (base frame): the tool capsule from the TCP back along the tool's -z by
    ``tool.length_m`` (the TCP is the tool tip), plus fixed capsules. Does not cover the arm links:
    use joint states where the arm matters, or a large tool radius."""
    p = np.asarray(position, dtype=float)
    if p.shape != (3,) or not np.isfinite(p).all():
        raise ValueError(f"TCP position must be 3 finite numbers, got {position!r}")
    rot = quaternion_to_matrix(*orientation_xyzw)
    back = p - rot[:, 2] * tool.length_m
    s_starts, s_ends, s_radii = _static_arrays(static)
    return Capsules(np.vstack([back[None, :], s_starts]), np.vstack([p[None, :], s_ends]),
                    np.concatenate([[tool.radius_m], s_radii]))


@dataclass(frozen=True)
class DhChain:
    """Serial arm in standard Denavit-Hartenberg form: T_i = Rz(theta_i + offset_i) Tz(d_i) Tx(a_i) Rx(alpha_i).

    One capsule per link between the origins of frames i-1 and i (radius ``link_radii_m[i]``; zero-length
    links become spheres), plus the tool capsule along the flange's +z, plus ``static`` capsules.
    The DH line of a link need not run through the physical link (UR arms have lateral offsets), so
    radii must be chosen to cover the real link around that line.
    """

    joint_names: tuple[str, ...]
    a_m: tuple[float, ...]
    d_m: tuple[float, ...]
    alpha_rad: tuple[float, ...]
    theta_offset_rad: tuple[float, ...]
    link_radii_m: tuple[float, ...]
    tool: ToolCapsule
    static: tuple[StaticCapsule, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0:
            raise ValueError("a DH chain needs at least one joint")
        for name in ("a_m", "d_m", "alpha_rad", "theta_offset_rad", "link_radii_m"):
            col = getattr(self, name)
            if len(col) != n:
                raise ValueError(f"DH {name} has {len(col)} entries, expected {n} (one per joint)")
            if not all(math.isfinite(v) for v in col):
                raise ValueError(f"DH {name} must be finite: {col}")
        if any(r <= 0.0 for r in self.link_radii_m):
            raise ValueError(f"link radii must be > 0: {self.link_radii_m}")
        if len(set(self.joint_names)) != n:
            raise ValueError(f"joint names must be unique: {self.joint_names}")
        # Precomputed per-chain constants in the kernels' form (frozen dataclass: object.__setattr__).
        dh = np.array([[off, a, d, math.cos(al), math.sin(al)] for off, a, d, al in
                       zip(self.theta_offset_rad, self.a_m, self.d_m, self.alpha_rad, strict=True)])
        static_starts, static_ends, _ = _static_arrays(self.static)
        for name, value in (("_dh", dh),
                            ("_radii", np.array([*self.link_radii_m, self.tool.radius_m,
                                                *(c.radius_m for c in self.static)])),
                            ("_static_segments", np.ascontiguousarray(np.stack([static_starts, static_ends])))):
            object.__setattr__(self, name, value)

    def _positions_array(self, joint_positions_rad: Sequence[float] | np.ndarray) -> np.ndarray:
        q = kernel_array(np.asarray(joint_positions_rad, dtype=np.float64))  # a tuple: asarray is the fast path
        if q.shape != (len(self.joint_names),):
            self._bad_positions(q)
        return q

    def _bad_positions(self, q: np.ndarray) -> NoReturn:
        raise ValueError(f"need {len(self.joint_names)} finite joint positions, got {q.tolist()!r}")

    def frame_origins(self, joint_positions_rad: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Origins (n+1,3) of frames 0..n and the flange rotation (3,3), base frame."""
        q = self._positions_array(joint_positions_rad)
        origins, rotation = dh_frames(q, self._dh)
        if math.isnan(rotation[0, 0]):
            self._bad_positions(q)
        return origins, rotation

    def capsules(self, joint_positions_rad: Sequence[float] | np.ndarray) -> Capsules:
        """Link capsules, the tool capsule and the static capsules for joint positions (chain order, rad)."""
        q = self._positions_array(joint_positions_rad)
        segments = dh_segments(q, self._dh, self.tool.length_m, self._static_segments)
        if segments.shape[1] == 0:
            self._bad_positions(q)
        return Capsules.from_segments(segments, self._radii)

    def positions_from(self, names: Sequence[str], positions: Sequence[float]) -> tuple[float, ...]:
        """Joint positions (rad, Python floats) in chain order from a JointState-like (names, positions);
        ValueError if a chain joint is missing or the lists differ in length."""
        if len(names) != len(positions):
            raise ValueError(f"joint names ({len(names)}) and positions ({len(positions)}) differ in length")
        if tuple(names) == self.joint_names:  # the usual case: the driver publishes in chain order
            return tuple(map(float, positions))
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise ValueError(f"joint state lacks joints {missing}")
        return tuple(float(positions[index[n]]) for n in self.joint_names)


@dataclass(frozen=True)
class RobotModel:
    """Robot geometry and stopping data loaded from ``config/robot_<name>.yaml``."""

    name: str
    base_frame: str
    chain: DhChain
    tcp_tool: ToolCapsule
    static: tuple[StaticCapsule, ...]
    max_speed_mps: float
    reaction_time_s: float
    stopping_speeds_mps: tuple[float, ...]
    stopping_times_s: tuple[float, ...]
    stopping_distances_m: tuple[float, ...]
    position_uncertainty_m: float

    @property
    def reach_m(self) -> float:
        """Upper bound (m) on the distance of any point of the robot's capsules from the base origin, in
        any joint configuration: the DH links' lengths plus the tool, plus the largest radius (and the
        static capsules)."""
        c = self.chain
        links = sum(math.hypot(a, d) for a, d in zip(c.a_m, c.d_m, strict=True)) + c.tool.length_m
        arm = links + max(*c.link_radii_m, c.tool.radius_m)
        fixed = 0.0
        if self.static:
            fixed = (max(math.hypot(*p) for s in self.static for p in (s.start, s.end))
                     + max(s.radius_m for s in self.static))
        return max(arm, fixed)


def _floats(mapping: Mapping[str, Any], key: str) -> tuple[float, ...]:
    if key not in mapping:
        raise ValueError(f"robot config lacks {key!r}")
    return tuple(float(v) for v in mapping[key])


def robot_model_from_dict(doc: Mapping[str, Any]) -> RobotModel:
    """Parse the ``robot:`` section of a robot config file; ValueError naming the missing/bad key."""
    if "robot" not in doc:
        raise ValueError("robot config must have a top-level 'robot' key")
    r = doc["robot"]
    try:
        dh = r["dh"]
        static = tuple(StaticCapsule(tuple(map(float, c["start"])), tuple(map(float, c["end"])),
                                     float(c["radius_m"])) for c in r.get("static_capsules", []))
        tool = ToolCapsule(float(r["tool"]["length_m"]), float(r["tool"]["radius_m"]))
        tcp_tool = ToolCapsule(float(r["tcp_capsule"]["length_m"]), float(r["tcp_capsule"]["radius_m"]))
        chain = DhChain(tuple(str(n) for n in r["joint_names"]), _floats(dh, "a_m"), _floats(dh, "d_m"),
                        _floats(dh, "alpha_rad"), _floats(dh, "theta_offset_rad"),
                        _floats(r, "link_radii_m"), tool, static)
        stop = r["stopping"]
        model = RobotModel(
            name=str(r["name"]), base_frame=str(r.get("base_frame", "base_link")), chain=chain,
            tcp_tool=tcp_tool, static=static, max_speed_mps=float(r["max_speed_mps"]),
            reaction_time_s=float(r["reaction_time_s"]), stopping_speeds_mps=_floats(stop, "speed_mps"),
            stopping_times_s=_floats(stop, "stopping_time_s"),
            stopping_distances_m=_floats(stop, "stopping_distance_m"),
            position_uncertainty_m=float(r["position_uncertainty_m"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"robot config is missing or has a malformed entry: {exc}") from exc
    if not (math.isfinite(model.max_speed_mps) and model.max_speed_mps > 0.0):
        raise ValueError(f"max_speed_mps must be > 0, got {model.max_speed_mps}")
    if model.max_speed_mps > model.stopping_speeds_mps[-1]:
        raise ValueError(f"stopping table (up to {model.stopping_speeds_mps[-1]} m/s) must cover "
                         f"max_speed_mps {model.max_speed_mps}")
    return model
