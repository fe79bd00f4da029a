"""The demo's in-process ROS node: plays the scripted camera images, moves real detections along
the scripted path, presses the operator reset, and records what flowed (see scenario.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

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
from hrc_fl.demo.scenario import BodyShifter, Scenario
from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, SENSOR_QOS, stamp_to_s
from hrc_fl.topic_rates import MONITOR_QOS, TopicRateMonitor

#: Topic the camera node relays in the demo (its ``source`` is ``topic:demo/image_raw``).
DEMO_IMAGE_TOPIC = "demo/image_raw"
#: The pose node's output is remapped here; the driver republishes it, shifted, as humans/bodies/tracked.
DETECTED_BODIES_TOPIC = "humans/bodies/detected"
#: TCP speed is measured over at least this stamp interval (single 20 ms steps jitter under load).
TCP_SPEED_WINDOW_S = 0.1
#: Streams the driver does not count for the report's topic table: every message costs this process a
#: Python callback (images are ~1 MB each), and the driver sits in the camera->safety loop (it relays the
#: bodies), so counting 50 Hz IMU and camera streams of three workstations would add to the latency it measures.
UNCOUNTED_TOPIC_SUFFIXES = ("/image_raw", "/camera_info", "/wearable/imu")
#: Readiness signals the scenario start can wait for (see DemoDriver).
WAIT_SIGNALS = ("bodies", "safety", "robot", "intention", "fl_client")
#: The scripted operator retries a refused reset this often (s), for at most this long (s).
RESET_RETRY_PERIOD_S = 1.0
RESET_RETRY_S = 6.0


def _load_photo(path: Path, blur_box: tuple[float, float, float, float] | None = None) -> tuple[int, int, bytes]:
    """(width, height, bgr bytes); ``blur_box`` (x0, y0, x1, y1, fractions of the size) is blurred."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read photo {path}")
    if blur_box is not None:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (round(f * n) for f, n in zip(blur_box, (w, h, w, h), strict=True))
        image[y0:y1, x0:x1] = cv2.blur(image, (61, 61))[y0:y1, x0:x1]
    return image.shape[1], image.shape[0], image.tobytes()


class DemoDriver(Node):
    """One node for all workstations of the demo (fewer processes on 2 cores)."""

    def __init__(self, workstations: Sequence[str], scenario: Scenario, *, image_rate_hz: float,
                 worker_photo: Path, palm_photo: Path, warmup_timeout_s: float, start_on: str = "bodies",
                 wait_for: Sequence[str] = (), context=None,
                 worker_blur_box: tuple[float, float, float, float] | None = None) -> None:
        """``start_on``: the event that starts the scenario clock; ``wait_for``: signals that must also
        have come from every workstation first ("intention": an estimate, "fl_client": the FL client's
        diagnostics), so no node is still importing torch / FedML when the worker starts walking (on 2
        cores those imports starve perception for seconds). ``warmup_timeout_s`` starts it anyway."""
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
        from sensor_msgs.msg import Image
        from std_srvs.srv import Trigger

        if not image_rate_hz > 0:
            raise ValueError("image_rate_hz must be positive")
        self.scenario = scenario
        self.record = DemoRecord(workstations={ws: WorkstationRecord(ws) for ws in workstations})
        self._photos = {"worker": _load_photo(worker_photo, worker_blur_box), "palm": _load_photo(palm_photo)}
        self._image_cls = Image
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
        self._start_s: float | None = None
        self._last_t_s = 0.0
        self._reset_until: dict[str, float] = {}
        self._next_reset_try: dict[str, float] = {}
        self._image_pubs = {}
        self._body_pubs = {}
        self._reset_clients = {}
        self._shifters = {ws: BodyShifter(scenario.config.smoothing_time_s) for ws in workstations}
        self._last_tcp: dict[str, tuple[float, np.ndarray]] = {}
        self.latest: dict[str, SafetySample] = {}
        for ws in workstations:
            ns = f"/{ws}/"
            self._image_pubs[ws] = self.create_publisher(Image, ns + DEMO_IMAGE_TOPIC, SENSOR_QOS)
            self._body_pubs[ws] = self.create_publisher(BodyPoseArray, ns + "humans/bodies/tracked", RESULT_QOS)
            self._reset_clients[ws] = self.create_client(Trigger, ns + "safety/reset")
            self.create_subscription(BodyPoseArray, ns + DETECTED_BODIES_TOPIC,
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
        self.create_timer(1.0 / image_rate_hz, self._on_image_timer)
        self.create_timer(1.0, self.rates.discover)

    # -- scenario clock -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._start_s is not None

    def scenario_time_s(self) -> float:
        """Seconds since the scenario started (0 while warming up)."""
        return 0.0 if self._start_s is None else time.monotonic() - self._start_s

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
            self._start_s = time.monotonic()
            self.record.warmup_s = self._start_s - self._created_s
            self.record.scenario_start_wall_s = time.time()
            self.get_logger().info(f"scenario started ({reason}) after {self.record.warmup_s:.1f} s warm-up")

    # -- callbacks ------------------------------------------------------------------------------
    def _on_image_timer(self) -> None:
        if self._start_s is None and time.monotonic() - self._created_s > self._warmup_timeout_s:
            self._maybe_start("warm-up timeout")
        t = self.scenario_time_s()
        width, height, data = self._photos["palm" if self.started and self.scenario.gesture_shown(t) else "worker"]
        stamp = self.get_clock().now().to_msg()
        for ws, pub in self._image_pubs.items():
            msg = self._image_cls(height=height, width=width, encoding="bgr8", is_bigendian=0, step=width * 3)
            msg.header.stamp = stamp
            msg.header.frame_id = "camera_optical_frame"
            msg.data = data  # bytes, not numpy (FACTS: 100x faster)
            pub.publish(msg)
            self.record.workstations[ws].images_published += 1
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
        now_s = self.get_clock().now().nanoseconds * 1e-9
        rec.body_age_s.append(now_s - stamp_to_s(msg.header.stamp))
        t = self.scenario_time_s()
        target = self.scenario.worker_position_xy(t)
        for body in msg.bodies:
            points = np.asarray(body.workstation_points, dtype=np.float64)
            shifted = self._shifters[ws].shift(points, target, t)
            body.workstation_points = shifted.astype(np.float32).ravel().tolist()
        self._body_pubs[ws].publish(msg)
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
