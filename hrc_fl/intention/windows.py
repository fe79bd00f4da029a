"""IMU windows of the real watch recordings and the subject-wise, time-ordered train/test split.

Split rule (no leakage through overlapping windows): every recording (one subject, one arm, one
exercise) is cut at ``train_fraction`` of its length; training windows lie wholly in the first part,
test windows wholly in the second, so no sample belongs to both a training and a test window.
Training always happens on the past, testing on the future of the same recording.

Units: the watch data (seglearn ``load_watch``) gives acceleration in g and angular rate in rad/s;
:func:`imu_to_si` converts to m/s² and rad/s, the units of ``sensor_msgs/Imu`` and of the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

STANDARD_GRAVITY_MS2 = 9.80665


class ImuRecording(Protocol):
    """What the split needs from a recording (``hrc_fl.data.datasets.WatchRecording`` fits)."""

    subject: int
    label: int
    imu: np.ndarray  # (T, 6) [ax, ay, az] in g, [wx, wy, wz] in rad/s


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut: ``window`` samples long, a new one every ``step`` samples."""

    window: int = 100
    step: int = 25
    train_fraction: float = 0.7

    def __post_init__(self) -> None:
        if self.window < 2 or self.step < 1:
            raise ValueError(f"window must be >= 2 and step >= 1, got {self.window}, {self.step}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")


@dataclass(frozen=True)
class WindowSet:
    """Windows with their labels and provenance (one row per window)."""

    x: np.ndarray          # (N, window, 6) float32, SI units
    y: np.ndarray          # (N,) int64 class index
    subject: np.ndarray    # (N,) int64
    recording: np.ndarray  # (N,) int64 index into the recording list
    start: np.ndarray      # (N,) int64 first sample index inside the recording

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.x[mask], self.y[mask], self.subject[mask], self.recording[mask],
                         self.start[mask])


def imu_to_si(imu_g: np.ndarray) -> np.ndarray:
    """(T, 6) [ax, ay, az] in g + [wx, wy, wz] rad/s -> float32 m/s² + rad/s."""
    imu = np.asarray(imu_g, dtype=np.float32)
    if imu.ndim != 2 or imu.shape[1] != 6:
        raise ValueError(f"IMU array must have shape (T, 6), got {imu.shape}")
    out = imu.copy()
    out[:, :3] *= STANDARD_GRAVITY_MS2
    return out


def window_starts(n_samples: int, window: int, step: int, begin: int = 0) -> np.ndarray:
    """Start indices of the windows lying wholly in samples [begin, n_samples)."""
    last = n_samples - window
    if last < begin:
        return np.zeros(0, dtype=np.int64)
    return np.arange(begin, last + 1, step, dtype=np.int64)


def cut_windows(imu: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """(N, window, C) copies of ``imu[s:s+window]`` for each start ``s``."""
    if len(starts) == 0:
        return np.zeros((0, window, imu.shape[1]), dtype=np.float32)
    idx = starts[:, None] + np.arange(window)[None, :]
    return np.ascontiguousarray(imu[idx], dtype=np.float32)


def split_point(n_samples: int, train_fraction: float) -> int:
    """First sample index of the test part of a recording of ``n_samples`` samples."""
    return round(n_samples * train_fraction)


def make_split(recordings: Sequence[ImuRecording], spec: WindowSpec = WindowSpec(),
               subjects: Iterable[int] | None = None) -> tuple[WindowSet, WindowSet]:
    """Train and test windows of the given subjects (all when ``subjects`` is None).

    Training windows end before :func:`split_point`, test windows start at or after it.
    """
    wanted = None if subjects is None else set(int(s) for s in subjects)
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {"train": [], "test": []}
    for index, rec in enumerate(recordings):
        if wanted is not None and int(rec.subject) not in wanted:
            continue
        imu = imu_to_si(rec.imu)
        n = imu.shape[0]
        cut = split_point(n, spec.train_fraction)
        train_starts = window_starts(cut, spec.window, spec.step)
        test_starts = window_starts(n, spec.window, spec.step, begin=cut)
        for name, starts in (("train", train_starts), ("test", test_starts)):
            k = len(starts)
            parts[name].append((cut_windows(imu, starts, spec.window), np.full(k, int(rec.label)),
                                np.full(k, int(rec.subject)), np.full(k, index), starts))
    return _stack(parts["train"], spec.window), _stack(parts["test"], spec.window)


def _stack(chunks: list[tuple[np.ndarray, ...]], window: int) -> WindowSet:
    if not chunks:
        empty = np.zeros(0, dtype=np.int64)
        return WindowSet(np.zeros((0, window, 6), np.float32), empty, empty, empty, empty)
    x, y, s, r, st = (np.concatenate([c[i] for c in chunks]) for i in range(5))
    return WindowSet(x.astype(np.float32), y.astype(np.int64), s.astype(np.int64), r.astype(np.int64),
                     st.astype(np.int64))


def class_balanced_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weights inversely proportional to frequency (mean 1 over present classes)."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1.0) / max(1, (counts > 0).sum()), 0.0)
    return weights.astype(np.float32)
