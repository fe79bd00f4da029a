"""Hand features and the HRC gesture classifier on the real HandPose data and real open-palm photos."""

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
from hrc_fl.perception.gesture_classifier import (
    GESTURE_NAMES,
    HRC_FROM_HANDPOSE,
    GestureClassifier,
    decide,
    fine_to_hrc_proba,
    hrc_index_of_fine,
)
from hrc_fl.perception.hand_features import normalise_hand, normalise_hands
from hrc_fl.perception.landmark_mlp import stratified_split


@pytest.fixture(scope="module", autouse=True)
def _assets_built():
    try:
        assets.require_assets()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def hands():
    return load_hand_pose()


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
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.allclose(a[:2], 0.0)  # wrist at the origin
    assert not np.allclose(normalise_hand(normalised, "right"), a, atol=1e-2)  # aspect matters


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


def test_mapping_and_probability_reduction(hands):
    # Prepare
    hrc_of_fine = hrc_index_of_fine(hands.class_names)
    fine = np.random.default_rng(1).dirichlet(np.ones(len(hands.class_names)), size=5)

    # Execute
    hrc = fine_to_hrc_proba(fine, hrc_of_fine)

    # Assert: every HRC command is made of the named data-set classes; the rest is NONE
    for name, fines in HRC_FROM_HANDPOSE.items():
        assert {hands.class_names[i] for i in np.flatnonzero(hrc_of_fine == GESTURE_NAMES.index(name))} == set(fines)
    np.testing.assert_allclose(hrc.sum(1), 1.0)
    np.testing.assert_allclose(hrc[:, 0], fine[:, hrc_of_fine == 0].sum(1))


def test_decide_falls_back_to_none_below_threshold():
    proba = np.array([0.1, 0.55, 0.05, 0.1, 0.1, 0.05, 0.05])
    assert decide(proba, 0.5).name == "STOP"
    low = decide(proba, 0.6)
    assert low.code == 0 and low.name == "NONE" and low.confidence == pytest.approx(0.55)
    with pytest.raises(ValueError):
        decide(proba, 1.5)


def test_stratified_split_is_disjoint_and_proportional(hands):
    # Execute
    train, test = stratified_split(hands.labels, 0.2, seed=3)

    # Assert
    assert not set(train) & set(test) and len(train) + len(test) == len(hands.labels)
    for c in range(len(hands.class_names)):
        share = np.mean(hands.labels[test] == c) / np.mean(hands.labels == c)
        assert 0.9 < share < 1.1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_command_reaches_macro_f1_on_held_out_split(tmp_path):
    # Execute: the project command on the real data
    rc = cli_main(["train-gestures", "--out", str(tmp_path)])

    # Assert
    assert rc == 0
    metrics = json.loads((tmp_path / "gestures_metrics.json").read_text())
    assert metrics["macro_f1_hrc"] >= 0.97 and metrics["macro_f1_commands"] >= 0.97
    with open(tmp_path / "gestures_confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == list(GESTURE_NAMES)
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == metrics["n_test"]
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["accuracy_hrc"])
    assert (tmp_path / "gestures_confusion.png").stat().st_size > 1000
    # the saved weights load and reproduce the held-out accuracy on the same split
    clf = GestureClassifier.load(tmp_path / "gesture_classifier.safetensors")
    data = load_hand_pose()
    left = data.handedness == "left"
    _, test = stratified_split(data.labels * 2 + left, 0.2, seed=metrics["seed"])
    pred = clf.predict_proba_batch(data.points_xy[test], left[test]).argmax(1)
    truth = hrc_index_of_fine(data.class_names)[data.labels[test]]
    assert np.mean(pred == truth) == pytest.approx(metrics["accuracy_hrc"], abs=1e-6)


def test_open_palm_photos_are_stop_through_mediapipe():
    # Prepare: the built assets, exactly as the hands node loads them
    clf = GestureClassifier.load()
    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.asset_path("hand_landmarker.task"))), num_hands=1)
    with vision.HandLandmarker.create_from_options(options) as detector:
        for name in OPEN_PALM_PHOTOS:
            bgr = cv2.imread(str(photo_path(name)))
            h, w = bgr.shape[:2]
            result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                              data=np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
            assert len(result.hand_landmarks) == 1, name
            pts = np.array([[p.x, p.y, p.z] for p in result.hand_landmarks[0]])

            # Execute: with MediaPipe's label and with the opposite one (labels depend on mirroring)
            label = result.handedness[0][0].category_name
            other = "Right" if label == "Left" else "Left"
            decisions = [decide(clf.predict_proba(pts, hd, aspect_ratio=w / h)) for hd in (label, other)]

            # Assert
            assert [d.name for d in decisions] == ["STOP", "STOP"], (name, decisions)


def test_held_out_openpose_hands_in_mediapipe_coordinates_keep_their_class(hands):
    # Prepare: held-out thumbs-up and thumbs-down hands placed into a 640x480 image as normalised coords
    clf = GestureClassifier.load()
    _, test = stratified_split(hands.labels * 2 + (hands.handedness == "left"), 0.2, seed=7)
    rng = np.random.default_rng(5)
    for fine, expected in (("Super", "THUMB_UP"), ("Dislike", "THUMB_DOWN"), ("Fight_Fist", "CLOSED_FIST")):
        idx = test[hands.labels[test] == hands.class_names.index(fine)][:20]
        correct = 0
        for i in idx:
            pix = hands.points_xy[i] * rng.uniform(40, 120) + rng.uniform(150, 350, size=2)

            # Execute
            proba = clf.predict_proba(pix / np.array([640.0, 480.0]), hands.handedness[i], aspect_ratio=4 / 3)
            correct += GESTURE_NAMES[int(np.argmax(proba))] == expected

        # Assert
        assert correct >= 0.9 * len(idx), (fine, correct, len(idx))
    assert normalise_hands(hands.points_xy[:3], np.array([True, False, True])).shape == (3, 42)
