"""Judging a gesture classifier on hands it never saw (ROS-free): held-out, rotated, mirrored, STOP timing.

Every function takes the classifier as ``proba(points (N, 21, 2), mirror (N,)) -> (N, 7)`` over
:data:`~hrc_fl.perception.gesture_classifier.GESTURE_NAMES`, so any model (today's, an older one) is
judged by the same code. The protocol (splits, views, direction labels) is
:mod:`hrc_fl.perception.gesture_protocol`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hrc_fl.data.datasets import HandPoseData
from hrc_fl.perception import gesture_protocol as protocol
from hrc_fl.perception.debounce import CommandDebouncer
from hrc_fl.perception.gesture_classifier import GESTURE_NAMES, STOP, decide_batch
from hrc_fl.perception.hand_features import random_views
from hrc_fl.perception.landmark_mlp import confusion_matrix, per_class_f1

ProbaFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall of a confusion matrix (rows = truth); 0 where undefined."""
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    return precision, recall


def class_report(cm: np.ndarray) -> dict[str, dict[str, float]]:
    """{class: {precision, recall, f1, support}} over :data:`GESTURE_NAMES`."""
    precision, recall = precision_recall(cm)
    f1 = per_class_f1(cm)
    return {n: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(cm[i].sum())} for i, n in enumerate(GESTURE_NAMES)}


def _views(data: HandPoseData, rows: np.ndarray, fine_names: tuple[str, ...], rng: np.random.Generator, *,
           views: int, max_in_plane_rad: float, mirror_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``views`` random views of each row under the protocol; (points, mirror flags, fine truth or -1)."""
    rows = np.repeat(rows, views)
    pts, angle, _ = random_views(data.points_xy[rows], rng, max_in_plane_rad=max_in_plane_rad,
                                 max_tilt_rad=protocol.MAX_TILT_RAD, mirror_share=mirror_share)
    truth = protocol.direction_labels(data.labels[rows], angle, fine_names, guard_rad=protocol.DIRECTION_GUARD_RAD)
    return pts, data.handedness[rows] == "left", truth


def oov_view_proba(proba: ProbaFn, data: HandPoseData, rows: np.ndarray, rng: np.random.Generator, *,
                   views: int) -> np.ndarray:
    """Probabilities (N * views, 7) of ``views`` random views (rotation protocol) of each of ``rows``
    (hands of shapes outside the vocabulary); thresholds are chosen on these for validation rows."""
    rep = np.repeat(rows, views)
    pts, _, _ = random_views(data.points_xy[rep], rng, max_in_plane_rad=protocol.MAX_IN_PLANE_RAD,
                             max_tilt_rad=protocol.MAX_TILT_RAD)
    return proba(pts, data.handedness[rep] == "left")


def _scores(truth_hrc: np.ndarray, pred: np.ndarray) -> tuple[dict, np.ndarray]:
    cm = confusion_matrix(truth_hrc, pred, len(GESTURE_NAMES))
    f1 = per_class_f1(cm)
    _, recall = precision_recall(cm)
    return {"macro_f1": float(f1.mean()), "macro_f1_commands": float(f1[1:].mean()),
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "stop_recall": float(recall[STOP]),
            "per_class": class_report(cm), "n": int(cm.sum())}, cm


def evaluate_held_out(proba: ProbaFn, data: HandPoseData, rows: np.ndarray, hrc_truth: np.ndarray,
                      threshold: float | np.ndarray) -> tuple[dict, np.ndarray]:
    """The test recordings as recorded (no view change): macro-F1 with the threshold and with plain argmax
    (the figure before issue 15 used argmax). ``hrc_truth``: (N_all,) HRC class of every data row."""
    p = proba(data.points_xy[rows], data.handedness[rows] == "left")
    truth = hrc_truth[rows]
    scored, cm = _scores(truth, decide_batch(p, threshold))
    argmax, _ = _scores(truth, p.argmax(axis=1))
    return {"macro_f1_held_out": scored["macro_f1"], "macro_f1_commands_held_out": scored["macro_f1_commands"],
            "macro_f1_held_out_argmax": argmax["macro_f1"], "stop_recall_held_out": scored["stop_recall"],
            "per_class_held_out": scored["per_class"]}, cm


def evaluate_views(proba: ProbaFn, data: HandPoseData, rows: np.ndarray, fine_names: tuple[str, ...],
                   hrc_of_fine: np.ndarray, threshold: float | np.ndarray, rng: np.random.Generator, *, views: int,
                   max_in_plane_rad: float = protocol.MAX_IN_PLANE_RAD,
                   mirror_share: float = 0.5) -> tuple[dict, np.ndarray]:
    """Rows seen under random views (rotation protocol; ``max_in_plane_rad=0, mirror_share=1`` = mirrored
    only). Thumbs within the guard band of a direction boundary are not scored (counted in ``n_unscored``)."""
    pts, mirror, truth = _views(data, rows, fine_names, rng, views=views, max_in_plane_rad=max_in_plane_rad,
                                mirror_share=mirror_share)
    scored = truth >= 0
    p = proba(pts[scored], mirror[scored])
    out, cm = _scores(hrc_of_fine[truth[scored]], decide_batch(p, threshold))
    out["n_unscored"] = int((~scored).sum())
    return out, cm


def false_command_rate(proba: ProbaFn, data: HandPoseData, rows: np.ndarray, threshold: float | np.ndarray,
                       rng: np.random.Generator | None, *, views: int) -> dict:
    """Share of hands outside the vocabulary (``rows`` must all be such) that come out as any command,
    as recorded (``rng`` None) or under the rotation protocol; per data-set class too."""
    if rng is None:
        p, labels = proba(data.points_xy[rows], data.handedness[rows] == "left"), data.labels[rows]
    else:
        p, labels = oov_view_proba(proba, data, rows, rng, views=views), data.labels[np.repeat(rows, views)]
    command = decide_batch(p, threshold) != 0
    per_class = {data.class_names[c]: float(command[labels == c].mean()) for c in np.unique(labels)}
    return {"rate": float(command.mean()), "n": len(command), "per_class": per_class}


def stop_frames_to_command(proba: ProbaFn, data: HandPoseData, rows: np.ndarray, threshold: float | np.ndarray,
                           hold_frames: int, rng: np.random.Generator, *, sequences: int,
                           max_frames: int = 30) -> np.ndarray:
    """Frames from the first frame an open palm is in view until the debounced STOP command, for
    ``sequences`` clips: consecutive frames of a STOP test recording (a real video), each clip held at
    one random view of the rotation protocol (plus per-frame jitter), fed through the classifier, the
    threshold and a :class:`CommandDebouncer` as the hands node does. A clip that gives no STOP command
    within ``max_frames`` counts as ``max_frames + 1`` (a miss)."""
    clips = [c for c in protocol.recording_chunks(rows, data.labels, data.handedness) if len(c) > max_frames]
    if not clips:
        raise ValueError(f"no STOP recording has more than {max_frames} frames")
    out = np.full(sequences, max_frames + 1, dtype=np.int64)
    for k in range(sequences):
        clip = clips[k % len(clips)]
        start = int(rng.integers(0, len(clip) - max_frames))
        frames = clip[start:start + max_frames]
        # one view for the whole clip: same rotation, tilt, distance and mirror, fresh jitter per frame
        view_rng = np.random.default_rng(rng.integers(2**63))
        angle = view_rng.uniform(-protocol.MAX_IN_PLANE_RAD, protocol.MAX_IN_PLANE_RAD)
        tilt = view_rng.uniform(-protocol.MAX_TILT_RAD, protocol.MAX_TILT_RAD, 2)
        mirror = view_rng.random() < 0.5
        pts = protocol_view(data.points_xy[frames], angle, tilt, mirror, rng)
        codes = decide_batch(proba(pts, data.handedness[frames] == "left"), threshold)
        debouncer = CommandDebouncer(hold_frames=hold_frames)
        for i, code in enumerate(codes):
            state = debouncer.update(int(code))
            if state.is_command and state.label == STOP:
                out[k] = i + 1
                break
    return out


def protocol_view(points: np.ndarray, angle_rad: float, tilt_rad: np.ndarray, mirror: bool,
                  rng: np.random.Generator, *, jitter_palms: float = 0.02) -> np.ndarray:
    """All frames of a clip (T, 21, 2) under one fixed 3D view, with fresh landmark jitter per frame."""
    from hrc_fl.perception.hand_features import rotate_hands

    n = len(points)
    out = rotate_hands(points, np.full(n, angle_rad), np.full(n, tilt_rad[0]), np.full(n, tilt_rad[1]))
    centre = out.mean(axis=1, keepdims=True)
    size = np.linalg.norm(out - centre, axis=2).mean(axis=1)
    out = out + rng.normal(0.0, 1.0, out.shape) * (jitter_palms * size)[:, None, None]
    if mirror:
        out[:, :, 0] = 2 * centre[:, :, 0] - out[:, :, 0]
    return out


def inference_ms_per_hand(predict_one: Callable[[np.ndarray], object], hands: np.ndarray, *,
                          repeats: int = 2000) -> dict[str, float]:
    """Wall time of one single-hand classification (features + MLP + reduction), p50/p95 ms."""
    for i in range(50):  # warm caches and lazy imports
        predict_one(hands[i % len(hands)])
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        predict_one(hands[i % len(hands)])
        times[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p95_ms": float(np.percentile(times, 95) * 1e3),
            "n": repeats}
