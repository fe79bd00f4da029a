"""The demo's scripted worker: where the worker stands and what the camera shows, over time. ROS-free.

Replayed photos are static, so a worker cannot walk up to the robot in them. The scenario therefore
moves *real* detections: the pose node's keypoints (from real photos) are translated in the
workstation frame so that the body's centre follows a scripted distance from the robot base, while
the detection's own shape and frame-to-frame jitter are kept. The STOP gesture is a real open-palm
photo shown to the camera during a scripted window. Both are scripted motion on real detections,
and the report says so.

Frames: workstation frame = robot base ``base_link`` (metres); the worker approaches along
``approach_direction`` (unit vector in the xy plane, pointing from the robot to the worker).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from hrc_fl.safety.geometry import RobotModel
from hrc_fl.safety.separation import SeparationParameters, protective_separation_m

#: Ground truth of a false stop (stated in the report): the worker's body reaches this far around its
#: scripted centre, and a stop counts as false only beyond the true protective distance plus this margin
#: (it covers what a healthy perception adds: 1.6 m/s x 0.15 s of latency plus 3 sigma of the pose).
BODY_RADIUS_M = 0.3
FALSE_STOP_MARGIN_M = 0.5


@dataclass(frozen=True)
class Keyframe:
    """At ``at`` (fraction 0..1 of the scenario length) the worker's centre is ``distance_m`` from
    the robot base; linear in between."""

    at: float
    distance_m: float


#: Shift start (reset), approach to 0.5 m, hold, retreat; then a reset, a STOP gesture, another reset.
DEFAULT_KEYFRAMES = (
    Keyframe(0.00, 4.0), Keyframe(0.08, 4.0), Keyframe(0.32, 0.5), Keyframe(0.40, 0.5),
    Keyframe(0.54, 4.0), Keyframe(1.00, 4.0),
)


@dataclass(frozen=True)
class ScenarioConfig:
    """Timing of the scripted events as fractions of ``length_s``."""

    length_s: float
    keyframes: tuple[Keyframe, ...] = DEFAULT_KEYFRAMES
    reset_at: tuple[float, ...] = (0.04, 0.60, 0.84)    # operator acknowledges (safety/reset)
    gesture_window: tuple[float, float] = (0.66, 0.76)  # the worker shows an open palm
    approach_direction: tuple[float, float] = (1.0, 0.0)
    smoothing_time_s: float = 2.0                        # reference centre: EMA of real detections

    def __post_init__(self) -> None:
        if not (math.isfinite(self.length_s) and self.length_s > 0):
            raise ValueError(f"length_s must be positive, got {self.length_s}")
        ats = [k.at for k in self.keyframes]
        if len(ats) < 2 or ats[0] != 0.0 or ats != sorted(ats) or ats[-1] > 1.0:
            raise ValueError("keyframes must start at 0, be sorted and end by 1")
        if any(k.distance_m < 0 for k in self.keyframes):
            raise ValueError("keyframe distances must be >= 0")
        lo, hi = self.gesture_window
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"gesture_window must be 0 <= start < end <= 1, got {self.gesture_window}")
        if math.hypot(*self.approach_direction) < 1e-6:
            raise ValueError("approach_direction must be non-zero")
        if not self.smoothing_time_s > 0:
            raise ValueError("smoothing_time_s must be positive")


class Scenario:
    """Answers, for a scenario time ``t_s`` (seconds since start), where the worker is and what
    happens."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        d = np.asarray(config.approach_direction, dtype=float)
        self._direction = d / np.linalg.norm(d)

    def worker_distance_m(self, t_s: float) -> float:
        f = min(1.0, max(0.0, t_s / self.config.length_s))
        frames = self.config.keyframes
        for a, b in itertools.pairwise(frames):
            if f <= b.at:
                span = b.at - a.at
                w = 0.0 if span == 0 else (f - a.at) / span
                return a.distance_m + w * (b.distance_m - a.distance_m)
        return frames[-1].distance_m

    def worker_position_xy(self, t_s: float) -> np.ndarray:
        """Scripted centre of the worker in the workstation frame (m)."""
        return self._direction * self.worker_distance_m(t_s)

    def gesture_shown(self, t_s: float) -> bool:
        lo, hi = self.config.gesture_window
        return lo * self.config.length_s <= t_s < hi * self.config.length_s

    def resets_due(self, t_prev_s: float, t_s: float) -> int:
        """How many scripted operator resets fall in (t_prev_s, t_s]."""
        return sum(t_prev_s < r * self.config.length_s <= t_s for r in self.config.reset_at)

    def phase(self, t_s: float) -> str:
        """A short name of what the worker does (for progress lines and the report)."""
        if self.gesture_shown(t_s):
            return "STOP gesture"
        now, later = self.worker_distance_m(t_s), self.worker_distance_m(t_s + 0.5)
        if later < now - 1e-6:
            return "approaching"
        if later > now + 1e-6:
            return "retreating"
        return "close to the robot" if now < 1.0 else "at a distance"


class BodyShifter:
    """Translates real keypoints so the body's centre sits at a scripted position.

    The reference centre is a moving average of the real detections (time constant
    ``smoothing_time_s``), so the detections' own jitter around it is preserved.
    """

    def __init__(self, smoothing_time_s: float = 2.0) -> None:
        if not smoothing_time_s > 0:
            raise ValueError("smoothing_time_s must be positive")
        self._tau_s = smoothing_time_s
        self._reference: np.ndarray | None = None
        self._last_t_s: float | None = None

    def shift(self, points_xyz: np.ndarray, target_xy: np.ndarray, t_s: float) -> np.ndarray:
        """(N, 3) points in metres (NaN where unknown) -> translated copy; unchanged if no point is
        finite."""
        pts = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        finite = np.all(np.isfinite(pts), axis=1)
        if not finite.any():
            return pts.copy()
        centre = pts[finite, :2].mean(axis=0)
        if self._reference is None or self._last_t_s is None:
            self._reference = centre
        else:
            alpha = 1.0 - math.exp(-max(0.0, t_s - self._last_t_s) / self._tau_s)
            self._reference = self._reference + alpha * (centre - self._reference)
        self._last_t_s = t_s
        out = pts.copy()
        out[:, :2] += np.asarray(target_xy, dtype=np.float64) - self._reference
        return out


def false_stop_distance_m(robot: RobotModel, params: SeparationParameters, *, body_radius_m: float = BODY_RADIUS_M,
                          margin_m: float = FALSE_STOP_MARGIN_M) -> float:
    """Distance (m) of the worker's scripted centre from the robot base beyond which a protective stop is
    false: the robot's reach bound + the body radius + the ground-truth protective separation distance
    (S_p at the robot's full speed with the worker's true position, i.e. without the perception terms:
    no latency, no position uncertainty) + ``margin_m``."""
    true_sp_m = protective_separation_m(separation_m=math.inf, robot_speed_mps=robot.max_speed_mps,
                                        position_uncertainty_m=0.0, perception_latency_s=0.0, params=params)
    return robot.reach_m + body_radius_m + true_sp_m + margin_m
