"""ROS-free builders of visualisation markers for the safety monitor (plain data; the node converts them
to ``visualization_msgs/Marker``). Frame: the robot base frame; metres.

Drawn: the robot capsules (grey), each zone boundary as a translucent capsule shell around every robot
capsule (stop red, reduced-speed orange, warning yellow), human keypoints coloured by the zone their own
distance falls in, a line between the closest human and robot points, and a text label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hrc_fl.safety.geometry import Capsules
from hrc_fl.safety.monitor import SafetyDecision
from hrc_fl.safety.zones import Zone

#: RGBA per zone (scanner convention: green, yellow, orange, red).
ZONE_COLORS: dict[Zone, tuple[float, float, float, float]] = {
    Zone.CLEAR: (0.1, 0.8, 0.2, 1.0),
    Zone.WARNING: (1.0, 0.85, 0.0, 1.0),
    Zone.REDUCED_SPEED: (1.0, 0.5, 0.0, 1.0),
    Zone.PROTECTIVE_STOP: (0.9, 0.05, 0.05, 1.0),
}
ROBOT_COLOR = (0.6, 0.6, 0.65, 0.9)
UNKNOWN_COLOR = (0.5, 0.5, 0.5, 1.0)
IDENTITY_XYZW = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class MarkerSpec:
    """One marker. ``kind``: sphere_list, cylinder, line_list or text (the Marker types of those names)."""

    ns: str
    marker_id: int
    kind: str
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation_xyzw: tuple[float, float, float, float] = IDENTITY_XYZW
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    colors: tuple[tuple[float, float, float, float], ...] = ()
    text: str = ""


def align_z_quaternion(direction: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) rotating +z onto ``direction`` (identity for a zero vector)."""
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        return IDENTITY_XYZW
    d = direction / norm
    dot = float(d[2])  # z . d
    if dot < -1.0 + 1e-9:
        return (1.0, 0.0, 0.0, 0.0)  # 180 degrees about x
    axis = np.cross((0.0, 0.0, 1.0), d)
    w = 1.0 + dot
    q = np.array([axis[0], axis[1], axis[2], w])
    q /= np.linalg.norm(q)
    return (float(q[0]), float(q[1]), float(q[2]), float(q[3]))


@dataclass(frozen=True)
class CapsuleGeometry:
    """What the capsule markers need of one capsule, in Python floats (computed once per decision and
    shared by the robot and the three zone shells)."""

    mid: tuple[float, float, float]
    orientation_xyzw: tuple[float, float, float, float]
    length_m: float
    radius_m: float
    ends: np.ndarray  # (2,3) start and end point


def capsule_geometry(capsules: Capsules) -> list[CapsuleGeometry]:
    out = []
    for start, end, radius in zip(capsules.starts.tolist(), capsules.ends.tolist(), capsules.radii_m.tolist(),
                                  strict=True):
        axis = np.array([end[k] - start[k] for k in range(3)])
        out.append(CapsuleGeometry(tuple((start[k] + end[k]) / 2.0 for k in range(3)), align_z_quaternion(axis),
                                   math.sqrt(float(axis @ axis)), float(radius), np.array([start, end])))
    return out


def capsule_markers(capsules: Capsules, *, ns: str, inflate_m: float,
                    color: tuple[float, float, float, float], first_id: int = 0,
                    geometry: list[CapsuleGeometry] | None = None) -> list[MarkerSpec]:
    """Each capsule inflated by ``inflate_m``: a cylinder plus a sphere list for its two end caps.
    ``geometry``: :func:`capsule_geometry` of ``capsules`` when the caller has it already."""
    out: list[MarkerSpec] = []
    for i, g in enumerate(capsule_geometry(capsules) if geometry is None else geometry):
        diameter = 2.0 * (g.radius_m + inflate_m)
        if not math.isfinite(diameter) or diameter <= 0.0:
            continue
        if g.length_m > 0.0:
            out.append(MarkerSpec(ns, first_id + 2 * i, "cylinder", g.mid, g.orientation_xyzw,
                                  (diameter, diameter, g.length_m), color))
        out.append(MarkerSpec(ns, first_id + 2 * i + 1, "sphere_list", scale=(diameter, diameter, diameter),
                              color=color, points=g.ends))
    return out


def point_zone(distance_m: float, decision: SafetyDecision) -> Zone | None:
    """Zone a single keypoint's distance falls in (None when the thresholds are unknown)."""
    if not math.isfinite(decision.stop_distance_m):
        return None
    if distance_m < decision.stop_distance_m:
        return Zone.PROTECTIVE_STOP
    if distance_m < decision.reduced_speed_distance_m:
        return Zone.REDUCED_SPEED
    if distance_m < decision.warning_distance_m:
        return Zone.WARNING
    return Zone.CLEAR


def label_text(decision: SafetyDecision) -> str:
    sep = decision.min_separation_m
    sep_text = "nobody" if sep == math.inf else ("?" if not math.isfinite(sep) else f"{sep:.2f} m")
    sp = decision.protective_separation_m
    sp_text = f"{sp:.2f} m" if math.isfinite(sp) else "?"
    lines = [f"{decision.zone.name}  scale {decision.speed_scale:.2f}", f"d {sep_text}  S_p {sp_text}"]
    if decision.reset_required:
        lines.append("RESET REQUIRED")
    if decision.reasons:
        lines.append(decision.reasons[0][:80])
    return "\n".join(lines)


def safety_markers(decision: SafetyDecision, *, zone_alpha: float = 0.12,
                   keypoint_diameter_m: float = 0.05) -> list[MarkerSpec]:
    """All markers for one decision (stable namespaces and ids, so they replace the previous ones)."""
    out: list[MarkerSpec] = []
    caps = decision.capsules
    if caps is not None:
        geometry = capsule_geometry(caps)
        out += capsule_markers(caps, ns="robot", inflate_m=0.0, color=ROBOT_COLOR, geometry=geometry)
        bands = ((Zone.PROTECTIVE_STOP, decision.stop_distance_m),
                 (Zone.REDUCED_SPEED, decision.reduced_speed_distance_m),
                 (Zone.WARNING, decision.warning_distance_m))
        for zone, distance in bands:
            if math.isfinite(distance):
                r, g, b, _ = ZONE_COLORS[zone]
                out += capsule_markers(caps, ns=f"zone_{zone.name.lower()}", inflate_m=distance,
                                       color=(r, g, b, zone_alpha), geometry=geometry)
    points = decision.human_points_m
    if points.shape[0] > 0:
        colors = []
        for dist in decision.point_distances_m.tolist():
            zone = point_zone(dist, decision)
            colors.append(UNKNOWN_COLOR if zone is None else ZONE_COLORS[zone])
        out.append(MarkerSpec("human_keypoints", 0, "sphere_list",
                              scale=(keypoint_diameter_m,) * 3, color=(1.0, 1.0, 1.0, 1.0),
                              points=points, colors=tuple(colors)))
    if decision.closest_human_point_m is not None and decision.closest_robot_point_m is not None:
        out.append(MarkerSpec("closest", 0, "line_list", scale=(0.01, 0.0, 0.0),
                              color=ZONE_COLORS[decision.zone],
                              points=np.stack([decision.closest_human_point_m, decision.closest_robot_point_m])))
    top = 1.2
    if caps is not None:
        top = float(max(caps.starts[:, 2].max(), caps.ends[:, 2].max())) + 0.4
    out.append(MarkerSpec("label", 0, "text", position=(0.0, 0.0, top), scale=(0.0, 0.0, 0.08),
                          color=ZONE_COLORS[decision.zone], text=label_text(decision)))
    return out
