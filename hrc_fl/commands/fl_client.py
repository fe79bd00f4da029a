"""``hrc-fl fl-client``: run one headless federated workstation client (benchmarks, data-set runs).

On a real workstation the ``fl_client_node`` runs the same client inside ROS; this command runs it with
the learner module named in the federation config (e.g. one watch-data subject per client).
"""

from __future__ import annotations

import argparse

NAME = "fl-client"
HELP = "Run one federated client (FedML cross-silo client over mutual TLS) without ROS."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="", help="federation YAML (default: config/federated.yaml)")
    parser.add_argument("--node", action="append", required=True,
                        help="workstation node name in the config (e.g. ws1); repeat to run several clients as "
                             "threads of this process (benchmarks and data-set runs on small machines)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="learner option overriding the config (repeatable; value parsed as YAML)")
    parser.add_argument("--log-level", default="INFO", help="Python logging level")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import logging

    import yaml

    from hrc_fl.federated.core.fl_config import load_config
    from hrc_fl.federated.core.learner import load_learner_module

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        force=True)
    config = load_config(args.config or None)
    # Federation-wide local-training settings first; the learner's own options may refine them.
    options: dict = {"epochs": config.client.epochs, "lr": config.client.lr, "batch_size": config.client.batch_size,
                     "head_epochs": config.client.head_epochs, "fine_tune_epochs": config.client.fine_tune_epochs}
    if config.client.self_supervised is not None:  # only when configured: not every learner module knows it
        options["self_supervised"] = dataclasses.asdict(config.client.self_supervised)
    options.update(config.learner_options)
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option needs KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    module = load_learner_module(config.learner_module)

    import threading

    from hrc_fl.federated.transport.fedml_client import run_client

    def report(status) -> None:
        print(json.dumps({"status": dataclasses.asdict(status)}), flush=True)

    def one(name: str) -> None:
        version = run_client(config, name, module.make_learner(name, options, config.seed), on_status=report)
        print(f"client {name} finished: model version {version}", flush=True)

    if len(args.node) == 1:
        one(args.node[0])
        return 0
    threads = [threading.Thread(target=one, args=(name,), name=f"fl-{name}") for name in args.node]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0
