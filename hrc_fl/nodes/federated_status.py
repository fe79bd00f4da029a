"""``federated/status`` for the aggregator and fl_client nodes: the FedML server's and client's status reports as
latched ``hrc_fl_msgs/FederatedStatus`` messages, with round and state mirrored on ``/diagnostics``."""

from __future__ import annotations

import threading

from hrc_fl_msgs.msg import FederatedStatus
from rclpy.node import Node

from hrc_fl.nodes.common import LATCHED_QOS, Diagnostics


class FederatedStatusPublisher:
    """Callable ``on_status`` for :func:`run_server` / :func:`run_client` (any thread).

    Once ``stop_event`` is set (the node is closing) reports are dropped: the FL thread may still be
    winding down when the node's publishers go, and a publish then would fail on the invalid context.
    """

    def __init__(self, node: Node, diag: Diagnostics, topic: str = "federated/status", *,
                 stop_event: threading.Event | None = None) -> None:
        self._node = node
        self._diag = diag
        self._stop = stop_event
        self._pub = node.create_publisher(FederatedStatus, topic, LATCHED_QOS)

    def __call__(self, status) -> None:
        """``status``: a :class:`hrc_fl.federated.transport.fedml_wire.StatusReport`."""
        if self._stop is not None and self._stop.is_set():
            return
        reason = getattr(status, "reason", "")  # e.g. why a secure round failed: the state says it
        msg = FederatedStatus(role=status.role, node_id=status.node_id, round=int(status.round),
                              model_version=status.model_version,
                              state=f"{status.state}: {reason}" if reason else status.state,
                              participants=list(status.participants), metric_names=list(status.metrics),
                              metric_values=[float(v) for v in status.metrics.values()])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
        self._diag.set_value("round", status.round)
        self._diag.set_value("state", status.state)
