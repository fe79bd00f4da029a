"""The demo's scripted worker: where the worker stands and what the camera shows, over time. ROS-free.

Replayed photos are static, so a worker cannot walk up to the robot in them. The scenario therefore
moves *real* detections: the pose node's keypoints (from real photos) are translated in the
workstation frame so that the body's centre follows a scripted distance from the robot base, while
the detection's own shape and frame-to-frame jitter are kept. The STOP gesture is a real open-palm
photo shown to the camera during a scripted window. Both are scripted motion on real detections,
and the report says so.

Frames: workstation frame = robot base ``base_link`` (metres); the worker approaches along
``approach_direction`` (unit vector in the xy plane, pointing from the robot to the worker).

The replay/simulation seam (docs/tools_and_demo.md): a scenario is a YAML file
(:func:`write_scenario` / :func:`load_scenario`); a camera node with ``source: scenario:<file>`` plays
its photos at the scripted times (:class:`ScenarioCameraSource`), and a pose node with
``simulated_worker: <file>`` moves its detections along the scripted path before it publishes them.
Scenario time is counted from the start stamp on ``/scenario/start`` (whoever runs the scenario
publishes it; 0 until then), so every process of a plant plays the same script in step.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


#: Region of messi5.jpg that the scenario blurs (x0, y0, x1, y1 as fractions of its size): his relaxed open
#: hand, held sideways, is a STOP for the rotation-invariant gesture classifier (issue 15: STOP must not depend
#: on how the palm is turned), and the scenario shows a STOP only in its gesture window.
WORKER_PHOTO_BLUR_BOX: tuple[float, float, float, float] = (0.59, 0.42, 0.72, 0.56)


@dataclass(frozen=True)
class ScenarioConfig:
    """Timing of the scripted events as fractions of ``length_s``."""

    length_s: float
    keyframes: tuple[Keyframe, ...] = DEFAULT_KEYFRAMES
    reset_at: tuple[float, ...] = (0.04, 0.60, 0.84)    # operator acknowledges (safety/reset)
    gesture_window: tuple[float, float] = (0.66, 0.76)  # the worker shows an open palm
    approach_direction: tuple[float, float] = (1.0, 0.0)
    smoothing_time_s: float = 2.0                        # reference centre: EMA of real detections
    worker_photo: str = "messi5.jpg"                     # a real person: pose + hands (photo_path names)
    worker_photo_blur_box: tuple[float, float, float, float] | None = WORKER_PHOTO_BLUR_BOX
    palm_photo: str = "Back_Projection_Theory0.jpg"      # a real open palm (opencv-doc): the STOP gesture

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
        box = self.worker_photo_blur_box
        if box is not None and not (len(box) == 4 and 0.0 <= box[0] < box[2] <= 1.0 and 0.0 <= box[1] < box[3] <= 1.0):
            raise ValueError("worker_photo_blur_box must be (x0, y0, x1, y1) fractions with x0 < x1, y0 < y1, "
                             f"got {box}")


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


def write_scenario(path: Path, config: ScenarioConfig) -> None:
    """Save ``config`` as a scenario YAML file (atomically)."""
    import yaml

    from hrc_fl.data.atomic_io import atomic_write_text

    data = dataclasses.asdict(config)
    data["keyframes"] = [[k.at, k.distance_m] for k in config.keyframes]
    for key in ("reset_at", "gesture_window", "approach_direction", "worker_photo_blur_box"):
        data[key] = None if data[key] is None else list(data[key])
    atomic_write_text(Path(path), yaml.safe_dump({"scenario": data}, sort_keys=False))


def load_scenario(path: Path | str) -> Scenario:
    """A scenario YAML file -> :class:`Scenario`. Raises ValueError (with the file name) when malformed."""
    import yaml

    try:
        data = (yaml.safe_load(Path(path).read_text()) or {})["scenario"]
        values = dict(data)
        if "keyframes" in values:
            values["keyframes"] = tuple(Keyframe(float(a), float(d)) for a, d in values["keyframes"])
        for key in ("reset_at", "gesture_window", "approach_direction", "worker_photo_blur_box"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return Scenario(ScenarioConfig(**values))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"scenario file {path}: {exc}") from exc


def blur_region(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Copy of a BGR ``image`` with ``box`` (x0, y0, x1, y1, fractions of its width and height) blurred."""
    import cv2

    out = image.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (round(f * n) for f, n in zip(box, (w, h, w, h), strict=True))
    out[y0:y1, x0:x1] = cv2.blur(image, (61, 61))[y0:y1, x0:x1]
    return out


class ScenarioCameraSource:
    """Camera source that plays a scenario's photos at the scripted times (worker photo, or the open
    palm during the gesture window). ``clock_s`` returns the scenario time now (s)."""

    def __init__(self, scenario: Scenario, clock_s: Callable[[], float], *, width_px: int = 0,
                 height_px: int = 0) -> None:
        import cv2

        from hrc_fl.data.datasets import photo_path
        from hrc_fl.perception.camera_sources import SourceError, fit_frame

        self.scenario = scenario
        self._clock_s = clock_s
        self._frames: dict[bool, np.ndarray] = {}
        for palm, name in ((False, scenario.config.worker_photo), (True, scenario.config.palm_photo)):
            try:
                frame = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
            except KeyError as exc:
                raise SourceError(str(exc)) from exc
            if frame is None:
                raise SourceError(f"cannot read scenario photo {name}")
            if not palm and scenario.config.worker_photo_blur_box is not None:
                frame = blur_region(frame, scenario.config.worker_photo_blur_box)
            self._frames[palm] = np.ascontiguousarray(fit_frame(frame, width_px, height_px))
        self.description = f"scenario ({scenario.config.worker_photo}, {scenario.config.palm_photo})"

    def read(self) -> np.ndarray | None:
        return self._frames[self.scenario.gesture_shown(self._clock_s())]

    def close(self) -> None:
        self._frames.clear()


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


class SimulatedWorker:
    """The scripted worker of a scenario applied to real detections: one :class:`BodyShifter` per
    tracked body, each body's centre moved to the scripted position at the scenario time."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._shifters: dict[str, BodyShifter] = {}

    def shift(self, body_id: str, points_xyz: np.ndarray, scenario_t_s: float, stamp_s: float) -> np.ndarray:
        """(N, 3) workstation points (m) of ``body_id`` -> moved copy. ``scenario_t_s`` picks the scripted
        position; ``stamp_s`` (the frame's capture time, s) paces the reference centre's average."""
        shifter = self._shifters.get(body_id)
        if shifter is None:
            shifter = self._shifters[body_id] = BodyShifter(self.scenario.config.smoothing_time_s)
        return shifter.shift(points_xyz, self.scenario.worker_position_xy(scenario_t_s), stamp_s)

    def forget(self, body_id: str) -> None:
        """The tracker dropped ``body_id``."""
        self._shifters.pop(body_id, None)
