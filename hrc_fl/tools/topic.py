"""Core of ``hrc-fl topic``: message -> text, receive-rate statistics, a QoS that matches the
publishers of a topic. ROS-free except :func:`subscription_qos` (takes rclpy publisher infos)."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SCALARS = (bool, int, float, str, bytes)


def _is_message(value: Any) -> bool:
    return hasattr(value, "get_fields_and_field_types")


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).lower()
    if isinstance(value, str):
        return repr(value) if (not value or value.strip() != value or ":" in value) else value
    if isinstance(value, bytes):
        return str(list(value))
    return str(value)


def _sequence_text(values: Sequence[Any], max_array: int) -> str:
    items = list(values[:max_array]) if max_array > 0 else list(values)
    text = ", ".join(_scalar_text(v.item() if hasattr(v, "item") else v) for v in items)
    more = len(values) - len(items)
    return f"[{text}{', ...' if more > 0 else ''}]" + (f"  # {len(values)} items" if more > 0 else "")


def message_to_text(msg: Any, *, max_array: int = 8, indent: int = 0) -> str:
    """A message as YAML-like text; arrays longer than ``max_array`` are cut (0: never)."""
    pad = "  " * indent
    lines: list[str] = []
    for name in msg.get_fields_and_field_types():
        value = getattr(msg, name)
        if _is_message(value):
            lines.append(f"{pad}{name}:")
            lines.append(message_to_text(value, max_array=max_array, indent=indent + 1))
        elif isinstance(value, _SCALARS) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0):
            lines.append(f"{pad}{name}: {_scalar_text(value)}")
        else:
            seq = list(value) if not hasattr(value, "__getitem__") else value
            if len(seq) and _is_message(seq[0]):
                shown = seq[:max_array] if max_array > 0 else seq
                lines.append(f"{pad}{name}:" + (f"  # {len(seq)} items" if len(shown) < len(seq) else ""))
                for item in shown:
                    body = message_to_text(item, max_array=max_array, indent=indent + 1).split("\n")
                    lines.append(f"{pad}- " + body[0][len(pad) + 2:])
                    lines.extend(body[1:])
                if len(shown) < len(seq):
                    lines.append(f"{pad}- ...")
            else:
                lines.append(f"{pad}{name}: {_sequence_text(seq, max_array)}")
    return "\n".join(lines) if lines else f"{pad}{{}}"


@dataclass(frozen=True)
class RateStats:
    """Receive rate over a window of arrival times (seconds, monotonic clock)."""

    count: int
    rate_hz: float
    min_period_s: float
    max_period_s: float
    std_period_s: float

    def text(self) -> str:
        return (f"average rate: {self.rate_hz:.3f} Hz\n\tmin: {self.min_period_s:.4f} s  "
                f"max: {self.max_period_s:.4f} s  std dev: {self.std_period_s:.5f} s  window: {self.count}")


class RateWindow:
    """Arrival times of the last ``window`` messages and their period statistics."""

    def __init__(self, window: int = 100) -> None:
        if window < 2:
            raise ValueError(f"window must hold at least 2 messages, got {window}")
        self._times: deque[float] = deque(maxlen=window)
        self.total = 0

    def add(self, t_s: float) -> None:
        if not math.isfinite(t_s):
            raise ValueError(f"arrival time must be finite, got {t_s!r}")
        if self._times and t_s < self._times[-1]:
            raise ValueError("arrival times must not go backwards")
        self._times.append(t_s)
        self.total += 1

    def stats(self) -> RateStats | None:
        """None until two messages arrived."""
        times = list(self._times)
        if len(times) < 2:
            return None
        periods = [b - a for a, b in itertools.pairwise(times)]
        mean = sum(periods) / len(periods)
        std = math.sqrt(sum((p - mean) ** 2 for p in periods) / len(periods))
        return RateStats(count=len(times), rate_hz=1.0 / mean if mean > 0 else math.inf,
                         min_period_s=min(periods), max_period_s=max(periods), std_period_s=std)


def subscription_qos(publisher_infos: Sequence[Any], depth: int = 10):
    """A QoS that matches every current publisher: reliable only if all are reliable (a reliable
    reader does not match a best-effort writer), transient-local only if all are (to get latched
    state). With no publishers yet: best effort + volatile, which matches any later publisher."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    profiles = [info.qos_profile for info in publisher_infos]
    reliable = bool(profiles) and all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
    latched = bool(profiles) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
