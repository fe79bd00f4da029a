"""Wearable IMU sources without ROS: a serial device, UDP datagrams, and replay of a real recording.

Every source has ``open()``, ``close()`` and ``read(timeout_s) -> SourceBatch``; ``read`` raises
:class:`SourceDisconnected` when the link is gone. :class:`ReconnectingSource` wraps any of them and
reopens with exponential back-off. Lines use the protocol in :mod:`hrc_fl.wearable.protocol`.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hrc_fl.wearable.protocol import ImuSample, ProtocolError, parse_line

STANDARD_GRAVITY_MS2 = 9.80665


class SourceDisconnected(ConnectionError):
    """The device link is gone (port closed, device unplugged, socket error)."""


@dataclass
class SourceBatch:
    """What one read produced: parsed samples and the number of malformed lines/datagrams."""

    samples: list[ImuSample] = field(default_factory=list)
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)


class ImuSource(Protocol):
    description: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read(self, timeout_s: float) -> SourceBatch: ...


def _parse_into(batch: SourceBatch, line: bytes | str) -> None:
    try:
        sample = parse_line(line)
    except ProtocolError as exc:
        batch.malformed += 1
        if len(batch.malformed_examples) < 3:
            batch.malformed_examples.append(str(exc))
        return
    if sample is not None:
        batch.samples.append(sample)


class SerialSource:
    """A device on a serial port (USB CDC, Bluetooth SPP) speaking the line protocol."""

    def __init__(self, port: str, baudrate: int = 115200, max_line_bytes: int = 256) -> None:
        if not port:
            raise ValueError("serial port must be given (e.g. /dev/ttyACM0)")
        if baudrate <= 0 or max_line_bytes < 16:
            raise ValueError("baudrate must be positive and max_line_bytes >= 16")
        self.port = port
        self.baudrate = baudrate
        self.max_line_bytes = max_line_bytes
        self.description = f"serial:{port}@{baudrate}"
        self._serial = None
        self._pending = b""

    def open(self) -> None:
        import serial  # pyserial

        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
        except (serial.SerialException, OSError) as exc:
            raise SourceDisconnected(f"cannot open {self.port}: {exc}") from None
        self._pending = b""

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def read(self, timeout_s: float) -> SourceBatch:
        import serial

        if self._serial is None:
            raise SourceDisconnected(f"{self.port} is not open")
        batch = SourceBatch()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._serial.timeout = max(0.0, deadline - time.monotonic())
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self.close()
                raise SourceDisconnected(f"{self.port}: {exc}") from None
            self._pending += chunk
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                _parse_into(batch, line)
            if len(self._pending) > self.max_line_bytes:  # garbage without newlines
                batch.malformed += 1
                self._pending = b""
            if batch.samples or batch.malformed or time.monotonic() >= deadline:
                return batch


class UdpSource:
    """Datagrams of one or more protocol lines, received on ``host:port`` (loopback by default)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"UDP port must be 0..65535, got {port}")
        self.host = host
        self.port = port
        self.description = f"udp:{host}:{port}"
        self._sock: socket.socket | None = None

    @property
    def bound_port(self) -> int:
        """The actual port (useful with port 0 = any free port)."""
        if self._sock is None:
            raise SourceDisconnected("UDP source not open")
        return int(self._sock.getsockname()[1])

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SourceDisconnected(f"cannot bind UDP {self.host}:{self.port}: {exc}") from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, timeout_s: float) -> SourceBatch:
        if self._sock is None:
            raise SourceDisconnected("UDP source not open")
        batch = SourceBatch()
        self._sock.settimeout(max(1e-4, timeout_s))
        try:
            data, _ = self._sock.recvfrom(65535)
        except TimeoutError:
            return batch
        except OSError as exc:
            self.close()
            raise SourceDisconnected(f"UDP receive failed: {exc}") from None
        for line in data.split(b"\n"):
            _parse_into(batch, line)
        return batch


class ReplaySource:
    """Replays a recording (T, 6) [a in g, w in rad/s] at its true rate, looping.

    Device time of sample k is ``k / rate_hz`` (plus whole loops); a sample is released once the
    injectable ``clock`` has advanced past its due time since :meth:`open`, so tests can drive it
    without sleeping. Acceleration is converted from g to m/s².
    """

    def __init__(self, imu_g: np.ndarray, rate_hz: float, *, loop: bool = True, description: str = "replay",
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        imu = np.asarray(imu_g, dtype=np.float64)
        if imu.ndim != 2 or imu.shape[1] != 6 or len(imu) == 0:
            raise ValueError(f"replay data must have shape (T>0, 6), got {imu.shape}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self._imu = imu.copy()
        self._imu[:, :3] *= STANDARD_GRAVITY_MS2
        self.rate_hz = float(rate_hz)
        self.loop = loop
        self.description = description
        self._clock = clock
        self._sleep = sleep
        self._start_s: float | None = None
        self._next = 0  # index of the next sample over all loops

    def open(self) -> None:
        self._start_s = self._clock()
        self._next = 0

    def close(self) -> None:
        self._start_s = None

    def due_count(self) -> int:
        """Samples due by now since open (over all loops)."""
        if self._start_s is None:
            raise SourceDisconnected("replay not open")
        # the small epsilon keeps a sample due exactly now from being missed by float rounding
        return math.floor((self._clock() - self._start_s) * self.rate_hz + 1e-6) + 1

    def read(self, timeout_s: float) -> SourceBatch:
        if self._start_s is None:
            raise SourceDisconnected("replay not open")
        n = len(self._imu)
        if not self.loop and self._next >= n:
            raise SourceDisconnected("replay finished")
        due = self.due_count()
        if due <= self._next:
            wait_s = (self._next / self.rate_hz) - (self._clock() - self._start_s)
            self._sleep(min(max(wait_s, 0.0), timeout_s))
            due = self.due_count()
        if not self.loop:
            due = min(due, n)
        batch = SourceBatch()
        for k in range(self._next, due):
            row = self._imu[k % n]
            batch.samples.append(ImuSample(t_device_s=k / self.rate_hz, accel_ms2=tuple(row[:3]),
                                           gyro_rads=tuple(row[3:])))
        self._next = max(self._next, due)
        return batch


@dataclass
class LinkEvent:
    kind: str  # "connected", "disconnected", "open_failed"
    message: str


class ReconnectingSource:
    """Wraps a source: opens it, and after a disconnect reopens with exponential back-off
    (``backoff_initial_s`` doubling up to ``backoff_max_s``). ``read`` never raises for link loss;
    link changes are reported through ``on_event``."""

    def __init__(self, source: ImuSource, *, backoff_initial_s: float = 0.5, backoff_max_s: float = 5.0,
                 on_event: Callable[[LinkEvent], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.source = source
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._on_event = on_event or (lambda event: None)
        self._clock = clock
        self._sleep = sleep
        self.connected = False
        self.reconnects = 0
        self.disconnects = 0
        self._backoff_s = backoff_initial_s
        self._next_attempt_s = clock()

    def _try_open(self) -> bool:
        try:
            self.source.open()
        except SourceDisconnected as exc:
            self._next_attempt_s = self._clock() + self._backoff_s
            self._on_event(LinkEvent("open_failed", f"{exc}; retry in {self._backoff_s:.1f} s"))
            self._backoff_s = min(self._backoff_s * 2.0, self.backoff_max_s)
            return False
        if self.disconnects:
            self.reconnects += 1
        self.connected = True
        self._backoff_s = self.backoff_initial_s
        self._on_event(LinkEvent("connected", self.source.description))
        return True

    def read(self, timeout_s: float) -> SourceBatch:
        if not self.connected:
            wait_s = self._next_attempt_s - self._clock()
            if wait_s > 0:
                self._sleep(min(wait_s, timeout_s))
                return SourceBatch()
            if not self._try_open():
                return SourceBatch()
        try:
            return self.source.read(timeout_s)
        except SourceDisconnected as exc:
            self.connected = False
            self.disconnects += 1
            self.source.close()
            self._next_attempt_s = self._clock() + self._backoff_s
            self._on_event(LinkEvent("disconnected", str(exc)))
            return SourceBatch()

    def close(self) -> None:
        self.source.close()
        self.connected = False
