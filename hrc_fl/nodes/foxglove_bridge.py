"""foxglove_bridge_node: live view in the Foxglove viewer for machines without rviz.

Forwards the chosen ROS topics (or every topic) as CDR with ros2msg schemas over a Foxglove
websocket server bound to 127.0.0.1 by default (open ws://127.0.0.1:8765 in Foxglove).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rclpy.node import Node

from hrc_fl.nodes.common import Diagnostics, declare_parameters, run_node

PARAMETERS = {
    "host": ("127.0.0.1", "Address the websocket server binds to; 0.0.0.0 exposes it to the network."),
    "port": (8765, "Websocket port (0: any free port, logged at start)."),
    "topics": ([], "Topics to forward (relative names resolve in the node's namespace); empty: all."),
    "discovery_period_s": (1.0, "How often new topics are looked for (s)."),
    "server_name": ("hrc_fl", "Name shown in the Foxglove connection dialog."),
}
HIDDEN_TOPICS = frozenset({"/rosout", "/parameter_events"})


class FoxgloveBridgeNode(Node):
    """Subscribes raw to topics and hands their CDR bytes to a :class:`FoxgloveForwarder`."""

    def __init__(self) -> None:
        super().__init__("foxglove_bridge")
        from hrc_fl.tools.foxglove_server import FoxgloveForwarder
        from hrc_fl.tools.topic import subscription_qos

        self._subscription_qos = subscription_qos
        p = declare_parameters(self, PARAMETERS)
        if p["discovery_period_s"] <= 0:
            raise ValueError("discovery_period_s must be positive")
        self._wanted = {self.resolve_topic_name(t) for t in p["topics"]}
        self._forwarder = FoxgloveForwarder(host=p["host"], port=int(p["port"]), name=p["server_name"])
        self._forwarded_subs: dict[str, object] = {}
        self._skipped: set[str] = set()
        self._diag = Diagnostics(self, "foxglove bridge")
        self.get_logger().info(f"Foxglove websocket on ws://{p['host']}:{self._forwarder.port}")
        self._diag.set_value("port", self._forwarder.port)
        self._discover()
        self._timer = self.create_timer(p["discovery_period_s"], self._discover)

    def _discover(self) -> None:
        from hrc_fl.tools.msgtypes import import_message_type

        for topic, types in self.get_topic_names_and_types():
            if topic in self._forwarded_subs or topic in self._skipped:
                continue
            if (self._wanted and topic not in self._wanted) or (not self._wanted and topic in HIDDEN_TOPICS):
                continue
            try:
                self._forwarder.add_topic(topic, types[0])
                msg_type = import_message_type(types[0])
            except ValueError as exc:
                self._skipped.add(topic)
                self._diag.problem("unknown_type", f"not forwarding {topic}: {exc}")
                continue
            qos = self._subscription_qos(self.get_publishers_info_by_topic(topic))
            self._forwarded_subs[topic] = self.create_subscription(msg_type, topic, self._forward_to(topic),
                                                                  qos, raw=True)
            self.get_logger().info(f"forwarding {topic} [{types[0]}]")
        self._diag.set_value("topics", len(self._forwarded_subs))
        self._diag.set_value("forwarded", self._forwarder.forwarded)

    def _forward_to(self, topic: str) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:  # one argument: rclpy would pass MessageInfo to a second
            self._forwarder.forward(topic, data, time.time_ns())
        return on_message

    def close(self) -> None:
        self._forwarder.close()


def main(args: list[str] | None = None) -> None:
    run_node(FoxgloveBridgeNode, args)
