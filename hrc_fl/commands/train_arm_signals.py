"""``hrc-fl train-arm-signals``: alias of ``hrc-fl train-classifiers --only arm-signals`` (kept for scripts)."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import add_training_arguments, train

NAME = "train-arm-signals"
HELP = "Alias of `train-classifiers --only arm-signals`: train the arm-signal classifier on BodyPose data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, single=True)


def run(args: argparse.Namespace) -> int:
    train("arm-signals", out=args.out, weights=args.weights, seed=args.seed, epochs=args.epochs)
    return 0
