"""What the intention commands (``train-intention``, ``evaluate-intention``) share: the check of their
``--epochs``/``--window`` arguments and the real watch data, cut into windows the same way for both."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrc_fl.intention.windows import ImuRecording, WindowSpec

#: Shortest IMU window the commands accept, samples.
MIN_WINDOW = 16


def check_arguments(args: argparse.Namespace) -> None:
    """Exit with one line when ``--epochs`` or ``--window`` is out of range."""
    if args.epochs < 1 or args.window < MIN_WINDOW:
        raise SystemExit(f"--epochs must be >= 1 and --window >= {MIN_WINDOW}")


def load_watch_windows(args: argparse.Namespace) -> tuple[list[ImuRecording], tuple[str, ...], WindowSpec]:
    """Set torch's intra-op threads (``--threads``), load the real watch recordings and their labels, and
    the window spec both commands use: ``--window`` samples, half-overlapping (step = window // 2)."""
    import torch

    from hrc_fl.intention.recipes import load_watch_recordings
    from hrc_fl.intention.windows import WindowSpec

    torch.set_num_threads(max(1, args.threads))
    recordings, labels = load_watch_recordings()
    return recordings, labels, WindowSpec(window=args.window, step=max(1, args.window // 2))
