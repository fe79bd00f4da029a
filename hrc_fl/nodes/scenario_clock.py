"""Scenario time for nodes that replay a scripted scenario (hrc_fl.sim.scenario).

Whoever runs the scenario (the demo driver) publishes its start once on ``/scenario/start``
(std_msgs/Header, latched: late joiners get it); the stamp is the start in the ROS clock. Every
replaying node of the plant then plays the same script in step, from its own process, with no
message of the scenario's runner on the camera->safety path. Scenario time is 0 until the start.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from std_msgs.msg import Header

from hrc_fl.nodes.common import LATCHED_QOS, s_to_stamp, stamp_to_s

#: Absolute: one scenario for the whole plant (every workstation's namespace).
SCENARIO_START_TOPIC = "/scenario/start"


def scenario_start_publisher(node: Node):
    """The latched publisher of the scenario start (call :func:`publish_scenario_start` with it)."""
    return node.create_publisher(Header, SCENARIO_START_TOPIC, LATCHED_QOS)


def publish_scenario_start(publisher, start_s: float) -> None:
    """Announce that the scenario started at ``start_s`` (ROS clock, s since the epoch)."""
    publisher.publish(Header(stamp=s_to_stamp(start_s), frame_id="scenario"))


class ScenarioClock:
    """Scenario seconds at a ROS time, from the latched start stamp (0 before it arrives)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._start_s: float | None = None
        node.create_subscription(Header, SCENARIO_START_TOPIC, self._on_start, LATCHED_QOS)

    def _on_start(self, msg: Header) -> None:
        with self._lock:
            self._start_s = stamp_to_s(msg.stamp)
        self._node.get_logger().info("scenario started")

    @property
    def started(self) -> bool:
        with self._lock:
            return self._start_s is not None

    def seconds_at(self, t_s: float) -> float:
        """Scenario time (s) at ROS time ``t_s`` (s); 0 before the start."""
        with self._lock:
            start = self._start_s
        return 0.0 if start is None else max(0.0, t_s - start)

    def seconds_now(self) -> float:
        return self.seconds_at(self._node.get_clock().now().nanoseconds * 1e-9)
