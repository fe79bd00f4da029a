"""Hand features, the recording split and the HRC gesture classifier on real HandPose hands and real photos."""

from __future__ import annotations

import csv
import json

import cv2
import mediapipe as mp
import numpy as np
import pytest
from mediapipe.tasks.python import BaseOptions, vision

from hrc_fl.cli import main as cli_main
from hrc_fl.data import assets
from hrc_fl.data.datasets import OPEN_PALM_PHOTOS, load_hand_pose, photo_path
from hrc_fl.perception import gesture_protocol as protocol
from hrc_fl.perception.arm_signal_classifier import ArmSignalClassifier
from hrc_fl.perception.gesture_classifier import (
    GESTURE_NAMES,
    HRC_FROM_HANDPOSE,
    GestureClassifier,
    decide,
    fine_to_hrc_proba,
    hrc_index_of_fine,
    threshold_for_false_command_rate,
    thresholds_for_false_command_rate,
)
from hrc_fl.perception.hand_features import (
    HAND_FEATURE_DIM,
    SHAPE_DIM,
    normalise_hand,
    normalise_hands,
    rotate_hands,
)
from hrc_fl.perception.landmark_mlp_numpy import read_meta

pytestmark = pytest.mark.usefixtures("assets_built")


@pytest.fixture(scope="module")
def hands():
    return load_hand_pose()


@pytest.fixture(scope="module")
def classifier():
    return GestureClassifier.load()


@pytest.fixture(scope="module")
def test_rows(hands, classifier):
    """Rows of the recordings the built classifier never saw (its split seed is in its meta)."""
    return protocol.split_by_recording(hands.labels, hands.handedness, hands.class_names,
                                       seed=int(classifier.meta["seed"])).test


def _rows_of(hands, rows, fine: str, n: int) -> np.ndarray:
    picked = rows[hands.labels[rows] == hands.class_names.index(fine)]
    return picked[np.linspace(0, len(picked) - 1, n).astype(int)]


def _turn(points: np.ndarray, deg: float, tilt_x_deg: float = 0.0, tilt_y_deg: float = 0.0) -> np.ndarray:
    n = len(points)
    return rotate_hands(points, np.full(n, np.deg2rad(deg)), np.full(n, np.deg2rad(tilt_x_deg)),
                        np.full(n, np.deg2rad(tilt_y_deg)))


def _gestures(classifier, points: np.ndarray, left: np.ndarray) -> list[str]:
    p = classifier.predict_proba_batch(points, left)
    return [decide(row, classifier.min_confidence).name for row in p]


# ---------------------------------------------------------------- features

def test_features_ignore_translation_scale_and_aspect(hands):
    # Prepare: one real hand, and the same hand moved, scaled and squeezed like MediaPipe's
    # normalised coordinates of a 640x480 image (x / 640, y / 480)
    p = hands.points_xy[123].astype(np.float64)
    pixels = p * 37.0 + np.array([300.0, 200.0])
    normalised = pixels / np.array([640.0, 480.0])

    # Execute
    a = normalise_hand(p, "right")
    b = normalise_hand(normalised, "right", aspect_ratio=640 / 480)

    # Assert
    assert a.shape == (HAND_FEATURE_DIM,)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(a[:2], 0.0)  # wrist at the origin
    assert not np.allclose(normalise_hand(normalised, "right"), a, atol=1e-2)  # aspect matters


def test_shape_features_ignore_in_plane_rotation_but_direction_features_turn(hands):
    # Prepare: real hands and the same hands turned in the image plane by 70 degrees
    p = hands.points_xy[::500].astype(np.float64)
    left = np.zeros(len(p), dtype=bool)
    turned = _turn(p, 70.0)

    # Execute
    a, b = normalise_hands(p, left), normalise_hands(turned, left)

    # Assert: shape equal, hand axis and thumb direction turned by 70 degrees (clockwise on screen, y down)
    np.testing.assert_allclose(a[:, :SHAPE_DIM], b[:, :SHAPE_DIM], atol=1e-4)
    c, s = np.cos(np.deg2rad(70.0)), np.sin(np.deg2rad(70.0))
    rot = np.array([[c, -s], [s, c]])
    for cols in (slice(SHAPE_DIM, SHAPE_DIM + 2), slice(SHAPE_DIM + 2, SHAPE_DIM + 4)):
        np.testing.assert_allclose(a[:, cols] @ rot.T, b[:, cols], atol=1e-4)
    # canonical frame: the hand axis points up (-y) for every hand
    bases = a[:, :SHAPE_DIM].reshape(-1, 21, 2)[:, [5, 9, 13, 17]].mean(axis=1)
    assert np.all(bases[:, 1] < 0) and np.allclose(bases[:, 0], 0.0, atol=1e-5)


def test_left_hand_is_mirrored_onto_right(hands):
    # Prepare
    p = hands.points_xy[7].astype(np.float64)
    mirrored = p * np.array([-1.0, 1.0])

    # Execute / Assert
    np.testing.assert_allclose(normalise_hand(mirrored, "Left"), normalise_hand(p, "right"), atol=1e-6)
    assert not np.allclose(normalise_hand(p, "left"), normalise_hand(p, "right"))


def test_bad_hands_raise_value_error():
    good = np.random.default_rng(0).normal(size=(21, 2))
    with pytest.raises(ValueError, match="21"):
        normalise_hand(np.zeros((20, 2)), "left")
    with pytest.raises(ValueError, match="non-finite"):
        normalise_hand(np.where(np.arange(42).reshape(21, 2) == 3, np.nan, good), "left")
    with pytest.raises(ValueError, match="degenerate"):
        normalise_hand(np.ones((21, 3)), "left")
    with pytest.raises(ValueError, match="handedness"):
        normalise_hand(good, "both")


def test_out_of_plane_tilt_foreshortens_like_a_camera(hands):
    # Prepare: a flat hand tilted 60 degrees about the image x axis, seen from far away
    p = hands.points_xy[40:41].astype(np.float64)
    far = rotate_hands(p, np.zeros(1), np.array([np.deg2rad(60.0)]), np.zeros(1), distance_palms=1e6)

    # Assert: vertical extent halves (cos 60), horizontal extent unchanged
    centred, turned = p - p.mean(axis=1, keepdims=True), far - far.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(turned[..., 1], 0.5 * centred[..., 1], atol=1e-4)
    np.testing.assert_allclose(turned[..., 0], centred[..., 0], atol=1e-4)


# ---------------------------------------------------------------- protocol

def test_split_holds_out_whole_recordings(hands):
    # Execute
    split = protocol.split_by_recording(hands.labels, hands.handedness, hands.class_names, seed=3)

    # Assert: disjoint, complete, and per class the test rows are exactly one hand's whole recording
    sets = [set(split.train), set(split.validation), set(split.test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == len(hands.labels)
    runs = protocol.recordings(hands.labels, hands.handedness)
    assert len(runs) == 2 * len(hands.class_names)
    for start, stop in runs:
        name, hand = hands.class_names[hands.labels[start]], hands.handedness[start]
        rows = set(range(start, stop))
        if split.test_hand[name] == hand:
            assert rows <= sets[2]
        else:  # the other recording: training frames first, validation frames after them in time
            assert not rows & sets[2]
            assert max(rows & sets[0]) < min(rows & sets[1])
    assert set(split.test_hand.values()) == {"left", "right"}


def test_direction_labels_follow_the_turn(hands):
    names = (*hands.class_names, protocol.THUMB_SIDEWAYS)
    up, down, fist = (names.index(n) for n in ("Super", "Dislike", "Fight_Fist"))
    side = names.index(protocol.THUMB_SIDEWAYS)
    fine = np.array([up, up, up, up, down, down, fist, fist])
    angle = np.deg2rad([30.0, -60.0, 170.0, -200.0, 20.0, 150.0, 90.0, 180.0])

    # Execute
    out = protocol.direction_labels(fine, angle, names)
    guarded = protocol.direction_labels(np.array([up, up, up]), np.deg2rad([44.0, 136.0, 20.0]), names,
                                        guard_rad=np.deg2rad(10.0))

    # Assert: -200 deg is 160 deg the other way (turned over); fists never change
    assert out.tolist() == [up, side, down, down, down, up, fist, fist]
    assert guarded.tolist() == [-1, -1, up]


def test_threshold_meets_the_false_command_rate_and_is_the_lowest_that_does():
    rng = np.random.default_rng(4)
    scores = np.where(rng.random(2000) < 0.3, rng.random(2000), 0.0)
    for target in (0.0, 0.01, 0.05):
        # Execute
        t = threshold_for_false_command_rate(scores, target)

        # Assert
        passed = (scores > 0) & (scores >= t)
        assert passed.mean() <= target
        lower = np.nextafter(t, 0.0)
        assert ((scores > 0) & (scores >= lower)).mean() > target or t == 0.0


def test_per_gesture_thresholds_share_the_false_command_budget():
    # Prepare: NONE-truth validation probabilities; OK is mimicked often and confidently, STOP rarely
    rng = np.random.default_rng(6)
    proba = rng.dirichlet(np.ones(len(GESTURE_NAMES)) * 0.3, size=3000)
    ok = GESTURE_NAMES.index("OK")
    proba[:600] = 0.0
    proba[:600, ok] = 0.99
    proba[600:, 0] += 2.0  # the rest mostly NONE
    proba /= proba.sum(axis=1, keepdims=True)

    # Execute
    thresholds = thresholds_for_false_command_rate(proba, 0.01)

    # Assert: total false commands within budget; OK's threshold above its mimics, STOP's not raised by them
    assert thresholds.shape == (len(GESTURE_NAMES),) and thresholds[0] == 0.0
    best = proba.argmax(axis=1)
    passed = (best != 0) & (proba.max(axis=1) >= thresholds[best])
    assert passed.mean() <= 0.01
    assert thresholds[ok] > 1.0 and thresholds[GESTURE_NAMES.index("STOP")] < 0.99  # OK's mimics are p == 1


def test_mapping_and_probability_reduction(hands):
    # Prepare
    names = (*hands.class_names, protocol.THUMB_SIDEWAYS)
    hrc_of_fine = hrc_index_of_fine(names)
    fine = np.random.default_rng(1).dirichlet(np.ones(len(names)), size=5)

    # Execute
    hrc = fine_to_hrc_proba(fine, hrc_of_fine)

    # Assert: every HRC command is made of the named data-set classes; the rest (sideways thumbs too) is NONE
    for name, fines in HRC_FROM_HANDPOSE.items():
        assert {names[i] for i in np.flatnonzero(hrc_of_fine == GESTURE_NAMES.index(name))} == set(fines)
    assert hrc_of_fine[names.index(protocol.THUMB_SIDEWAYS)] == 0
    np.testing.assert_allclose(hrc.sum(1), 1.0)
    np.testing.assert_allclose(hrc[:, 0], fine[:, hrc_of_fine == 0].sum(1))


def test_decide_falls_back_to_none_below_threshold():
    proba = np.array([0.1, 0.55, 0.05, 0.1, 0.1, 0.05, 0.05])
    assert decide(proba, 0.5).name == "STOP"
    low = decide(proba, 0.6)
    assert low.code == 0 and low.name == "NONE" and low.confidence == pytest.approx(0.55)
    with pytest.raises(ValueError):
        decide(proba, 1.5)


# ---------------------------------------------------------------- the built classifier on unseen hands

def test_built_classifier_matches_this_feature_layout_and_has_a_validated_threshold(classifier, tmp_path):
    # Assert: the asset was trained on the features this code computes, with a threshold from validation
    assert classifier.meta["in_dim"] == HAND_FEATURE_DIM
    assert classifier.min_confidence.shape == (len(GESTURE_NAMES),)
    # 0 where no validation hand outside the vocabulary was taken for that gesture (the best class decides)
    assert np.all(classifier.min_confidence >= 0.0) and np.all(np.isfinite(classifier.min_confidence))
    assert "validation" in classifier.meta["threshold"]["chosen_on"]

    # a weights file from another feature layout is refused with the command that fixes it
    src = assets.asset_path("gesture_classifier.safetensors")
    stale = tmp_path / "gesture_classifier.safetensors"
    stale.write_bytes(src.read_bytes())
    meta = read_meta(src)
    meta["feature"] = "hand_features.normalise_hand/1"
    stale.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="setup-assets"):
        GestureClassifier.load(stale)


def test_rotated_and_mirrored_stop_stays_stop(hands, classifier, test_rows):
    # Prepare: open palms of the held-out recordings, turned in plane, tilted out of plane, mirrored
    rows = np.concatenate([_rows_of(hands, test_rows, f, 12) for f in HRC_FROM_HANDPOSE["STOP"]])
    left = hands.handedness[rows] == "left"
    views = {f"{deg} deg": _turn(hands.points_xy[rows], deg) for deg in (-90, -45, 0, 45, 90)}
    views["tilted 40/-40 deg"] = _turn(hands.points_xy[rows], 20.0, 40.0, -40.0)
    views["mirrored"] = hands.points_xy[rows] * np.array([-1.0, 1.0])
    views["mirrored, 60 deg"] = _turn(views["mirrored"], 60.0)

    for what, pts in views.items():
        # Execute
        names = _gestures(classifier, pts, left)

        # Assert
        assert names.count("STOP") >= 0.9 * len(names), (what, names)
    assert not [n for n in _gestures(classifier, views["0 deg"], left) if n not in ("STOP", "NONE")]


def test_thumb_up_keeps_its_meaning_only_within_45_degrees(hands, classifier, test_rows):
    # Prepare: held-out thumbs-up hands
    rows = _rows_of(hands, test_rows, "Super", 30)
    pts, left = hands.points_xy[rows], hands.handedness[rows] == "left"

    def share(names: list[str], name: str) -> float:
        return names.count(name) / len(names)

    # Execute / Assert: upright (and mirrored) THUMB_UP; still mostly THUMB_UP within +-30 degrees
    assert share(_gestures(classifier, _turn(pts, 0.0), left), "THUMB_UP") >= 0.85
    assert share(_gestures(classifier, pts * np.array([-1.0, 1.0]), left), "THUMB_UP") >= 0.85
    for deg in (-30, 30):
        assert share(_gestures(classifier, _turn(pts, deg), left), "THUMB_UP") >= 0.7, deg
    # turned over: THUMB_DOWN, never THUMB_UP
    for deg in (160, 180):
        names = _gestures(classifier, _turn(pts, deg), left)
        assert share(names, "THUMB_DOWN") >= 0.8 and "THUMB_UP" not in names, (deg, names)
    # sideways (90 degrees): no longer a thumbs-up
    for deg in (-90, 90):
        assert share(_gestures(classifier, _turn(pts, deg), left), "THUMB_UP") <= 0.1, deg


def test_open_palm_photos_are_stop_through_mediapipe(classifier):
    # Prepare: the built assets, exactly as the hands node loads them; real photos turned and mirrored
    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.asset_path("hand_landmarker.task"))), num_hands=1)
    with vision.HandLandmarker.create_from_options(options) as detector:
        for name in OPEN_PALM_PHOTOS:
            bgr = cv2.imread(str(photo_path(name)))
            for view, img in (("as shot", bgr), ("turned 90", cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE)),
                              ("mirrored", cv2.flip(bgr, 1))):
                h, w = img.shape[:2]
                result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))))
                assert len(result.hand_landmarks) == 1, (name, view)
                pts = np.array([[p.x, p.y, p.z] for p in result.hand_landmarks[0]])

                # Execute: with MediaPipe's label and with the opposite one (labels depend on mirroring)
                label = result.handedness[0][0].category_name
                other = "Right" if label == "Left" else "Left"
                decisions = [decide(classifier.predict_proba(pts, hd, aspect_ratio=w / h), classifier.min_confidence)
                             for hd in (label, other)]

                # Assert
                assert [d.name for d in decisions] == ["STOP", "STOP"], (name, view, decisions)


# ---------------------------------------------------------------- the commands users run

@pytest.mark.timeout(600)
def test_evaluate_gestures_command_reports_the_protocol_on_a_small_sample(tmp_path, capsys):
    # Execute: the project command on a small sample of the held-out recordings
    rc = cli_main(["evaluate-gestures", "--out", str(tmp_path), "--max-per-recording", "25", "--views", "2",
                   "--stop-clips", "20"])

    # Assert: the last stdout line is the figures JSON, consistent with the files
    assert rc == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "gestures_eval.json").read_text())
    assert figures == report["figures"]
    for key in ("macro_f1_rotated", "stop_recall_rotated", "false_command_rate", "macro_f1_held_out",
                "inference_p50_ms", "stop_frames_to_command_p95"):
        assert key in figures
    per_class = report["rotated"]["per_class"]
    assert list(per_class) == list(GESTURE_NAMES)
    assert figures["macro_f1_rotated"] == pytest.approx(np.mean([row["f1"] for row in per_class.values()]))
    assert figures["stop_recall_rotated"] == pytest.approx(per_class["STOP"]["recall"])
    with open(tmp_path / "gestures_rotated_confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == list(GESTURE_NAMES)
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == report["rotated"]["n"] == sum(row["support"] for row in per_class.values())
    assert counts[1, 1] / counts[1].sum() == pytest.approx(figures["stop_recall_rotated"])
    # 27 test recordings x 25 frames; those of shapes outside the vocabulary seen from 2 views each
    vocabulary = {f for fines in HRC_FROM_HANDPOSE.values() for f in fines}
    assert report["protocol"]["n_test_hands"] == 27 * 25
    assert report["false_command_rotated"]["n"] == (27 - len(vocabulary)) * 25 * 2
    assert set(report["false_command_rotated"]["per_class"]) == set(report["protocol"]["test_hand"]) - vocabulary
    assert report["stop_latency"]["clips"] == 20
    # a STOP command needs the debounce's frames: never fewer than command_hold_frames
    assert figures["stop_frames_to_command_p95"] is None or figures["stop_frames_to_command_p95"] >= \
        report["protocol"]["hold_frames"]
    assert report["photos"]["n"] + report["photos"]["not_detected"] == len(OPEN_PALM_PHOTOS) * 8
    assert (tmp_path / "gestures_rotated_confusion.png").stat().st_size > 1000
    assert (tmp_path / "gestures_held_out_confusion.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_train_command_trains_both_and_saves_models_that_reproduce_their_report(tmp_path, hands):
    # Execute: the one training command for both classifiers, shortened
    rc = cli_main(["train-classifiers", "--out", str(tmp_path), "--epochs", "20"])

    # Assert: both classifiers trained by the one command (shared MLP and loop)
    assert rc == 0

    assert ArmSignalClassifier.load(tmp_path / "arm_signal_classifier.safetensors").meta["hidden"] == 128
    assert json.loads((tmp_path / "arm_signals_metrics.json").read_text())["epochs"] == 20
    # report files, and the saved gesture weights reproduce the reported held-out figure on the split
    metrics = json.loads((tmp_path / "gestures_metrics.json").read_text())
    with open(tmp_path / "gestures_confusion.csv") as f:
        rows = list(csv.reader(f))
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == metrics["n_test"]
    assert (tmp_path / "gestures_confusion.png").stat().st_size > 1000
    clf = GestureClassifier.load(tmp_path / "gesture_classifier.safetensors")
    assert clf.min_confidence.tolist() == pytest.approx(list(metrics["min_confidence"].values()))
    split = protocol.split_by_recording(hands.labels, hands.handedness, hands.class_names, seed=metrics["seed"])
    pred = [decide(p, clf.min_confidence).code
            for p in clf.predict_proba_batch(hands.points_xy[split.test], hands.handedness[split.test] == "left")]
    truth = hrc_index_of_fine(clf.fine_class_names)[hands.labels[split.test]]
    assert np.trace(counts) / counts.sum() == pytest.approx(np.mean(np.array(pred) == truth), abs=1e-9)
