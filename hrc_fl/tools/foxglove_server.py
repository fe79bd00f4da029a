"""A Foxglove websocket server that forwards CDR-encoded ROS messages (ros2msg schemas), ROS-free.

The ROS side (hrc_fl/nodes/foxglove_bridge.py) hands over each topic's type and the raw CDR bytes
of each message; the viewer decodes them with the schema text generated from the message
definitions (the same text rosbag2 stores in MCAP files).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from hrc_fl.tools.msgtypes import build_typestore, normalize_type_name


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"host must be an IP address (default 127.0.0.1), got {host!r}") from exc


class FoxgloveForwarder:
    """Owns one foxglove websocket server (own SDK context) and one channel per ROS topic."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8765, name: str = "hrc_fl") -> None:
        _check_host(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535 (0: any free port), got {port}")
        import foxglove

        self._foxglove = foxglove
        self._typestore = build_typestore()
        self._context = foxglove.Context()
        self._server = foxglove.start_server(name=name, host=host, port=port, context=self._context)
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.forwarded = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.port

    def has_topic(self, topic: str) -> bool:
        with self._lock:
            return topic in self._channels

    def knows_type(self, type_name: str) -> bool:
        return normalize_type_name(type_name) in self._typestore.fielddefs

    def add_topic(self, topic: str, type_name: str) -> None:
        """Advertise ``topic`` with the ros2msg schema of ``type_name``; ValueError if unknown."""
        msgtype = normalize_type_name(type_name)
        if msgtype not in self._typestore.fielddefs:
            raise ValueError(f"no message definition for {msgtype}")
        text, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
        schema = self._foxglove.Schema(name=msgtype, encoding="ros2msg", data=text.encode())
        with self._lock:
            if topic in self._channels:
                return
            self._channels[topic] = self._foxglove.Channel(topic, schema=schema, message_encoding="cdr",
                                                           context=self._context)

    def forward(self, topic: str, cdr: bytes, log_time_ns: int) -> None:
        """Send one message's CDR bytes to every subscribed client (no-op without subscribers)."""
        with self._lock:
            channel = self._channels.get(topic)
        if channel is None:
            raise ValueError(f"topic {topic} was not added")
        channel.log(bytes(cdr), log_time=log_time_ns)
        self.forwarded += 1

    def close(self) -> None:
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.close()
        self._server.stop()
