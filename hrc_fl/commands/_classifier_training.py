"""The one training path of both landmark classifiers (gestures, arm signals): arguments, training, summary.

``hrc-fl train-classifiers`` trains both (or one, ``--only``); ``train-gestures`` and
``train-arm-signals`` are its aliases for one of them (``ALIASES`` there), kept for scripts that call them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _log(message: str) -> None:
    print(f"[train] {message}", flush=True)


def _gesture_summary(m: dict[str, Any]) -> None:
    thresholds = ", ".join(f"{k} {v:.3f}" for k, v in m["min_confidence"].items() if k != "NONE")
    _log(f"gestures: held-out recordings macro-F1 {m['macro_f1_held_out']:.4f} (7 HRC classes incl. NONE, "
         f"thresholds {thresholds}), argmax {m['macro_f1_held_out_argmax']:.4f}, STOP recall "
         f"{m['stop_recall_held_out']:.4f}; run `hrc-fl evaluate-gestures` for the rotation protocol")
    for name, row in m["per_class_held_out"].items():
        _log(f"  {name:<12} precision {row['precision']:.4f} recall {row['recall']:.4f} F1 {row['f1']:.4f}")


def _arm_summary(m: dict[str, Any]) -> None:
    _log(f"arm signals: held-out NONE vs ALL_STOP: accuracy {m['accuracy']:.4f} (majority baseline "
         f"{m['majority_baseline_accuracy']:.4f}), balanced accuracy {m['balanced_accuracy']:.4f}, "
         f"ALL_STOP precision {m['all_stop_precision']:.4f} recall {m['all_stop_recall']:.4f}; "
         f"20-posture accuracy {m['accuracy_posture']:.4f}")


@dataclass(frozen=True)
class Classifier:
    """One trainable classifier: its module (``train_and_save``, ``DEFAULT_SEED``, ``DEFAULT_EPOCHS``),
    the weights file name (also its asset name), its report stem and how to print its metrics."""

    module: str
    weights_name: str
    report_stem: str
    summary: Callable[[dict[str, Any]], None]


CLASSIFIERS: dict[str, Classifier] = {
    "gestures": Classifier("hrc_fl.perception.gesture_training", "gesture_classifier.safetensors", "gestures",
                           _gesture_summary),
    "arm-signals": Classifier("hrc_fl.perception.arm_signal_classifier", "arm_signal_classifier.safetensors",
                              "arm_signals", _arm_summary),
}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """--out, --seed, --epochs; --weights-dir for the weights, or --weights for one classifier's file."""
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for <name>_metrics.json and <name>_confusion.csv/.png of each classifier")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="folder for the weights (.safetensors + meta .json); default: --out")
    parser.add_argument("--weights", type=Path, default=None,
                        help="with --only: where to save its weights (.safetensors, meta .json beside it); "
                             "default: in --weights-dir")
    parser.add_argument("--seed", type=int, default=None, help="split and training seed (default: the module's)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the module's)")


def train(kind: str, *, out: Path, weights: Path | None, seed: int | None, epochs: int | None) -> dict[str, Any]:
    """Train classifier ``kind`` (a key of :data:`CLASSIFIERS`) with module defaults where unset; print
    its summary; return its held-out metrics."""
    spec = CLASSIFIERS[kind]
    module = importlib.import_module(spec.module)
    weights = weights or out / spec.weights_name
    metrics = module.train_and_save(
        out_dir=out, weights_path=weights, seed=module.DEFAULT_SEED if seed is None else seed,
        epochs=module.DEFAULT_EPOCHS if epochs is None else epochs, log=_log)
    spec.summary(metrics)
    _log(f"{kind}: weights {weights}; report in {out}")
    return metrics
