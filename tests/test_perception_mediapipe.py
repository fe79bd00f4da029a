"""The MediaPipe wrappers on real photos with the built model files (VIDEO mode)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hrc_fl.perception.mediapipe_hands import HandDetector, NonIncreasingTimestampError
from hrc_fl.perception.mediapipe_pose import PoseDetector


def _rgb(name: str) -> np.ndarray:
    from hrc_fl.data.datasets import photo_path

    return cv2.cvtColor(cv2.imread(str(photo_path(name))), cv2.COLOR_BGR2RGB)


def _no_person() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def hand_model():
    from hrc_fl.data.assets import asset_path

    return asset_path("hand_landmarker.task")


@pytest.fixture(scope="module")
def pose_model():
    from hrc_fl.data.assets import asset_path

    return asset_path("pose_landmarker_lite.task")


def test_hand_detector_finds_the_open_palm(hand_model):
    with HandDetector(hand_model, num_hands=2) as detector:
        hands = detector.detect(_rgb("Back_Projection_Theory0.jpg"), 1)
    assert len(hands) == 1
    hand = hands[0]
    assert hand.handedness in ("Left", "Right") and 0.5 < hand.score <= 1.0
    assert hand.image_points.shape == (21, 3) and hand.world_points_m.shape == (21, 3)
    assert np.all((hand.image_points[:, :2] >= 0) & (hand.image_points[:, :2] <= 1))
    # A hand is about 0.1-0.25 m across: wrist (0) to middle finger tip (12).
    span_m = float(np.linalg.norm(hand.world_points_m[12] - hand.world_points_m[0]))
    assert 0.08 < span_m < 0.3


def test_pose_detector_gives_33_points_and_rejects_old_stamps(pose_model):
    messi = _rgb("messi5.jpg")
    with PoseDetector(pose_model, num_poses=2) as detector:
        first = detector.detect(messi, 100)
        with pytest.raises(NonIncreasingTimestampError):
            detector.detect(messi, 100)
        with pytest.raises(NonIncreasingTimestampError):
            detector.detect(messi, 50)
        again = detector.detect(messi, 133)
    assert len(first) == 1 and len(again) == 1
    body = first[0]
    assert body.image_points.shape == (33, 3) and body.world_points_m.shape == (33, 3)
    assert body.visibility.shape == (33,) and body.score > 0.5
    # World points are hip-centred metres: hip midpoint near the origin, a standing adult's head above.
    hip_mid = body.world_points_m[[23, 24]].mean(0)
    assert np.linalg.norm(hip_mid) < 0.1
    assert -1.0 < body.world_points_m[0, 1] < -0.3  # nose 0.3-1 m above the hips (y down)


def test_no_person_photo_gives_no_body_and_no_hand(pose_model, hand_model):
    frame = _no_person()
    with PoseDetector(pose_model) as poses, HandDetector(hand_model) as hands:
        assert poses.detect(frame, 1) == [] and hands.detect(frame, 1) == []


def test_new_scene_drops_tracks_left_over_from_previous_photos(pose_model):
    palm, messi, empty = _rgb("Back_Projection_Theory0.jpg"), _rgb("messi5.jpg"), _no_person()
    with PoseDetector(pose_model, num_poses=2) as detector:
        t = 0
        for frame in (palm, palm, messi, messi):
            t += 33
            detector.detect(frame, t, new_scene=frame is messi and t == 99)
        results = []
        for i in range(3):
            t += 33
            results.append(detector.detect(empty, t, new_scene=i == 0))
    assert results == [[], [], []]
