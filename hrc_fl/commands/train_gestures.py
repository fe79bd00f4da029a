"""``hrc-fl train-gestures``: train the hand-gesture classifier on the real HandPose data."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train-gestures"
HELP = "Train the HRC gesture classifier on HandPose data; write weights, metrics and a confusion matrix."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for gestures_metrics.json, gestures_confusion.csv/.png")
    parser.add_argument("--weights", type=Path, default=None,
                        help="where to save the weights (.safetensors, meta .json beside it); "
                             "default: <out>/gesture_classifier.safetensors")
    parser.add_argument("--seed", type=int, default=None, help="split and training seed")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--min-macro-f1", type=float, default=0.97,
                        help="exit 1 when the held-out macro-F1 over the HRC vocabulary is below this")


def run(args: argparse.Namespace) -> int:
    from hrc_fl.perception import gesture_classifier as gc

    weights = args.weights or args.out / "gesture_classifier.safetensors"
    metrics = gc.train_and_save(out_dir=args.out, weights_path=weights,
                                seed=gc.DEFAULT_SEED if args.seed is None else args.seed,
                                epochs=gc.DEFAULT_EPOCHS if args.epochs is None else args.epochs,
                                log=lambda m: print(f"[train] {m}", flush=True))
    print(f"[train] held-out macro-F1 (7 HRC classes incl. NONE) {metrics['macro_f1_hrc']:.4f}, "
          f"commands only {metrics['macro_f1_commands']:.4f}, 27-class accuracy {metrics['accuracy_fine']:.4f}")
    for name, f1 in metrics["f1_per_class"].items():
        print(f"[train]   {name:<12} F1 {f1:.4f}")
    print(f"[train] weights {weights}; report in {args.out}")
    if metrics["macro_f1_hrc"] < args.min_macro_f1:
        print(f"[train] FAILED: macro-F1 {metrics['macro_f1_hrc']:.4f} < {args.min_macro_f1}")
        return 1
    return 0
