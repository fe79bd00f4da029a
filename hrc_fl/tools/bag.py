"""Record ROS topics into MCAP bags (rosbags) and play them back with the original timing.

Messages are stored as the CDR bytes they arrived in (``raw=True``) and published back as bytes,
so nothing is deserialised on either path and custom types (hrc_fl_msgs) round-trip unchanged.
The bag layout is rosbag2's (a folder with ``metadata.yaml`` and an ``.mcap`` file), so `ros2 bag`,
`mcap` + `mcap-ros2-support` and Foxglove read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrc_fl.tools.msgtypes import build_typestore, import_message_type, normalize_type_name

#: Topics every ROS process creates; recorded only when named explicitly.
HIDDEN_TOPICS = frozenset({"/rosout", "/parameter_events"})


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _rosbags_qos(profile: Any):
    """rclpy QoSProfile -> rosbags Qos (stored in metadata.yaml as offered profiles)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)),
               durability=QosDurability(int(profile.durability)), deadline=never, lifespan=never,
               liveliness=QosLiveliness(int(profile.liveliness)), liveliness_lease_duration=never,
               avoid_ros_namespace_conventions=False)


@dataclass
class RecordStats:
    """What a recording holds: messages and bytes per topic."""

    messages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    skipped_types: dict[str, str] = field(default_factory=dict)  # topic -> type not in the typestore


class BagRecorder:
    """Subscribes to the chosen topics (or all, re-discovered every ``discovery_period_s``) on
    ``node`` and writes every message with its receive time (ns, system clock) into an MCAP bag."""

    def __init__(self, node: Any, path: Path, topics: Sequence[str] = (), *,
                 discovery_period_s: float = 1.0, log: Callable[[str], None] = print,
                 on_write: Callable[[str], None] | None = None) -> None:
        """``on_write(topic)`` is called after every written message (e.g. to count it elsewhere
        without a second subscription)."""
        if discovery_period_s <= 0:
            raise ValueError("discovery_period_s must be positive")
        path = Path(path)
        if path.exists():
            raise ValueError(f"bag path exists already: {path}")
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._node = node
        self._topics = {_absolute(t) for t in topics}
        self._log = log
        self._on_write = on_write
        self._typestore = build_typestore()
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self._subscriptions: list[Any] = []
        self.path = path
        self.stats = RecordStats()
        self._closed = False
        self._discover()
        self._timer = node.create_timer(discovery_period_s, self._discover)

    def _wanted(self, topic: str) -> bool:
        return topic in self._topics if self._topics else topic not in HIDDEN_TOPICS

    def _discover(self) -> None:
        for topic, types in self._node.get_topic_names_and_types():
            if topic in self._connections or topic in self.stats.skipped_types or not self._wanted(topic):
                continue
            self._subscribe(topic, types[0])

    def _subscribe(self, topic: str, type_name: str) -> None:
        from hrc_fl.tools.topic import subscription_qos

        msgtype = normalize_type_name(type_name)
        if msgtype not in self._typestore.fielddefs:
            self.stats.skipped_types[topic] = msgtype
            self._log(f"record: skipping {topic}: type {msgtype} is not known to the typestore")
            return
        infos = self._node.get_publishers_info_by_topic(topic)
        qos = subscription_qos(infos, depth=100)
        with self._lock:
            connection = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore,
                offered_qos_profiles=[_rosbags_qos(i.qos_profile) for i in infos])
            self._connections[topic] = connection
            self.stats.messages[topic] = 0
            self.stats.bytes[topic] = 0
        self._subscriptions.append(self._node.create_subscription(
            import_message_type(msgtype), topic, self._writer_for(topic), qos, raw=True))
        self._log(f"record: {topic} [{msgtype}]")

    def _writer_for(self, topic: str) -> Callable[[bytes], None]:
        # A one-argument closure: rclpy passes MessageInfo to callbacks that take two arguments.
        def on_message(data: bytes) -> None:
            self._write(topic, data)
        return on_message

    def _write(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._writer.write(self._connections[topic], time.time_ns(), data)
            self.stats.messages[topic] += 1
            self.stats.bytes[topic] += len(data)
        if self._on_write is not None:
            self._on_write(topic)

    def close(self, *, destroy_subscriptions: bool = True) -> RecordStats:
        """Finish the bag (MCAP summary and metadata.yaml), then stop subscribing. The bag is complete
        before any subscription is destroyed: deleting a DDS reader can stall in Fast DDS. With
        ``destroy_subscriptions=False`` they go with the node or the process."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
            self._writer.close()
        self._timer.cancel()
        self._node.destroy_timer(self._timer)
        if destroy_subscriptions:
            for sub in self._subscriptions:
                self._node.destroy_subscription(sub)
        return self.stats


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int
    data: bytes


def read_bag(path: Path, topics: Iterable[str] = ()) -> tuple[dict[str, tuple[str, bool]], list[BagMessage]]:
    """All messages of a bag (in time order) and per topic (type, latched). ``topics`` filters."""
    from rosbags.interfaces import QosDurability
    from rosbags.rosbag2 import Reader

    wanted = {_absolute(t) for t in topics}
    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if not wanted or c.topic in wanted]
        info: dict[str, tuple[str, bool]] = {}
        for conn in connections:
            profiles = getattr(conn.ext, "offered_qos_profiles", []) or []
            latched = bool(profiles) and all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)
            info[conn.topic] = (conn.msgtype, latched)
        messages = [BagMessage(c.topic, c.msgtype, ts, bytes(raw))
                    for c, ts, raw in reader.messages(connections=connections)]
    messages.sort(key=lambda m: m.timestamp_ns)
    return info, messages


class BagPlayer:
    """Publishes a bag's messages as raw CDR with the recorded spacing divided by ``rate``."""

    def __init__(self, node: Any, path: Path, *, rate: float = 1.0, loop: bool = False,
                 topics: Sequence[str] = (), log: Callable[[str], None] = print) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self._rate = rate
        self._loop = loop
        self._log = log
        info, self._messages = read_bag(path, topics)
        self.publishers: dict[str, Any] = {}
        for topic, (msgtype, latched) in info.items():
            try:
                cls = import_message_type(msgtype)
            except ValueError as exc:
                log(f"play: skipping {topic}: {exc}")
                continue
            # Reliable writers match reliable and best-effort readers alike.
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if latched else 100,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.publishers[topic] = node.create_publisher(cls, topic, qos)
        self.published = 0

    @property
    def message_count(self) -> int:
        return len(self._messages)

    def wait_for_subscribers(self, timeout_s: float, spin_once: Callable[[], None] | None = None) -> bool:
        """Wait until each topic has a subscriber (or the timeout); True if all have one."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                return True
            spin_once() if spin_once else time.sleep(0.05)
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())

    def play(self, stop: threading.Event | None = None) -> int:
        """Publish until the end (or forever with ``loop``) or until ``stop`` is set; returns the
        number of messages published."""
        stop = stop or threading.Event()
        if not self._messages:
            return 0
        while not stop.is_set():
            t0_ns = self._messages[0].timestamp_ns
            start = time.monotonic()
            for msg in self._messages:
                due = start + (msg.timestamp_ns - t0_ns) * 1e-9 / self._rate
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                publisher = self.publishers.get(msg.topic)
                if publisher is not None:
                    publisher.publish(msg.data)
                    self.published += 1
            if not self._loop:
                break
        self.wait_for_delivery()
        return self.published

    def wait_for_delivery(self, timeout_s: float = 5.0) -> bool:
        """Wait until reliable readers acknowledged what was published: a process that exits right
        after its last publish would otherwise take the last messages with it."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        acked = True
        for publisher in self.publishers.values():
            remaining = max(0.0, deadline - time.monotonic())
            acked = publisher.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9))) and acked
        return acked
