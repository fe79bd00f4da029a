"""Hand-gesture classifier for the HRC command vocabulary, trained on the real HandPose data set.

The MLP predicts the data set's 27 fine classes; HRC probabilities are sums over the fine classes each
HRC gesture is made of (:data:`HRC_FROM_HANDPOSE`), every other fine class adds to NONE. Training on the
fine classes keeps NONE (a mixed bag of 20 hand shapes) from blurring the decision boundary.
Low confidence -> NONE is the caller's decision through :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hrc_fl.perception.hand_features import HAND_FEATURE_DIM, augment_hands, normalise_hand, normalise_hands
from hrc_fl.perception.landmark_mlp_numpy import NumpyLandmarkMLP, load_classifier_weights, mlp_proba

if TYPE_CHECKING:
    from hrc_fl.perception.landmark_mlp import LandmarkMLP

#: Index == ``hrc_fl_msgs/HandGesture`` code.
GESTURE_NAMES: tuple[str, ...] = ("NONE", "STOP", "CLOSED_FIST", "POINTING", "THUMB_UP", "THUMB_DOWN", "OK")
#: HandPose (pose-classification-kit) classes that make up each HRC gesture; all others are NONE.
#: STOP is an open palm towards the camera with all five fingers extended: the data set has it as
#: "Stop" (fingers together), "5" (fingers spread) and "Vulcan_Salute" (spread, gap between middle and
#: ring finger); real open-palm photos fall between "5" and "Vulcan_Salute".
HRC_FROM_HANDPOSE: dict[str, tuple[str, ...]] = {
    "STOP": ("Stop", "5", "Vulcan_Salute"),
    "CLOSED_FIST": ("Fight_Fist", "Power_Fist"),
    "POINTING": ("1",),
    "THUMB_UP": ("Super",),
    "THUMB_DOWN": ("Dislike",),
    "OK": ("Ok",),
}
FORMAT = "hrc_fl.gesture_classifier/1"
DEFAULT_SEED = 7
DEFAULT_EPOCHS = 40
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_MIN_CONFIDENCE = 0.6


def hrc_index_of_fine(class_names: tuple[str, ...]) -> np.ndarray:
    """(num_fine,) HRC index of each fine class (0 = NONE)."""
    lookup = {fine: GESTURE_NAMES.index(hrc) for hrc, fines in HRC_FROM_HANDPOSE.items() for fine in fines}
    missing = {f for fines in HRC_FROM_HANDPOSE.values() for f in fines} - set(class_names)
    if missing:
        raise ValueError(f"HandPose classes missing from the data: {sorted(missing)}")
    return np.array([lookup.get(n, 0) for n in class_names], dtype=np.int64)


def fine_to_hrc_proba(fine_proba: np.ndarray, hrc_of_fine: np.ndarray) -> np.ndarray:
    """(N, num_fine) -> (N, 7) by summing the fine probabilities of each HRC gesture."""
    out = np.zeros((fine_proba.shape[0], len(GESTURE_NAMES)), dtype=np.float64)
    for fine, hrc in enumerate(hrc_of_fine):
        out[:, hrc] += fine_proba[:, fine]
    return out


@dataclass(frozen=True)
class GestureDecision:
    code: int          # index into GESTURE_NAMES (== HandGesture code)
    name: str
    confidence: float  # probability of the returned gesture (of the best one when it fell back to NONE)


def decide(proba: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> GestureDecision:
    """Most probable gesture, or NONE when its probability is below ``min_confidence``."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    best = int(np.argmax(proba))
    conf = float(proba[best])
    if conf < min_confidence:
        best = 0
    return GestureDecision(best, GESTURE_NAMES[best], conf)


class GestureClassifier:
    """Trained gesture MLP + its class mapping. Build with :meth:`load`."""

    def __init__(self, model: NumpyLandmarkMLP | LandmarkMLP, meta: dict) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a gesture classifier file (format {meta.get('format')!r})")
        self._model = model
        self.meta = meta
        self.fine_class_names: tuple[str, ...] = tuple(meta["fine_class_names"])
        self._hrc_of_fine = np.asarray(meta["hrc_of_fine"], dtype=np.int64)

    @classmethod
    def load(cls, path: Path | str | None = None) -> GestureClassifier:
        """Load weights (default: the asset built by ``hrc-fl setup-assets``) and the JSON meta beside them."""
        return cls(*load_classifier_weights(path, "gesture_classifier.safetensors"))

    def _mlp_proba(self, features: np.ndarray) -> np.ndarray:
        return mlp_proba(self._model, features)

    def predict_proba(self, image_points: np.ndarray, handedness: str, *, aspect_ratio: float = 1.0) -> np.ndarray:
        """(7,) probabilities over :data:`GESTURE_NAMES` for one hand.

        ``image_points``: (21, 2 or 3) MediaPipe normalised image coordinates (x/width, y/height, y down).
        ``handedness``: "Left"/"Right" (MediaPipe's label; a wrong label does little harm, see
        :func:`hrc_fl.perception.hand_features.augment_hands`). ``aspect_ratio``: image width / height,
        so both axes are in one unit. ValueError on a malformed or degenerate hand.
        """
        feats = normalise_hand(image_points, handedness, aspect_ratio)[None]
        return fine_to_hrc_proba(self._mlp_proba(feats), self._hrc_of_fine)[0]

    def predict_proba_batch(self, points_xy: np.ndarray, left: np.ndarray, aspect_ratio: float = 1.0) -> np.ndarray:
        """(N, 7) probabilities for a batch (N, 21, 2) with per-hand mirror flags ``left`` (N,)."""
        return fine_to_hrc_proba(self._mlp_proba(normalise_hands(points_xy, left, aspect_ratio)),
                                 self._hrc_of_fine)


def train_and_save(*, out_dir: Path, weights_path: Path, seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS,
                   test_fraction: float = DEFAULT_TEST_FRACTION, log: Callable[[str], None] = print) -> dict:
    """Train on the HandPose data with a stratified held-out split; save weights, metrics and confusion matrix.

    Returns the metrics dict (``macro_f1_hrc`` over all 7 HRC classes incl. NONE, ``macro_f1_commands``
    over the 6 commands, ``accuracy_fine`` over the 27 data-set classes, split sizes).
    """
    from hrc_fl.data.datasets import load_hand_pose
    from hrc_fl.perception.landmark_mlp import (
        confusion_matrix,
        per_class_f1,
        predict_proba,
        save_model,
        stratified_split,
        train_mlp,
        write_report,
    )

    data = load_hand_pose()
    hrc_of_fine = hrc_index_of_fine(data.class_names)
    left = np.array([h == "left" for h in data.handedness])
    # stratify on class and hand so both hands of every class are held out in proportion
    strata = data.labels * 2 + left.astype(np.int64)
    train_idx, test_idx = stratified_split(strata, test_fraction, seed)
    log(f"gesture classifier: {len(train_idx)} training / {len(test_idx)} held-out hands, {epochs} epochs")

    raw = data.points_xy[train_idx]
    raw_left = left[train_idx]

    def features(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return normalise_hands(augment_hands(batch, rng), raw_left)

    model = train_mlp(features, raw, data.labels[train_idx], in_dim=HAND_FEATURE_DIM,
                      num_classes=len(data.class_names), epochs=epochs, seed=seed)
    fine_proba = predict_proba(model, normalise_hands(data.points_xy[test_idx], left[test_idx]))
    y_fine = data.labels[test_idx]
    y_hrc = hrc_of_fine[y_fine]
    pred_hrc = fine_to_hrc_proba(fine_proba, hrc_of_fine).argmax(1)
    cm = confusion_matrix(y_hrc, pred_hrc, len(GESTURE_NAMES))
    f1 = per_class_f1(cm)
    metrics = {
        "data": "pose-classification-kit 1.1.5 HandPose_Dataset.csv",
        "seed": seed, "epochs": epochs, "test_fraction": test_fraction,
        "n_train": len(train_idx), "n_test": len(test_idx),
        "macro_f1_hrc": float(f1.mean()), "macro_f1_commands": float(f1[1:].mean()),
        "f1_per_class": {n: float(v) for n, v in zip(GESTURE_NAMES, f1, strict=True)},
        "accuracy_hrc": float((pred_hrc == y_hrc).mean()),
        "accuracy_fine": float((fine_proba.argmax(1) == y_fine).mean()),
        "mapping": {k: list(v) for k, v in HRC_FROM_HANDPOSE.items()},
    }
    save_model(Path(weights_path), model, {
        "format": FORMAT, "feature": "hand_features.normalise_hand/1", "fine_class_names": list(data.class_names),
        "hrc_of_fine": hrc_of_fine.tolist(), "gesture_names": list(GESTURE_NAMES),
        "metrics": {k: metrics[k] for k in ("macro_f1_hrc", "macro_f1_commands", "accuracy_fine", "n_test")},
    })
    write_report(Path(out_dir), "gestures", cm, GESTURE_NAMES, metrics)
    return metrics
