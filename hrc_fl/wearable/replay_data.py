"""The real watch recording of one subject, for the replay source."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WATCH_RATE_HZ = 50.0


def _subject_recordings(subject: int, side: str) -> list[tuple[str, np.ndarray]]:
    """(class name, (T, 6) recording) of ``subject`` in label order (then side), a in g."""
    if side not in ("left", "right", "both"):
        raise ValueError(f"side must be left, right or both, got {side!r}")
    try:
        from hrc_fl.data.datasets import WATCH_CLASSES, load_watch

        rows = [(r.subject, r.side, r.label, r.imu) for r in load_watch()]
    except FileNotFoundError:
        # setup-assets not run yet: seglearn (a registry package) ships the same recordings
        from seglearn.datasets import load_watch as seglearn_watch

        from hrc_fl.data.datasets import WATCH_CLASSES

        raw = seglearn_watch()
        rows = [(int(s), "right" if float(sd) == 1.0 else "left", int(y), np.asarray(x, np.float32))
                for x, y, s, sd in zip(raw["X"], raw["y"], raw["subject"], raw["side"], strict=True)]
    chosen = sorted((r for r in rows if int(r[0]) == subject and (side == "both" or r[1] == side)),
                    key=lambda r: (r[2], r[1]))
    if not chosen:
        raise ValueError(f"no watch recording for subject {subject} side {side}")
    return [(WATCH_CLASSES[int(r[2])], np.asarray(r[3], np.float32)) for r in chosen]


def subject_imu(subject: int, side: str = "both") -> np.ndarray:
    """(T, 6) [a in g, w in rad/s] of all recordings of ``subject`` (``side``: "left", "right" or
    "both") concatenated in label order, at 50 Hz. Raises ValueError when there is no such recording."""
    return np.concatenate([imu for _label, imu in _subject_recordings(subject, side)])


@dataclass(frozen=True)
class LabelledStretch:
    """Samples ``[start, end)`` of a replay recording belong to one real recording of class ``label``."""

    start: int
    end: int
    label: str


def subject_replay(subject: int, side: str = "both", *, clip_s: float = 0.0,
                   max_fraction: float = 1.0) -> tuple[np.ndarray, list[LabelledStretch]]:
    """Like :func:`subject_imu`, plus where each real recording (and so each exercise class) lies.

    Each recording is cut to its first ``max_fraction`` of samples and then to its first ``clip_s``
    seconds (0 = no clip), so a replay can stay inside the part of the data that the subject-wise,
    time-ordered split uses for training (:mod:`hrc_fl.intention.windows`, cut at 70 %).
    Returns (T, 6) [a in g, w in rad/s] at 50 Hz and the labelled stretches in replay order.
    """
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    if not (math.isfinite(clip_s) and clip_s >= 0.0):
        raise ValueError(f"clip_s must be >= 0, got {clip_s}")
    parts, stretches, start = [], [], 0
    for label, imu in _subject_recordings(subject, side):
        n = int(len(imu) * max_fraction)
        if clip_s > 0:
            n = min(n, round(clip_s * WATCH_RATE_HZ))
        if n <= 0:
            continue
        parts.append(imu[:n])
        stretches.append(LabelledStretch(start, start + n, label))
        start += n
    if not parts:
        raise ValueError(f"nothing left to replay for subject {subject} (clip_s={clip_s}, max_fraction={max_fraction})")
    return np.concatenate(parts), stretches
