"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012): speed-adaptive low-pass for noisy landmarks.

Low speed -> low cut-off (little jitter); high speed -> higher cut-off (little lag). Works on arrays of
any shape element-wise; time in seconds.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    tau_s = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau_s / dt_s)


class OneEuroFilter:
    """Element-wise One Euro filter over arrays of a fixed shape.

    ``min_cutoff_hz``: cut-off at zero speed (lower = smoother); ``beta``: how fast the cut-off grows
    with speed (higher = less lag); ``derivative_cutoff_hz``: cut-off of the speed estimate.
    Non-finite input elements pass through unfiltered and reset that element's state.
    """

    def __init__(self, *, min_cutoff_hz: float = 1.0, beta: float = 0.0,
                 derivative_cutoff_hz: float = 1.0) -> None:
        if not (min_cutoff_hz > 0 and math.isfinite(min_cutoff_hz)):
            raise ValueError(f"min_cutoff_hz must be positive and finite, got {min_cutoff_hz}")
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be >= 0 and finite, got {beta}")
        if not (derivative_cutoff_hz > 0 and math.isfinite(derivative_cutoff_hz)):
            raise ValueError(f"derivative_cutoff_hz must be positive, got {derivative_cutoff_hz}")
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.derivative_cutoff_hz = derivative_cutoff_hz
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_s: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t_s = None

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Filter one sample ``x`` taken at time ``t_s`` (seconds); returns the filtered array.

        A sample that is not later than the previous one, or has a new shape, restarts the filter.
        """
        x = np.asarray(x, dtype=np.float64)
        if (self._x is None or self._t_s is None or x.shape != self._x.shape or not t_s > self._t_s):
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t_s = t_s
            return x.copy()
        dt_s = t_s - self._t_s
        dx = (x - self._x) / dt_s
        a_d = _alpha(self.derivative_cutoff_hz, dt_s)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        cutoff_hz = self.min_cutoff_hz + self.beta * np.abs(dx_hat)
        a = _alpha(cutoff_hz, dt_s)
        x_hat = a * x + (1.0 - a) * self._x
        bad = ~np.isfinite(x_hat)
        if bad.any():  # non-finite input: pass through, restart those elements
            x_hat[bad] = x[bad]
            dx_hat = np.where(bad, 0.0, dx_hat)
        self._x = x_hat
        self._dx = np.where(np.isfinite(dx_hat), dx_hat, 0.0)
        self._t_s = t_s
        return x_hat.copy()


class OneEuroFilterBank:
    """One :class:`OneEuroFilter` per key (a tracked body's id), all with the same settings; a key's
    filter is created on its first sample and dropped by :meth:`forget` (its track ended)."""

    def __init__(self, *, min_cutoff_hz: float, beta: float, derivative_cutoff_hz: float) -> None:
        OneEuroFilter(min_cutoff_hz=min_cutoff_hz, beta=beta, derivative_cutoff_hz=derivative_cutoff_hz)  # validates
        self._settings = {"min_cutoff_hz": min_cutoff_hz, "beta": beta, "derivative_cutoff_hz": derivative_cutoff_hz}
        self._filters: dict[str, OneEuroFilter] = {}

    @property
    def keys(self) -> list[str]:
        return list(self._filters)

    def __call__(self, key: str, x: np.ndarray, t_s: float) -> np.ndarray:
        """Filter ``key``'s sample ``x`` taken at ``t_s`` (seconds)."""
        filt = self._filters.get(key)
        if filt is None:
            filt = self._filters[key] = OneEuroFilter(**self._settings)
        return filt(x, t_s)

    def forget(self, key: str) -> None:
        self._filters.pop(key, None)
