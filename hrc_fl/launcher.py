"""``hrc-fl launch``: starts a graph from :mod:`hrc_fl.graph` as processes, for machines without
``ros2 launch``. Same nodes, names, namespaces and parameter files as ``launch/*.launch.py``.

Children run in their own sessions and die with the launcher (PR_SET_PDEATHSIG), so a killed
launcher leaves no orphans; Ctrl-C / SIGTERM send SIGINT to every node, wait, then escalate.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hrc_fl.graph import (
    GRAPHS,
    PACKAGE,
    SHUTDOWN_BOUND_S,
    NodeSpec,
    graph_environment,
    process_arguments,
    ros_param_value,
)
from hrc_fl.paths import resolve_param_file

_PR_SET_PDEATHSIG = 1


def executable_path(executable: str, package: str = PACKAGE) -> str:
    """Where a node's executable is, found as ``ros2 run`` finds it: ``<prefix>/lib/<package>/<exe>`` of
    the package's ament prefix (``AMENT_PREFIX_PATH``, else this environment, where setup registers it);
    the console script next to this interpreter where the package is not registered."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    prefixes = []
    with contextlib.suppress(PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        prefixes.append(Path(get_package_prefix(package)))
    prefixes.append(Path(sys.prefix))
    for prefix in prefixes:
        candidate = prefix / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    candidate = Path(sys.executable).parent / executable
    if candidate.is_file():
        return str(candidate)
    raise FileNotFoundError(f"node executable {executable!r} not found under lib/{package}/ of "
                            f"{', '.join(map(str, prefixes))} nor next to {sys.executable}; "
                            "run scripts/setup.sh (or source the workspace that installs hrc_fl)")


def node_command(spec: NodeSpec) -> list[str]:
    """The argv that runs one node (or a composed process) with its name, namespace, parameter files
    and remappings."""
    cmd = [executable_path(spec.executable, spec.package), *process_arguments(spec), "--ros-args"]
    if not spec.composed:  # a composed process keeps each node's own name
        cmd += ["-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for param_file in spec.param_files:
        cmd += ["--params-file", resolve_param_file(param_file)]
    for key, value in spec.parameters.items():
        cmd += ["-p", f"{key}:={ros_param_value(value)}"]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def node_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: ``base`` (default: this process's) plus
    :func:`hrc_fl.graph.graph_environment`, the same variables the launch files set."""
    env = dict(os.environ if base is None else base)
    env.update(graph_environment(env))
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class RunningNode:
    spec: NodeSpec
    process: subprocess.Popen
    #: Seconds from the SIGINT of :meth:`Launcher.stop` until the process was seen gone (None: not stopped
    #: by the launcher, or still running).
    stop_s: float | None = None

    @property
    def label(self) -> str:
        return self.spec.label


class Launcher:
    """Starts node processes and stops them all cleanly."""

    def __init__(self, specs: Sequence[NodeSpec], *, env: Mapping[str, str] | None = None,
                 stop_timeout_s: float = SHUTDOWN_BOUND_S, log_dir: Path | None = None) -> None:
        if stop_timeout_s <= 0:
            raise ValueError("stop_timeout_s must be positive")
        self._specs = list(specs)
        self._env = node_environment(env)
        self._stop_timeout_s = stop_timeout_s
        self._log_dir = log_dir
        self.nodes: list[RunningNode] = []

    def start(self) -> None:
        for spec in self._specs:
            out = None
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                label = f"{spec.namespace}_{spec.name}".strip("_")
                out = open(self._log_dir / f"{label}.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(node_command(spec), env=self._env, stdout=out,
                                    stderr=subprocess.STDOUT if out else None,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            if out is not None:
                out.close()
            self.nodes.append(RunningNode(spec, proc))

    def exited(self) -> list[RunningNode]:
        """Nodes whose process has ended."""
        return [n for n in self.nodes if n.process.poll() is not None]

    def stop(self) -> dict[str, int]:
        """SIGINT every node, wait up to the timeout (the nodes' stated shutdown bound), then SIGTERM and
        SIGKILL, naming each node that needed it; returns the exit codes."""
        t0 = time.monotonic()
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGINT)
        deadline = t0 + self._stop_timeout_s
        for sig in (signal.SIGTERM, signal.SIGKILL):
            running = self._wait_stopped(t0, deadline)
            for node in running:
                print(f"[launch] {node.label} did not exit within {deadline - t0:.0f} s of SIGINT; "
                      f"sending {sig.name}", file=sys.stderr, flush=True)
                node.process.send_signal(sig)
            deadline = time.monotonic() + 3.0
        for node in self.nodes:
            node.process.wait()
            if node.stop_s is None:
                node.stop_s = time.monotonic() - t0
        return {f"{n.spec.namespace}/{n.spec.name}": n.process.returncode for n in self.nodes}

    def _wait_stopped(self, t0: float, deadline: float) -> list[RunningNode]:
        """Poll until every node has exited or ``deadline``; note each one's stop time; return the rest."""
        while True:
            running = []
            for node in self.nodes:
                if node.process.poll() is None:
                    running.append(node)
                elif node.stop_s is None:
                    node.stop_s = time.monotonic() - t0
            if not running or time.monotonic() >= deadline:
                return running
            time.sleep(0.05)


def specs_for(graph_name: str, overrides: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """The nodes of a named graph; ValueError for an unknown graph or argument."""
    if graph_name not in GRAPHS:
        raise ValueError(f"unknown graph {graph_name!r}; choose one of {', '.join(GRAPHS)}")
    return GRAPHS[graph_name].nodes(overrides)
