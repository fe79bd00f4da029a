"""The composed safety function: ``SafetyMonitor.step(now_s, inputs) -> SafetyDecision``.

Plain inputs (numpy arrays, named tuples), no ROS, no I/O, time passed in. Each step (1) checks every
arriving message with the watchdog and keeps the good ones, (2) computes the minimum human-robot
separation, S_p and the allowed robot speed, (3) advances the zone state machine. Anything doubtful
(a fault, missing data, an unknown frame, an unlocatable human) yields PROTECTIVE_STOP in that step.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from hrc_fl.safety.geometry import (
    Capsules,
    DhChain,
    RobotModel,
    SeparationResult,
    ToolCapsule,
    min_separation,
    tcp_capsules,
)
from hrc_fl.safety.kernels import (
    KEYPOINTS_FAR,
    KEYPOINTS_INFINITE,
    check_keypoints,
    kernel_array,
    max_displacement_m,
)
from hrc_fl.safety.latency import ObservationAgePeaks
from hrc_fl.safety.records import frozen_record
from hrc_fl.safety.separation import (
    CLOSE_SEPARATION_M,
    HUMAN_SPEED_CLOSE_MPS,
    HUMAN_SPEED_MPS,
    POSITION_UNCERTAINTY_K,
    SeparationParameters,
    SeparationTerms,
    allowed_robot_speed_mps,
    protective_separation_distance,
    protective_separation_m,
    protective_separation_with_stopping_m,
    stopping_table_from_rows,
)
from hrc_fl.safety.settings import GROUP, setting
from hrc_fl.safety.watchdog import InputSpec, Watchdog
from hrc_fl.safety.zones import (
    CLEAR,
    PROTECTIVE_STOP,
    REDUCED_SPEED,
    WARNING,
    Zone,
    ZoneConfig,
    ZoneMachine,
    ZoneUpdate,
)

# Gesture and arm-signal codes (equal to the HandGesture / BodyPose message constants).
GESTURE_STOP = 1
GESTURE_THUMB_UP = 4
ARM_SIGNAL_ALL_STOP = 1

BODIES, ROBOT, GESTURE, INTENTION = "bodies", "robot", "gesture", "intention"


_NO_POINTS = np.zeros((0, 3))
_NO_POINTS.flags.writeable = False  # shared by every empty decision


# ---------------------------------------------------------------- inputs
# Named tuples: the node builds one or more per message, and a tuple costs a fraction of a frozen
# dataclass's field-by-field construction (bench/safety.py, node stage "convert").
class BodyObservation(NamedTuple):
    """One tracked body: keypoints (K,3) in ``frame`` (metres, NaN rows = unknown points)."""

    body_id: str
    points_m: np.ndarray
    position_uncertainty_m: float
    frame: str
    arm_signal: int = 0
    arm_signal_confidence: float = 0.0


class BodiesInput(NamedTuple):
    """All bodies of one processed camera frame (empty tuple: nobody seen). ``stamp_s``: image time."""

    stamp_s: float
    bodies: tuple[BodyObservation, ...] = ()


class JointInput(NamedTuple):
    stamp_s: float
    names: tuple[str, ...]
    positions_rad: tuple[float, ...]


class TcpInput(NamedTuple):
    stamp_s: float
    frame: str
    position_m: tuple[float, float, float]
    orientation_xyzw: tuple[float, float, float, float]


class GestureInput(NamedTuple):
    stamp_s: float
    gesture: int
    confidence: float
    is_command: bool


class IntentionInput(NamedTuple):
    stamp_s: float
    label: str
    confidence: float


class _CheckedBodies(NamedTuple):
    """A bodies message that passed the checks: per body its known keypoints (K,3), (body id, K) in the
    same order, and the largest 1-sigma uncertainty (m). A tuple: one is built per message."""

    stamp_s: float
    points: list[np.ndarray]
    owners: list[tuple[str, int]]
    sigma_m: float


class SafetyInputs(NamedTuple):
    """Messages that arrived since the previous step, in arrival order, plus a reset request."""

    bodies: Sequence[BodiesInput] = ()
    robot: Sequence[JointInput | TcpInput] = ()
    gestures: Sequence[GestureInput] = ()
    intentions: Sequence[IntentionInput] = ()
    reset_requested: bool = False


_NO_INPUTS = SafetyInputs()


# ---------------------------------------------------------------- config
@dataclass(frozen=True)
class SafetyConfig:
    """Everything the monitor needs; units in names. Built by the node from parameters + robot file.

    Each field but ``robot`` is a setting (hrc_fl.safety.settings): a node parameter of the same name,
    with its default, unit and description defined here and nowhere else.
    """

    robot: RobotModel
    robot_source: str = setting("joints", "-", "Robot state input: 'joints' (robot/joint_states, DH chain) "
                                "or 'tcp' (robot/tcp_pose, tool capsule only).")
    intrusion_distance_m: float = setting(0.1, "m", "C: intrusion distance.")
    position_uncertainty_k: float = setting(POSITION_UNCERTAINTY_K, "1", "Coverage factor on the pose "
                                            "node's 1-sigma position uncertainty (Z_d).")
    human_speed_mps: float = setting(HUMAN_SPEED_MPS, "m/s", "Human approach speed (ISO 13855).")
    human_speed_close_mps: float = setting(HUMAN_SPEED_CLOSE_MPS, "m/s", "Human speed used below "
                                           "close_separation_m (ISO 13855).")
    close_separation_m: float = setting(CLOSE_SEPARATION_M, "m", "Separation below which "
                                        "human_speed_close_mps applies.")
    min_speed_scale: float = setting(0.1, "1", "Allowed speed below this fraction of the maximum -> "
                                     "PROTECTIVE_STOP.")
    warning_band_m: float = setting(0.5, "m", "Width of the warning band outside the reduced-speed distance.")
    hysteresis_m: float = setting(0.05, "m", "Distance hysteresis for relaxing a zone.")
    robot_speed_tolerance_mps: float = setting(0.05, "m/s", "Tolerance on the measured robot speed vs. S_p.")
    stop_if_robot_faster_than_allowed: bool = setting(True, "-", "Stop when separation < S_p at the "
                                                      "measured robot speed.")
    zones: ZoneConfig = field(default_factory=ZoneConfig, metadata=GROUP)
    bodies_max_age_s: float = setting(0.3, "s", "Maximum age of humans/bodies/tracked (stamp age).")
    robot_max_age_s: float = setting(0.2, "s", "Maximum age of the robot state.")
    gesture_max_age_s: float = setting(0.5, "s", "Maximum age of a gesture before it expires.")
    intention_max_age_s: float = setting(1.0, "s", "Maximum age of an intention estimate before it expires.")
    max_future_s: float = setting(0.05, "s", "Stamps further than this in the future are faults.")
    min_body_points: int = setting(4, "count", "A body with fewer known keypoints cannot be located -> fault.")
    keypoint_range_m: float = setting(8.0, "m", "Camera working range from the base_link origin: a keypoint "
                                      "farther away is a fault (a broken depth estimate), not a far body.")
    relax_latency_window_s: float = setting(2.0, "s", "Relaxing a zone (and the automatic restart's "
                                            "area-clear condition) uses the largest observation age of this "
                                            "window (docs/safety.md).")
    stop_gesture_min_confidence: float = setting(0.5, "1", "Minimum confidence of a STOP / THUMB_UP command "
                                                 "gesture.")
    resume_gesture_enabled: bool = setting(True, "-", "A THUMB_UP command gesture requests a reset.")
    command_hold_s: float = setting(0.5, "s", "A stop command stays asserted this long after its last message.")
    arm_signal_min_confidence: float = setting(0.6, "1", "Minimum confidence of an ALL_STOP arm signal.")
    arm_signal_min_frames: int = setting(3, "count", "Consecutive frames with ALL_STOP before it stops the "
                                         "robot.")
    slowdown_intentions: tuple[str, ...] = setting(("approach", "handover"), "-", "Intention labels that "
                                                   "lower the speed early (only labels the intention node "
                                                   "emits can fire).")
    intention_min_confidence: float = setting(0.6, "1", "Minimum confidence of a slowdown intention.")
    intention_speed_scale: float = setting(0.5, "1", "Speed scale cap while a slowdown intention holds.")

    def __post_init__(self) -> None:
        if self.robot_source not in ("joints", "tcp"):
            raise ValueError(f"robot_source must be 'joints' or 'tcp', got {self.robot_source!r}")
        for name in ("min_speed_scale", "intention_speed_scale", "stop_gesture_min_confidence",
                     "arm_signal_min_confidence", "intention_min_confidence"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be within 0..1, got {value!r}")
        if not (math.isfinite(self.relax_latency_window_s) and self.relax_latency_window_s >= 0.0):
            raise ValueError(f"relax_latency_window_s must be finite and >= 0, got {self.relax_latency_window_s!r}")
        if not (math.isfinite(self.keypoint_range_m) and self.keypoint_range_m > 0.0):
            raise ValueError(f"keypoint_range_m must be finite and > 0, got {self.keypoint_range_m!r}")
        for name in ("warning_band_m", "hysteresis_m", "robot_speed_tolerance_mps", "command_hold_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.min_body_points < 1 or self.arm_signal_min_frames < 1:
            raise ValueError("min_body_points and arm_signal_min_frames must be >= 1")

    def separation_parameters(self) -> SeparationParameters:
        r = self.robot
        return SeparationParameters(
            reaction_time_s=r.reaction_time_s,
            stopping=stopping_table_from_rows(r.stopping_speeds_mps, r.stopping_times_s, r.stopping_distances_m),
            intrusion_distance_m=self.intrusion_distance_m,
            robot_position_uncertainty_m=r.position_uncertainty_m,
            position_uncertainty_k=self.position_uncertainty_k,
            human_speed_mps=self.human_speed_mps,
            human_speed_close_mps=self.human_speed_close_mps,
            close_separation_m=self.close_separation_m,
        )


# ---------------------------------------------------------------- output
@dataclass(frozen=True)
class SafetyDecision:
    """One cycle's verdict. Distances in metres in the robot base frame; NaN where unknown."""

    stamp_s: float
    zone: Zone
    speed_scale: float
    reset_required: bool
    min_separation_m: float                     # NaN: unknown; inf: nobody in view
    terms: SeparationTerms | None               # at the measured robot speed; None before any data
    allowed_robot_speed_mps: float
    max_robot_speed_mps: float
    stop_distance_m: float
    reduced_speed_distance_m: float
    warning_distance_m: float
    closest_body_id: str
    reasons: tuple[str, ...]
    faults: tuple[str, ...]
    reset_accepted: bool | None
    reset_message: str
    human_points_m: np.ndarray                  # (N,3) keypoints used (for markers)
    separation: SeparationResult | None         # geometry of the minimum (per-point distances on demand)
    capsules: Capsules | None
    fault_counts: tuple[int, ...] = ()          # per entry of ``faults``: how many inputs had that fault

    @property
    def closest_human_point_m(self) -> np.ndarray | None:
        """(3,) the keypoint closest to the robot; None when unknown or nobody in view."""
        sep = self.separation
        return None if sep is None or sep.point_index < 0 else sep.closest_point_m

    @property
    def closest_robot_point_m(self) -> np.ndarray | None:
        """(3,) the closest point on the robot's capsule surface (computed on demand, for markers)."""
        sep = self.separation
        return None if sep is None or sep.point_index < 0 else sep.closest_robot_point

    @property
    def protective_separation_m(self) -> float:
        return math.nan if self.terms is None else self.terms.protective_separation_m

    @property
    def point_distances_m(self) -> np.ndarray:
        """(N,) separation of each keypoint in ``human_points_m`` (empty when unknown)."""
        return np.zeros(0) if self.separation is None else self.separation.point_distances_m

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def zone_for_separation(separation_m: float, *, sigma_m: float, latency_s: float,
                        params: SeparationParameters, min_speed_mps: float, max_speed_mps: float,
                        warning_band_m: float,
                        stopping_at_min_max: tuple[tuple[float, float], tuple[float, float]] | None = None,
                        ) -> tuple[Zone, float, float, float]:
    """(zone, stop distance, reduced-speed distance, warning distance) for a separation, by the distance
    thresholds S_p(min speed), S_p(max speed) and S_p(max speed) + warning band (v_h chosen at that
    separation). NaN separation -> PROTECTIVE_STOP. ``stopping_at_min_max``: ``params.stopping.at`` of
    the two speeds when the caller has them already (they are constant per robot)."""
    if stopping_at_min_max is None:
        stopping_at_min_max = (params.stopping.at(min_speed_mps), params.stopping.at(max_speed_mps))
    (ts_min, ss_min), (ts_max, ss_max) = stopping_at_min_max
    stop_m = protective_separation_with_stopping_m(
        separation_m=separation_m, robot_speed_mps=min_speed_mps, stopping_time_s=ts_min,
        stopping_distance_m=ss_min, position_uncertainty_m=sigma_m, perception_latency_s=latency_s,
        params=params)
    reduced_m = protective_separation_with_stopping_m(
        separation_m=separation_m, robot_speed_mps=max_speed_mps, stopping_time_s=ts_max,
        stopping_distance_m=ss_max, position_uncertainty_m=sigma_m, perception_latency_s=latency_s,
        params=params)
    warning_m = reduced_m + warning_band_m
    if not separation_m >= stop_m:  # NaN included
        zone = PROTECTIVE_STOP
    elif separation_m < reduced_m:
        zone = REDUCED_SPEED
    elif separation_m < warning_m:
        zone = WARNING
    else:
        zone = CLEAR
    return zone, stop_m, reduced_m, warning_m


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?\s*(?:m/s|m|s)?\b")
_EMPTY_PARENS = re.compile(r"\(\s*[<>=]*\s*\)")
_SPACE_BEFORE = re.compile(r"\s+([:;,)])")
_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=512)
def reason_kind(clause: str) -> str:
    """A reason or fault without its numbers and quoted names, for counting causes:
    "bodies: stale (1.01 s > 1.00 s)" -> "bodies: stale", "bodies: body 'p1': infinite keypoint" ->
    "bodies: body: infinite keypoint". Cached: under a flood the same texts repeat."""
    text = _QUOTED.sub("", clause)
    text = _NUMBER.sub("", text)
    text = _EMPTY_PARENS.sub("", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip(" ;:")


def collapse_faults(faults: Sequence[str]) -> tuple[list[str], list[int]]:
    """One entry per fault kind (:func:`reason_kind`), the newest text of each, in order of first
    appearance, and how many there were: a cycle after a flood of bad messages names each cause once."""
    newest: dict[str, str] = {}
    counts: dict[str, int] = {}
    for fault in faults:
        kind = reason_kind(fault)
        newest[kind] = fault
        counts[kind] = counts.get(kind, 0) + 1
    return list(newest.values()), list(counts.values())


# ---------------------------------------------------------------- monitor
class _Separation(NamedTuple):
    """Job 2 of a step (:meth:`SafetyMonitor._separate`) for job 3 and the decision: distances in metres,
    speeds in m/s; NaN where unknown. A tuple: one is built per cycle."""

    min_separation_m: float
    terms: SeparationTerms | None
    allowed_mps: float
    stop_m: float
    reduced_m: float
    warning_m: float
    distance_zone: Zone
    relaxed_zone: Zone                 # at separation - hysteresis and the recent peak observation age
    relax_latency_s: float
    target_scale: float                # allowed / maximum speed
    body_id: str
    result: SeparationResult | None
    reasons: tuple[str, ...]


#: No human or no robot data yet: nothing is known, so PROTECTIVE_STOP.
_NO_SEPARATION = _Separation(math.nan, None, 0.0, math.nan, math.nan, math.nan, PROTECTIVE_STOP,
                             PROTECTIVE_STOP, math.nan, 0.0, "", None, ())


def _held_reason(zone: Zone, relaxed_zone: Zone, hysteresis_m: float, min_dwell_s: float,
                 relax_latency_s: float) -> str:
    """Why ``zone`` is kept although the separation alone would allow a less restrictive one."""
    if relaxed_zone >= zone:
        return (f"{zone.name} held: separation within the {hysteresis_m:.2f} m hysteresis of its border at "
                f"the recent peak observation age {relax_latency_s:.3f} s")
    return f"{zone.name} held: the less restrictive zone must hold for {min_dwell_s:.2f} s"


class SafetyMonitor:
    """Speed and separation monitoring for one robot cell. Not thread-safe: call from one thread."""

    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self.params = config.separation_parameters()
        self.chain: DhChain = config.robot.chain
        self.tcp_tool: ToolCapsule = config.robot.tcp_tool
        self.max_speed_mps = config.robot.max_speed_mps
        self.watchdog = Watchdog([
            InputSpec(BODIES, config.bodies_max_age_s, required=True),
            InputSpec(ROBOT, config.robot_max_age_s, required=True),
            InputSpec(GESTURE, config.gesture_max_age_s, required=False),
            InputSpec(INTENTION, config.intention_max_age_s, required=False),
        ], max_future_s=config.max_future_s)
        self.zones = ZoneMachine(config.zones)
        self._latency = ObservationAgePeaks(config.relax_latency_window_s, config.bodies_max_age_s)
        self._points = _NO_POINTS
        self._point_owners: list[tuple[str, int]] = []    # (body id, its number of keypoints), in order
        self._keypoint_range_sq = config.keypoint_range_m ** 2
        self._base_frame = config.robot.base_frame
        self._sigma_m = 0.0
        self._bodies_stamp_s: float | None = None
        self._capsules: Capsules | None = None
        self._robot_stamp_s: float | None = None
        self._robot_speed_mps: float | None = None
        self._last_stop_command_s = -math.inf
        self._arm_stop_frames = 0
        self._intention: IntentionInput | None = None
        self._last_now_s: float | None = None
        self._human_version = 0
        self._robot_version = 0
        self._cache_key: tuple[int, int] | None = None
        self._cache: SeparationResult | None = None
        # Last robot input and the capsules built from it: an unchanged joint state / TCP pose reuses them
        # (no kinematics, and the cached distance stays valid if the humans did not change either).
        self._robot_input_key: tuple | None = None
        self._robot_input_capsules: Capsules | None = None
        v_max = self.max_speed_mps
        self._v_min_mps = config.min_speed_scale * v_max
        self._stopping_at_min_max = (self.params.stopping.at(self._v_min_mps), self.params.stopping.at(v_max))

    # ------------------------------------------------ ingest
    def _check_bodies(self, msg: BodiesInput, now_s: float) -> _CheckedBodies | None:
        """Validate one bodies message (content, then stamp through the watchdog); None when it is a
        fault (recorded by the watchdog for this cycle). Per body one compiled pass checks finiteness and
        the working range and drops the unknown (NaN) keypoints; nothing is installed here (the newest
        good message of a cycle wins)."""
        problem = ""
        points: list[np.ndarray] = []
        owners: list[tuple[str, int]] = []
        sigma = 0.0
        arm_stop = False
        cfg = self.config
        range_sq, base_frame = self._keypoint_range_sq, self._base_frame
        for body in msg.bodies:
            pts = kernel_array(body.points_m)
            shape = pts.shape
            if len(shape) != 2 or shape[1] != 3:
                problem = f"body {body.body_id!r}: keypoints must be (K,3), got {pts.shape}"
                break
            if body.frame != base_frame:
                problem = f"body {body.body_id!r} in frame {body.frame!r}, need {base_frame!r}"
                break
            status, far_sq, pts = check_keypoints(pts, range_sq)
            if status == KEYPOINTS_INFINITE:
                problem = f"body {body.body_id!r}: infinite keypoint"
                break
            if status == KEYPOINTS_FAR:
                problem = (f"body {body.body_id!r}: keypoint {math.sqrt(far_sq):.3g} m from "
                           f"{base_frame}, beyond the working range of the camera "
                           f"(keypoint_range_m {cfg.keypoint_range_m:.1f} m)")
                break
            n_known = pts.shape[0]
            sigma_m = body.position_uncertainty_m
            if n_known < cfg.min_body_points:
                problem = (f"body {body.body_id!r}: only {n_known} known keypoints "
                           f"(< {cfg.min_body_points}), cannot locate the human")
            elif not (math.isfinite(sigma_m) and sigma_m >= 0.0):
                problem = f"body {body.body_id!r}: invalid position uncertainty {sigma_m!r}"
            elif not math.isfinite(body.arm_signal_confidence):
                problem = f"body {body.body_id!r}: non-finite arm signal confidence"
            if problem:
                break
            points.append(pts)
            owners.append((body.body_id, n_known))
            if sigma_m > sigma:
                sigma = sigma_m
            if (body.arm_signal == ARM_SIGNAL_ALL_STOP
                    and body.arm_signal_confidence >= cfg.arm_signal_min_confidence):
                arm_stop = True
        fault = self.watchdog.accept(BODIES, msg.stamp_s, now_s, content_ok=not problem, content_problem=problem)
        if arm_stop and fault is None:
            self._arm_stop_frames += 1
        elif fault is None:
            self._arm_stop_frames = 0
        if self._arm_stop_frames >= cfg.arm_signal_min_frames:
            self._last_stop_command_s = max(self._last_stop_command_s, now_s)
        if fault is not None:
            return None
        return _CheckedBodies(msg.stamp_s, points, owners, sigma)

    def _install_bodies(self, checked: _CheckedBodies, now_s: float) -> None:
        """Make ``checked`` the current human observation (once per cycle: the newest good message)."""
        if len(checked.points) == 1:
            self._points = checked.points[0]
        elif checked.points:
            self._points = np.concatenate(checked.points, axis=0)
        else:
            self._points = _NO_POINTS
        self._point_owners = checked.owners
        self._sigma_m = checked.sigma_m
        if self._bodies_stamp_s is not None:
            self._latency.observation(now_s, now_s - self._bodies_stamp_s)
        self._bodies_stamp_s = checked.stamp_s
        self._human_version += 1

    def _body_of_point(self, index: int) -> str:
        for body_id, count in self._point_owners:
            if index < count:
                return body_id
            index -= count
        return ""

    def _robot_capsules(self, msg: JointInput | TcpInput) -> Capsules:
        if isinstance(msg, TcpInput):
            if self.config.robot_source != "tcp":
                raise ValueError("TCP pose received but robot_source is 'joints'")
            if msg.frame != self.config.robot.base_frame:
                raise ValueError(f"TCP pose in frame {msg.frame!r}, need {self.config.robot.base_frame!r}")
            key = (tuple(msg.position_m), tuple(msg.orientation_xyzw))
            if key == self._robot_input_key and self._robot_input_capsules is not None:
                return self._robot_input_capsules
            capsules = tcp_capsules(msg.position_m, msg.orientation_xyzw, tool=self.tcp_tool,
                                    static=self.config.robot.static)
        else:
            if self.config.robot_source != "joints":
                raise ValueError("joint state received but robot_source is 'tcp'")
            key = positions = self.chain.positions_from(msg.names, msg.positions_rad)
            # NaN != NaN, so a non-finite state never hits the cache and is rejected by the chain.
            if key == self._robot_input_key and self._robot_input_capsules is not None:
                return self._robot_input_capsules
            capsules = self.chain.capsules(positions)
        self._robot_input_key, self._robot_input_capsules = key, capsules
        return capsules

    def _ingest_robot(self, msg: JointInput | TcpInput, now_s: float) -> str | None:
        try:
            capsules = self._robot_capsules(msg)
            problem = ""
        except ValueError as exc:
            capsules, problem = None, str(exc)
        fault = self.watchdog.accept(ROBOT, msg.stamp_s, now_s, content_ok=capsules is not None,
                                     content_problem=problem)
        if fault is not None or capsules is None:
            return fault
        if self._capsules is not None and self._robot_stamp_s is not None:
            dt = msg.stamp_s - self._robot_stamp_s
            if dt > 0.0:
                if capsules is self._capsules:  # same joint state / pose as before: not moving
                    moved_max_m = 0.0
                else:
                    moved_max_m = max_displacement_m(capsules.segments, self._capsules.segments)
                self._robot_speed_mps = moved_max_m / dt
        if capsules is not self._capsules:
            self._robot_version += 1  # invalidates the cached distance
        self._capsules = capsules
        self._robot_stamp_s = msg.stamp_s
        return None

    def _ingest_gesture(self, msg: GestureInput, now_s: float) -> tuple[str | None, bool]:
        ok = math.isfinite(msg.confidence)
        fault = self.watchdog.accept(GESTURE, msg.stamp_s, now_s, content_ok=ok,
                                     content_problem="non-finite gesture confidence")
        if not msg.is_command or not ok:
            return fault, False
        if msg.gesture == GESTURE_STOP and msg.confidence >= self.config.stop_gesture_min_confidence:
            # A stop is honoured even if the message is otherwise faulty: stopping is always safe.
            self._last_stop_command_s = max(self._last_stop_command_s, now_s)
            return fault, False
        resume = (fault is None and msg.gesture == GESTURE_THUMB_UP and self.config.resume_gesture_enabled
                  and msg.confidence >= self.config.stop_gesture_min_confidence)
        return fault, resume

    def _ingest_intention(self, msg: IntentionInput, now_s: float) -> str | None:
        ok = math.isfinite(msg.confidence) and 0.0 <= msg.confidence <= 1.0
        fault = self.watchdog.accept(INTENTION, msg.stamp_s, now_s, content_ok=ok,
                                     content_problem=f"invalid intention confidence {msg.confidence!r}")
        if fault is None:
            self._intention = msg
        return fault

    # ------------------------------------------------ step: four jobs, each a method
    def step(self, now_s: float, inputs: SafetyInputs | None = None) -> SafetyDecision:
        """Ingest ``inputs`` (arrived since the last step) and decide for time ``now_s`` (seconds, the
        clock of the message stamps): (1) check the inputs and collect this cycle's faults
        (:meth:`_ingest`), (2) the separation, S_p and the distance zone (:meth:`_separate`), (3) the zone
        machine with its dwell and restart interlock (:meth:`_decide_zone`), (4) the decision record."""
        inputs = _NO_INPUTS if inputs is None else inputs
        now_s, faults, resume = self._ingest(now_s, inputs)
        stop_command = now_s - self._last_stop_command_s <= self.config.command_hold_s
        if self._capsules is not None and self._bodies_stamp_s is not None:
            sep = self._separate(now_s)
        else:
            sep = _NO_SEPARATION
            if not faults:
                faults.append("no human or robot data yet")
        fault_counts: list[int] = [1] * len(faults)
        if len(faults) > 1:  # a flood: each cause once, with its count
            faults, fault_counts = collapse_faults(faults)
        update, zone, reasons = self._decide_zone(now_s, sep, faults, stop_command,
                                                  inputs.reset_requested or resume)
        return frozen_record(
            SafetyDecision,
            stamp_s=now_s, zone=zone, speed_scale=update.speed_scale, reset_required=update.reset_required,
            min_separation_m=sep.min_separation_m, terms=sep.terms, allowed_robot_speed_mps=sep.allowed_mps,
            max_robot_speed_mps=self.max_speed_mps, stop_distance_m=sep.stop_m,
            reduced_speed_distance_m=sep.reduced_m, warning_distance_m=sep.warning_m,
            closest_body_id=sep.body_id, reasons=tuple(reasons), faults=tuple(faults),
            fault_counts=tuple(fault_counts), reset_accepted=update.reset_accepted,
            reset_message=update.reset_message, human_points_m=self._points, separation=sep.result,
            capsules=self._capsules,
        )

    def _ingest(self, now_s: float, inputs: SafetyInputs) -> tuple[float, list[str], bool]:
        """Job 1, input validation and fault detection: the checked clock (s), this cycle's faults (bad
        arrivals, then missing or stale inputs) and whether a resume gesture requested a reset. The newest
        good bodies message, every good robot state, gesture and intention update the monitor's state."""
        faults: list[str] = []
        last_now_s = self._last_now_s
        if not math.isfinite(now_s):
            faults.append(f"clock: invalid time {now_s!r}")
            now_s = last_now_s if last_now_s is not None else 0.0
        elif last_now_s is not None and now_s < last_now_s:
            faults.append(f"clock: went back by {last_now_s - now_s:.3f} s")
            now_s = last_now_s
        self._last_now_s = now_s
        newest: _CheckedBodies | None = None
        for msg in inputs.bodies:  # every message is checked (faults count); the newest good one is used
            newest = self._check_bodies(msg, now_s) or newest
        if newest is not None:
            self._install_bodies(newest, now_s)
        for msg in inputs.robot:
            self._ingest_robot(msg, now_s)
        resume = False
        for msg in inputs.gestures:
            resume = self._ingest_gesture(msg, now_s)[1] or resume
        for msg in inputs.intentions:
            self._ingest_intention(msg, now_s)
        faults += self.watchdog.faults(now_s)
        return now_s, faults, resume

    def _separate(self, now_s: float) -> _Separation:
        """Job 2, separation: the minimum human-robot distance (cached until the humans or the robot
        change), S_p at the measured robot speed, the allowed speed and the distance zones at the
        instantaneous and at the recent peak observation age (hrc_fl/safety/latency.py)."""
        cfg = self.config
        key = (self._human_version, self._robot_version)
        if key != self._cache_key or self._cache is None:
            self._cache = min_separation(self._points, self._capsules)
            self._cache_key = key
        sep = self._cache
        d = sep.min_distance_m
        body_id = self._body_of_point(sep.point_index) if sep.point_index >= 0 else ""
        sigma_m = self._sigma_m
        latency = max(0.0, now_s - self._bodies_stamp_s)
        v_max = self.max_speed_mps
        v_meas = v_max if self._robot_speed_mps is None else self._robot_speed_mps
        params = self.params
        terms = protective_separation_distance(
            separation_m=d, robot_speed_mps=v_meas, position_uncertainty_m=sigma_m,
            perception_latency_s=latency, params=params)
        allowed = allowed_robot_speed_mps(separation_m=d, position_uncertainty_m=sigma_m,
                                          perception_latency_s=latency, params=params, max_speed_mps=v_max)
        v_min, band_m, stopping = self._v_min_mps, cfg.warning_band_m, self._stopping_at_min_max
        distance_zone, stop_m, reduced_m, warning_m = zone_for_separation(
            d, sigma_m=sigma_m, latency_s=latency, params=params, min_speed_mps=v_min, max_speed_mps=v_max,
            warning_band_m=band_m, stopping_at_min_max=stopping)
        # Relaxing (and the restart interlock's "area clear") at the recent peak age, not the
        # instantaneous sawtooth between frames (hrc_fl/safety/latency.py).
        relax_latency = max(latency, self._latency.peak_s(now_s))
        relaxed_zone = zone_for_separation(
            d - cfg.hysteresis_m, sigma_m=sigma_m, latency_s=relax_latency, params=params, min_speed_mps=v_min,
            max_speed_mps=v_max, warning_band_m=band_m, stopping_at_min_max=stopping)[0]
        if distance_zone == PROTECTIVE_STOP:
            reasons: tuple[str, ...] = (f"separation {d:.3f} m < stop distance {stop_m:.3f} m",)
        elif distance_zone == REDUCED_SPEED:
            reasons = (f"separation {d:.3f} m < S_p at full speed {reduced_m:.3f} m: "
                       f"speed limited to {allowed:.3f} m/s",)
        elif distance_zone == WARNING:
            reasons = (f"separation {d:.3f} m within the warning band (< {warning_m:.3f} m)",)
        else:
            reasons = ()
        if cfg.stop_if_robot_faster_than_allowed and distance_zone != PROTECTIVE_STOP:
            # ISO/TS 15066: the current separation must stay >= S_p at the robot's actual speed.
            lenient_sp_m = protective_separation_m(
                separation_m=d, robot_speed_mps=max(0.0, v_meas - cfg.robot_speed_tolerance_mps),
                position_uncertainty_m=sigma_m, perception_latency_s=latency, params=params)
            if d < lenient_sp_m:
                distance_zone = relaxed_zone = PROTECTIVE_STOP
                reasons += (f"robot speed {v_meas:.3f} m/s too high: separation {d:.3f} m "
                            f"< S_p {terms.protective_separation_m:.3f} m",)
        return _Separation(d, terms, allowed, stop_m, reduced_m, warning_m, distance_zone, relaxed_zone,
                           relax_latency, allowed / v_max, body_id, sep, reasons)

    def _decide_zone(self, now_s: float, sep: _Separation, faults: list[str], stop_command: bool,
                     reset_request: bool) -> tuple[ZoneUpdate, Zone, list[str]]:
        """Job 3, the zone decision: the intention's speed cap, the zone machine (dwell, hysteresis,
        restart interlock) and the reasons of the result, faults first. Returns the machine's update, the
        zone to report and the reasons."""
        cfg = self.config
        reasons = ["stop command (STOP gesture or ALL_STOP arm signal)"] if stop_command else []
        reasons += sep.reasons
        target_scale = sep.target_scale
        intention_capped = False
        intent = self._intention
        if (intent is not None and self.watchdog.is_fresh(INTENTION, now_s)
                and intent.label in cfg.slowdown_intentions and intent.confidence >= cfg.intention_min_confidence
                and target_scale > cfg.intention_speed_scale):
            target_scale = cfg.intention_speed_scale
            intention_capped = True
            reasons.append(f"intention {intent.label!r} ({intent.confidence:.2f}): speed capped at "
                           f"{cfg.intention_speed_scale:.2f}")
        distance_zone = sep.distance_zone
        update = self.zones.update(now_s, distance_zone=distance_zone, relaxed_zone=sep.relaxed_zone,
                                   target_scale=target_scale, stop_command=stop_command, fault=bool(faults),
                                   reset_request=reset_request)
        zone = update.zone
        if intention_capped and zone < REDUCED_SPEED:
            zone = REDUCED_SPEED  # reported only: the speed is reduced, the distance state is unchanged
        if faults:
            reasons = [*faults, *reasons]
        elif update.zone == PROTECTIVE_STOP:
            if update.not_ready_reason == "":
                reasons.append("restart interlock: waiting for reset" if update.reset_required
                               else "restart interlock: waiting for the area to stay clear")
            elif not stop_command and distance_zone != PROTECTIVE_STOP:
                # its cause has ended (a fault cycle, or the human just left the stop distance): say why
                # the stop still holds, so no stop is ever published without a reason
                reasons.append(f"protective stop held: {update.not_ready_reason}")
        elif update.zone > distance_zone:
            reasons.append(_held_reason(update.zone, sep.relaxed_zone, cfg.hysteresis_m,
                                        self.zones.config.min_dwell_s, sep.relax_latency_s))
        return update, zone, reasons
