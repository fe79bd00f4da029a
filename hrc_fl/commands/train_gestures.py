"""``hrc-fl train-gestures``: alias of ``hrc-fl train-classifiers --only gestures`` (kept for scripts)."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import add_training_arguments, train

NAME = "train-gestures"
HELP = "Alias of `train-classifiers --only gestures`: train the HRC gesture classifier on HandPose data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, single=True)


def run(args: argparse.Namespace) -> int:
    train("gestures", out=args.out, weights=args.weights, seed=args.seed, epochs=args.epochs)
    return 0
