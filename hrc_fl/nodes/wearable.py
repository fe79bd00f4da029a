"""wearable node: a wrist IMU (serial, UDP or replay of the real watch data) on ROS.

Publishes ``wearable/imu`` (sensor_msgs/Imu, SENSOR_QOS, frame ``frame_id`` = ``wrist_imu``; stamp =
device time mapped to ROS time with the estimated clock offset; orientation unknown, so
orientation_covariance[0] = -1) and ``wearable/state`` (hrc_fl_msgs/WearableState, RESULT_QOS, at
``state_rate_hz``), optionally ``task/events`` (hrc_fl_msgs/TaskEvent, RESULT_QOS, source "replay":
with ``replay_task_events``, one event at the end of each real recording naming its exercise class, so
the FL client can store labelled windows), plus ``/diagnostics`` with drop counters per reason, link
state and clock offset.
Sources, validation and the clock mapping are ROS-free (:mod:`hrc_fl.wearable`); a reader thread
drives the source so that publishing follows the device rate.
"""

from __future__ import annotations

import math
import threading
import time

from hrc_fl_msgs.msg import TaskEvent, WearableState
from rclpy.node import Node
from sensor_msgs.msg import Imu

from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, Diagnostics, declare_parameters, join_worker, s_to_stamp
from hrc_fl.wearable.clock import ClockOffsetEstimator
from hrc_fl.wearable.sources import (
    ImuSource,
    LinkEvent,
    ReconnectingSource,
    ReplaySource,
    SerialSource,
    UdpSource,
)
from hrc_fl.wearable.stream import StampedSample, WearableStream
from hrc_fl.wearable.validation import DROP_REASONS, SampleValidator

PARAMETERS = {
    "workstation_id": ("ws1", "Workstation id (namespace); informational."),
    "worker_id": ("worker1", "Id of the worker wearing the device (WearableState.worker_id)."),
    "source": ("replay", "Source: 'replay' (real watch data), 'serial' or 'udp'."),
    "replay_subject": (1, "Replay: subject of the watch data set (1..10)."),
    "replay_side": ("both", "Replay: arm of the recordings ('left', 'right', 'both')."),
    "replay_loop": (True, "Replay: start over at the end."),
    "replay_clip_s": (0.0, "Replay: play only the first this many seconds of each recording (0 = all), s."),
    "replay_max_fraction": (1.0, "Replay: play only this first fraction of each recording (0.7 = the "
                            "training part of the subject-wise time-ordered split)."),
    "replay_task_events": (False, "Replay: publish a TaskEvent (source 'replay') with the recording's "
                           "exercise class at the end of each recording (labels for federated learning)."),
    "replay_event_margin_s": (2.0, "Replay: TaskEvent.window_s = recording length minus this, s (the IMU "
                              "window length, so every labelled window lies inside one recording)."),
    "serial_port": ("/dev/ttyACM0", "Serial: device path."),
    "serial_baudrate": (115200, "Serial: baud rate."),
    "udp_host": ("127.0.0.1", "UDP: address to bind (loopback by default; 0.0.0.0 exposes it)."),
    "udp_port": (9870, "UDP: port to bind."),
    "rate_hz": (50.0, "Nominal device sample rate, Hz (gap detection, link quality)."),
    "frame_id": ("wrist_imu", "Frame of the IMU data (device axes on the wrist)."),
    "accel_limit_ms2": (156.9, "Accelerometer range; |a| at or beyond it counts as saturated, m/s²."),
    "gyro_limit_rads": (34.9, "Gyroscope range; |w| at or beyond it counts as saturated, rad/s."),
    "gap_factor": (1.5, "A gap is more than this many sample periods between samples."),
    "accel_noise_var": (0.0025, "Linear acceleration covariance diagonal, (m/s²)²."),
    "gyro_noise_var": (0.0001, "Angular velocity covariance diagonal, (rad/s)²."),
    "clock_window_s": (30.0, "Window of the minimum-delay clock offset estimator, s."),
    "clock_jump_threshold_s": (0.5, "Offset change treated as a device clock jump, s."),
    "link_window_s": (2.0, "Window over which link_quality is measured, s."),
    "state_rate_hz": (2.0, "Rate of wearable/state, Hz."),
    "backoff_initial_s": (0.5, "First reconnect delay after a disconnect, s (doubles)."),
    "backoff_max_s": (5.0, "Longest reconnect delay, s."),
    "read_timeout_s": (0.05, "Longest blocking read of the source, s."),
}


class WearableNode(Node):
    def __init__(self) -> None:
        super().__init__("wearable")
        p = declare_parameters(self, PARAMETERS)
        self._p = p
        self._worker_id = str(p["worker_id"])
        self._frame_id = str(p["frame_id"])
        self._accel_var = float(p["accel_noise_var"])
        self._gyro_var = float(p["gyro_noise_var"])
        self._read_timeout_s = float(p["read_timeout_s"])
        self._stream = WearableStream(
            SampleValidator(rate_hz=float(p["rate_hz"]), accel_limit_ms2=float(p["accel_limit_ms2"]),
                            gyro_limit_rads=float(p["gyro_limit_rads"]), gap_factor=float(p["gap_factor"])),
            ClockOffsetEstimator(window_s=float(p["clock_window_s"]),
                                 jump_threshold_s=float(p["clock_jump_threshold_s"])),
            link_window_s=float(p["link_window_s"]))
        self._lock = threading.Lock()
        self._imu_pub = self.create_publisher(Imu, "wearable/imu", SENSOR_QOS)
        self._state_pub = self.create_publisher(WearableState, "wearable/state", RESULT_QOS)
        self._stretch_ends: dict[int, tuple[str, float]] = {}  # replay index of a recording's last sample
        self._replay_len = 0
        self._event_pub = None
        source = self._make_source(p)
        if self._stretch_ends and bool(p["replay_task_events"]):
            self._event_pub = self.create_publisher(TaskEvent, "task/events", RESULT_QOS)
        self._events_published = 0
        self._diag = Diagnostics(self, "wearable", hardware_id=source.description)
        self._source = ReconnectingSource(source, backoff_initial_s=float(p["backoff_initial_s"]),
                                          backoff_max_s=float(p["backoff_max_s"]), on_event=self._on_link_event)
        self._published = 0
        self._last_problem_s: dict[str, float] = {}
        state_rate = float(p["state_rate_hz"])
        if not state_rate > 0:
            raise ValueError("state_rate_hz must be positive")
        self._state_timer = self.create_timer(1.0 / state_rate, self._publish_state)
        self._running = True
        self._thread = threading.Thread(target=self._read_loop, name="wearable-reader", daemon=True)
        self._thread.start()
        self.get_logger().info(f"wearable source {source.description}, publishing wearable/imu "
                               f"in frame {self._frame_id}")

    def _make_source(self, p: dict) -> ImuSource:
        kind = str(p["source"])
        if kind == "replay":
            from hrc_fl.wearable.replay_data import WATCH_RATE_HZ, subject_replay

            margin_s = float(p["replay_event_margin_s"])
            if not (math.isfinite(margin_s) and margin_s >= 0):
                raise ValueError(f"replay_event_margin_s must be >= 0, got {margin_s}")
            data, stretches = subject_replay(int(p["replay_subject"]), str(p["replay_side"]),
                                             clip_s=float(p["replay_clip_s"]),
                                             max_fraction=float(p["replay_max_fraction"]))
            self._replay_len = len(data)
            self._replay_rate_hz = WATCH_RATE_HZ
            self._stretch_ends = {s.end - 1: (s.label, max((s.end - s.start) / WATCH_RATE_HZ - margin_s, 0.0))
                                  for s in stretches}
            return ReplaySource(data, WATCH_RATE_HZ, loop=bool(p["replay_loop"]),
                                description=f"replay:watch-subject-{int(p['replay_subject'])}")
        if kind == "serial":
            return SerialSource(str(p["serial_port"]), int(p["serial_baudrate"]))
        if kind == "udp":
            return UdpSource(int(p["udp_port"]), str(p["udp_host"]))
        raise ValueError(f"source must be replay, serial or udp, got {kind!r}")

    def _on_link_event(self, event: LinkEvent) -> None:
        if event.kind == "connected":
            self.get_logger().info(f"wearable connected: {event.message}")
            with self._lock:
                self._stream.reset_stream()
        else:
            self._diag.problem(f"link_{event.kind}", event.message)

    def _read_loop(self) -> None:
        while self._running:
            batch = self._source.read(self._read_timeout_s)
            if not batch.samples and not batch.malformed:
                continue
            rx_s = self.get_clock().now().nanoseconds * 1e-9
            with self._lock:
                stamped, dropped = self._stream.process(batch, rx_s)
            for sample in stamped:
                self._publish_imu(sample)
                if self._event_pub is not None:
                    self._maybe_publish_event(sample)
            for drop in dropped:
                self._report_drop(drop.reason, drop.detail)

    def _report_drop(self, reason: str, detail: str) -> None:
        # Every drop is counted (validator); one log line + WARN per reason per second, so a flood of
        # bad samples cannot flood the log.
        now = time.monotonic()
        if now - self._last_problem_s.get(reason, -math.inf) >= 1.0:
            self._last_problem_s[reason] = now
            self._diag.problem(reason, f"dropped a wearable sample: {detail}")

    def _publish_imu(self, stamped: StampedSample) -> None:
        if not (math.isfinite(stamped.t_ros_s) and stamped.t_ros_s >= 0):
            self._report_drop("bad_stamp", f"device time maps to {stamped.t_ros_s}")
            return
        msg = Imu()
        msg.header.stamp = s_to_stamp(stamped.t_ros_s)
        msg.header.frame_id = self._frame_id
        ax, ay, az = stamped.sample.accel_ms2
        wx, wy, wz = stamped.sample.gyro_rads
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = ax, ay, az
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = wx, wy, wz
        msg.orientation_covariance[0] = -1.0  # no orientation estimate (REP-145)
        msg.linear_acceleration_covariance = [self._accel_var, 0.0, 0.0, 0.0, self._accel_var, 0.0,
                                              0.0, 0.0, self._accel_var]
        msg.angular_velocity_covariance = [self._gyro_var, 0.0, 0.0, 0.0, self._gyro_var, 0.0,
                                           0.0, 0.0, self._gyro_var]
        self._imu_pub.publish(msg)
        self._published += 1

    def _maybe_publish_event(self, stamped: StampedSample) -> None:
        # The replay's device time is sample index / rate (over loops), so the index is exact.
        index = round(stamped.sample.t_device_s * self._replay_rate_hz) % self._replay_len
        end = self._stretch_ends.get(index)
        if end is None or not math.isfinite(stamped.t_ros_s):
            return
        label, window_s = end
        msg = TaskEvent(worker_id=self._worker_id, label=label, source="replay", window_s=float(window_s))
        msg.header.stamp = s_to_stamp(stamped.t_ros_s)
        msg.header.frame_id = self._frame_id
        self._event_pub.publish(msg)
        self._events_published += 1

    def _publish_state(self) -> None:
        now_s = self.get_clock().now().nanoseconds * 1e-9
        with self._lock:
            quality = self._stream.link_quality(now_s)
            offset = self._stream.clock.offset_s
            hr = self._stream.heart_rate_bpm
            validator = self._stream.validator
            counts = dict(validator.counts)
            dropped = validator.dropped
            missing, gaps = validator.missing_samples, validator.gaps
            resets = self._stream.clock.resets
        msg = WearableState()
        msg.header.stamp = s_to_stamp(now_s)
        msg.header.frame_id = self._frame_id
        msg.worker_id = self._worker_id
        msg.heart_rate_bpm = float(hr)
        msg.heart_rate_valid = math.isfinite(hr)
        msg.battery_pct = math.nan
        msg.link_quality = quality
        msg.clock_offset_s = float(offset)
        msg.samples_dropped = int(dropped)
        self._state_pub.publish(msg)
        for reason in DROP_REASONS:
            self._diag.set_value(f"dropped/{reason}", counts.get(reason, 0))
        self._diag.set_value("gaps", gaps)
        self._diag.set_value("missing_samples", missing)
        self._diag.set_value("published", self._published)
        if self._event_pub is not None:
            self._diag.set_value("task_events", self._events_published)
        self._diag.set_value("connected", self._source.connected)
        self._diag.set_value("reconnects", self._source.reconnects)
        self._diag.set_value("link_quality", f"{quality:.2f}")
        self._diag.set_value("clock_offset_s", f"{offset:.6f}")
        self._diag.set_value("clock_resets", resets)
        self._diag.set_value("stamps_clamped", self._stream.stamps_clamped)

    def close(self) -> None:
        self._running = False
        join_worker(self, self._thread)
        self._source.close()


def main(args: list[str] | None = None) -> None:
    from hrc_fl.nodes.common import run_node

    run_node(lambda: WearableNode(), args)


if __name__ == "__main__":
    main()
