"""How the gesture classifier is trained and judged on data it never saw: splits, views, direction labels.

Split by recording. The HandPose data set has no person ids: each (class, hand) is one contiguous run
of about 200 consecutive video frames (54 runs, one per class and hand; consecutive rows differ by
about 0.09 of the hand's size, random pairs by 1.7), i.e. one recording. A random row split therefore
puts near-duplicate neighbour frames on both sides and measures memory. Here, per class, one of the two
recordings (left or right hand, drawn with the seed) is the **test** recording and never seen in
training; the other one is split in time: its first ``1 - validation_fraction`` frames train, its last
frames are the **validation** set (thresholds are chosen there, never on test).

Views. Training and the rotation protocol use :func:`hrc_fl.perception.hand_features.random_views`:
in-plane rotation up to +-90 degrees, out-of-plane tilt up to +-45 degrees, perspective, jitter,
mirrored hands. THUMB_UP and THUMB_DOWN are directions, so a rotated thumb changes meaning: within
+-45 degrees of its recorded direction it keeps its class, beyond 135 degrees the other one, in
between it is a thumb held sideways, which is no command (:func:`direction_labels`). When judging,
angles within :data:`DIRECTION_GUARD_RAD` of those two boundaries are not scored (the truth itself is
ambiguous there); training labels use the exact boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Classes whose meaning depends on the in-plane direction, and the class each becomes when turned over.
DIRECTION_PAIRS: dict[str, str] = {"Super": "Dislike", "Dislike": "Super"}
#: Extra fine class (a thumb held sideways: a rotated Super or Dislike between 45 and 135 degrees).
THUMB_SIDEWAYS = "Thumb_Sideways"
KEEP_DIRECTION_RAD = np.deg2rad(45.0)
TURNED_OVER_RAD = np.deg2rad(135.0)
DIRECTION_GUARD_RAD = np.deg2rad(10.0)
#: Ranges of the rotation protocol (and of the training views): issue 15.
MAX_IN_PLANE_RAD = np.deg2rad(90.0)
MAX_TILT_RAD = np.deg2rad(45.0)
DEFAULT_VALIDATION_FRACTION = 0.25


@dataclass(frozen=True)
class RecordingSplit:
    """Row indices into the HandPose arrays, and which hand's recording each class was tested on."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    test_hand: dict[str, str]


def recordings(labels: np.ndarray, handedness: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) row ranges of the contiguous runs of one class and one hand (= one recording)."""
    key = np.asarray(labels).astype(np.int64) * 2 + (np.asarray(handedness) == "left")
    edges = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(key)]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def recording_chunks(rows: np.ndarray, labels: np.ndarray, handedness: np.ndarray) -> list[np.ndarray]:
    """Sorted ``rows`` cut into runs of consecutive frames of one recording (a gap in the row numbers or
    a change of class or hand ends a run)."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    key = np.asarray(labels)[rows].astype(np.int64) * 2 + (np.asarray(handedness)[rows] == "left")
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(key) != 0)) + 1
    return np.split(rows, breaks)


def split_by_recording(labels: np.ndarray, handedness: np.ndarray, class_names: tuple[str, ...], *, seed: int,
                       validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> RecordingSplit:
    """Per class one whole recording for test, the other split in time into train and validation.

    ValueError when a class does not have exactly one recording per hand (the data set's layout).
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    runs: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for start, stop in recordings(labels, handedness):
        runs.setdefault((int(labels[start]), str(handedness[start])), []).append((start, stop))
    rng = np.random.default_rng(seed)
    train, val, test, test_hand = [], [], [], {}
    for c, name in enumerate(class_names):
        if len(runs.get((c, "left"), [])) != 1 or len(runs.get((c, "right"), [])) != 1:
            raise ValueError(f"class {name}: expected one recording per hand, got "
                             f"{len(runs.get((c, 'left'), []))} left / {len(runs.get((c, 'right'), []))} right")
        hand = ("left", "right")[int(rng.integers(2))]
        other = "right" if hand == "left" else "left"
        (t0, t1), (s0, s1) = runs[(c, hand)][0], runs[(c, other)][0]
        cut = s1 - max(1, round((s1 - s0) * validation_fraction))
        test.append(np.arange(t0, t1))
        train.append(np.arange(s0, cut))
        val.append(np.arange(cut, s1))
        test_hand[name] = hand
    return RecordingSplit(np.concatenate(train), np.concatenate(val), np.concatenate(test), test_hand)


def direction_labels(fine: np.ndarray, angle_rad: np.ndarray, class_names: tuple[str, ...], *,
                     guard_rad: float = 0.0) -> np.ndarray:
    """Fine labels of hands turned in plane by ``angle_rad`` (N,): direction classes
    (:data:`DIRECTION_PAIRS`) keep their label within 45 degrees, swap beyond 135 degrees and become
    :data:`THUMB_SIDEWAYS` in between (``class_names`` must hold it). With ``guard_rad`` > 0, hands of
    direction classes within ``guard_rad`` of a boundary get -1 (not to be scored)."""
    src = np.asarray(fine, dtype=np.int64)
    out = src.copy()
    turn = np.abs((np.asarray(angle_rad, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi)  # 0..pi
    sideways = class_names.index(THUMB_SIDEWAYS)
    for name, other in DIRECTION_PAIRS.items():
        rows = src == class_names.index(name)  # from the input: a swapped row is not swapped back
        swapped = rows & (turn >= TURNED_OVER_RAD)
        side = rows & (turn > KEEP_DIRECTION_RAD) & (turn < TURNED_OVER_RAD)
        ambiguous = rows & ((np.abs(turn - KEEP_DIRECTION_RAD) < guard_rad)
                            | (np.abs(turn - TURNED_OVER_RAD) < guard_rad))
        out[swapped] = class_names.index(other)
        out[side] = sideways
        out[ambiguous] = -1
    return out
