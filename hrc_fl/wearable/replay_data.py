"""The real watch recording of one subject, for the replay source."""

from __future__ import annotations

import numpy as np

WATCH_RATE_HZ = 50.0


def subject_imu(subject: int, side: str = "both") -> np.ndarray:
    """(T, 6) [a in g, w in rad/s] of all recordings of ``subject`` (``side``: "left", "right" or
    "both") concatenated in label order, at 50 Hz. Raises ValueError when there is no such recording."""
    if side not in ("left", "right", "both"):
        raise ValueError(f"side must be left, right or both, got {side!r}")
    try:
        from hrc_fl.data.datasets import load_watch

        rows = [(r.subject, r.side, r.label, r.imu) for r in load_watch()]
    except FileNotFoundError:
        # setup-assets not run yet: seglearn (a registry package) ships the same recordings
        from seglearn.datasets import load_watch as seglearn_watch

        raw = seglearn_watch()
        rows = [(int(s), "right" if float(sd) == 1.0 else "left", int(y), np.asarray(x, np.float32))
                for x, y, s, sd in zip(raw["X"], raw["y"], raw["subject"], raw["side"], strict=True)]
    chosen = sorted((r for r in rows if int(r[0]) == subject and (side == "both" or r[1] == side)),
                    key=lambda r: (r[2], r[1]))
    if not chosen:
        raise ValueError(f"no watch recording for subject {subject} side {side}")
    return np.concatenate([np.asarray(r[3], np.float32) for r in chosen])
