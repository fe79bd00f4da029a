"""``hrc-fl train-arm-signals``: train the arm-signal (all stop vs normal work) classifier on BodyPose data."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import add_training_arguments, train

NAME = "train-arm-signals"
HELP = "Train the arm-signal classifier on BodyPose data; write weights, metrics and a confusion matrix."
WEIGHTS_NAME = "arm_signal_classifier.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, report_stem="arm_signals", weights_name=WEIGHTS_NAME)


def run(args: argparse.Namespace) -> int:
    from hrc_fl.perception import arm_signal_classifier as asc

    m, weights = train(asc, args, WEIGHTS_NAME)
    print(f"[train] held-out NONE vs ALL_STOP: accuracy {m['accuracy']:.4f} (majority baseline "
          f"{m['majority_baseline_accuracy']:.4f}), balanced accuracy {m['balanced_accuracy']:.4f}, "
          f"ALL_STOP precision {m['all_stop_precision']:.4f} recall {m['all_stop_recall']:.4f}; "
          f"20-posture accuracy {m['accuracy_posture']:.4f}")
    print(f"[train] weights {weights}; report in {args.out}")
    return 0
