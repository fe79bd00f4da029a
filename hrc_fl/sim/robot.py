"""A simulated 6-axis cobot (UR5e kinematics) that follows a joint-space path and obeys a speed
scale, failing safe: no scale yet, a stale scale or a non-finite one all mean speed 0. ROS-free.

Frames: joint angles in rad; TCP pose in the robot base frame (``base_link``), metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: UR5e standard DH parameters (Universal Robots' published values): d, a, alpha per joint.
UR5E_DH_D_M = (0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996)
UR5E_DH_A_M = (0.0, -0.425, -0.3922, 0.0, 0.0, 0.0)
UR5E_DH_ALPHA_RAD = (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)
UR5E_JOINT_NAMES = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                    "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")


def forward_kinematics(joints_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UR5e TCP pose for 6 joint angles (rad): position (3,) in metres and quaternion (x, y, z, w),
    both in the base frame."""
    q = np.asarray(joints_rad, dtype=float)
    if q.shape != (6,):
        raise ValueError(f"expected 6 joint angles, got shape {q.shape}")
    t = np.eye(4)
    for theta, d, a, alpha in zip(q, UR5E_DH_D_M, UR5E_DH_A_M, UR5E_DH_ALPHA_RAD, strict=True):
        ct, st, ca, sa = math.cos(theta), math.sin(theta), math.cos(alpha), math.sin(alpha)
        t = t @ np.array([[ct, -st * ca, st * sa, a * ct],
                          [st, ct * ca, -ct * sa, a * st],
                          [0.0, sa, ca, d],
                          [0.0, 0.0, 0.0, 1.0]])
    return t[:3, 3].copy(), _quaternion(t[:3, :3])


def _quaternion(r: np.ndarray) -> np.ndarray:
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    trace = float(np.trace(r))
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1e-12, 1.0 + r[i, i] - r[j, j] - r[k, k]))
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
    quat = np.array(q)
    return quat / np.linalg.norm(quat)


@dataclass(frozen=True)
class RobotSimConfig:
    """Path and limits of the simulated robot."""

    waypoints_rad: np.ndarray            # (N, 6) joint-space path, traversed in a loop
    joint_speed_rad_s: float = 1.0       # speed of the fastest-moving joint at scale 1
    scale_timeout_s: float = 0.5         # a speed scale older than this is stale -> stop
    stop_time_s: float = 0.3             # time to ramp the applied scale from 1 to 0 (and back)

    def __post_init__(self) -> None:
        w = np.asarray(self.waypoints_rad, dtype=float)
        if w.ndim != 2 or w.shape[1] != 6 or w.shape[0] < 2:
            raise ValueError(f"waypoints_rad must be (N>=2, 6), got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("waypoints_rad must be finite")
        if np.any(np.all(np.isclose(np.diff(np.vstack([w, w[:1]]), axis=0), 0.0), axis=1)):
            raise ValueError("consecutive waypoints must differ")
        for name in ("joint_speed_rad_s", "scale_timeout_s", "stop_time_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        object.__setattr__(self, "waypoints_rad", w)

    @staticmethod
    def from_flat(waypoints_flat_rad: list[float], **kwargs: float) -> RobotSimConfig:
        """From a flat list of 6*N joint angles (the ROS parameter form)."""
        if len(waypoints_flat_rad) % 6:
            raise ValueError(f"waypoints need 6 values each, got {len(waypoints_flat_rad)} values")
        return RobotSimConfig(np.asarray(waypoints_flat_rad, dtype=float).reshape(-1, 6), **kwargs)


@dataclass
class RobotState:
    """One simulation step's output."""

    t_s: float
    joints_rad: np.ndarray
    joint_velocities_rad_s: np.ndarray
    tcp_position_m: np.ndarray
    tcp_orientation_xyzw: np.ndarray
    tcp_speed_mps: float
    commanded_scale: float               # what the safety side asked for (0 when stale/missing)
    applied_scale: float                 # after the ramp limit
    scale_stale: bool
    segment: int


@dataclass
class RobotSim:
    """Moves along the configured loop; call :meth:`set_scale` on each speed-scale message and
    :meth:`step` at the control rate. Time is any monotonic clock in seconds."""

    config: RobotSimConfig
    _segment: int = 0
    _fraction: float = 0.0               # progress along the current segment, 0..1
    _applied_scale: float = 0.0
    _scale: float | None = None
    _scale_time_s: float = -math.inf
    _last_t_s: float | None = None
    _joints: np.ndarray = field(init=False)
    _tcp: np.ndarray = field(init=False)
    rejected_scales: int = 0

    def __post_init__(self) -> None:
        self._joints = self.config.waypoints_rad[0].copy()
        self._tcp = forward_kinematics(self._joints)[0]

    def set_scale(self, scale: float, t_s: float) -> bool:
        """Record a commanded speed scale (0..1) received at ``t_s``. Non-finite values are
        rejected (False) and leave the previous one to go stale; values are clipped to 0..1."""
        if not math.isfinite(scale):
            self.rejected_scales += 1
            return False
        self._scale = min(1.0, max(0.0, float(scale)))
        self._scale_time_s = t_s
        return True

    def commanded_scale(self, t_s: float) -> tuple[float, bool]:
        """(scale, stale): 0 and stale=True when no scale arrived or it is older than the timeout."""
        stale = self._scale is None or t_s - self._scale_time_s > self.config.scale_timeout_s
        return (0.0 if stale else float(self._scale)), stale

    def step(self, t_s: float) -> RobotState:
        dt = 0.0 if self._last_t_s is None else max(0.0, t_s - self._last_t_s)
        self._last_t_s = t_s
        target, stale = self.commanded_scale(t_s)
        max_change = dt / self.config.stop_time_s
        self._applied_scale += float(np.clip(target - self._applied_scale, -max_change, max_change))
        before = self._joints.copy()
        self._advance(self._applied_scale * self.config.joint_speed_rad_s * dt)
        tcp, quat = forward_kinematics(self._joints)
        velocities = (self._joints - before) / dt if dt > 0 else np.zeros(6)
        tcp_speed = float(np.linalg.norm(tcp - self._tcp) / dt) if dt > 0 else 0.0
        self._tcp = tcp
        return RobotState(t_s=t_s, joints_rad=self._joints.copy(), joint_velocities_rad_s=velocities,
                          tcp_position_m=tcp, tcp_orientation_xyzw=quat, tcp_speed_mps=tcp_speed,
                          commanded_scale=target, applied_scale=self._applied_scale, scale_stale=stale,
                          segment=self._segment)

    def _advance(self, joint_travel_rad: float) -> None:
        # Move the fastest joint by joint_travel_rad along the path, crossing waypoints as needed.
        w = self.config.waypoints_rad
        while joint_travel_rad > 0:
            start, end = w[self._segment], w[(self._segment + 1) % len(w)]
            length = float(np.max(np.abs(end - start)))
            remaining = (1.0 - self._fraction) * length
            if joint_travel_rad < remaining:
                self._fraction += joint_travel_rad / length
                joint_travel_rad = 0.0
            else:
                joint_travel_rad -= remaining
                self._segment = (self._segment + 1) % len(w)
                self._fraction = 0.0
            start, end = w[self._segment], w[(self._segment + 1) % len(w)]
            self._joints = start + self._fraction * (end - start)
