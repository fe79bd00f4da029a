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
from itertools import chain
from typing import Any

import numpy as np

from hrc_fl.safety.records import frozen_record


@dataclass(frozen=True)
class Capsules:
    """M capsules: segment starts (M,3), ends (M,3) and radii (M,), base frame, metres."""

    starts: np.ndarray
    ends: np.ndarray
    radii_m: np.ndarray

    def __post_init__(self) -> None:
        if self.starts.shape != self.ends.shape or self.starts.ndim != 2 or self.starts.shape[1] != 3:
            raise ValueError(f"capsule starts/ends must both be (M,3), got {self.starts.shape}, {self.ends.shape}")
        if self.radii_m.shape != (self.starts.shape[0],):
            raise ValueError(f"capsule radii must be (M,), got {self.radii_m.shape}")
        if self.starts.shape[0] == 0:
            raise ValueError("a robot needs at least one capsule")

    @cached_property
    def _distance_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-capsule constants of the distance computation, computed once per robot state (see
        :func:`point_capsule_distances`): W (5, 2M), |u|^2 (M,), -1/(2|u|^2) (M,) (0 for a sphere)."""
        return _distance_terms(self.starts, self.ends)

    @classmethod
    def from_points(cls, starts: Sequence[tuple[float, float, float]], ends: Sequence[tuple[float, float, float]],
                    radii_m: np.ndarray) -> Capsules:
        """Capsules from Python-float end points, with the distance constants computed in plain Python and
        everything in one array (for a handful of capsules several times faster than the numpy form;
        same values)."""
        m = len(starts)
        n2 = 2 * m
        # Flat row-major (6, 2M): rows 0-4 W, row 5 [|u|^2 | -1/(2|u|^2)]; then the 2M end points.
        w = [0.0] * (6 * n2)
        for i, ((ax, ay, az), (bx, by, bz)) in enumerate(zip(starts, ends, strict=True)):
            ux, uy, uz = bx - ax, by - ay, bz - az
            length_sq = ux * ux + uy * uy + uz * uz
            j = m + i
            w[i], w[n2 + i], w[2 * n2 + i] = -2.0 * ax, -2.0 * ay, -2.0 * az
            w[3 * n2 + i], w[4 * n2 + i] = 1.0, ax * ax + ay * ay + az * az
            w[j], w[n2 + j], w[2 * n2 + j] = -2.0 * ux, -2.0 * uy, -2.0 * uz
            w[4 * n2 + j] = 2.0 * (ax * ux + ay * uy + az * uz)
            w[5 * n2 + i], w[5 * n2 + j] = length_sq, (-0.5 / length_sq if length_sq > 0.0 else 0.0)
        w.extend(chain.from_iterable(starts))
        w.extend(chain.from_iterable(ends))
        flat = np.array(w, dtype=float)
        terms = flat[:6 * n2].reshape(6, n2)
        endpoints = flat[6 * n2:].reshape(n2, 3)
        capsules = cls(endpoints[:m], endpoints[m:], radii_m)
        # Frozen dataclass: fill the cached properties directly (what functools.cached_property stores).
        capsules.__dict__["_distance_terms"] = (terms[:5], terms[5, :m], terms[5, m:])
        capsules.__dict__["endpoints"] = endpoints
        return capsules

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.starts).all() and np.isfinite(self.ends).all()
                    and np.isfinite(self.radii_m).all())

    @cached_property
    def endpoints(self) -> np.ndarray:
        """(2M,3) all segment end points (used for the robot speed estimate)."""
        return np.concatenate([self.starts, self.ends], axis=0)


def _distance_terms(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W (5, 2M) such that [p, |p|^2, 1] @ W = [|p - a|^2 | -2 (p - a).u] for capsule starts a and axes
    u = end - start, plus |u|^2 (M,) and -1/(2|u|^2) (M,) (0 for a zero-length capsule: t = 0)."""
    m = starts.shape[0]
    axis = ends - starts
    length_sq = np.einsum("ij,ij->i", axis, axis)
    neg_half_inv = np.divide(-0.5, length_sq, out=np.zeros_like(length_sq), where=length_sq > 0.0)
    w = np.empty((5, 2 * m))
    w[:3, :m] = -2.0 * starts.T
    w[3, :m] = 1.0
    w[4, :m] = np.einsum("ij,ij->i", starts, starts)
    w[:3, m:] = -2.0 * axis.T
    w[3, m:] = 0.0
    w[4, m:] = 2.0 * np.einsum("ij,ij->i", starts, axis)
    return w, length_sq, neg_half_inv


def augment_points(points: np.ndarray) -> np.ndarray:
    """(N,5) rows [x, y, z, |p|^2, 1] of keypoints (N,3): the form :func:`point_capsule_distances` takes,
    built once per human observation so that each distance evaluation is a single product."""
    out = np.empty((points.shape[0], 5))
    out[:, :3] = points
    np.einsum("ij,ij->i", points, points, out=out[:, 3])
    out[:, 4] = 1.0
    return out


# np.clip on numpy 1.x goes through a Python wrapper that costs about as much as the ufunc itself;
# the ufunc does the same arithmetic (clip(x, lo, hi) = min(max(x, lo), hi)).
_clip = getattr(getattr(np, "core", None), "umath", None)
_clip = getattr(_clip, "clip", np.clip)


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


def point_capsule_distances(points: np.ndarray, capsules: Capsules, *,
                            augmented: np.ndarray | None = None) -> np.ndarray:
    """(N,M) surface distance from each point (N,3) to each capsule (negative inside a capsule).

    With a = start, u = end - start, t = clip((p - a).u / |u|^2, 0, 1) (t = 0 for a zero-length capsule):
    |p - a - t u|^2 = |p - a|^2 + t (t |u|^2 - 2 (p - a).u). Both |p - a|^2 and -2 (p - a).u for all pairs
    come from one (N,5)x(5,2M) product of the augmented points [p, |p|^2, 1] (``augmented``, from
    :func:`augment_points`; built here when not given); the rest is a few (N,M) element-wise operations,
    in place (about a dozen numpy calls in all: their fixed cost, not the arithmetic, dominates).
    """
    w, length_sq, neg_half_inv = capsules._distance_terms
    m = length_sq.shape[0]
    prod = (augment_points(points) if augmented is None else augmented) @ w   # (N,2M)
    q = prod[:, m:]                                                # -2 (p - a).u
    t = q * neg_half_inv                                           # (p - a).u / |u|^2
    _clip(t, 0.0, 1.0, out=t)
    dist = t * length_sq
    dist += q
    dist *= t
    dist += prod[:, :m]                                            # + |p - a|^2
    np.maximum(dist, 0.0, out=dist)                                # rounding can give -1e-17
    np.sqrt(dist, out=dist)
    dist -= capsules.radii_m
    return dist


def min_separation(points: np.ndarray, capsules: Capsules, *,
                   augmented: np.ndarray | None = None) -> SeparationResult:
    """Minimum surface distance between keypoints (N,3) and capsules, vectorised over all pairs.
    ``augmented``: the points as :func:`augment_points` returns them, when the caller keeps them."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"human keypoints must be (N,3), got {points.shape}")
    if points.shape[0] == 0:
        return SeparationResult(math.inf, -1, -1, np.zeros((0, capsules.starts.shape[0])))
    dist = point_capsule_distances(points, capsules, augmented=augmented)
    flat = int(dist.argmin())
    n, m = divmod(flat, dist.shape[1])
    return frozen_record(SeparationResult, min_distance_m=float(dist.flat[flat]), point_index=n, capsule_index=m,
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
        # Precomputed per-joint constants (frozen dataclass: set through object.__setattr__).
        for name, value in (("_cos_alpha", tuple(math.cos(a) for a in self.alpha_rad)),
                            ("_sin_alpha", tuple(math.sin(a) for a in self.alpha_rad)),
                            ("_radii", np.array([*self.link_radii_m, self.tool.radius_m,
                                                *(c.radius_m for c in self.static)])),
                            ("_static", _static_arrays(self.static)),
                            ("_static_lists", ([tuple(map(float, c.start)) for c in self.static],
                                               [tuple(map(float, c.end)) for c in self.static]))):
            object.__setattr__(self, name, value)

    def _check_positions(self, joint_positions_rad: Sequence[float]) -> list[float]:
        try:  # lists/tuples of numbers (the hot path) without a numpy round trip
            q = [float(v) for v in joint_positions_rad]
        except TypeError:
            q = [float(v) for v in np.asarray(joint_positions_rad, dtype=float).reshape(-1).tolist()]
        if len(q) != len(self.joint_names) or not all(math.isfinite(v) for v in q):
            raise ValueError(f"need {len(self.joint_names)} finite joint positions, got {joint_positions_rad!r}")
        return q

    def _origins(self, q: list[float]) -> tuple[list[tuple[float, float, float]], tuple[tuple[float, ...], ...]]:
        """Frame origins 0..n and the flange rotation (rows) as Python floats (``q`` already checked)."""
        # Plain Python floats, rotation written out: for a 6-joint chain this is several times faster than
        # small numpy products.
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
        px = py = pz = 0.0
        origins = [(0.0, 0.0, 0.0)]
        for qi, off, a, d, ca, sa in zip(q, self.theta_offset_rad, self.a_m, self.d_m,
                                         self._cos_alpha, self._sin_alpha, strict=True):
            ct, st = math.cos(qi + off), math.sin(qi + off)
            # Rz(theta) Tz(d) Tx(a) Rx(alpha): translation (a ct, a st, d), rotation columns
            # (ct, st, 0), (-st ca, ct ca, sa), (st sa, -ct sa, ca).
            tx, ty = a * ct, a * st
            px += r00 * tx + r01 * ty + r02 * d
            py += r10 * tx + r11 * ty + r12 * d
            pz += r20 * tx + r21 * ty + r22 * d
            b0, b1, b2 = -st * ca, ct * ca, sa
            e0, e1, e2 = st * sa, -ct * sa, ca
            r00, r01, r02 = r00 * ct + r01 * st, r00 * b0 + r01 * b1 + r02 * b2, r00 * e0 + r01 * e1 + r02 * e2
            r10, r11, r12 = r10 * ct + r11 * st, r10 * b0 + r11 * b1 + r12 * b2, r10 * e0 + r11 * e1 + r12 * e2
            r20, r21, r22 = r20 * ct + r21 * st, r20 * b0 + r21 * b1 + r22 * b2, r20 * e0 + r21 * e1 + r22 * e2
            origins.append((px, py, pz))
        return origins, ((r00, r01, r02), (r10, r11, r12), (r20, r21, r22))

    def frame_origins(self, joint_positions_rad: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Origins (n+1,3) of frames 0..n and the flange rotation (3,3), base frame."""
        origins, rot = self._origins(self._check_positions(joint_positions_rad))
        return np.array(origins), np.array(rot)

    def capsules(self, joint_positions_rad: Sequence[float]) -> Capsules:
        """Link capsules, the tool capsule and the static capsules for joint positions (chain order, rad)."""
        origins, rot = self._origins(self._check_positions(joint_positions_rad))
        (fx, fy, fz), zx, zy, zz = origins[-1], rot[0][2], rot[1][2], rot[2][2]
        length = self.tool.length_m
        s_starts, s_ends = self._static_lists
        # Link starts + flange (tool start), then static capsules.
        return Capsules.from_points(origins + s_starts,
                                    [*origins[1:], (fx + zx * length, fy + zy * length, fz + zz * length), *s_ends],
                                    self._radii)

    def positions_from(self, names: Sequence[str], positions: Sequence[float]) -> list[float]:
        """Joint positions (rad, Python floats) in chain order from a JointState-like (names, positions);
        ValueError if a chain joint is missing or the lists differ in length."""
        if len(names) != len(positions):
            raise ValueError(f"joint names ({len(names)}) and positions ({len(positions)}) differ in length")
        if tuple(names) == self.joint_names:  # the usual case: the driver publishes in chain order
            return [float(v) for v in positions]
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise ValueError(f"joint state lacks joints {missing}")
        return [float(positions[index[n]]) for n in self.joint_names]


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
