"""``hrc-fl train-gestures``: train the hand-gesture classifier on the real HandPose data."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import add_training_arguments, train

NAME = "train-gestures"
HELP = "Train the HRC gesture classifier on HandPose data; write weights, metrics and a confusion matrix."
WEIGHTS_NAME = "gesture_classifier.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, report_stem="gestures", weights_name=WEIGHTS_NAME)
    parser.add_argument("--min-macro-f1", type=float, default=0.97,
                        help="exit 1 when the held-out macro-F1 over the HRC vocabulary is below this")


def run(args: argparse.Namespace) -> int:
    from hrc_fl.perception import gesture_classifier as gc

    metrics, weights = train(gc, args, WEIGHTS_NAME)
    print(f"[train] held-out macro-F1 (7 HRC classes incl. NONE) {metrics['macro_f1_hrc']:.4f}, "
          f"commands only {metrics['macro_f1_commands']:.4f}, 27-class accuracy {metrics['accuracy_fine']:.4f}")
    for name, f1 in metrics["f1_per_class"].items():
        print(f"[train]   {name:<12} F1 {f1:.4f}")
    print(f"[train] weights {weights}; report in {args.out}")
    if metrics["macro_f1_hrc"] < args.min_macro_f1:
        print(f"[train] FAILED: macro-F1 {metrics['macro_f1_hrc']:.4f} < {args.min_macro_f1}")
        return 1
    return 0
