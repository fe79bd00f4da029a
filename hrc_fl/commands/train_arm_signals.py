"""``hrc-fl train-arm-signals``: train the arm-signal (all stop vs normal work) classifier on BodyPose data."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train-arm-signals"
HELP = "Train the arm-signal classifier on BodyPose data; write weights, metrics and a confusion matrix."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for arm_signals_metrics.json, arm_signals_confusion.csv/.png")
    parser.add_argument("--weights", type=Path, default=None,
                        help="where to save the weights (.safetensors, meta .json beside it); "
                             "default: <out>/arm_signal_classifier.safetensors")
    parser.add_argument("--seed", type=int, default=None, help="split and training seed")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")


def run(args: argparse.Namespace) -> int:
    from hrc_fl.perception import arm_signal_classifier as asc

    weights = args.weights or args.out / "arm_signal_classifier.safetensors"
    m = asc.train_and_save(out_dir=args.out, weights_path=weights,
                           seed=asc.DEFAULT_SEED if args.seed is None else args.seed,
                           epochs=asc.DEFAULT_EPOCHS if args.epochs is None else args.epochs,
                           log=lambda msg: print(f"[train] {msg}", flush=True))
    print(f"[train] held-out NONE vs ALL_STOP: accuracy {m['accuracy']:.4f} (majority baseline "
          f"{m['majority_baseline_accuracy']:.4f}), balanced accuracy {m['balanced_accuracy']:.4f}, "
          f"ALL_STOP precision {m['all_stop_precision']:.4f} recall {m['all_stop_recall']:.4f}; "
          f"20-posture accuracy {m['accuracy_posture']:.4f}")
    print(f"[train] weights {weights}; report in {args.out}")
    return 0
