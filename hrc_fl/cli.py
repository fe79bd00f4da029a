"""The ``hrc-fl`` command: subcommands live in :mod:`hrc_fl.commands`, one module each.

A command module may declare ``ALIASES``: alias name -> (help, arguments). ``hrc-fl ALIAS ARGS`` runs
``hrc-fl COMMAND <arguments> ARGS``; the aliases are listed in ``hrc-fl --help`` beside the commands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
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


def aliases(commands: dict[str, ModuleType]) -> dict[str, tuple[str, list[str]]]:
    """Alias name -> (its help, the command line it stands for: command name and arguments)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for name, module in commands.items():
        for alias, (help_text, arguments) in getattr(module, "ALIASES", {}).items():
            if alias in commands or alias in found:
                raise ValueError(f"hrc-fl alias {alias!r} of {name!r} is already a command or an alias")
            found[alias] = (help_text, [name, *arguments])
    return found


def expand_alias(argv: Sequence[str], commands: dict[str, ModuleType]) -> list[str]:
    """``argv`` with a leading alias replaced by the command line it stands for."""
    table = aliases(commands)
    if argv and argv[0] in table:
        return [*table[argv[0]][1], *argv[1:]]
    return list(argv)


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrc-fl", description="hrc_fl: HRC cell perception, safety and federated learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    alias_table = aliases(commands)
    for name in sorted([*commands, *alias_table]):
        if name in alias_table:
            # Listed for --help only: main expands an alias before parsing, so this parser never parses.
            help_text = alias_table[name][0]
            sub.add_parser(name, help=help_text, description=help_text, add_help=False)
            continue
        module = commands[name]
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    commands = discover_commands()
    parser = build_parser(commands)
    args = parser.parse_args(expand_alias(sys.argv[1:] if argv is None else argv, commands))
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
