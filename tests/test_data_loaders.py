"""Real data loaders, asset paths and the setup-assets manifest logic.

These tests assume ``hrc-fl setup-assets`` has run (the README's test command runs it first); if not,
they fail with a message naming the command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from hrc_fl import setup_assets as builder
from hrc_fl.commands import setup_assets as command
from hrc_fl.data import assets, datasets
from hrc_fl.perception import gesture_protocol, hand_features

pytestmark = pytest.mark.usefixtures("assets_built")


def test_watch_data_has_ten_subjects_and_six_channels():
    # Execute
    recs = datasets.load_watch()

    # Assert
    assert len(recs) == 140
    assert {r.subject for r in recs} == set(range(1, 11))
    assert {r.side for r in recs} == {"left", "right"}
    assert {r.label for r in recs} == set(range(len(datasets.WATCH_CLASSES)))
    for r in recs:
        assert r.imu.ndim == 2 and r.imu.shape[1] == 6 and r.imu.dtype == np.float32
        assert r.imu.shape[0] > 100 and np.all(np.isfinite(r.imu))
        assert r.label_name == datasets.WATCH_CLASSES[r.label] and r.rate_hz == 50.0
    # accelerations are in g: the gravity vector's norm averages about 1 over a recording
    mean_norm = np.mean([np.linalg.norm(r.imu[:, :3], axis=1).mean() for r in recs])
    assert 0.8 < mean_norm < 1.5


def test_hand_pose_has_documented_shape_and_image_orientation():
    # Execute
    data = datasets.load_hand_pose()

    # Assert
    assert data.points_xy.shape == (11204, 21, 2) and data.points_xy.dtype == np.float32
    assert len(data.class_names) == 27 and len(set(data.class_names)) == 27
    assert data.labels.shape == (11204,) and set(np.unique(data.labels)) == set(range(27))
    assert set(np.unique(data.handedness)) == {"left", "right"}
    # y points down like image coordinates: in "Stop" (fingers up) the middle fingertip is above the wrist
    stop = data.points_xy[data.labels == data.class_names.index("Stop")]
    assert np.mean(stop[:, 12, 1] < stop[:, 0, 1]) > 0.95
    # and in "Dislike" (thumb down) the thumb tip is below the index finger base
    down = data.points_xy[data.labels == data.class_names.index("Dislike")]
    assert np.mean(down[:, 4, 1] > down[:, 5, 1]) > 0.9


def test_body_pose_has_twenty_classes_and_marks_missing_joints():
    # Execute
    data = datasets.load_body_pose()

    # Assert
    assert data.points_xy.shape == (10681, 25, 2)
    assert len(data.class_names) == 20 and "Traffic_AllStop" in data.class_names
    assert set(np.unique(data.labels)) == set(range(20))
    assert np.isnan(data.points_xy).any() and not np.any(np.all(data.points_xy == 0.0, axis=2))
    stand = data.points_xy[data.labels == data.class_names.index("Stand")]
    nose, mid_hip = datasets.BODY_25_NAMES.index("nose"), datasets.BODY_25_NAMES.index("mid_hip")
    ok = np.isfinite(stand[:, nose, 1]) & np.isfinite(stand[:, mid_hip, 1])
    assert np.all(stand[ok, nose, 1] < stand[ok, mid_hip, 1])  # head above hips: y down


@pytest.mark.parametrize("name", datasets.PHOTOS)
def test_photo_paths_exist_and_decode(name):
    # Execute
    path = datasets.photo_path(name)

    # Assert
    assert path.is_file()
    if name.endswith(".avi"):
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.ndim == 3
    else:
        img = cv2.imread(str(path))
        assert img is not None and img.ndim == 3 and min(img.shape[:2]) >= 100


def test_unknown_names_are_rejected_with_the_known_ones():
    with pytest.raises(KeyError, match=r"handSrc\.jpg"):
        datasets.photo_path("nope.jpg")
    with pytest.raises(KeyError, match=r"hand_landmarker\.task"):
        assets.asset_path("nope.task")


def test_missing_asset_names_the_setup_command(tmp_path, monkeypatch):
    # Prepare: an empty cache
    monkeypatch.setenv("HRC_FL_CACHE", str(tmp_path))

    # Execute / Assert
    with pytest.raises(FileNotFoundError, match="hrc-fl setup-assets"):
        assets.asset_path("hand_landmarker.task")
    with pytest.raises(FileNotFoundError, match="hrc-fl setup-assets"):
        datasets.load_hand_pose()
    with pytest.raises(FileNotFoundError, match="hrc-fl setup-assets"):
        assets.require_assets()


def test_built_assets_are_valid_in_the_manifest():
    # Prepare
    manifest = json.loads(assets.manifest_path().read_text())

    # Execute / Assert: every item's recipe matches and every file has its recorded SHA-256
    for item in builder.items():
        assert assets.item_is_valid(item, manifest), item.name
    for name in assets.ASSET_NAMES:
        assert assets.asset_path(name).stat().st_size > 0


def test_manifest_detects_changed_file_and_changed_recipe(tmp_path, monkeypatch):
    # Prepare: a cache with one built item recorded in a manifest
    monkeypatch.setenv("HRC_FL_CACHE", str(tmp_path))
    built = []
    item = assets.Item("demo", ("assets/demo.bin",), "recipe-1",
                       lambda dl, log: (built.append(1), (tmp_path / "assets").mkdir(exist_ok=True),
                                        (tmp_path / "assets/demo.bin").write_bytes(b"v1")))
    assert assets.build_items([item], log=lambda m: None) == {"demo": "built"}

    # Execute / Assert: valid -> skipped; tampered -> rebuilt; new recipe -> rebuilt; --force -> rebuilt
    assert assets.build_items([item], log=lambda m: None) == {"demo": "ok"}
    (tmp_path / "assets/demo.bin").write_bytes(b"tampered")
    assert assets.build_items([item], log=lambda m: None) == {"demo": "built"}
    changed = assets.Item("demo", item.outputs, "recipe-2", item.build)
    assert assets.build_items([changed], log=lambda m: None) == {"demo": "built"}
    assert assets.build_items([changed], force=True, log=lambda m: None) == {"demo": "built"}
    assert len(built) == 4
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["items"]["demo"]["recipe"] == "recipe-2"


def test_gesture_classifier_is_rebuilt_when_the_feature_layout_or_protocol_code_changes(monkeypatch):
    # Prepare: the built cache's manifest, valid for the current code
    manifest = json.loads(assets.manifest_path().read_text())

    def gesture_item() -> assets.Item:
        return next(i for i in builder.items() if i.name == "gesture_classifier")

    assert assets.item_is_valid(gesture_item(), manifest)
    assert json.loads(assets.asset_path("gesture_classifier.json").read_text())["feature"] == \
        hand_features.HAND_FEATURE_LAYOUT

    # Execute / Assert: another feature layout, or other protocol code, makes the built model invalid
    monkeypatch.setattr(hand_features, "HAND_FEATURE_LAYOUT", "hand_features.some_other_layout/3")
    assert not assets.item_is_valid(gesture_item(), manifest)
    monkeypatch.undo()
    real_hash = builder.source_hash
    monkeypatch.setattr(builder, "source_hash", lambda *mods: real_hash(*mods) + (
        "-changed" if gesture_protocol.__name__ in mods else ""))
    assert not assets.item_is_valid(gesture_item(), manifest)


def test_missing_registry_client_is_one_clear_line(tmp_path, monkeypatch, capsys):
    # Prepare: an empty cache and no npm on PATH; the command gets an item that needs npm
    monkeypatch.setenv("HRC_FL_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    item = assets.Item("needs_npm", ("assets/x",), "r", lambda dl, log: dl.npm_pose())
    monkeypatch.setattr(builder, "items", lambda: [item])

    # Execute
    rc = command.run(argparse.Namespace(force=False))

    # Assert
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and "@mediapipe/pose" in err[0] and "npm" in err[0]


def test_photo_build_copies_every_listed_photo_from_its_package(tmp_path, monkeypatch):
    # Prepare: a stand-in opencv-doc .deb whose members hold their own names, an empty cache
    root = tmp_path / "deb"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text("Package: opencv-doc\nVersion: 1\nArchitecture: all\n"
                                         "Maintainer: dev <dev@example.com>\nDescription: stand-in\n")
    from_deb = {n: p for n, p in datasets.PHOTOS.items() if p.package == datasets.OPENCV_DOC_PACKAGE}
    for name, photo in from_deb.items():
        (root / photo.member).parent.mkdir(parents=True, exist_ok=True)
        (root / photo.member).write_bytes(name.encode())
    deb = tmp_path / "opencv-doc.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    monkeypatch.setenv("HRC_FL_CACHE", str(tmp_path / "cache"))

    class Downloads:
        def opencv_doc(self):
            return deb

    # Execute
    assets._build_photos(Downloads(), log=lambda m: None)

    # Assert: each photo of the list, from the deb or from matplotlib, under the name photo_path knows
    photos = next(i for i in assets.data_items() if i.name == "photos")
    assert sorted(photos.outputs) == sorted(f"data/photos/{n}" for n in datasets.PHOTOS)
    for name, photo in datasets.PHOTOS.items():
        data = datasets.photo_path(name).read_bytes()
        if name in from_deb:
            assert data == name.encode()
        else:
            assert data == (Path(matplotlib.get_data_path()) / photo.member).read_bytes()
    assert set(from_deb) < set(datasets.PHOTOS)  # both packages are exercised
