"""IMU windows of the real watch recordings and the subject-wise, time-ordered train/test split.

Split rule (no leakage through overlapping windows): every recording (one subject, one arm, one
exercise) is cut at ``train_fraction`` of its length; training windows lie wholly in the first part,
test windows wholly in the second, so no sample belongs to both a training and a test window.
Training always happens on the past, testing on the future of the same recording.
:class:`TimeSplit` / :func:`make_time_split` add a validation part between them, with gaps (the federated
evaluation protocol, docs/federated_evaluation.md).

Units: the watch data (seglearn ``load_watch``) gives acceleration in g and angular rate in rad/s;
:func:`imu_to_si` converts to m/s² and rad/s, the units of ``sensor_msgs/Imu`` and of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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


@dataclass(frozen=True)
class TimeSplit:
    """Train / validation / test parts of every recording, in time, with a gap before each later part.

    With c1 = round(n * train_fraction) and c2 = round(n * (train_fraction + validation_fraction)) for a
    recording of n samples: training windows lie wholly in [0, c1), validation windows in
    [c1 + gap_samples, c2), test windows in [c2 + gap_samples, n). No window overlaps a boundary and at
    least ``gap_samples`` samples separate the last sample of one part from the first of the next.
    """

    train_fraction: float = 0.6
    validation_fraction: float = 0.2
    gap_samples: int = 50

    def __post_init__(self) -> None:
        if not (self.train_fraction > 0 and self.validation_fraction > 0
                and self.train_fraction + self.validation_fraction < 1):
            raise ValueError("train_fraction and validation_fraction must be > 0 and leave a test part, got "
                             f"{self.train_fraction}, {self.validation_fraction}")
        if self.gap_samples < 0:
            raise ValueError(f"gap_samples must be >= 0, got {self.gap_samples}")

    def parts(self, n_samples: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """[begin, end) sample ranges of the train, validation and test parts of one recording."""
        c1 = split_point(n_samples, self.train_fraction)
        c2 = split_point(n_samples, self.train_fraction + self.validation_fraction)
        return (0, c1), (min(c1 + self.gap_samples, c2), c2), (min(c2 + self.gap_samples, n_samples), n_samples)


def make_split(recordings: Sequence[ImuRecording], spec: WindowSpec = WindowSpec(),
               subjects: Iterable[int] | None = None) -> tuple[WindowSet, WindowSet]:
    """Train and test windows of the given subjects (all when ``subjects`` is None).

    Training windows end before :func:`split_point`, test windows start at or after it.
    """
    def parts(n: int) -> tuple[tuple[int, int], ...]:
        cut = split_point(n, spec.train_fraction)
        return (0, cut), (cut, n)

    train, test = _windows_in_parts(recordings, spec, parts, subjects)
    return train, test


def make_time_split(recordings: Sequence[ImuRecording], spec: WindowSpec, split: TimeSplit,
                    subjects: Iterable[int] | None = None) -> tuple[WindowSet, WindowSet, WindowSet]:
    """Train, validation and test windows of the given subjects by :class:`TimeSplit` (``spec``'s own
    ``train_fraction`` is not used)."""
    train, validation, test = _windows_in_parts(recordings, spec, split.parts, subjects)
    return train, validation, test


def _windows_in_parts(recordings: Sequence[ImuRecording], spec: WindowSpec,
                      parts_of: Callable[[int], Sequence[tuple[int, int]]],
                      subjects: Iterable[int] | None) -> list[WindowSet]:
    """One WindowSet per part; ``parts_of(n)`` gives the [begin, end) ranges of a recording of n samples."""
    wanted = None if subjects is None else set(int(s) for s in subjects)
    chunks: list[list[tuple[np.ndarray, ...]]] | None = None
    for index, rec in enumerate(recordings):
        if wanted is not None and int(rec.subject) not in wanted:
            continue
        imu = imu_to_si(rec.imu)
        ranges = parts_of(imu.shape[0])
        chunks = chunks or [[] for _ in ranges]
        for part, (begin, end) in zip(chunks, ranges, strict=True):
            starts = window_starts(end, spec.window, spec.step, begin=begin)
            k = len(starts)
            part.append((cut_windows(imu, starts, spec.window), np.full(k, int(rec.label)),
                         np.full(k, int(rec.subject)), np.full(k, index), starts))
    return [_stack(part, spec.window) for part in (chunks or [[] for _ in parts_of(2 * spec.window)])]


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
