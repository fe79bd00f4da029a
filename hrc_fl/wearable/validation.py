"""Sample validation: non-finite, saturated, duplicate and out-of-order samples are dropped and
counted; gaps (missing samples) are counted, the sample after a gap is kept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hrc_fl.wearable.protocol import ImuSample

#: Reasons a sample is dropped (keys of :attr:`SampleValidator.counts`, also diagnostic keys).
DROP_REASONS = ("malformed", "non_finite", "saturated", "duplicate", "out_of_order")


@dataclass
class SampleValidator:
    """Checks samples of one device stream in arrival order (device clock, SI units).

    - non-finite: any NaN/inf value or time;
    - saturated: |a| component >= ``accel_limit_ms2`` or |w| component >= ``gyro_limit_rads`` (a
      clipped sensor reads exactly its range, so the value is not the real motion);
    - duplicate: same device time as the previous accepted sample (within 1 % of a period);
    - out-of-order: earlier than the previous accepted sample;
    - gap: more than ``gap_factor`` periods since the previous sample; counted as missing samples.
    """

    rate_hz: float
    accel_limit_ms2: float = 16.0 * 9.80665
    gyro_limit_rads: float = 34.9  # 2000 deg/s
    gap_factor: float = 1.5
    counts: dict[str, int] = field(default_factory=dict)
    missing_samples: int = 0
    gaps: int = 0
    _last_t_s: float | None = None

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        if not (self.accel_limit_ms2 > 0 and self.gyro_limit_rads > 0):
            raise ValueError("saturation limits must be positive")
        if not self.gap_factor > 1.0:
            raise ValueError(f"gap_factor must be > 1, got {self.gap_factor}")
        for reason in DROP_REASONS:
            self.counts.setdefault(reason, 0)

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def count_malformed(self) -> None:
        self.counts["malformed"] += 1

    def reset_stream(self) -> None:
        """Forget the previous sample (after a reconnect the device clock may have restarted)."""
        self._last_t_s = None

    def check(self, sample: ImuSample) -> str | None:
        """None when ``sample`` is accepted, else the drop reason (already counted)."""
        reason = self._reason(sample)
        if reason is not None:
            self.counts[reason] += 1
            return reason
        if self._last_t_s is not None:
            dt = sample.t_device_s - self._last_t_s
            if dt > self.gap_factor * self.period_s:
                self.gaps += 1
                self.missing_samples += max(1, round(dt * self.rate_hz) - 1)
        self._last_t_s = sample.t_device_s
        return None

    def _reason(self, sample: ImuSample) -> str | None:
        values = sample.values()
        if not (math.isfinite(sample.t_device_s) and np.all(np.isfinite(values))):
            return "non_finite"
        if np.any(np.abs(values[:3]) >= self.accel_limit_ms2) or np.any(np.abs(values[3:]) >= self.gyro_limit_rads):
            return "saturated"
        if self._last_t_s is not None:
            dt = sample.t_device_s - self._last_t_s
            if abs(dt) <= 0.01 * self.period_s:
                return "duplicate"
            if dt < 0:
                return "out_of_order"
        return None
