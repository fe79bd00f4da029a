"""``hrc-fl evaluate-gestures``: the gesture classifier on hands it never saw, under the rotation protocol.

Writes ``gestures_eval.json`` (everything), ``gestures_rotated_confusion.png/.csv`` and
``gestures_held_out_confusion.png/.csv``, ``gestures_eval.md`` (the tables), and prints the tables and,
as its very last line, one JSON object with the issue-15 figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "evaluate-gestures"
HELP = ("Evaluate the gesture classifier on held-out recordings: per-class precision/recall, macro-F1 as "
        "recorded / rotated / mirrored, STOP recall and frames to a STOP command, NONE rate outside the "
        "vocabulary, MediaPipe on real open-palm photos, inference time.")
#: Length of a STOP clip (1 s at 30 Hz); a clip without a STOP command within it is a miss.
CLIP_FRAMES = 30
MIN_CLIP_FRAMES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--weights", type=Path, default=None,
                        help="classifier weights (default: the asset built by setup-assets)")
    parser.add_argument("--views", type=int, default=5, help="random views of each test hand (rotation protocol)")
    parser.add_argument("--max-per-recording", type=int, default=0,
                        help="use only the first N frames of each test recording (a small sample; 0 = all)")
    parser.add_argument("--stop-clips", type=int, default=300, help="STOP clips for the frames-to-command figure")
    parser.add_argument("--hold-frames", type=int, default=None,
                        help="debounce frames (default: command_hold_frames of config/hands.yaml)")
    parser.add_argument("--no-photos", action="store_true", help="skip MediaPipe on the real open-palm photos")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random views")


def _hold_frames_from_config() -> int:
    import yaml

    from hrc_fl.paths import config_file

    doc = yaml.safe_load(config_file("hands.yaml").read_text()) or {}
    return int(doc["/**/hands"]["ros__parameters"]["command_hold_frames"])


def _first_frames(rows, data, n: int):
    """The first ``n`` frames of each recording among ``rows`` (all of them when ``n`` is 0)."""
    import numpy as np

    from hrc_fl.perception.gesture_protocol import recording_chunks

    if n <= 0:
        return rows
    return np.concatenate([run[:n] for run in recording_chunks(rows, data.labels, data.handedness)])


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from hrc_fl.data.atomic_io import atomic_write_text
    from hrc_fl.data.datasets import load_hand_pose
    from hrc_fl.perception import gesture_evaluation as ev
    from hrc_fl.perception import gesture_protocol as protocol
    from hrc_fl.perception.gesture_classifier import GESTURE_NAMES, GestureClassifier
    from hrc_fl.perception.landmark_mlp import write_report

    if args.views < 1 or args.stop_clips < 1:
        raise SystemExit("--views and --stop-clips must be >= 1")
    if args.max_per_recording and args.max_per_recording <= MIN_CLIP_FRAMES:
        raise SystemExit(f"--max-per-recording must be 0 (all) or > {MIN_CLIP_FRAMES} (STOP clips need frames)")
    clf = GestureClassifier.load(args.weights)
    hold = args.hold_frames if args.hold_frames is not None else _hold_frames_from_config()
    data = load_hand_pose()
    fine = clf.fine_class_names
    hrc_of_fine = np.asarray(clf.meta["hrc_of_fine"], dtype=np.int64)
    split = protocol.split_by_recording(data.labels, data.handedness, data.class_names, seed=int(clf.meta["seed"]))
    test = _first_frames(split.test, data, args.max_per_recording)
    in_vocab = hrc_of_fine[data.labels[test]] != 0
    t = clf.min_confidence
    proba = clf.predict_proba_batch
    rng = np.random.default_rng(args.seed)

    held, cm_held = ev.evaluate_held_out(proba, data, test, hrc_of_fine[data.labels], t)
    rotated, cm_rot = ev.evaluate_views(proba, data, test, fine, hrc_of_fine, t, rng, views=args.views)
    mirrored, _ = ev.evaluate_views(proba, data, test, fine, hrc_of_fine, t, rng, views=1, max_in_plane_rad=0.0,
                                    mirror_share=1.0)
    fcr_rot = ev.false_command_rate(proba, data, test[~in_vocab], t, rng, views=args.views)
    fcr_rec = ev.false_command_rate(proba, data, test[~in_vocab], t, None, views=1)
    stop_rows = test[hrc_of_fine[data.labels[test]] == GESTURE_NAMES.index("STOP")]
    clip_frames = min(CLIP_FRAMES, args.max_per_recording - 1) if args.max_per_recording else CLIP_FRAMES
    frames = ev.stop_frames_to_command(proba, data, stop_rows, t, hold, rng, sequences=args.stop_clips,
                                       max_frames=clip_frames)
    missed = frames > clip_frames
    single = data.points_xy[test[:200]]
    timing = ev.inference_ms_per_hand(lambda p: clf.predict_proba(p, "Right"), single)
    photos = None if args.no_photos else _photo_check(clf)

    fps = _camera_rate_hz()
    ok_frames = frames[~missed]
    report = {
        "model": str(args.weights or "asset gesture_classifier.safetensors"),
        "protocol": {
            "split": "by recording (per class one whole hand recording held out; see gesture_protocol.py)",
            "test_hand": split.test_hand, "n_test_hands": len(test), "views_per_hand": args.views,
            "in_plane_deg": 90, "out_of_plane_deg": 45, "mirrored_share": 0.5,
            "direction_guard_deg": float(np.rad2deg(protocol.DIRECTION_GUARD_RAD)),
            "threshold": dict(zip(GESTURE_NAMES, t.tolist(), strict=True)),
            "threshold_chosen": clf.meta.get("threshold"), "hold_frames": hold,
        },
        "held_out": held, "rotated": rotated, "mirrored": mirrored,
        "false_command_rotated": fcr_rot, "false_command_as_recorded": fcr_rec,
        "stop_latency": {
            "clips": len(frames), "clip_frames": clip_frames, "missed_clips": int(missed.sum()),
            "frames_p50": float(np.percentile(ok_frames, 50)) if len(ok_frames) else None,
            "frames_p95": float(np.percentile(ok_frames, 95)) if len(ok_frames) else None,
            "frames_max": int(ok_frames.max()) if len(ok_frames) else None, "camera_rate_hz": fps,
            "note": "frames from the first palm frame to the debounced STOP command (is_command), at the camera "
                    "rate; the safety node then stops at its next cycle",
        },
        "inference_per_hand": timing, "photos": photos,
    }
    figures = {
        "macro_f1_rotated": rotated["macro_f1"], "stop_recall_rotated": rotated["stop_recall"],
        "false_command_rate": fcr_rot["rate"], "false_command_rate_as_recorded": fcr_rec["rate"],
        "macro_f1_held_out": held["macro_f1_held_out"], "macro_f1_mirrored": mirrored["macro_f1"],
        "stop_recall_held_out": held["stop_recall_held_out"],
        "stop_frames_to_command_p95": report["stop_latency"]["frames_p95"],
        "stop_ms_to_command_p95": (report["stop_latency"]["frames_p95"] * 1000.0 / fps
                                   if report["stop_latency"]["frames_p95"] is not None else None),
        "stop_missed_clips": int(missed.sum()),
        "inference_p50_ms": timing["p50_ms"],
        "photos_stop": None if photos is None else f"{photos['stop']}/{photos['n']}",
    }
    report["figures"] = figures
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, "gestures_rotated", cm_rot, GESTURE_NAMES, rotated)
    write_report(out, "gestures_held_out", cm_held, GESTURE_NAMES, held)
    atomic_write_text(out / "gestures_eval.json", json.dumps(report, indent=1) + "\n")
    table = _tables(report)
    atomic_write_text(out / "gestures_eval.md", table + "\n")
    print(table, flush=True)
    print(json.dumps(figures), flush=True)
    return 0


def _camera_rate_hz() -> float:
    import yaml

    from hrc_fl.paths import config_file

    doc = yaml.safe_load(config_file("camera.yaml").read_text()) or {}
    return float(doc["/**/camera"]["ros__parameters"]["rate_hz"])


def _photo_check(clf) -> dict:
    """MediaPipe on the real open-palm photos, each turned by 0/90/180/270 degrees and mirrored: STOP?"""
    import cv2

    from hrc_fl.data.assets import asset_path
    from hrc_fl.data.datasets import OPEN_PALM_PHOTOS, photo_path
    from hrc_fl.perception.gesture_classifier import decide
    from hrc_fl.perception.mediapipe_hands import HandDetector

    turns = {"0": None, "90": cv2.ROTATE_90_CLOCKWISE, "180": cv2.ROTATE_180, "270": cv2.ROTATE_90_COUNTERCLOCKWISE}
    results, stamp = [], 0
    with HandDetector(asset_path("hand_landmarker.task"), num_hands=1) as detector:
        for name in OPEN_PALM_PHOTOS:
            rgb = cv2.cvtColor(cv2.imread(str(photo_path(name))), cv2.COLOR_BGR2RGB)
            for turn, code in turns.items():
                for mirrored in (False, True):
                    img = rgb if code is None else cv2.rotate(rgb, code)
                    img = cv2.flip(img, 1) if mirrored else img
                    stamp += 1000
                    hands = detector.detect(img, stamp, new_scene=True)
                    view = f"{name} turned {turn}{' mirrored' if mirrored else ''}"
                    if not hands:
                        results.append({"view": view, "gesture": "no hand detected"})
                        continue
                    h, w = img.shape[:2]
                    d = decide(clf.predict_proba(hands[0].image_points, hands[0].handedness or "Right",
                                                 aspect_ratio=w / h), clf.min_confidence)
                    results.append({"view": view, "gesture": d.name, "confidence": d.confidence})
    detected = [r for r in results if r["gesture"] != "no hand detected"]
    return {"n": len(detected), "stop": sum(r["gesture"] == "STOP" for r in detected),
            "not_detected": len(results) - len(detected), "views": results}


def _tables(r: dict) -> str:
    lines = ["# Gesture classifier on held-out recordings", "",
             "thresholds " + ", ".join(f"{k} {v:.3f}" for k, v in r["protocol"]["threshold"].items() if k != "NONE")
             + f"; {r['protocol']['n_test_hands']} test hands x "
             f"{r['protocol']['views_per_hand']} views (in-plane +-90 deg, out-of-plane +-45 deg, half mirrored)", "",
             "| class | held-out P | held-out R | rotated P | rotated R | rotated F1 | rotated n |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in r["rotated"]["per_class"].items():
        h = r["held_out"]["per_class_held_out"][name]
        lines.append(f"| {name} | {h['precision']:.3f} | {h['recall']:.3f} | {row['precision']:.3f} | "
                     f"{row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    f = r["figures"]
    lines += ["", "| figure | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in f.items()]
    lines += ["", "False commands by data-set class outside the vocabulary (rotated): " + ", ".join(
        f"{k} {v:.3f}" for k, v in r["false_command_rotated"]["per_class"].items())]
    if r["photos"] is not None:
        lines += ["", "Real open-palm photos through MediaPipe: " + "; ".join(
            f"{v['view']}: {v['gesture']}" for v in r["photos"]["views"])]
    return "\n".join(lines)
