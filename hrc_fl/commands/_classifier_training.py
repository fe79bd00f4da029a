"""What the two landmark-classifier training commands share: their arguments and the training call."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType
from typing import Any


def add_training_arguments(parser: argparse.ArgumentParser, *, report_stem: str, weights_name: str) -> None:
    """--out, --weights, --seed and --epochs of a classifier training command."""
    parser.add_argument("--out", type=Path, required=True,
                        help=f"folder for {report_stem}_metrics.json, {report_stem}_confusion.csv/.png")
    parser.add_argument("--weights", type=Path, default=None,
                        help="where to save the weights (.safetensors, meta .json beside it); "
                             f"default: <out>/{weights_name}")
    parser.add_argument("--seed", type=int, default=None, help="split and training seed")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")


def train(classifier: ModuleType, args: argparse.Namespace, weights_name: str) -> tuple[dict[str, Any], Path]:
    """Run ``classifier.train_and_save`` with the command's arguments (module defaults where unset);
    returns the held-out metrics and the weights path."""
    weights = args.weights or args.out / weights_name
    metrics = classifier.train_and_save(
        out_dir=args.out, weights_path=weights,
        seed=classifier.DEFAULT_SEED if args.seed is None else args.seed,
        epochs=classifier.DEFAULT_EPOCHS if args.epochs is None else args.epochs,
        log=lambda message: print(f"[train] {message}", flush=True))
    return metrics, weights
