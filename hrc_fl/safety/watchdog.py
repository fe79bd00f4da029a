"""Input watchdog: every stream has a maximum age; stale, missing, non-finite, out-of-order or
future-stamped input is a fault. Time is passed in (seconds on the clock the stamps use), never read
here, so tests drive it with a controllable clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """One monitored stream. ``required``: missing or stale -> fault. Optional streams (events such as
    gestures) only fault on bad messages; their content simply expires after ``max_age_s``."""

    name: str
    max_age_s: float
    required: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("input name must not be empty")
        if not (math.isfinite(self.max_age_s) and self.max_age_s > 0.0):
            raise ValueError(f"max_age_s of {self.name!r} must be > 0, got {self.max_age_s!r}")


class Watchdog:
    """Tracks the last good stamp of each input and reports faults.

    A fault found on arrival (:meth:`accept`) is kept until the next :meth:`faults` call, so it
    forces PROTECTIVE_STOP for at least the cycle that follows it, even if a good message comes next.
    """

    def __init__(self, specs: Iterable[InputSpec], *, max_future_s: float = 0.05) -> None:
        self._specs = {s.name: s for s in specs}
        if not self._specs:
            raise ValueError("watchdog needs at least one input")
        if not (math.isfinite(max_future_s) and max_future_s >= 0.0):
            raise ValueError(f"max_future_s must be >= 0, got {max_future_s!r}")
        self._max_future_s = max_future_s
        self._last_stamp: dict[str, float] = {}
        self._pending: list[str] = []

    def spec(self, name: str) -> InputSpec:
        return self._specs[name]

    def last_stamp_s(self, name: str) -> float | None:
        return self._last_stamp.get(name)

    def accept(self, name: str, stamp_s: float, now_s: float, *, content_ok: bool = True,
               content_problem: str = "non-finite or invalid content") -> str | None:
        """Check one arriving message; return the fault reason (message must then be dropped) or None.

        Equal stamps are allowed (two hands of one frame); a smaller stamp is out of order.
        """
        if name not in self._specs:
            raise KeyError(f"unknown input {name!r}")
        fault: str | None = None
        last = self._last_stamp.get(name)
        if not math.isfinite(stamp_s) or stamp_s <= 0.0:
            fault = f"{name}: invalid stamp {stamp_s!r}"
        elif stamp_s > now_s + self._max_future_s:
            fault = f"{name}: stamp {stamp_s - now_s:.3f} s in the future"
        elif last is not None and stamp_s < last:
            fault = f"{name}: out of order by {last - stamp_s:.3f} s"
        elif not content_ok:
            fault = f"{name}: {content_problem}"
        if fault is not None:
            self._pending.append(fault)
            return fault
        self._last_stamp[name] = stamp_s
        return None

    def age_s(self, name: str, now_s: float) -> float:
        """Age of the newest good message (inf if none yet)."""
        last = self._last_stamp.get(name)
        return math.inf if last is None else now_s - last

    def is_fresh(self, name: str, now_s: float) -> bool:
        return self.age_s(name, now_s) <= self._specs[name].max_age_s

    def faults(self, now_s: float) -> list[str]:
        """Faults for this cycle: pending bad arrivals plus missing/stale required inputs. Clears pending."""
        faults, self._pending = self._pending, []
        if not math.isfinite(now_s):
            return [*faults, f"clock: invalid time {now_s!r}"]
        for spec in self._specs.values():
            if not spec.required:
                continue
            last = self._last_stamp.get(spec.name)
            if last is None:
                faults.append(f"{spec.name}: missing (nothing received)")
            elif now_s - last > spec.max_age_s:
                faults.append(f"{spec.name}: stale ({now_s - last:.3f} s > {spec.max_age_s:.3f} s)")
        return faults
