"""``hrc-fl train-classifiers``: train the gesture and the arm-signal classifier (shared MLP and loop)."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import CLASSIFIERS, add_training_arguments, train

NAME = "train-classifiers"
HELP = ("Train the hand-gesture (HandPose) and arm-signal (BodyPose) classifiers; write weights, metrics "
        "and confusion matrices.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, single=False)
    parser.add_argument("--only", choices=sorted(CLASSIFIERS), default=None, help="train just this one")


def run(args: argparse.Namespace) -> int:
    kinds = [args.only] if args.only else list(CLASSIFIERS)
    weights_dir = args.weights_dir or args.out
    for kind in kinds:
        train(kind, out=args.out, weights=weights_dir / CLASSIFIERS[kind].weights_name, seed=args.seed,
              epochs=args.epochs)
    return 0
