"""``hrc-fl train-classifiers``: train the gesture and the arm-signal classifier (shared MLP and loop)."""

from __future__ import annotations

import argparse

from hrc_fl.commands._classifier_training import CLASSIFIERS, add_training_arguments, train

NAME = "train-classifiers"
HELP = ("Train the hand-gesture (HandPose) and arm-signal (BodyPose) classifiers; write weights, metrics "
        "and confusion matrices.")
#: Single-classifier commands kept for scripts that call them: name -> (help, the arguments of this command
#: it stands for; the caller's arguments follow). See :mod:`hrc_fl.cli`.
ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "train-gestures": ("Alias of `train-classifiers --only gestures`: train the HRC gesture classifier on "
                       "HandPose data.", ("--only", "gestures")),
    "train-arm-signals": ("Alias of `train-classifiers --only arm-signals`: train the arm-signal classifier "
                          "on BodyPose data.", ("--only", "arm-signals")),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--only", choices=sorted(CLASSIFIERS), default=None, help="train just this one")


def run(args: argparse.Namespace) -> int:
    if args.weights is not None and not args.only:
        raise SystemExit("--weights names one weights file: give --only too (or --weights-dir for both)")
    kinds = [args.only] if args.only else list(CLASSIFIERS)
    weights_dir = args.weights_dir or args.out
    for kind in kinds:
        train(kind, out=args.out, weights=args.weights or weights_dir / CLASSIFIERS[kind].weights_name,
              seed=args.seed, epochs=args.epochs)
    return 0
