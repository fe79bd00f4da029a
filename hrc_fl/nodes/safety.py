"""safety node: ISO/TS 15066 speed and separation monitoring (translator around hrc_fl.safety.monitor).

Subscribes ``humans/bodies/tracked`` (hrc_fl_msgs/BodyPoseArray, RESULT_QOS), ``hands/gesture``
(hrc_fl_msgs/HandGesture, RESULT_QOS), ``intention/estimate`` (hrc_fl_msgs/IntentionEstimate, RESULT_QOS)
and, by ``robot_source``, ``robot/joint_states`` (sensor_msgs/JointState) or ``robot/tcp_pose``
(geometry_msgs/PoseStamped), both best effort so that reliable and best-effort publishers match.
Publishes ``safety/state`` (hrc_fl_msgs/SafetyZoneState, SAFETY_QOS) at ``publish_rate_hz`` and at once
on each human/robot message (``evaluate_on_input``), ``robot/speed_scale`` (std_msgs/Float64, SAFETY_QOS)
with every state, ``safety/markers`` (visualization_msgs/MarkerArray) and ``/diagnostics``.
Service ``safety/reset`` (std_srvs/Trigger): request leaving PROTECTIVE_STOP; success only if the reset
was accepted (the restart conditions hold), else the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from hrc_fl_msgs.msg import BodyPoseArray, HandGesture, IntentionEstimate, SafetyZoneState
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, Float64
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from hrc_fl.intention.labels import INTENTION_LABELS
from hrc_fl.nodes.common import (
    RESULT_QOS,
    SAFETY_QOS,
    SENSOR_QOS,
    Diagnostics,
    declare_parameters,
    s_to_stamp,
    stamp_to_s,
)
from hrc_fl.nodes.composition import executor_kind
from hrc_fl.paths import config_dir
from hrc_fl.safety.config import (
    SAFETY_SETTINGS,
    SafetyNodeSettings,
    load_robot_model,
    unknown_slowdown_intentions,
)
from hrc_fl.safety.monitor import (
    BodiesInput,
    BodyObservation,
    GestureInput,
    IntentionInput,
    JointInput,
    SafetyConfig,
    SafetyDecision,
    SafetyInputs,
    SafetyMonitor,
    TcpInput,
    reason_kind,
)
from hrc_fl.safety.settings import from_settings, parameter_spec
from hrc_fl.safety.zones import Zone
from hrc_fl.viz.markers import MarkerSpec, safety_markers

#: name -> (default, description [unit]), generated from the settings' one definition (hrc_fl.safety.config).
PARAMETERS = parameter_spec(SAFETY_SETTINGS)

_MARKER_TYPES = {"sphere_list": Marker.SPHERE_LIST, "cylinder": Marker.CYLINDER,
                 "line_list": Marker.LINE_LIST, "text": Marker.TEXT_VIEW_FACING}


def _config_path(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else config_dir() / path


def _marker(spec: MarkerSpec, frame: str, stamp, reuse: Marker | None = None) -> Marker:
    """Marker message for ``spec``; fills ``reuse`` (a Marker of an earlier publish) when given: building
    the nested message objects costs more than setting their fields."""
    m = Marker() if reuse is None else reuse
    m.ns, m.id, m.type, m.action, m.text = spec.ns, spec.marker_id, _MARKER_TYPES[spec.kind], Marker.ADD, spec.text
    m.header.frame_id = frame
    m.header.stamp = stamp
    m.pose.position.x, m.pose.position.y, m.pose.position.z = spec.position
    (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
     m.pose.orientation.w) = spec.orientation_xyzw
    m.scale.x, m.scale.y, m.scale.z = spec.scale
    m.color = _color(spec.color)
    m.points = [Point(x=x, y=y, z=z) for x, y, z in spec.points.tolist()]
    m.colors = [_color(c) for c in spec.colors]
    return m


_COLORS: dict[tuple[float, float, float, float], ColorRGBA] = {}


def _color(rgba: tuple[float, float, float, float]) -> ColorRGBA:
    # A handful of distinct colours: one message object each, shared by the lists (serialised by value).
    color = _COLORS.get(rgba)
    if color is None:
        color = _COLORS[rgba] = ColorRGBA(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]), a=float(rgba[3]))
    return color


def _keypoints(flat) -> np.ndarray:
    """(K,3) float64 from a float32[] message field; a length that is no multiple of 3 stays one row, which
    the monitor refuses as malformed (a fault with its reason, not an exception in the callback)."""
    points = np.asarray(flat, dtype=np.float64)  # rclpy gives a float32 ndarray: one converting copy
    return points.reshape(-1, 3) if points.size % 3 == 0 else points.reshape(1, -1)


def bodies_input(msg: BodyPoseArray) -> BodiesInput:
    """The monitor's input for one BodyPoseArray: per body its keypoints (K,3) float64 in its workstation
    frame, uncertainty (m) and arm signal; the stamp in seconds (the image time)."""
    return BodiesInput(stamp_to_s(msg.header.stamp), tuple(
        BodyObservation(
            body_id=b.body_id, points_m=_keypoints(b.workstation_points),
            position_uncertainty_m=float(b.position_uncertainty_m), frame=b.workstation_frame,
            arm_signal=int(b.arm_signal), arm_signal_confidence=float(b.arm_signal_confidence))
        for b in msg.bodies))


class SafetyNode(Node):
    def __init__(self) -> None:
        # No parameter services: parameters are read once here (no runtime reconfiguration), and the six
        # services would sit in every executor wait set, adding latency to each input (bench/safety.py).
        super().__init__("safety", start_parameter_services=False)
        p = declare_parameters(self, PARAMETERS)
        node = from_settings(SafetyNodeSettings, p)
        robot = load_robot_model(_config_path(node.robot_config))
        if robot.base_frame != node.base_frame:
            raise ValueError(f"robot file base frame {robot.base_frame!r} != base_frame {node.base_frame!r}")
        config = from_settings(SafetyConfig, p, robot=robot)
        unknown = unknown_slowdown_intentions(config, INTENTION_LABELS)
        if unknown:
            # Not an error (a plant may be about to change its label space), but these can never fire.
            self.get_logger().warning(
                f"slowdown_intentions {list(unknown)} are not intention labels {list(INTENTION_LABELS)}: "
                "they never lower the speed")
        self._monitor = SafetyMonitor(config)
        self._frame = node.base_frame
        self._evaluate_on_input = node.evaluate_on_input
        self._bodies: list[BodiesInput] = []
        self._robot: list[JointInput | TcpInput] = []
        self._gestures: list[GestureInput] = []
        self._intentions: list[IntentionInput] = []
        self._last_zone: Zone | None = None
        self._stopped_for_fault = False   # the last decision: PROTECTIVE_STOP with an input fault
        self._last_decision: SafetyDecision | None = None
        self._marker_messages: dict[tuple[str, int], Marker] = {}

        self._diag = Diagnostics(self, "safety")
        self._state_pub = self.create_publisher(SafetyZoneState, "safety/state", SAFETY_QOS)
        self._scale_pub = self.create_publisher(Float64, "robot/speed_scale", SAFETY_QOS)
        # One message object each, refilled for every decision: a generated message's constructor sets
        # every field through its checked setter (about a third of the state's publishing cost), and
        # publish() serialises before it returns. Every field is written on every decision, so nothing
        # of an earlier one can remain; decisions run in this node's one (mutually exclusive) callback group.
        self._state_msg = SafetyZoneState()
        self._scale_msg = Float64()
        self._marker_pub = self.create_publisher(MarkerArray, "safety/markers", 10)
        self.create_subscription(BodyPoseArray, "humans/bodies/tracked", self._on_bodies, RESULT_QOS)
        self.create_subscription(HandGesture, "hands/gesture", self._on_gesture, RESULT_QOS)
        self.create_subscription(IntentionEstimate, "intention/estimate", self._on_intention, RESULT_QOS)
        if config.robot_source == "joints":
            self.create_subscription(JointState, "robot/joint_states", self._on_joints, SENSOR_QOS)
        else:
            self.create_subscription(PoseStamped, "robot/tcp_pose", self._on_tcp, SENSOR_QOS)
        self.create_service(Trigger, "safety/reset", self._on_reset)
        # The heartbeat must decide after the messages already waiting, or it would judge a fresh one as
        # missing (a "stale" stop of our own making on a loaded machine). rclpy's SingleThreadedExecutor
        # runs ready timers before ready subscriptions: there the timer triggers a guard condition, which
        # runs after them. The EventsExecutor runs callbacks in the order their events arrived (and has no
        # guard conditions): there the timer decides itself (through _on_heartbeat: rclpy passes a timer
        # callback that takes an argument its TimerInfo, which _evaluate would take for a reset request).
        if executor_kind(self) == "events":
            self.create_timer(1.0 / node.publish_rate_hz, self._on_heartbeat)
        else:
            self._heartbeat = self.create_guard_condition(self._evaluate)
            self.create_timer(1.0 / node.publish_rate_hz, self._heartbeat.trigger)
        if node.markers_rate_hz > 0.0:
            self.create_timer(1.0 / node.markers_rate_hz, self._publish_markers)
        self._diag.set_value("robot", robot.name)
        self._diag.set_value("restart_interlock", config.zones.restart_interlock)
        self.get_logger().info(
            f"safety monitoring robot {robot.name!r} ({config.robot_source}) in {self._frame!r}, "
            f"{node.publish_rate_hz:.0f} Hz, restart interlock {config.zones.restart_interlock}; "
            "starting in PROTECTIVE_STOP")

    # ------------------------------------------------ inputs (translate only)
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_bodies(self, msg: BodyPoseArray) -> None:
        self._bodies.append(bodies_input(msg))
        self._on_input()

    def _on_joints(self, msg: JointState) -> None:
        self._robot.append(JointInput(stamp_to_s(msg.header.stamp), tuple(msg.name),
                                      tuple(float(v) for v in msg.position)))
        self._on_input()

    def _on_tcp(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._robot.append(TcpInput(stamp_to_s(msg.header.stamp), msg.header.frame_id, (p.x, p.y, p.z),
                                    (q.x, q.y, q.z, q.w)))
        self._on_input()

    def _on_input(self) -> None:
        # Decide at once on a human/robot message, except while stopped for an input fault: then nothing
        # can become more restrictive, and the heartbeat (within one period) decides on everything that
        # arrived: every message is still checked, the newest good one wins. So a flood of bad messages
        # costs a check each, not a decision and a state each, and the state keeps its rate; a bad message
        # while the robot moves is decided at once (it stops in this callback), and a stop without a fault
        # (a worker close by, the restart interlock) still answers each input at once.
        if self._evaluate_on_input and not self._stopped_for_fault:
            self._evaluate()

    def _on_gesture(self, msg: HandGesture) -> None:
        self._gestures.append(GestureInput(stamp_to_s(msg.header.stamp), int(msg.gesture),
                                           float(msg.confidence), bool(msg.is_command)))
        if msg.is_command and not self._stopped_for_fault:  # else the heartbeat decides (see _on_input)
            self._evaluate()

    def _on_intention(self, msg: IntentionEstimate) -> None:
        self._intentions.append(IntentionInput(stamp_to_s(msg.header.stamp), msg.label, float(msg.confidence)))

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        decision = self._evaluate(reset=True)
        response.success = bool(decision.reset_accepted)
        response.message = decision.reset_message
        self.get_logger().info(f"reset requested: {decision.reset_message}")
        return response

    # ------------------------------------------------ decide and publish
    def _publish(self, publisher, msg) -> None:
        # At shutdown (SIGINT) the context can go invalid while a callback still runs: drop that last
        # message instead of dying with a traceback; any other publish error still raises.
        try:
            publisher.publish(msg)
        except RCLError:
            if self.context.ok():
                raise

    def _on_heartbeat(self) -> None:
        self._evaluate()

    def _evaluate(self, reset: bool = False) -> SafetyDecision:
        inputs = SafetyInputs(self._bodies, self._robot, self._gestures, self._intentions, reset_requested=reset)
        self._bodies, self._robot, self._gestures, self._intentions = [], [], [], []
        decision = self._monitor.step(self._now_s(), inputs)
        self._publish_state(decision)
        self._report(decision)
        self._last_decision = decision
        return decision

    def _report(self, decision: SafetyDecision) -> None:
        # Faults counted per cause (numbers and ids removed: "bodies: stale", "bodies: body: infinite
        # keypoint"), every occurrence; the log line of a cause is throttled to about one a second with the
        # number left out (Diagnostics), so neither a flood of bad messages nor a stalled input floods the log.
        for fault, count in zip(decision.faults, decision.fault_counts, strict=True):
            self._diag.problem(reason_kind(fault), fault, error=True, count=count, prefix_key=False)
        self._stopped_for_fault = decision.zone == Zone.PROTECTIVE_STOP and bool(decision.faults)
        if decision.zone != self._last_zone:
            self.get_logger().info(f"zone {decision.zone.name}: {decision.reason or 'clear'}")
            self._last_zone = decision.zone
        self._diag.set_value("zone", decision.zone.name)
        self._diag.set_value("speed_scale", f"{decision.speed_scale:.3f}")
        self._diag.set_value("min_separation_m", f"{decision.min_separation_m:.3f}")
        self._diag.set_value("protective_separation_m", f"{decision.protective_separation_m:.3f}")

    def _publish_state(self, d: SafetyDecision) -> None:
        msg = self._state_msg
        msg.zone, msg.zone_name, msg.speed_scale = int(d.zone), d.zone.name, float(d.speed_scale)
        msg.reason, msg.reset_required = d.reason, d.reset_required
        msg.header.stamp = s_to_stamp(d.stamp_s)
        msg.header.frame_id = self._frame
        msg.min_separation_m = d.min_separation_m  # +inf: nobody in view; NaN: unknown
        msg.protective_separation_m = d.protective_separation_m
        t = d.terms
        if t is not None:
            msg.s_h_m, msg.s_r_m, msg.s_s_m = t.s_h_m, t.s_r_m, t.s_s_m
            msg.c_m, msg.z_d_m, msg.z_r_m = t.c_m, t.z_d_m, t.z_r_m
            msg.human_speed_mps, msg.robot_speed_mps = t.human_speed_mps, t.robot_speed_mps
            msg.perception_latency_s = t.perception_latency_s
        else:
            for name in ("s_h_m", "s_r_m", "s_s_m", "c_m", "z_d_m", "z_r_m", "human_speed_mps",
                         "robot_speed_mps", "perception_latency_s"):
                setattr(msg, name, math.nan)
        msg.allowed_robot_speed_mps = d.allowed_robot_speed_mps
        msg.max_robot_speed_mps = d.max_robot_speed_mps
        msg.stop_distance_m = d.stop_distance_m
        msg.reduced_speed_distance_m = d.reduced_speed_distance_m
        msg.warning_distance_m = d.warning_distance_m
        msg.closest_body_id = d.closest_body_id
        msg.faults = list(d.faults)
        self._publish(self._state_pub, msg)
        self._scale_msg.data = float(d.speed_scale)
        self._publish(self._scale_pub, self._scale_msg)

    def _publish_markers(self) -> None:
        decision = self._last_decision
        if decision is None:
            return
        stamp = s_to_stamp(decision.stamp_s)
        clear = Marker(action=Marker.DELETEALL)
        clear.header.frame_id = self._frame
        # Markers are drawn at markers_rate_hz from the latest decision (never per input): the marker
        # message objects are kept between publishes and refilled.
        reuse = self._marker_messages
        markers = [clear]
        for spec in safety_markers(decision):
            key = (spec.ns, spec.marker_id)
            reuse[key] = _marker(spec, self._frame, stamp, reuse.get(key))
            markers.append(reuse[key])
        self._publish(self._marker_pub, MarkerArray(markers=markers))


def main(args: list[str] | None = None) -> None:
    from hrc_fl.nodes.common import run_node

    run_node(lambda: SafetyNode(), args)


if __name__ == "__main__":
    main()
