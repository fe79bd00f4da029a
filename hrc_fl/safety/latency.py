"""The peak age of the human observation over a recent window, for relaxing decisions. ROS-free.

Z_d's latency term uses the age of the newest observation, now - image stamp. Between two camera frames
that age is a sawtooth: it grows by the frame period on top of the pipeline latency, and drops when the
next frame arrives. A zone boundary computed at the instantaneous age moves with it (1.6 m/s x the
frame period, 0.53 m at 3 Hz), so a condition such as "the human is outside the stop distance" comes and
goes with every frame near a border. Entering a more restrictive zone must use the instantaneous age
(it is the true worst case now). Relaxing uses the largest age of the window instead: the less
restrictive zone is taken only if it also holds at the sawtooth's recent peaks, so it does not flicker,
and it is never less conservative than the instantaneous age.
"""

from __future__ import annotations

import math
from collections import deque


class ObservationAgePeaks:
    """Sawtooth peaks of the observation age (s) over the last ``window_s`` seconds, each capped at
    ``max_age_s`` (the watchdog's limit: an older observation is a fault, which holds the stop and
    restarts the interlock's clear time itself; a stall must not also widen the zones after it). Time
    passed in."""

    def __init__(self, window_s: float, max_age_s: float) -> None:
        if not (math.isfinite(window_s) and window_s >= 0.0):
            raise ValueError(f"window_s must be finite and >= 0, got {window_s!r}")
        if not (math.isfinite(max_age_s) and max_age_s > 0.0):
            raise ValueError(f"max_age_s must be finite and > 0, got {max_age_s!r}")
        self.window_s = window_s
        self.max_age_s = max_age_s
        self._peaks: deque[tuple[float, float]] = deque()   # (time s, peak age s), time increasing

    def observation(self, now_s: float, previous_age_s: float) -> None:
        """A new observation arrived at ``now_s``; ``previous_age_s``: the age the previous one had then
        (the peak of the sawtooth just ended)."""
        if not math.isfinite(previous_age_s):
            return
        previous_age_s = min(previous_age_s, self.max_age_s)
        peaks = self._peaks
        # Keep a decreasing sequence: an older, smaller peak can never be the maximum again.
        while peaks and peaks[-1][1] <= previous_age_s:
            peaks.pop()
        peaks.append((now_s, previous_age_s))

    def peak_s(self, now_s: float) -> float:
        """Largest sawtooth peak within the window (0 when none)."""
        peaks = self._peaks
        cutoff = now_s - self.window_s
        while peaks and peaks[0][0] < cutoff:
            peaks.popleft()
        return peaks[0][1] if peaks else 0.0
