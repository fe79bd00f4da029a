"""Time alignment of the IMU, hand and pose streams by their header stamps, with bounded buffers.

All times are seconds on the ROS clock (header stamps). For an estimate at reference time ``t``:
- IMU: the newest ``window`` samples stamped at or before ``t``; present when the newest is at most
  ``imu_max_age_s`` old and the window spans at most ``max_span_factor`` times its nominal length
  (too many missing samples make it absent rather than wrong);
- hands / pose: the newest observation at or before ``t`` and at most ``*_max_age_s`` old. An explicit
  "nobody seen" observation (``None`` value) makes the modality absent from that stamp on.
Buffers are bounded (deque maxlen); out-of-order and duplicate stamps are rejected by ``add``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class StampedBuffer(Generic[T]):
    """Bounded buffer of (stamp_s, value) with strictly increasing stamps."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._stamps: deque[float] = deque(maxlen=capacity)
        self._values: deque[T] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp_s(self) -> float:
        return self._stamps[-1] if self._stamps else -math.inf

    def add(self, stamp_s: float, value: T) -> str | None:
        """Append; returns None when accepted, else the reason ("non_finite", "duplicate", "out_of_order")."""
        if not math.isfinite(stamp_s):
            return "non_finite"
        if self._stamps:
            if stamp_s == self._stamps[-1]:
                return "duplicate"
            if stamp_s < self._stamps[-1]:
                return "out_of_order"
        self._stamps.append(stamp_s)
        self._values.append(value)
        return None

    def index_at(self, t_s: float) -> int:
        """Index of the newest entry stamped at or before ``t_s`` (-1 when none)."""
        return bisect.bisect_right(self._stamps, t_s) - 1

    def latest_at(self, t_s: float) -> tuple[float, T] | None:
        i = self.index_at(t_s)
        return None if i < 0 else (self._stamps[i], self._values[i])

    def last_n_at(self, t_s: float, n: int) -> tuple[np.ndarray, list[T]] | None:
        """Stamps and values of the ``n`` newest entries at or before ``t_s`` (None if fewer)."""
        i = self.index_at(t_s)
        if i + 1 < n:
            return None
        lo = i + 1 - n
        stamps = np.fromiter((self._stamps[k] for k in range(lo, i + 1)), dtype=np.float64, count=n)
        return stamps, [self._values[k] for k in range(lo, i + 1)]


@dataclass(frozen=True)
class AlignmentConfig:
    imu_window: int = 100
    imu_rate_hz: float = 50.0
    imu_max_age_s: float = 0.2
    hands_max_age_s: float = 0.5
    pose_max_age_s: float = 0.5
    max_span_factor: float = 1.5
    imu_capacity: int = 1000
    observation_capacity: int = 64

    def __post_init__(self) -> None:
        if self.imu_window < 2 or not self.imu_rate_hz > 0:
            raise ValueError("imu_window must be >= 2 and imu_rate_hz positive")
        if min(self.imu_max_age_s, self.hands_max_age_s, self.pose_max_age_s) <= 0:
            raise ValueError("max ages must be positive")
        if self.max_span_factor < 1.0:
            raise ValueError("max_span_factor must be >= 1")
        if self.imu_capacity < self.imu_window or self.observation_capacity < 1:
            raise ValueError("imu_capacity must hold a window and observation_capacity must be >= 1")


@dataclass(frozen=True)
class AlignedInputs:
    """Model inputs at one reference time; None = modality absent."""

    t_s: float
    imu: np.ndarray | None    # (window, 6) float32
    hands: np.ndarray | None  # (hands_dim,) float32
    pose: np.ndarray | None   # (pose_dim,) float32

    @property
    def present(self) -> tuple[bool, bool, bool]:
        return self.imu is not None, self.hands is not None, self.pose is not None

    @property
    def any_present(self) -> bool:
        return any(self.present)


class StreamAligner:
    """Buffers the three streams and returns the aligned inputs for a reference time."""

    def __init__(self, config: AlignmentConfig) -> None:
        self.config = config
        self.imu: StampedBuffer[np.ndarray] = StampedBuffer(config.imu_capacity)
        self.hands: StampedBuffer[np.ndarray | None] = StampedBuffer(config.observation_capacity)
        self.pose: StampedBuffer[np.ndarray | None] = StampedBuffer(config.observation_capacity)

    def add_imu(self, stamp_s: float, sample: np.ndarray) -> str | None:
        values = np.asarray(sample, dtype=np.float32).reshape(-1)
        if values.shape != (6,) or not np.all(np.isfinite(values)):
            return "non_finite"
        return self.imu.add(stamp_s, values)

    def add_hands(self, stamp_s: float, features: np.ndarray | None) -> str | None:
        """Hand features at an image stamp; ``None`` = no usable hand in that frame."""
        return self.hands.add(stamp_s, features)

    def add_pose(self, stamp_s: float, features: np.ndarray | None) -> str | None:
        """Pose features at an image stamp; ``None`` = nobody seen in that frame."""
        return self.pose.add(stamp_s, features)

    def newest_stamp_s(self) -> float:
        return max(self.imu.newest_stamp_s, self.hands.newest_stamp_s, self.pose.newest_stamp_s)

    def at(self, t_s: float) -> AlignedInputs:
        c = self.config
        return AlignedInputs(t_s=t_s, imu=self._imu_window(t_s),
                             hands=self._observation(self.hands, t_s, c.hands_max_age_s),
                             pose=self._observation(self.pose, t_s, c.pose_max_age_s))

    def _imu_window(self, t_s: float) -> np.ndarray | None:
        c = self.config
        got = self.imu.last_n_at(t_s, c.imu_window)
        if got is None:
            return None
        stamps, values = got
        if t_s - stamps[-1] > c.imu_max_age_s:
            return None
        nominal_s = (c.imu_window - 1) / c.imu_rate_hz
        if stamps[-1] - stamps[0] > c.max_span_factor * nominal_s:
            return None
        return np.stack(values).astype(np.float32)

    @staticmethod
    def _observation(buffer: StampedBuffer, t_s: float, max_age_s: float) -> np.ndarray | None:
        got = buffer.latest_at(t_s)
        if got is None or t_s - got[0] > max_age_s:
            return None
        return got[1]
