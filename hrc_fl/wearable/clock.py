"""Device clock -> ROS clock: offset estimated as the minimum of (ros_receive_time - device_time).

Every sample arrives after it was taken, so ``rx - t_device = offset + delay`` with delay >= 0; the
smallest value over a window is the offset plus the smallest transport delay (the minimum-delay
estimator of NTP-like schemes). A sliding window (default 30 s) follows slow drift between the clocks.
A device clock that jumps back (reboot, clock reset) makes every later value larger than the minimum
by the jump; after ``jump_confirm_samples`` such samples in a row the estimate restarts (one late
sample is just a delay, many in a row are a jump). A forward jump lowers the minimum at once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass
class ClockOffsetEstimator:
    window_s: float = 30.0
    jump_threshold_s: float = 0.5
    jump_confirm_samples: int = 25
    resets: int = 0
    _window: deque[tuple[float, float]] = field(default_factory=deque)  # (rx_s, value), value increasing
    _late_run: int = 0

    def __post_init__(self) -> None:
        if not self.window_s > 0 or not self.jump_threshold_s > 0:
            raise ValueError("window_s and jump_threshold_s must be positive")
        if self.jump_confirm_samples < 1:
            raise ValueError("jump_confirm_samples must be >= 1")

    @property
    def offset_s(self) -> float:
        """Current estimate of ROS time minus device time (NaN before the first sample)."""
        return self._window[0][1] if self._window else math.nan

    def update(self, t_device_s: float, t_rx_s: float) -> float:
        """Add one (device time, ROS receive time) pair in seconds; returns the new offset estimate."""
        if not (math.isfinite(t_device_s) and math.isfinite(t_rx_s)):
            raise ValueError("clock samples must be finite")
        value = t_rx_s - t_device_s
        if self._window and value - self.offset_s > self.jump_threshold_s:
            self._late_run += 1
            if self._late_run >= self.jump_confirm_samples:
                self.resets += 1
                self._window.clear()
                self._late_run = 0
        else:
            self._late_run = 0
        # monotonic deque: keep only candidates smaller than every later value
        while self._window and self._window[-1][1] >= value:
            self._window.pop()
        self._window.append((t_rx_s, value))
        while self._window[0][0] < t_rx_s - self.window_s:
            self._window.popleft()
        return self.offset_s

    def to_ros_s(self, t_device_s: float) -> float:
        """Device time -> ROS time in seconds (NaN before the first update)."""
        return t_device_s + self.offset_s
