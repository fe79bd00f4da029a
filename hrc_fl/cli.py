"""The ``hrc-fl`` command: subcommands live in :mod:`hrc_fl.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

import hrc_fl.commands


def discover_commands() -> dict[str, ModuleType]:
    """Command modules by name, sorted."""
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(hrc_fl.commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"hrc_fl.commands.{info.name}")
        found[module.NAME] = module
    return dict(sorted(found.items()))


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrc-fl", description="hrc_fl: HRC cell perception, safety and federated learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in commands.items():
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(discover_commands())
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
