"""The wearable line protocol (serial and UDP) and the sample type every source yields.

Line protocol (UTF-8 text, one sample per line, ``\\n`` terminated, comma separated)::

    t_device_s,ax,ay,az,wx,wy,wz[,hr_bpm]

- ``t_device_s``: sample time on the device clock in seconds (any epoch, must increase).
- ``ax, ay, az``: linear acceleration incl. gravity in m/s², device frame (published as ``wrist_imu``).
- ``wx, wy, wz``: angular rate in rad/s, same frame.
- ``hr_bpm`` (optional): heart rate in beats per minute; empty or ``nan`` when the device has none.
Lines starting with ``#`` are comments (e.g. a device banner) and are ignored.

UDP: each datagram holds one or more such lines (a phone/watch app batches e.g. 5 samples = 100 ms
at 50 Hz per datagram). Datagrams larger than 65 507 bytes cannot exist; keep them < 1 400 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FIELDS_MIN = 7
FIELDS_MAX = 8


@dataclass(frozen=True)
class ImuSample:
    """One IMU sample on the device clock; SI units (m/s², rad/s), device frame."""

    t_device_s: float
    accel_ms2: tuple[float, float, float]
    gyro_rads: tuple[float, float, float]
    heart_rate_bpm: float = math.nan

    def values(self) -> np.ndarray:
        """(6,) float64 [ax, ay, az, wx, wy, wz]."""
        return np.array(self.accel_ms2 + self.gyro_rads, dtype=np.float64)


class ProtocolError(ValueError):
    """A line that is not a sample in the documented protocol."""


def parse_line(line: str | bytes) -> ImuSample | None:
    """Parse one protocol line; None for blank/comment lines; ProtocolError when malformed.

    Non-finite numbers parse (``nan``) and are left to the validator, which drops and counts them.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("line is not UTF-8") from None
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = [p.strip() for p in text.split(",")]
    if not FIELDS_MIN <= len(parts) <= FIELDS_MAX:
        raise ProtocolError(f"expected {FIELDS_MIN} or {FIELDS_MAX} fields, got {len(parts)}: {text[:60]!r}")
    try:
        numbers = [float(p) for p in parts[:FIELDS_MIN]]
        hr = float(parts[7]) if len(parts) == FIELDS_MAX and parts[7] else math.nan
    except ValueError:
        raise ProtocolError(f"non-numeric field in {text[:60]!r}") from None
    return ImuSample(t_device_s=numbers[0], accel_ms2=(numbers[1], numbers[2], numbers[3]),
                     gyro_rads=(numbers[4], numbers[5], numbers[6]), heart_rate_bpm=hr)


def format_line(sample: ImuSample) -> str:
    """The protocol line of ``sample`` (with heart rate when it is finite), newline terminated."""
    fields = [sample.t_device_s, *sample.accel_ms2, *sample.gyro_rads]
    text = ",".join(f"{v:.6f}" for v in fields)
    if math.isfinite(sample.heart_rate_bpm):
        text += f",{sample.heart_rate_bpm:.1f}"
    return text + "\n"
