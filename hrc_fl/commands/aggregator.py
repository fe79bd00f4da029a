"""``hrc-fl aggregator``: run the plant's federated aggregator (FedML server over mutual TLS)."""

from __future__ import annotations

import argparse

NAME = "aggregator"
HELP = "Run the federated aggregator (FedML cross-silo server) until all rounds are done."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="", help="federation YAML (default: config/federated.yaml)")
    parser.add_argument("--state-dir", default="", help="checkpoint + model registry folder (overrides config)")
    parser.add_argument("--audit", default="", help="append one JSON line per received update (names only)")
    parser.add_argument("--log-level", default="INFO", help="Python logging level")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import logging
    from pathlib import Path

    from hrc_fl.federated.core.fl_config import load_config
    from hrc_fl.federated.core.learner import load_learner_module

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        force=True)
    config = load_config(args.config or None)
    if args.state_dir:
        config = dataclasses.replace(config, state_dir=Path(args.state_dir))
    module = load_learner_module(config.learner_module)
    initial = module.initial_shared(config.learner_options, config.seed)

    from hrc_fl.federated.transport.fedml_server import run_server

    def report(status) -> None:  # one JSON line per status change, for scripts and tests
        print(json.dumps({"status": dataclasses.asdict(status)}), flush=True)

    version = run_server(config, initial, on_status=report, audit_path=Path(args.audit) if args.audit else None)
    print(f"aggregator finished: model version {version}", flush=True)
    return 0
