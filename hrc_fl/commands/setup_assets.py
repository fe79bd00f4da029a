"""``hrc-fl setup-assets``: build the MediaPipe models, real data sets and classifiers into the cache."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "setup-assets"
HELP = "Build MediaPipe .task files, real data sets and trained classifiers into the cache (idempotent)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="rebuild every item even if the manifest says it is valid (downloads are reused)")


def run(args: argparse.Namespace) -> int:
    from hrc_fl.data.assets import FetchError
    from hrc_fl.paths import cache_dir
    from hrc_fl.setup_assets import setup_assets  # here, not at the top: it imports torch (the trainers)

    def log(msg: str) -> None:
        print(f"[setup] {msg}", flush=True)

    t0 = time.monotonic()
    try:
        result = setup_assets(force=args.force, log=log)
    except FetchError as exc:
        print(f"[setup] ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    built = [k for k, v in result.items() if v == "built"]
    log(f"assets ready in {cache_dir()} ({len(result)} items, {len(built)} built, "
        f"{time.monotonic() - t0:.1f} s)")
    return 0
