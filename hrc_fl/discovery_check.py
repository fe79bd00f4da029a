"""Did the nodes of a graph hear each other? A check on the first ``/diagnostics`` report of each node.

Every hrc_fl node publishes a ``DiagnosticStatus`` named ``<fully qualified node name>: <what>`` on
``/diagnostics`` once a second from its start (:class:`hrc_fl.nodes.common.Diagnostics`). A watcher in
the process that started the graph (the demo driver, ``hrc-fl launch --duration``) that hears none of them
within the timeout means no DDS traffic reaches it at all (loopback down, another domain, discovery range,
firewall); one that hears some but not all names the nodes that never published.

:class:`DiscoveryWatch` is the ROS-free core; :func:`watch_diagnostics` wires it to a node's subscription.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: The topic every node reports on, and the separator between node name and status name.
DIAGNOSTICS_TOPIC = "/diagnostics"
_NAME_SEPARATOR = ": "
#: Variables that decide whether DDS participants discover each other (named in the error message).
DISCOVERY_VARIABLES = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS",
                       "ROS_DISCOVERY_SERVER", "FASTDDS_DEFAULT_PROFILES_FILE")


class NodesNotHeardError(RuntimeError):
    """Some or all nodes of a graph never published within the discovery timeout."""

    def __init__(self, message: str, *, missing: list[str], heard: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
        self.heard = heard

    @property
    def no_traffic(self) -> bool:
        """True when not one node was heard: DDS carries nothing between these processes."""
        return not self.heard


def node_of_status(status_name: str) -> str | None:
    """``"/ws1/camera: camera"`` -> ``"/ws1/camera"``; None for a name without a node prefix."""
    node, sep, _ = status_name.partition(_NAME_SEPARATOR)
    return node if sep and node.startswith("/") else None


@dataclass
class DiscoveryWatch:
    """Which of the ``expected`` nodes (fully qualified names) have published, against a timeout."""

    expected: tuple[str, ...]
    timeout_s: float
    started_s: float = field(default_factory=time.monotonic)
    heard: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not self.expected:
            raise ValueError("a discovery watch needs at least one expected node")

    def on_status(self, status_name: str) -> None:
        node = node_of_status(status_name)
        if node in self.expected:
            self.heard.add(node)

    @property
    def complete(self) -> bool:
        return self.heard.issuperset(self.expected)

    def missing(self) -> list[str]:
        return [n for n in self.expected if n not in self.heard]

    def error(self, environment: Mapping[str, str] | None = None) -> NodesNotHeardError:
        """The error for the nodes not heard so far (message names them and what to check)."""
        env = os.environ if environment is None else environment
        missing, heard = self.missing(), sorted(self.heard)
        settings = ", ".join(f"{k}={env.get(k, '(unset)')}" for k in DISCOVERY_VARIABLES)
        first, last = dds_udp_ports(env)
        if not heard:
            message = (f"no DDS traffic between the nodes: none of the {len(self.expected)} nodes "
                       f"({', '.join(self.expected)}) was heard on {DIAGNOSTICS_TOPIC} within "
                       f"{self.timeout_s:.0f} s. Check that the network interface DDS uses is up (the loopback "
                       "interface for one machine: `ip link show lo`; a fresh network namespace has it down), "
                       "that every process uses the same ROS_DOMAIN_ID, that ROS_AUTOMATIC_DISCOVERY_RANGE fits "
                       "the layout (LOCALHOST on one machine, SUBNET across hosts, or a discovery server), and "
                       f"that no firewall drops UDP {first}-{last} (docs/deployment.md). Now: " + settings)
        else:
            message = (f"node(s) never published on {DIAGNOSTICS_TOPIC} within {self.timeout_s:.0f} s: "
                       f"{', '.join(missing)} (heard {len(heard)} of {len(self.expected)}). Check their logs for "
                       "a start-up error, and their DDS settings against the others'. Now: " + settings)
        return NodesNotHeardError(message, missing=missing, heard=heard)

    def check(self, now_s: float | None = None) -> None:
        """Raise :class:`NodesNotHeardError` once the timeout has passed with a node not heard."""
        now = time.monotonic() if now_s is None else now_s
        if not self.complete and now - self.started_s >= self.timeout_s:
            raise self.error()


def dds_udp_ports(environment: Mapping[str, str]) -> tuple[int, int]:
    """The UDP port range DDS uses in the environment's domain (RTPS well-known ports: 7400 + 250 x
    domain, discovery and user traffic, 2 ports per participant): first and last port."""
    try:
        domain = int(environment.get("ROS_DOMAIN_ID", "0") or 0)
    except ValueError:
        domain = 0
    first = 7400 + 250 * domain
    return first, first + 249


def expected_nodes(specs: Iterable) -> tuple[str, ...]:
    """Fully qualified names of the nodes of ``NodeSpec``s (what their diagnostics are named after)."""
    # a composed process (workstation_node) runs several nodes, each with its own name and diagnostics
    return tuple(label for s in specs for label in s.node_labels())


def watch_diagnostics(node, watch: DiscoveryWatch):  # -> rclpy Subscription
    """Feed ``watch`` from ``/diagnostics`` on ``node`` (an rclpy Node) until it is complete, then destroy
    the subscription (every node reports once a second for the whole run: nothing more to learn from
    them); returns the subscription."""
    from diagnostic_msgs.msg import DiagnosticArray

    subscription = []  # set below; the callback runs only after creation

    def on_array(msg: DiagnosticArray) -> None:
        if watch.complete:
            return  # a message taken before the destruction took effect
        for status in msg.status:
            watch.on_status(status.name)
        if watch.complete:
            node.destroy_subscription(subscription[0])

    subscription.append(node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, on_array, 50))
    return subscription[0]
