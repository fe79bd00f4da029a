"""Console-script entry points of the nodes: ``<name>_node = hrc_fl.nodes.entry:<name>_node`` runs
``hrc_fl.nodes.<name>.main`` (setup.py's console scripts).

A node module imports its models and libraries (torch, MediaPipe, FedML) at import time, which takes
seconds, tens of seconds on a loaded machine. ``ros2 launch`` (and a Ctrl-C in a terminal) may send
SIGINT during that time; Python's default handler would end the process with a KeyboardInterrupt
traceback from deep inside an import. This module is light: it installs handlers that end the process
at once and quietly with exit code 0 while the node is loading, then imports the node module and runs its ``main``,
whose :func:`hrc_fl.nodes.composition.run_nodes` takes over the signals.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable

SUFFIX = "_node"


def _stop_while_loading(_signum: int, _frame: object) -> None:
    # Nothing has started yet: no state to save. Leave at once: unwinding a half-done torch import and
    # finalising the interpreter under it took longer than the shutdown bound on a loaded machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(executable: str) -> None:
    """Load the node module of ``executable`` with quiet stop handlers in place, then run its main."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_while_loading)
    module = importlib.import_module(f"hrc_fl.nodes.{executable.removesuffix(SUFFIX)}")
    module.main()


def __getattr__(name: str) -> Callable[[], None]:
    """``entry.camera_node`` etc.: the console-script callable of each node executable."""
    if name.endswith(SUFFIX) and name != SUFFIX:
        return lambda: run(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
