"""``hrc-fl fl-certs``: generate the federation's CA and one TLS certificate per node."""

from __future__ import annotations

import argparse

NAME = "fl-certs"
HELP = "Generate a CA and per-node TLS certificates for the federated channel (mutual TLS)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="", help="output folder (default: the config's cert_dir)")
    parser.add_argument("--config", default="", help="federation YAML (default: config/federated.yaml)")
    parser.add_argument("--nodes", nargs="*", default=None,
                        help="node names (default: every node in the config)")
    parser.add_argument("--valid-days", type=int, default=825, help="certificate validity in days")
    parser.add_argument("--host", action="append", default=[],
                        help="extra DNS name or IP every certificate carries (repeatable)")
    parser.add_argument("--new-ca", action="store_true", help="replace an existing CA (re-issue everything)")
    parser.add_argument("--if-missing", action="store_true",
                        help="only create what is missing (the CA and nodes without a key/cert); used by setup")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hrc_fl.federated.certs import generate_federation
    from hrc_fl.federated.fl_config import load_config

    config = load_config(args.config or None)
    names = args.nodes if args.nodes else [p.name for _, p in sorted(config.nodes.items())]
    hosts = sorted({*args.host, *(p.host for p in config.nodes.values())})
    out = Path(args.out) if args.out else config.cert_dir
    files = generate_federation(out, names, valid_days=args.valid_days, extra_hosts=hosts,
                                overwrite_ca=args.new_ca, keep_existing=args.if_missing)
    prefix = "[setup] " if args.if_missing else ""
    pairs = (len(files) - 2) // 2
    print(f"{prefix}TLS certificates in {out} for nodes: {', '.join(names)} ({pairs} key/cert pairs written)")
    return 0
