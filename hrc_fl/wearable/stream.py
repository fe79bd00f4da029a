"""From raw source batches to validated, ROS-stamped samples plus link statistics (no ROS)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from hrc_fl.wearable.clock import ClockOffsetEstimator
from hrc_fl.wearable.protocol import ImuSample
from hrc_fl.wearable.sources import SourceBatch
from hrc_fl.wearable.validation import SampleValidator


@dataclass(frozen=True)
class StampedSample:
    """An accepted sample with its time on the ROS clock (device time + estimated offset)."""

    t_ros_s: float
    sample: ImuSample


@dataclass(frozen=True)
class Dropped:
    reason: str
    detail: str


class WearableStream:
    """Validates samples, maps device time to ROS time (strictly increasing) and measures link quality."""

    MIN_STAMP_STEP_S = 1e-4

    def __init__(self, validator: SampleValidator, clock: ClockOffsetEstimator, link_window_s: float = 2.0) -> None:
        if not link_window_s > 0:
            raise ValueError("link_window_s must be positive")
        self.validator = validator
        self.clock = clock
        self.link_window_s = link_window_s
        self.heart_rate_bpm = math.nan
        self.accepted = 0
        self._rx_times: deque[float] = deque()
        self._last_t_ros_s = -math.inf
        self.stamps_clamped = 0

    def process(self, batch: SourceBatch, rx_ros_s: float) -> tuple[list[StampedSample], list[Dropped]]:
        """Accepted samples (in order) and drops of one batch received at ``rx_ros_s`` (ROS time, s)."""
        dropped = [Dropped("malformed", text) for text in batch.malformed_examples]
        dropped += [Dropped("malformed", "unparseable line")] * max(0, batch.malformed - len(dropped))
        for _ in range(batch.malformed):
            self.validator.count_malformed()
        accepted: list[StampedSample] = []
        for sample in batch.samples:
            reason = self.validator.check(sample)
            if reason is not None:
                dropped.append(Dropped(reason, f"t_device={sample.t_device_s!r} values={sample.values().round(3)}"))
                continue
            self.clock.update(sample.t_device_s, rx_ros_s)
            if math.isfinite(sample.heart_rate_bpm) and 20.0 <= sample.heart_rate_bpm <= 250.0:
                self.heart_rate_bpm = sample.heart_rate_bpm
            self._rx_times.append(rx_ros_s)
            self.accepted += 1
            accepted.append(StampedSample(t_ros_s=0.0, sample=sample))
        # stamp with the offset after the whole batch: the batch's minimum delay is the best estimate
        stamped = []
        for s in accepted:
            t_ros = self.clock.to_ros_s(s.sample.t_device_s)
            if t_ros <= self._last_t_ros_s:
                # the offset estimate just dropped (a faster batch arrived): published stamps must still
                # increase, or consumers would see the stream as out of order
                t_ros = self._last_t_ros_s + self.MIN_STAMP_STEP_S
                self.stamps_clamped += 1
            self._last_t_ros_s = t_ros
            stamped.append(StampedSample(t_ros, s.sample))
        return stamped, dropped

    def link_quality(self, now_ros_s: float) -> float:
        """Share (0..1) of the expected samples accepted over the last ``link_window_s``."""
        while self._rx_times and self._rx_times[0] < now_ros_s - self.link_window_s:
            self._rx_times.popleft()
        expected = self.validator.rate_hz * self.link_window_s
        return float(min(1.0, len(self._rx_times) / expected))

    def reset_stream(self) -> None:
        """After a reconnect: the device may restart its clock and sequence."""
        self.validator.reset_stream()
