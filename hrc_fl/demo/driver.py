"""The demo's in-process ROS node: starts the scenario clock, presses the operator reset, and records
what flowed (see scenario.py).

It is off the camera->safety path: each workstation's own process plays the scripted photos (camera
``source: scenario:<file>``) and moves its detections along the scripted path (pose
``simulated_worker``), timed from the start this node announces once on ``/scenario/start``. The
driver only observes (bag, record, topic counts) and presses the scripted resets."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from rclpy.node import Node

from hrc_fl.demo.record import (
    DemoRecord,
    FederatedSample,
    GestureEvent,
    RobotSample,
    SafetySample,
    WorkstationRecord,
    clients_finished,
    rounds_completed,
)
from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, SENSOR_QOS, stamp_to_s
from hrc_fl.sim.scenario import Scenario
from hrc_fl.tools.topic_rates import MONITOR_QOS, TopicRateMonitor

#: TCP speed is measured over at least this stamp interval (single 20 ms steps jitter under load).
TCP_SPEED_WINDOW_S = 0.1
#: Streams the driver does not count for the report's topic table: every message costs this process a
#: Python callback (images are ~1 MB each and, with nobody subscribed, the composed camera does not even
#: serialise them), and the driver shares the 2 cores with the workstations' safety loops.
UNCOUNTED_TOPIC_SUFFIXES = ("/image_raw", "/camera_info", "/wearable/imu")
#: Readiness signals the scenario start can wait for (see DemoDriver).
WAIT_SIGNALS = ("bodies", "safety", "robot", "intention", "fl_client")
#: The scripted operator retries a refused reset this often (s), for at most this long (s).
RESET_RETRY_PERIOD_S = 1.0
RESET_RETRY_S = 6.0


class DemoDriver(Node):
    """One node for all workstations of the demo (fewer processes on 2 cores)."""

    def __init__(self, workstations: Sequence[str], scenario: Scenario, *, tick_rate_hz: float,
                 warmup_timeout_s: float, start_on: str = "bodies", wait_for: Sequence[str] = (),
                 context=None) -> None:
        """``start_on``: the event that starts the scenario clock; ``wait_for``: signals that must also
        have come from every workstation first ("intention": an estimate, "fl_client": the FL client's
        diagnostics), so no node is still importing torch / FedML when the worker starts walking (on 2
        cores those imports starve perception for seconds). ``warmup_timeout_s`` starts it anyway.
        ``tick_rate_hz``: how often the warm-up timeout and the scripted resets are checked."""
        super().__init__("hrc_fl_demo_driver", context=context)
        from builtin_interfaces.msg import Time  # noqa: F401 - ensures message support is loaded
        from geometry_msgs.msg import PoseStamped
        from hrc_fl_msgs.msg import (
            BodyPoseArray,
            FederatedStatus,
            HandGesture,
            IntentionEstimate,
            SafetyZoneState,
            TaskEvent,
        )
        from sensor_msgs.msg import CameraInfo
        from std_srvs.srv import Trigger

        from hrc_fl.nodes.scenario_clock import scenario_start_publisher

        if not tick_rate_hz > 0:
            raise ValueError("tick_rate_hz must be positive")
        self.scenario = scenario
        self.record = DemoRecord(workstations={ws: WorkstationRecord(ws) for ws in workstations})
        self._start_pub = scenario_start_publisher(self)
        self._created_s = time.monotonic()
        self._warmup_timeout_s = warmup_timeout_s
        # The scenario clock starts with the first real detection ("bodies"), or without a pose node
        # with the first safety state ("safety"), or with neither with the robot ("robot").
        if start_on not in ("bodies", "safety", "robot"):
            raise ValueError(f"start_on must be bodies, safety or robot, got {start_on!r}")
        self._start_on = start_on
        unknown = set(wait_for) - set(WAIT_SIGNALS)
        if unknown:
            raise ValueError(f"wait_for accepts {WAIT_SIGNALS}, got {sorted(unknown)}")
        self._waiting = {ws: set(wait_for) | {start_on} for ws in workstations}
        self._wait_for = tuple(wait_for)
        self._start_s: float | None = None  # ROS (system) clock, s: the stamp /scenario/start carries
        self._last_t_s = 0.0
        self._reset_until: dict[str, float] = {}
        self._next_reset_try: dict[str, float] = {}
        self._reset_clients = {}
        self._last_tcp: dict[str, tuple[float, np.ndarray]] = {}
        self.latest: dict[str, SafetySample] = {}
        for ws in workstations:
            ns = f"/{ws}/"
            self._reset_clients[ws] = self.create_client(Trigger, ns + "safety/reset")
            # frames the camera published (one small CameraInfo per frame; the images are not taken)
            self.create_subscription(CameraInfo, ns + "camera/camera_info", lambda _m, w=ws: self._on_frame(w),
                                     SENSOR_QOS)
            self.create_subscription(BodyPoseArray, ns + "humans/bodies/tracked",
                                     lambda m, w=ws: self._on_bodies(w, m), RESULT_QOS)
            self.create_subscription(SafetyZoneState, ns + "safety/state",
                                     lambda m, w=ws: self._on_safety(w, m), SAFETY_QOS)
            self.create_subscription(PoseStamped, ns + "robot/tcp_pose",
                                     lambda m, w=ws: self._on_tcp(w, m), MONITOR_QOS)
            self.create_subscription(HandGesture, ns + "hands/gesture",
                                     lambda m, w=ws: self._on_gesture(w, m), RESULT_QOS)
            self.create_subscription(IntentionEstimate, ns + "intention/estimate",
                                     lambda m, w=ws: self._on_intention(w, m), RESULT_QOS)
            self.create_subscription(TaskEvent, ns + "task/events", lambda m, w=ws: self._on_task_event(w, m),
                                     RESULT_QOS)
            # Reliable + volatile matches latched (transient-local) and volatile reliable publishers.
            self.create_subscription(FederatedStatus, ns + "federated/status", self._on_federated, RESULT_QOS)
        self.create_subscription(FederatedStatus, "/plant/federated/status", self._on_federated, RESULT_QOS)
        from diagnostic_msgs.msg import DiagnosticArray

        #: workstation -> labelled samples its FL client has stored (its /diagnostics value "samples").
        self.fl_samples: dict[str, int] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.rates = TopicRateMonitor(self, exclude_suffixes=UNCOUNTED_TOPIC_SUFFIXES)
        self.create_timer(1.0 / tick_rate_hz, self._on_tick)
        self.create_timer(1.0, self.rates.discover)

    # -- scenario clock -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._start_s is not None

    def scenario_time_s(self) -> float:
        """Seconds since the scenario started (0 while warming up)."""
        return 0.0 if self._start_s is None else self._now_s() - self._start_s

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _signal(self, ws: str, signal: str) -> None:
        """A readiness signal from ``ws``; the scenario starts once every workstation gave all of its."""
        waiting = self._waiting.get(ws)
        if self._start_s is not None or waiting is None or signal not in waiting:
            return
        waiting.discard(signal)
        if not any(self._waiting.values()):
            self._maybe_start("every workstation up: " + ", ".join((self._start_on, *self._wait_for)))

    def _maybe_start(self, reason: str) -> None:
        if self._start_s is None:
            from hrc_fl.nodes.scenario_clock import publish_scenario_start

            self._start_s = self._now_s()
            publish_scenario_start(self._start_pub, self._start_s)
            self.record.warmup_s = time.monotonic() - self._created_s
            self.record.scenario_start_wall_s = time.time()
            self.get_logger().info(f"scenario started ({reason}) after {self.record.warmup_s:.1f} s warm-up")

    # -- callbacks ------------------------------------------------------------------------------
    def _on_frame(self, ws: str) -> None:
        self.record.workstations[ws].images_published += 1

    def _on_tick(self) -> None:
        if self._start_s is None and time.monotonic() - self._created_s > self._warmup_timeout_s:
            self._maybe_start("warm-up timeout")
        t = self.scenario_time_s()
        if self.started:
            if self.scenario.resets_due(self._last_t_s, t):
                # The operator presses reset; if it is refused (e.g. an input fault) they press again
                # every RESET_RETRY_PERIOD_S until RESET_RETRY_S has passed.
                self._reset_until = {ws: t + RESET_RETRY_S for ws in self._reset_clients}
                self._next_reset_try = {ws: t for ws in self._reset_clients}
            for ws in list(self._reset_until):
                if t >= self._reset_until[ws]:
                    del self._reset_until[ws]
                elif t >= self._next_reset_try[ws]:
                    self._next_reset_try[ws] = t + RESET_RETRY_PERIOD_S
                    self._press_reset(ws, t)
        self._last_t_s = t

    def _press_reset(self, ws: str, t_s: float) -> None:
        from std_srvs.srv import Trigger

        client = self._reset_clients[ws]
        rec = self.record.workstations[ws]
        if not client.service_is_ready():
            rec.resets.append((t_s, False, "safety/reset service not available"))
            return
        future = client.call_async(Trigger.Request())

        def done(f, r=rec, t=t_s, w=ws) -> None:
            ok = bool(f.result().success)
            r.resets.append((t, ok, f.result().message))
            if ok:
                self._reset_until.pop(w, None)
        future.add_done_callback(done)

    def _on_bodies(self, ws: str, msg) -> None:
        if msg.bodies:
            self._signal(ws, "bodies")
        rec = self.record.workstations[ws]
        rec.body_age_s.append(self._now_s() - stamp_to_s(msg.header.stamp))
        rec.bodies_relayed += 1

    def _on_safety(self, ws: str, msg) -> None:
        self._signal(ws, "safety")
        now_s = self.get_clock().now().nanoseconds * 1e-9
        rec = self.record.workstations[ws]
        rec.safety_age_s.append(now_s - stamp_to_s(msg.header.stamp))
        t = self.scenario_time_s()
        sample = SafetySample(t_s=t, zone=int(msg.zone), zone_name=msg.zone_name, speed_scale=float(msg.speed_scale),
                              min_separation_m=float(msg.min_separation_m),
                              protective_separation_m=float(msg.protective_separation_m),
                              perception_latency_s=float(msg.perception_latency_s),
                              reset_required=bool(msg.reset_required), reason=msg.reason,
                              worker_distance_m=self.scenario.worker_distance_m(t),
                              stamp_s=stamp_to_s(msg.header.stamp))
        self.latest[ws] = sample
        if not self.started:
            rec.warmup_safety_states += 1
            return
        rec.safety.append(sample)

    def _on_tcp(self, ws: str, msg) -> None:
        self._signal(ws, "robot")
        t = self.scenario_time_s()
        p = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
        stamp = stamp_to_s(msg.header.stamp)
        last = self._last_tcp.get(ws)
        if last is not None and stamp - last[0] < TCP_SPEED_WINDOW_S:
            return
        self._last_tcp[ws] = (stamp, p)
        if last is not None:
            self.record.workstations[ws].robot.append(
                RobotSample(t, float(np.linalg.norm(p - last[1]) / (stamp - last[0]))))

    def _on_gesture(self, ws: str, msg) -> None:
        self.record.workstations[ws].gestures.append(
            GestureEvent(self.scenario_time_s(), msg.gesture_name, float(msg.confidence), bool(msg.is_command)))

    def _on_intention(self, ws: str, msg) -> None:
        self._signal(ws, "intention")
        counts = self.record.workstations[ws].intentions
        counts[msg.label] = counts.get(msg.label, 0) + 1

    def _on_task_event(self, ws: str, msg) -> None:
        counts = self.record.workstations[ws].task_events
        counts[msg.label] = counts.get(msg.label, 0) + 1

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            # name: "/<ws>/fl_client: fl_client" (hrc_fl.nodes.common.Diagnostics)
            parts = status.name.split("/")
            if len(parts) < 3 or not status.name.endswith("fl_client: fl_client"):
                continue
            if parts[1] not in self.record.workstations:
                continue
            self._signal(parts[1], "fl_client")
            for kv in status.values:
                if kv.key == "samples" and kv.value.isdigit():
                    self.fl_samples[parts[1]] = int(kv.value)

    def labels_seen(self, ws: str) -> set[str]:
        """Labels of the task events seen on ``ws`` so far."""
        return set(self.record.workstations[ws].task_events)

    def fl_rounds_done(self) -> int:
        """Highest round the aggregator reported closed (state "done"; an opened round is not done)."""
        return rounds_completed(self.record.federated)

    def fl_clients_finished(self) -> set[str]:
        """Workstations whose FL client reported "finished" (it stored the final model)."""
        return clients_finished(self.record.federated)

    def _on_federated(self, msg) -> None:
        metrics = {n: float(v) for n, v in zip(msg.metric_names, msg.metric_values, strict=False) if math.isfinite(v)}
        self.record.federated.append(FederatedSample(self.scenario_time_s(), msg.node_id, msg.role,
                                                     int(msg.round), msg.state, msg.model_version, metrics))
