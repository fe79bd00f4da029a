"""Arm-signal classifier ("all stop" vs normal work) on upper-body pose, trained on the real BodyPose data.

The MLP predicts the data set's 20 posture classes from upper-body features (BODY_25 mapped to MediaPipe's
33 points by joint name); ALL_STOP is the probability of ``Traffic_AllStop`` (both upper arms out to the
sides, forearms raised), NONE the sum of all other postures (standing, seated, squatting, one arm raised,
T-pose, the other traffic signals, yoga...). Training on all 20 postures teaches the model what is *not*
an all-stop signal, including postures that resemble it (T-pose, turn signals).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hrc_fl.perception.body_features import (
    BODY_FEATURE_DIM,
    DEFAULT_MIN_VISIBILITY,
    augment_bodies,
    body25_to_mediapipe33,
    normalise_bodies,
    normalise_body,
)
from hrc_fl.perception.landmark_mlp_numpy import NumpyLandmarkMLP, load_classifier_weights

if TYPE_CHECKING:
    from hrc_fl.perception.landmark_mlp import LandmarkMLP

#: Index == ``hrc_fl_msgs/BodyPose.ARM_SIGNAL_*`` code.
ARM_SIGNAL_NAMES: tuple[str, ...] = ("NONE", "ALL_STOP")
ALL_STOP_POSTURE = "Traffic_AllStop"
FORMAT = "hrc_fl.arm_signal_classifier/1"
DEFAULT_SEED = 7
DEFAULT_EPOCHS = 40
DEFAULT_TEST_FRACTION = 0.2


class ArmSignalClassifier:
    """Trained posture MLP reduced to :data:`ARM_SIGNAL_NAMES`. Build with :meth:`load`."""

    def __init__(self, model: NumpyLandmarkMLP | LandmarkMLP, meta: dict) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"not an arm-signal classifier file (format {meta.get('format')!r})")
        self._model = model
        self.meta = meta
        self.posture_names: tuple[str, ...] = tuple(meta["posture_names"])
        self._stop_index = self.posture_names.index(ALL_STOP_POSTURE)

    @classmethod
    def load(cls, path: Path | str | None = None) -> ArmSignalClassifier:
        """Load weights (default: the asset built by ``hrc-fl setup-assets``) and the JSON meta beside them."""
        return cls(*load_classifier_weights(path, "arm_signal_classifier.safetensors"))

    def _mlp_proba(self, features: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(features)  # numpy (nodes) or torch (training, tests) model

    def _reduce(self, posture_proba: np.ndarray) -> np.ndarray:
        stop = posture_proba[:, self._stop_index]
        return np.stack([1.0 - stop, stop], axis=1)

    def predict_proba(self, image_points: np.ndarray, visibility: np.ndarray, *, aspect_ratio: float = 1.0,
                      min_visibility: float = DEFAULT_MIN_VISIBILITY) -> np.ndarray:
        """(2,) probabilities [NONE, ALL_STOP] for one body.

        ``image_points``: (33, 2 or 3) MediaPipe normalised image coordinates (y down); ``visibility``:
        (33,) 0..1; ``aspect_ratio``: image width / height. When the shoulders are not visible the
        answer is [1, 0] (no signal can be read).
        """
        try:
            feats = normalise_body(image_points, visibility, aspect_ratio, min_visibility)
        except ValueError as exc:
            if "not usable" not in str(exc):
                raise
            return np.array([1.0, 0.0])
        return self._reduce(self._mlp_proba(feats[None]))[0]

    def predict_proba_batch(self, points: np.ndarray, visibility: np.ndarray, aspect_ratio: float = 1.0) -> np.ndarray:
        """(N, 2) for (N, 33, 2) points and (N, 33) visibilities; unusable bodies get [1, 0]."""
        feats, usable = normalise_bodies(points, visibility, aspect_ratio)
        out = self._reduce(self._mlp_proba(feats))
        out[~usable] = (1.0, 0.0)
        return out


def train_and_save(*, out_dir: Path, weights_path: Path, seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS,
                   test_fraction: float = DEFAULT_TEST_FRACTION, log: Callable[[str], None] = print) -> dict:
    """Train on the BodyPose data (stratified held-out split); save weights, metrics and confusion matrix.

    Returns metrics: ``accuracy`` and ``balanced_accuracy`` of NONE vs ALL_STOP, ALL_STOP precision,
    recall and F1, ``accuracy_posture`` over the 20 postures, split sizes.
    """
    # here, not at the top: landmark_mlp imports torch, and the pose node imports this module for numpy inference
    from hrc_fl.data.datasets import load_body_pose
    from hrc_fl.perception.landmark_mlp import (
        confusion_matrix,
        per_class_f1,
        predict_proba,
        save_model,
        stratified_split,
        train_mlp,
        write_report,
    )

    data = load_body_pose()
    points, vis = body25_to_mediapipe33(data.points_xy)
    _, usable = normalise_bodies(points, vis)
    n_unusable = int((~usable).sum())
    points, vis, labels = points[usable], vis[usable], data.labels[usable]
    stop = data.class_names.index(ALL_STOP_POSTURE)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    log(f"arm-signal classifier: {len(train_idx)} training / {len(test_idx)} held-out bodies "
        f"({n_unusable} without both shoulders dropped), {epochs} epochs")

    raw = np.concatenate([points[train_idx], vis[train_idx, :, None]], axis=2)  # (N, 33, 3): x, y, visibility

    def features(batch: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p, v = augment_bodies(batch[:, :, :2], batch[:, :, 2], rng)
        return normalise_bodies(p, v)[0], y

    model = train_mlp(features, raw, labels[train_idx], in_dim=BODY_FEATURE_DIM,
                      num_classes=len(data.class_names), epochs=epochs, seed=seed)
    posture_proba = predict_proba(model, normalise_bodies(points[test_idx], vis[test_idx])[0])
    y_true = (labels[test_idx] == stop).astype(np.int64)
    y_pred = (posture_proba[:, stop] >= 0.5).astype(np.int64)
    cm = confusion_matrix(y_true, y_pred, 2)
    f1 = per_class_f1(cm)
    recall = cm[1, 1] / max(cm[1].sum(), 1)
    specificity = cm[0, 0] / max(cm[0].sum(), 1)
    metrics = {
        "data": "pose-classification-kit 1.1.5 BodyPose_Dataset.csv (BODY_25 -> MediaPipe 33 by joint name)",
        "seed": seed, "epochs": epochs, "test_fraction": test_fraction,
        "n_train": len(train_idx), "n_test": len(test_idx), "n_dropped_no_shoulders": n_unusable,
        "n_test_all_stop": int(y_true.sum()),
        "accuracy": float((y_true == y_pred).mean()),
        "balanced_accuracy": float((recall + specificity) / 2),
        "majority_baseline_accuracy": float(1.0 - y_true.mean()),
        "all_stop_precision": float(cm[1, 1] / max(cm[:, 1].sum(), 1)),
        "all_stop_recall": float(recall), "all_stop_f1": float(f1[1]),
        "accuracy_posture": float((posture_proba.argmax(1) == labels[test_idx]).mean()),
    }
    save_model(Path(weights_path), model, {
        "format": FORMAT, "feature": "body_features.normalise_body/1", "posture_names": list(data.class_names),
        "arm_signal_names": list(ARM_SIGNAL_NAMES),
        "metrics": {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "all_stop_f1", "n_test")},
    })
    write_report(Path(out_dir), "arm_signals", cm, ARM_SIGNAL_NAMES, metrics)
    return metrics
