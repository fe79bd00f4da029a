"""Pieces every hrc_fl node shares: the main loop, QoS profiles, parameters and diagnostics."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Re-exported beside run_node: a node module or test that uses run_node reads the dump delay from here too.
from hrc_fl.nodes.composition import TEARDOWN_STACK_DUMP_S as TEARDOWN_STACK_DUMP_S
from hrc_fl.nodes.composition import run_nodes

#: Camera frames and IMU samples: best effort, shallow queue (ROS convention for sensor streams).
SENSOR_QOS: QoSProfile = qos_profile_sensor_data
#: Safety state and speed scale: every message matters, keep a few, reliable.
SAFETY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
#: Perception results and estimates: reliable, shallow.
RESULT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
)
#: State that late joiners need (camera info, model version, FL status).
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def stamp_to_s(stamp: TimeMsg) -> float:
    """ROS time stamp -> seconds (float)."""
    return stamp.sec + stamp.nanosec * 1e-9


def s_to_stamp(t_s: float) -> TimeMsg:
    """Seconds -> ROS time stamp. Raises ValueError for non-finite or negative times."""
    if not math.isfinite(t_s) or t_s < 0.0:
        raise ValueError(f"cannot make a ROS stamp from {t_s!r} s")
    sec, nanosec = divmod(round(t_s * 1e9), 1_000_000_000)
    return TimeMsg(sec=sec, nanosec=nanosec)


def lower_thread_priority(increment: int) -> int | None:
    """Raise the calling thread's nice value by ``increment`` (Linux: per thread; threads it starts
    later inherit it). Returns the new nice value, or None where the platform cannot do it. Used for
    federated training so perception and safety keep the CPU first on a shared workstation."""
    if increment < 0:
        raise ValueError(f"only lowering the priority is allowed (increment >= 0), got {increment}")
    import os

    if increment == 0:
        return os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
    try:
        tid = threading.get_native_id()
        value = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, value)
        return value
    except (AttributeError, OSError):
        return None


def declare_parameters(node: Node, spec: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
    """Declare each parameter once with its default and description; return the current values.

    ``spec`` maps a parameter name to ``(default, description)``. Defaults live only here (the node),
    the YAML in config/ overrides them per deployment.
    """
    values: dict[str, Any] = {}
    for name, (default, description) in spec.items():
        descriptor = ParameterDescriptor(description=description)
        if isinstance(default, list) and not default:
            # An empty list has no type; declare as a string array so YAML can fill it.
            param = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor)
            values[name] = list(param.value or [])
            continue
        param = node.declare_parameter(name, default, descriptor)
        values[name] = param.value
    return values


@dataclass
class Diagnostics:
    """Publishes one ``DiagnosticStatus`` on ``/diagnostics`` at a fixed period.

    Nodes record problems with :meth:`problem` (counted, logged as one clear line, and raised to
    WARN/ERROR on the next report) and key values with :meth:`set_value`. Log lines are throttled per
    key: at most one per ``log_interval_s``, the next one saying how many were left out, so a flood of
    bad input costs a counter increment per message, not a log line (the counts are all published).
    """

    node: Node
    name: str
    period_s: float = 1.0
    hardware_id: str = ""
    log_interval_s: float = 1.0
    _values: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _last_log_s: dict[str, float] = field(default_factory=dict)
    _unlogged: dict[str, int] = field(default_factory=dict)
    _level: bytes = DiagnosticStatus.OK
    _message: str = "ok"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = self.node.create_timer(self.period_s, self.publish)

    def set_value(self, key: str, value: object) -> None:
        with self._lock:
            self._values[key] = str(value)

    def problem(self, key: str, message: str, *, error: bool = False, count: int = 1,
                prefix_key: bool = True) -> None:
        """Count ``count`` occurrences, flag the next report (WARN, or ERROR when ``error``) and log one
        line ("key: message", or the message alone without ``prefix_key``) unless ``key`` logged less than
        ``log_interval_s`` ago (then the next line gives the number left out)."""
        now_s = time.monotonic()
        text = f"{key}: {message}" if prefix_key else message
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + count
            level = DiagnosticStatus.ERROR if error else DiagnosticStatus.WARN
            if level > self._level:
                self._level = level
            self._message = text
            if now_s - self._last_log_s.get(key, -math.inf) < self.log_interval_s:
                self._unlogged[key] = self._unlogged.get(key, 0) + count
                return
            self._last_log_s[key] = now_s
            left_out = self._unlogged.pop(key, 0) + count - 1
        line = text + (f" ({left_out} more since the last line)" if left_out else "")
        # rclpy refuses a second severity from one call site, so each severity has its own line.
        if error:
            self.node.get_logger().error(line)
        else:
            self.node.get_logger().warning(line)

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def publish(self) -> None:
        with self._lock:
            status = DiagnosticStatus(
                level=self._level, name=f"{self.node.get_fully_qualified_name()}: {self.name}",
                message=self._message, hardware_id=self.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in self._values.items()]
                + [KeyValue(key=f"count/{k}", value=str(v)) for k, v in self._counts.items()],
            )
            # The level decays back to OK once a period passes without new problems.
            self._level = DiagnosticStatus.OK
            self._message = "ok"
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)


class RateMeter:
    """Sliding estimate of events per second (for diagnostics), monotonic clock."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: list[float] = []

    def tick(self, now_s: float | None = None) -> None:
        now = time.monotonic() if now_s is None else now_s
        self._times.append(now)
        cutoff = now - self._window_s
        while self._times and self._times[0] < cutoff:
            self._times.pop(0)

    def rate_hz(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


#: How long ``close()`` waits for a federated-learning thread (FedML stops on its event within a second
#: or two; only an import or a training step in progress takes longer). Inside the shutdown bound, with
#: room for the DDS teardown after it.
FL_THREAD_JOIN_S = 2.0
#: How long ``close()`` waits for a node's own worker (the wearable reader, the intention model loader):
#: each sees its stop request within one read or one model load. Inside the shutdown bound.
WORKER_JOIN_S = 2.0


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> None:
    """Standard main of a node executable: :func:`hrc_fl.nodes.composition.run_nodes` with the one node
    ``factory`` builds (init, spin until SIGINT/SIGTERM or external shutdown, cancel timers, ``close()``,
    destroy, shut down; a stop during construction ends it at once; a callback's fault propagates)."""
    run_nodes(lambda nodes: nodes.append(factory()), args)


def join_worker(node: Node, thread: threading.Thread, timeout_s: float = WORKER_JOIN_S) -> bool:
    """Join a node's worker thread within ``timeout_s``; True when it ended. A thread still busy (a
    daemon, by convention here) gets one log line and ends with the process; it must not publish after
    its node's stop event (see :class:`hrc_fl.nodes.federated_status.FederatedStatusPublisher`)."""
    thread.join(timeout=timeout_s)
    if thread.is_alive():
        node.get_logger().warning(f"worker thread {thread.name!r} still busy {timeout_s:.1f} s after the stop "
                                  "request; it ends with the process")
        return False
    return True
