"""The torch-free (numpy) classifier inference against the torch model, and the nodes staying torch-free.

Both paths load the same built weights (``hrc-fl setup-assets``) and are compared on the real held-out
samples of the split the training commands use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hrc_fl.data import assets
from hrc_fl.data.datasets import load_body_pose, load_hand_pose
from hrc_fl.perception import arm_signal_classifier as arm_mod
from hrc_fl.perception import gesture_training as gesture_mod
from hrc_fl.perception.arm_signal_classifier import ArmSignalClassifier
from hrc_fl.perception.body_features import body25_to_mediapipe33, normalise_bodies
from hrc_fl.perception.gesture_classifier import GestureClassifier
from hrc_fl.perception.gesture_protocol import split_by_recording
from hrc_fl.perception.hand_features import normalise_hands
from hrc_fl.perception.landmark_mlp import load_model, predict_proba, stratified_split
from hrc_fl.perception.landmark_mlp_numpy import NumpyLandmarkMLP, thresholded_class

REPO = Path(__file__).resolve().parent.parent
# float32 on both sides; only the summation order of the matrix products differs
RTOL, ATOL = 1e-5, 5e-6


pytestmark = pytest.mark.usefixtures("assets_built")


@pytest.fixture(scope="module")
def held_out_hands():
    data = load_hand_pose()
    left = data.handedness == "left"
    test = split_by_recording(data.labels, data.handedness, data.class_names, seed=gesture_mod.DEFAULT_SEED).test
    return data.points_xy[test], left[test], data.handedness[test]


@pytest.fixture(scope="module")
def held_out_bodies():
    data = load_body_pose()
    points, vis = body25_to_mediapipe33(data.points_xy)
    _, usable = normalise_bodies(points, vis)
    points, vis, labels = points[usable], vis[usable], data.labels[usable]
    _, test = stratified_split(labels, arm_mod.DEFAULT_TEST_FRACTION, arm_mod.DEFAULT_SEED)
    return points[test], vis[test]


def test_numpy_mlp_matches_torch_on_held_out_hands(held_out_hands):
    # Prepare: both models from the same built file
    path = assets.asset_path("gesture_classifier.safetensors")
    torch_model, torch_meta = load_model(path)
    numpy_model, numpy_meta = NumpyLandmarkMLP.load(path)
    points, left, _ = held_out_hands
    features = normalise_hands(points, left)

    # Execute
    expected = predict_proba(torch_model, features)
    got = numpy_model.predict_proba(features)

    # Assert
    assert numpy_meta == torch_meta
    assert got.shape == expected.shape == (len(points), len(numpy_meta["fine_class_names"]))
    assert got.dtype == np.float32
    assert np.allclose(got, expected, rtol=RTOL, atol=ATOL), np.abs(got - expected).max()
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def test_numpy_mlp_matches_torch_on_held_out_bodies(held_out_bodies):
    # Prepare
    path = assets.asset_path("arm_signal_classifier.safetensors")
    torch_model, _ = load_model(path)
    numpy_model, _ = NumpyLandmarkMLP.load(path)
    features, usable = normalise_bodies(*held_out_bodies)
    assert usable.all()

    # Execute
    expected = predict_proba(torch_model, features)
    got = numpy_model.predict_proba(features)

    # Assert
    assert np.allclose(got, expected, rtol=RTOL, atol=ATOL), np.abs(got - expected).max()
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def test_classifiers_give_the_same_answers_with_either_backend(held_out_hands, held_out_bodies):
    # Prepare: load() (numpy) and the same file wrapped around the torch model
    g_path = assets.asset_path("gesture_classifier.safetensors")
    a_path = assets.asset_path("arm_signal_classifier.safetensors")
    g_numpy, a_numpy = GestureClassifier.load(), ArmSignalClassifier.load()
    g_torch, a_torch = GestureClassifier(*load_model(g_path)), ArmSignalClassifier(*load_model(a_path))
    points, left, handedness = held_out_hands
    body_points, body_vis = held_out_bodies
    # MediaPipe-like input for the single-sample API: normalised 640x480 image coordinates, y down
    image_points = (points[:50] * 60.0 + np.array([320.0, 240.0])) / np.array([640.0, 480.0])

    # Execute / Assert: batch and single-sample APIs
    assert np.allclose(g_numpy.predict_proba_batch(points, left), g_torch.predict_proba_batch(points, left),
                       rtol=RTOL, atol=ATOL)
    assert np.allclose(a_numpy.predict_proba_batch(body_points, body_vis),
                       a_torch.predict_proba_batch(body_points, body_vis), rtol=RTOL, atol=ATOL)
    for pts, hd in zip(image_points, handedness[:50], strict=True):
        got = g_numpy.predict_proba(pts, hd, aspect_ratio=640 / 480)
        assert got.shape == (7,) and got.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(got, g_torch.predict_proba(pts, hd, aspect_ratio=640 / 480), rtol=RTOL, atol=ATOL)
    for pts, vis in zip(body_points[:50], body_vis[:50], strict=True):
        assert np.allclose(a_numpy.predict_proba(pts, vis), a_torch.predict_proba(pts, vis), rtol=RTOL, atol=ATOL)


def test_mismatched_weights_are_rejected(tmp_path):
    # Prepare: copies of the built gesture model, one with a missing layer, one with a wrong meta shape
    src = assets.asset_path("gesture_classifier.safetensors")
    state = load_file(str(src))
    meta = json.loads(src.with_suffix(".json").read_text())
    save_file({k: v for k, v in state.items() if not k.startswith("net.3.")}, str(tmp_path / "missing.safetensors"))
    (tmp_path / "missing.json").write_text(json.dumps(meta))
    save_file(state, str(tmp_path / "shape.safetensors"))
    (tmp_path / "shape.json").write_text(json.dumps({**meta, "in_dim": meta["in_dim"] + 1}))
    model, _ = NumpyLandmarkMLP.load(src)

    # Execute / Assert
    with pytest.raises(ValueError, match="unexpected MLP tensors"):
        GestureClassifier.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match=r"net\.0\.weight has shape"):
        NumpyLandmarkMLP.load(tmp_path / "shape.safetensors")
    with pytest.raises(ValueError, match="features must be"):
        model.predict_proba(np.zeros((2, meta["in_dim"] + 1)))


# A fresh interpreter that builds the real node (rclpy, MediaPipe, classifier), classifies one sample
# through the node's classifier and reports whether torch got imported anywhere on the way.
_NODE_SCRIPT = """
import operator
import sys
import numpy as np
import rclpy
import hrc_fl.nodes.{module} as mod
assert "torch" not in sys.modules, "importing the node module imported torch"
rclpy.init()
node = mod.{cls}()
try:
    clf = operator.attrgetter("{attr}")(node)
    proba = {call}
    assert np.isclose(np.sum(proba), 1.0, atol=1e-5), proba
finally:
    node.worker.stop()
    node.detector.close()
    node.destroy_node()
    rclpy.try_shutdown()
print("TORCH_IMPORTED", "torch" in sys.modules, sorted(m for m in sys.modules if m.split(".")[0] == "torch")[:3])
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("module, cls, attr, call", [
    ("hands", "HandsNode", "classifier",
     "clf.predict_proba(np.random.default_rng(0).uniform(0.3, 0.7, (21, 2)), 'Right')"),
    ("pose", "PoseNode", "bodies.arm_classifier",
     "clf.predict_proba(np.random.default_rng(0).uniform(0.3, 0.7, (33, 2)), np.ones(33))"),
])
def test_node_module_and_node_start_do_not_import_torch(module, cls, attr, call):
    # Prepare
    script = _NODE_SCRIPT.format(module=module, cls=cls, attr=attr, call=call)
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}

    # Execute: a fresh interpreter, so nothing this test process imported counts
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=100)

    # Assert
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH_IMPORTED False []" in result.stdout, result.stdout + result.stderr[-2000:]


def test_thresholded_class_falls_back_to_none_and_ignores_non_finite() -> None:
    import numpy as np

    assert thresholded_class(np.array([0.1, 0.7, 0.2]), 0.5) == (1, 0.7)
    # below the threshold: class 0 (NONE) with the probability the classifier gave NONE, not the best one's
    code, conf = thresholded_class(np.array([0.15, 0.45, 0.4]), 0.5)
    assert (code, conf) == (0, 0.15)
    # a NaN must not win argmax (np.argmax picks NaN) nor be reported as a confidence
    code, conf = thresholded_class(np.array([0.2, np.nan, 0.8]), 0.5)
    assert (code, conf) == (2, 0.8)
    code, conf = thresholded_class(np.array([np.nan, np.inf, 0.3]), 0.5)
    assert code == 0 and conf == 0.0
