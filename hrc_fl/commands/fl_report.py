"""``hrc-fl fl-report``: compare FL methods on the real watch data (simulator) and write a report."""

from __future__ import annotations

import argparse

NAME = "fl-report"
HELP = "Compare local, FedAvg(+FT), FedProx, personalised FL and centralised training; write report.md."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder for report.md, results.json, PNGs")
    parser.add_argument("--rounds", type=int, default=0,
                        help="rounds per regime (default 30, quick 3; full labels never more than the default)")
    parser.add_argument("--quick", action="store_true", help="4 clients, 3 rounds: a smoke run for tests")
    parser.add_argument("--label-fraction", type=float, default=0.15,
                        help="share of labelled training windows per client in the scarce regime")
    parser.add_argument("--seed", type=int, default=0, help="seed of data subsets, models and batches")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from hrc_fl.federated.report import ReportConfig, run_report

    if args.rounds < 0:
        raise SystemExit("--rounds must be >= 0")
    torch.set_num_threads(max(1, args.threads))
    overrides: dict = {"label_fraction": args.label_fraction, "seed": args.seed}
    base = ReportConfig.quick() if args.quick else ReportConfig()
    if args.rounds:
        # full labels converge sooner: never more rounds there than in the scarce regime
        overrides.update(rounds=args.rounds, full_label_rounds=min(base.full_label_rounds, args.rounds))
    config = ReportConfig.quick(**overrides) if args.quick else ReportConfig(**overrides)
    out = Path(args.out)
    results = run_report(config, out, progress_factory=None if args.no_progress else tqdm)
    print(f"wrote {out / 'report.md'} and {out / 'results.json'} in {results['wall_s']:.0f} s")
    print(json.dumps({name: t["met"] for name, t in results["targets"].items()}))
    return 0
