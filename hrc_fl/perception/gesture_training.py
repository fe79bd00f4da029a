"""Training of the gesture classifier (torch): the recording split, rotated training views, thresholds
chosen on validation for a stated false-command rate, the held-out report and the saved weights.

Apart from :mod:`hrc_fl.perception.gesture_classifier` (inference in numpy, what the hands node loads), so
that the classifier does not import its own evaluation: this module uses both. ``hrc-fl setup-assets`` and
``hrc-fl train-classifiers`` train through :func:`train_and_save`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from hrc_fl.data.datasets import load_hand_pose
from hrc_fl.perception import gesture_protocol as protocol
from hrc_fl.perception.gesture_classifier import (
    FORMAT,
    GESTURE_NAMES,
    HRC_FROM_HANDPOSE,
    fine_to_hrc_proba,
    hrc_index_of_fine,
    thresholds_for_false_command_rate,
)
from hrc_fl.perception.gesture_evaluation import evaluate_held_out, oov_view_proba
from hrc_fl.perception.hand_features import (
    HAND_FEATURE_DIM,
    HAND_FEATURE_LAYOUT,
    normalise_hands,
    random_views,
    vary_fingers,
)
from hrc_fl.perception.landmark_mlp import predict_proba, save_model, train_mlp, write_report

DEFAULT_SEED = 7
DEFAULT_EPOCHS = 400
DEFAULT_HIDDEN = 256
#: Share of validation hands outside the vocabulary that may come out as a command (sets the threshold).
DEFAULT_TARGET_FALSE_COMMAND_RATE = 0.005
#: Share of training views turned only a little in plane (+-UPRIGHT_IN_PLANE_RAD), the rest up to the protocol's.
UPRIGHT_SHARE = 0.25
UPRIGHT_IN_PLANE_RAD = np.deg2rad(20.0)
#: Views of each validation hand under the rotation protocol when choosing the threshold.
VALIDATION_VIEWS = 4


def train_and_save(*, out_dir: Path, weights_path: Path, seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS,
                   hidden: int = DEFAULT_HIDDEN, target_false_command_rate: float = DEFAULT_TARGET_FALSE_COMMAND_RATE,
                   log: Callable[[str], None] = print) -> dict:
    """Train on the training part of the recording split (:mod:`~hrc_fl.perception.gesture_protocol`),
    choose the NONE threshold on the validation part, save weights + meta, and write the held-out report.

    Returns the metrics dict of :func:`hrc_fl.perception.gesture_evaluation.held_out_report` plus the
    threshold and split sizes.
    """
    data = load_hand_pose()
    fine_names = (*data.class_names, protocol.THUMB_SIDEWAYS)
    hrc_of_fine = hrc_index_of_fine(fine_names)
    left = data.handedness == "left"
    split = protocol.split_by_recording(data.labels, data.handedness, data.class_names, seed=seed)
    log(f"gesture classifier: {len(split.train)} training / {len(split.validation)} validation / "
        f"{len(split.test)} test hands (whole recordings held out), {epochs} epochs")

    train_pts, train_left = data.points_xy[split.train], left[split.train]
    direction_rows = np.isin(data.labels[split.train],
                             [data.class_names.index(n) for n in protocol.DIRECTION_PAIRS])
    # thumbs are turned all the way round (their label follows the angle); other shapes to the protocol's +-90
    # degrees plus a margin, so that the edge of the protocol is not the edge of what the model saw
    max_in_plane = np.where(direction_rows, np.pi, protocol.MAX_IN_PLANE_RAD + np.deg2rad(30.0))

    def epoch_data(raw: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # a share of near-upright views too: most hands at a workstation are held about upright
        upright = rng.random(len(raw)) < UPRIGHT_SHARE
        limit = np.where(upright, UPRIGHT_IN_PLANE_RAD, max_in_plane)
        views, angle, _ = random_views(vary_fingers(raw, rng), rng, max_in_plane_rad=limit,
                                       max_tilt_rad=protocol.MAX_TILT_RAD)
        return normalise_hands(views, train_left), protocol.direction_labels(y, angle, fine_names)

    model = train_mlp(epoch_data, train_pts, data.labels[split.train], in_dim=HAND_FEATURE_DIM,
                      num_classes=len(fine_names), epochs=epochs, seed=seed, hidden=hidden)

    def proba(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
        return fine_to_hrc_proba(predict_proba(model, normalise_hands(points, mirror)), hrc_of_fine)

    val_rng = np.random.default_rng(seed + 1)
    val_oov = split.validation[hrc_of_fine[data.labels[split.validation]] == 0]
    val_proba = oov_view_proba(proba, data, val_oov, val_rng, views=VALIDATION_VIEWS)
    threshold = thresholds_for_false_command_rate(val_proba, target_false_command_rate)
    named = dict(zip(GESTURE_NAMES, threshold.tolist(), strict=True))
    log(f"gesture classifier: thresholds {named} for a "
        f"false-command rate of {target_false_command_rate} on {len(val_proba)} validation views of shapes "
        "outside the vocabulary")
    metrics, cm = evaluate_held_out(proba, data, split.test, hrc_of_fine[data.labels], threshold)
    metrics = {
        "data": "pose-classification-kit 1.1.5 HandPose_Dataset.csv",
        "split": "by recording: per class one whole recording (hand) held out for test, the other split in "
                 "time into train and validation",
        "seed": seed, "epochs": epochs, "hidden": hidden,
        "n_train": len(split.train), "n_validation": len(split.validation), "n_test": len(split.test),
        "test_hand": split.test_hand, "min_confidence": named,
        "target_false_command_rate": target_false_command_rate, **metrics,
        "mapping": {k: list(v) for k, v in HRC_FROM_HANDPOSE.items()},
    }
    save_model(Path(weights_path), model, {
        "format": FORMAT, "feature": HAND_FEATURE_LAYOUT, "fine_class_names": list(fine_names),
        "hrc_of_fine": hrc_of_fine.tolist(), "gesture_names": list(GESTURE_NAMES),
        "min_confidence": threshold.tolist(), "seed": seed,
        "threshold": {"target_false_command_rate": target_false_command_rate,
                      "chosen_on": f"{len(val_proba)} rotated/mirrored views of the validation hands of "
                                   "shapes outside the vocabulary"},
        "metrics": {k: metrics[k] for k in ("macro_f1_held_out", "macro_f1_commands_held_out", "n_test")},
    })
    write_report(Path(out_dir), "gestures", cm, GESTURE_NAMES, metrics)
    return metrics
