"""Counts messages on every topic of the graph, to report which topics flowed at what rate."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from hrc_fl.tools.msgtypes import import_message_type

#: Best effort + volatile is compatible with every publisher (reliable or not, latched or not).
MONITOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                         reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


@dataclass
class TopicRate:
    topic: str
    type_name: str
    count: int
    rate_hz: float


class TopicRateMonitor:
    """Subscribes (raw, no deserialisation) to every topic it discovers and counts messages."""

    def __init__(self, node: Node, *, exclude_prefixes: tuple[str, ...] = ("/rosout", "/parameter_events"),
                 exclude_suffixes: tuple[str, ...] = ()):
        self._node = node
        self._exclude = exclude_prefixes
        self.excluded_suffixes = tuple(exclude_suffixes)
        self._counts: dict[str, list[float]] = {}
        self._types: dict[str, str] = {}
        self._subs = []
        self._counted_elsewhere: set[str] = set()
        self._start = time.monotonic()

    def count_elsewhere(self, topics: Iterable[str]) -> None:
        """Topics another subscriber of this process receives and reports through :meth:`count`: the
        monitor lists them with their type but does not subscribe a second time."""
        self._counted_elsewhere.update(topics)

    def count(self, topic: str) -> None:
        """One message of ``topic`` received by another subscriber (see :meth:`count_elsewhere`)."""
        self._counts.setdefault(topic, []).append(time.monotonic())

    def discover(self) -> None:
        """Subscribe to topics that appeared since the last call."""
        for topic, types in self._node.get_topic_names_and_types():
            if (topic in self._types or topic.startswith(self._exclude) or not types
                    or topic.endswith(self.excluded_suffixes)):
                continue
            try:
                msg_type = import_message_type(types[0])
            except ValueError:
                continue  # a type this environment lacks: not countable, not an error of the graph
            self._types[topic] = types[0]
            stamps = self._counts.setdefault(topic, [])
            if topic in self._counted_elsewhere:
                continue
            self._subs.append(self._node.create_subscription(
                msg_type, topic, lambda _m, s=stamps: s.append(time.monotonic()), MONITOR_QOS, raw=True))

    def rates(self) -> list[TopicRate]:
        """Per topic: messages counted and mean rate between the first and last message."""
        result = []
        for topic, type_name in sorted(self._types.items()):
            stamps = self._counts[topic]
            span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
            rate = (len(stamps) - 1) / span if span > 0 else 0.0
            result.append(TopicRate(topic, type_name, len(stamps), rate))
        return result


def format_rates(rates: list[TopicRate]) -> str:
    """A readable table of topic rates."""
    if not rates:
        return "no topics discovered"
    width = max(len(r.topic) for r in rates)
    lines = [f"{'topic':<{width}}  {'type':<36} {'msgs':>6} {'rate_hz':>8}"]
    lines += [f"{r.topic:<{width}}  {r.type_name:<36} {r.count:>6} {r.rate_hz:>8.1f}" for r in rates]
    return "\n".join(lines)
