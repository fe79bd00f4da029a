"""The built MediaPipe .task files work with the installed mediapipe on the real photos, loaded through
``asset_path`` (the same paths the nodes use)."""

from __future__ import annotations

import cv2
import mediapipe as mp
import numpy as np
import pytest
from mediapipe.tasks.python import BaseOptions, vision

from hrc_fl.data import assets
from hrc_fl.data.datasets import PEOPLE_PHOTOS, photo_path

pytestmark = pytest.mark.usefixtures("assets_built")


def _image(name: str) -> mp.Image:
    bgr = cv2.imread(str(photo_path(name)))
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def _hands(image: mp.Image):
    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.asset_path("hand_landmarker.task"))), num_hands=2)
    with vision.HandLandmarker.create_from_options(options) as detector:
        return detector.detect(image)


def _poses(image: mp.Image, variant: str):
    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.asset_path(f"pose_landmarker_{variant}.task"))),
        num_poses=2)
    with vision.PoseLandmarker.create_from_options(options) as detector:
        return detector.detect(image)


def test_exactly_one_hand_in_handsrc():
    # Execute (room for two hands, one is in the photo)
    result = _hands(_image("handSrc.jpg"))

    # Assert
    assert len(result.hand_landmarks) == 1
    pts = np.array([[p.x, p.y] for p in result.hand_landmarks[0]])
    assert pts.shape == (21, 2)
    assert np.all((pts > -0.05) & (pts < 1.05))
    # the hand fills much of the photo: landmarks span a large part of the width
    assert np.ptp(pts[:, 0]) > 0.3


@pytest.mark.parametrize("variant", ["lite", "full"])
@pytest.mark.parametrize("name", PEOPLE_PHOTOS)
def test_33_point_pose_on_people_photos(name, variant):
    # Execute
    result = _poses(_image(name), variant)

    # Assert
    assert len(result.pose_landmarks) == 1
    assert len(result.pose_landmarks[0]) == 33 and len(result.pose_world_landmarks[0]) == 33
    pts = np.array([[p.x, p.y] for p in result.pose_landmarks[0]])
    vis = np.array([p.visibility for p in result.pose_landmarks[0]])
    nose, l_sh, r_sh = pts[0], pts[11], pts[12]
    assert vis[[0, 11, 12]].min() > 0.5
    assert nose[1] < min(l_sh[1], r_sh[1])  # head above shoulders (image y down)
    assert 0.0 <= nose[0] <= 1.0 and 0.0 <= nose[1] <= 1.0


def test_nothing_found_in_an_image_without_people():
    # Prepare: a smooth synthetic gradient, no person or hand
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(np.dstack([ramp] * 3)))

    # Execute / Assert
    assert _hands(image).hand_landmarks == []
    assert _poses(image, "lite").pose_landmarks == []
