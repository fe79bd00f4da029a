"""``hrc-fl fl-report``: compare FL methods on the real watch data (simulator) under the stated evaluation
protocol (train / validation / test in time, choices on validation, 3 seeds) and write a report."""

from __future__ import annotations

import argparse

NAME = "fl-report"
HELP = ("Compare local, FedAvg(+FT), FedProx, personalised FL and centralised training over seeds, choices on "
        "validation only; write report.md and results.json.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder for report.md, results.json, PNGs")
    parser.add_argument("--rounds", type=int, default=0,
                        help="scarce-label rounds (default 20, quick 3; full labels never more than their default)")
    parser.add_argument("--quick", action="store_true", help="4 clients, 3 rounds: a smoke run for tests")
    parser.add_argument("--label-fraction", type=float, default=0.15,
                        help="share of labelled training windows per client in the scarce regime")
    parser.add_argument("--seeds", default="",
                        help="comma-separated seeds of data subsets, models and batches (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the independent runs")
    parser.add_argument("--config", default="",
                        help="federation YAML whose strategy is the deployed rule and whose nodes give the deployed "
                             "size ('' = packaged config/federated.yaml)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def deployed(config_path: str) -> dict:
    """The deployed rule (name, trim fraction or max attackers) and size (workstations) of a federation YAML, read and
    validated as the aggregator reads it ('' = the packaged config/federated.yaml)."""
    from hrc_fl.federated.core.fl_config import load_config

    config = load_config(config_path or None)
    out = {"deployed_rule": str(config.strategy.get("name", "fedavg"))}
    if "trim_fraction" in config.strategy:
        out["trim_fraction"] = float(config.strategy["trim_fraction"])
    if "max_attackers" in config.strategy:
        out["max_attackers"] = int(config.strategy["max_attackers"])
    return out | {"deployed_size": len(config.client_ranks)}


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from hrc_fl.federated.evaluation.report import ReportConfig, run_report

    if args.rounds < 0 or args.jobs < 1:
        raise SystemExit("--rounds must be >= 0 and --jobs >= 1")
    torch.set_num_threads(1)
    rule = deployed(args.config)
    size = rule.pop("deployed_size")
    base = ReportConfig.quick() if args.quick else ReportConfig()
    overrides: dict = {"label_fraction": args.label_fraction, "jobs": args.jobs, **rule,
                       "robustness_sizes": tuple(dict.fromkeys((max(base.robustness_sizes), size)))}
    if args.seeds:
        try:
            overrides["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if args.rounds:
        overrides.update(rounds=args.rounds, full_label_rounds=min(base.full_label_rounds, args.rounds))
    config = ReportConfig.quick(**overrides) if args.quick else ReportConfig(**overrides)
    out = Path(args.out)
    results = run_report(config, out, progress_factory=None if args.no_progress else tqdm)
    print(f"wrote {out / 'report.md'} and {out / 'results.json'} in {results['wall_s']:.0f} s "
          f"({results['wall_s_per_seed']:.0f} s per seed, {config.jobs} jobs)")
    print(json.dumps({name: t["met"] for name, t in results["targets"].items()}))
    return 0
