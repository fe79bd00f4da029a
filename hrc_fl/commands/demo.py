"""``hrc-fl demo``: the plant demo (3 workstations + aggregator, replayed real data, closed loop)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "Run the plant demo and write a Markdown report with plots (--quick: 1 workstation, 2 rounds)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="One workstation, two FL rounds, 60 s scenario.")
    parser.add_argument("--length-s", type=float, default=None, help="Scenario length (s); default 300, quick 60.")
    parser.add_argument("--workstations", type=int, default=None, help="Number of workstations (default 3).")
    parser.add_argument("--rounds", type=int, default=None, help="FL rounds (default 4, quick 2).")
    parser.add_argument("--image-rate-hz", type=float, default=None, help="Replayed camera rate per workstation.")
    parser.add_argument("--wall-budget-s", type=float, default=None,
                        help="Wall-time budget of the run (s): the waits for FL rounds after the scenario end "
                             "by then (default: warm-up timeout + scenario + 150 s, 540 s for the default demo).")
    parser.add_argument("--discovery-timeout-s", type=float, default=None,
                        help="Stop with an error when a node has not been heard on /diagnostics this long after "
                             "the start (default 90 s).")
    parser.add_argument("--no-fl", action="store_true", help="Run without federated learning.")
    parser.add_argument("--no-bag", action="store_true", help="Do not record the run into an MCAP bag.")
    parser.add_argument("--fl-self-supervised", action="store_true",
                        help="Keep the federation's self-supervised term (off in the demo: 3 workstations share "
                             "the machine's cores).")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for the demo's nodes (default: the environment's).")
    parser.add_argument("--extra-nodes", default="",
                        help="Developer option: comma-separated workstation node executables to add "
                        "although the graph lacks them (e.g. pose_node,hands_node,safety_node).")
    parser.add_argument("--out", default="", help="Run folder (default: <runtime>/demo/<date_time>).")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hrc_fl.demo.options import DemoOptions
    from hrc_fl.demo.report import write_report
    from hrc_fl.demo.run import run_demo
    from hrc_fl.discovery_check import NodesNotHeardError

    overrides = {k: v for k, v in {"length_s": args.length_s, "workstations": args.workstations,
                                   "rounds": args.rounds, "image_rate_hz": args.image_rate_hz,
                                   "wall_budget_s": args.wall_budget_s,
                                   "discovery_timeout_s": args.discovery_timeout_s}.items()
                 if v is not None}
    if args.extra_nodes:
        overrides["extra_nodes"] = tuple(e.strip() for e in args.extra_nodes.split(",") if e.strip())
    if args.domain_id is not None:
        import os

        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    overrides.update(fl=not args.no_fl, record_bag=not args.no_bag, out_dir=Path(args.out) if args.out else None,
                     fl_self_supervised=args.fl_self_supervised)
    try:
        options = DemoOptions.quick(**overrides) if args.quick else DemoOptions(**overrides)
    except ValueError as exc:
        print(f"hrc-fl demo: {exc}")
        return 2
    try:
        result = run_demo(options, progress=lambda line: print(line, flush=True))
    except NodesNotHeardError as exc:
        print(f"hrc-fl demo: ERROR: {exc}", flush=True)
        code = 1
    else:
        report = write_report(result)
        print(report, flush=True)
        code = 130 if result.interrupted else 0
    # Leave without tearing down the driver's DDS participant (see run_demo): every node has stopped,
    # the bag and the report are complete and flushed.
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
