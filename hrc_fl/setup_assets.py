"""Everything ``hrc-fl setup-assets`` builds: the data items of :mod:`hrc_fl.data.assets`, then the
gesture and arm-signal classifiers trained on them. Idempotent (see the manifest in :mod:`hrc_fl.data.assets`).

Above perception on purpose: the classifiers load their weights through :mod:`hrc_fl.data.assets`, so the
step that trains them cannot live there (that was an import circle). Imports torch (through the trainers).
"""

from __future__ import annotations

from hrc_fl.data.assets import (
    PCK_WHEEL_SHA256,
    Downloads,
    Item,
    Log,
    build_items,
    data_items,
    source_hash,
    training_dir,
)
from hrc_fl.paths import assets_dir
from hrc_fl.perception import arm_signal_classifier, gesture_training, hand_features


def _build_gesture_classifier(dl: Downloads, log: Log) -> None:
    metrics = gesture_training.train_and_save(out_dir=training_dir() / "gestures", weights_path=assets_dir()
                                              / "gesture_classifier.safetensors", log=log)
    log(f"gesture classifier: held-out recordings macro-F1 {metrics['macro_f1_held_out']:.4f} (HRC vocabulary)")


def _build_arm_signal_classifier(dl: Downloads, log: Log) -> None:
    metrics = arm_signal_classifier.train_and_save(out_dir=training_dir() / "arm_signals", weights_path=assets_dir()
                                                   / "arm_signal_classifier.safetensors", log=log)
    log(f"arm-signal classifier: held-out accuracy {metrics['accuracy']:.4f}, "
        f"balanced {metrics['balanced_accuracy']:.4f}")


def classifier_items() -> list[Item]:
    """The two classifiers, each rebuilt when its data, feature layout or training code changes."""
    gesture_code = source_hash("hrc_fl.perception.hand_features", "hrc_fl.perception.gesture_classifier",
                               "hrc_fl.perception.gesture_training", "hrc_fl.perception.gesture_protocol",
                               "hrc_fl.perception.gesture_evaluation", "hrc_fl.perception.landmark_mlp",
                               "hrc_fl.training_loop", "hrc_fl.data.datasets")
    arm_code = source_hash("hrc_fl.perception.body_features", "hrc_fl.perception.arm_signal_classifier",
                           "hrc_fl.perception.landmark_mlp", "hrc_fl.training_loop", "hrc_fl.data.datasets")
    # the feature layout is named in the recipe as well as hashed with the code: a model trained on another
    # layout is rebuilt (and refused by GestureClassifier.load until then)
    return [
        Item("gesture_classifier", ("assets/gesture_classifier.safetensors", "assets/gesture_classifier.json"),
             f"{PCK_WHEEL_SHA256[:12]}+{hand_features.HAND_FEATURE_LAYOUT}+{gesture_code}", _build_gesture_classifier),
        Item("arm_signal_classifier",
             ("assets/arm_signal_classifier.safetensors", "assets/arm_signal_classifier.json"),
             f"{PCK_WHEEL_SHA256[:12]}+{arm_code}", _build_arm_signal_classifier),
    ]


def items() -> list[Item]:
    """Everything setup builds, in build order (data before the classifiers trained on it)."""
    return [*data_items(), *classifier_items()]


def setup_assets(*, force: bool = False, log: Log = print) -> dict[str, str]:
    """Build every missing or invalid item; returns ``{item: "ok" | "built"}``.

    Raises :class:`hrc_fl.data.assets.FetchError` (one-line message) when a registry cannot be reached.
    """
    return build_items(items(), force=force, log=log)
