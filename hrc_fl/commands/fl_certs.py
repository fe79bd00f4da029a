"""``hrc-fl fl-certs``: generate the federation's CA and one TLS certificate per node."""

from __future__ import annotations

import argparse
import sys

NAME = "fl-certs"
HELP = "Generate a CA and per-node TLS certificates for the federated channel (mutual TLS)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="", help="output folder (default: the config's cert_dir)")
    parser.add_argument("--config", default="", help="federation YAML (default: config/federated.yaml)")
    parser.add_argument("--nodes", nargs="*", default=None,
                        help="node names (default: every node in the config)")
    parser.add_argument("--valid-days", type=int, default=825, help="certificate validity in days")
    parser.add_argument("--host", action="append", default=[], metavar="[NODE=]HOST",
                        help="host name or IP address a node's certificate carries besides its configured host "
                             "(repeatable; NODE= may be left out when --nodes names a single node)")
    parser.add_argument("--new-ca", action="store_true", help="replace an existing CA (re-issue everything)")
    parser.add_argument("--if-missing", action="store_true",
                        help="only create what is missing (the CA and nodes without a key/cert); used by setup")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hrc_fl.federated.core.fl_config import load_config
    from hrc_fl.federated.transport.certs import generate_federation

    config = load_config(args.config or None)
    names = args.nodes if args.nodes else [p.name for _, p in sorted(config.nodes.items())]
    try:
        hosts = node_hosts(names, {p.name: p.host for p in config.nodes.values()}, args.host)
    except ValueError as exc:
        print(f"hrc-fl fl-certs: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else config.cert_dir
    files = generate_federation(out, names, valid_days=args.valid_days, hosts=hosts,
                                overwrite_ca=args.new_ca, keep_existing=args.if_missing)
    prefix = "[setup] " if args.if_missing else ""
    pairs = (len(files) - 2) // 2
    print(f"{prefix}TLS certificates in {out} for nodes: "
          + ", ".join(f"{n} ({', '.join(hosts[n]) or 'no host'})" for n in names) + f"; {pairs} key/cert pairs written")
    return 0


def node_hosts(names: list[str], configured: dict[str, str], given: list[str]) -> dict[str, list[str]]:
    """Per node, the hosts its certificate carries: its configured host, then ``NODE=HOST`` items
    (a bare ``HOST`` only when exactly one node is generated). ValueError for anything ambiguous."""
    hosts = {name: [configured[name]] if configured.get(name) else [] for name in names}
    for item in given:
        node, sep, host = item.rpartition("=")
        if not sep:
            if len(names) != 1:
                raise ValueError(f"--host {item!r}: say which node it is for (NODE=HOST) when generating "
                                 f"{len(names)} certificates; each certificate names its own host only")
            node = names[0]
        if node not in hosts:
            raise ValueError(f"--host {item!r}: node {node!r} is not among {names}")
        if not host:
            raise ValueError(f"--host {item!r}: empty host")
        if host not in hosts[node]:
            hosts[node].append(host)
    return hosts
