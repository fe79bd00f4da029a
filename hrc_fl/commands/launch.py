"""``hrc-fl launch GRAPH [name:=value ...]``: start a node graph without ``ros2 launch``."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path

NAME = "launch"
HELP = "Start a node graph (workstation, aggregator, plant_demo) as ros2 launch would."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", help="workstation, aggregator or plant_demo")
    parser.add_argument("arguments", nargs="*", metavar="name:=value",
                        help="launch arguments, as for ros2 launch (e.g. workstation_id:=ws2 fl:=false)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds and print which topics flowed at what rate")
    parser.add_argument("--log-dir", type=Path, default=None, help="write each node's output to a file here")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the node commands and exit")
    parser.add_argument("--json", type=Path, default=None, help="with --duration: write topic rates as JSON")


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """``["a:=1", "b:=x"]`` -> ``{"a": "1", "b": "x"}``; ValueError for malformed items."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments look like name:=value, got {item!r}")
        values[name] = value
    return values


def run(args: argparse.Namespace) -> int:
    from hrc_fl.launcher import Launcher, node_command, specs_for

    try:
        specs = specs_for(args.graph, parse_launch_arguments(args.arguments))
    except ValueError as exc:
        print(f"hrc-fl launch: {exc}", file=sys.stderr)
        return 2
    if args.print_only:
        for spec in specs:
            print(shlex.join(node_command(spec)))
        return 0
    if not specs:
        print(f"hrc-fl launch: graph {args.graph!r} has no nodes in this build", file=sys.stderr)
        return 1

    launcher = Launcher(specs, log_dir=args.log_dir)
    stop = {"now": False}

    def request_stop(signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"[launch] starting {len(specs)} node(s) of {args.graph}: "
          + ", ".join(s.label for s in specs), flush=True)
    launcher.start()
    monitor = _Monitor(specs, args.duration) if args.duration is not None else None
    deadline = None if args.duration is None else time.monotonic() + args.duration
    failed = []
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            if monitor is not None:
                monitor.spin(0.2)
            else:
                time.sleep(0.2)
            failed = [n for n in launcher.exited() if n.process.returncode != 0]
            if failed:
                for n in failed:
                    print(f"[launch] node {n.spec.name} exited with code {n.process.returncode}",
                          file=sys.stderr, flush=True)
                break
    finally:
        codes = launcher.stop()
        rates, not_heard = monitor.finish() if monitor is not None else (None, None)
    print("[launch] stopped: " + ", ".join(f"{k}={v}" for k, v in codes.items()), flush=True)
    slowest = max(launcher.nodes, key=lambda n: n.stop_s or 0.0, default=None)
    if slowest is not None and slowest.stop_s is not None:
        print(f"[launch] slowest stop: {slowest.label} {slowest.stop_s:.1f} s after SIGINT", flush=True)
    if not_heard is not None:
        print(f"[launch] ERROR: {not_heard}", file=sys.stderr, flush=True)
    if rates is not None:
        from hrc_fl.tools.topic_rates import format_rates

        print(format_rates(rates))
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ for r in rates], indent=2))
    return 1 if failed or not_heard is not None else 0


class _Monitor:
    """A node in this process that counts the graph's messages and notes which nodes published."""

    def __init__(self, specs, duration_s: float) -> None:
        import os

        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from hrc_fl.discovery_check import DiscoveryWatch, expected_nodes, watch_diagnostics
        from hrc_fl.launcher import node_environment
        from hrc_fl.tools.topic_rates import TopicRateMonitor

        os.environ.update({k: v for k, v in node_environment().items() if k.startswith(("ROS_", "FASTDDS"))})
        self._context = rclpy.Context()
        rclpy.init(args=[], context=self._context)
        self._node = rclpy.create_node("hrc_fl_launch_monitor", context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._monitor = TopicRateMonitor(self._node)
        self._watch = DiscoveryWatch(expected_nodes(specs), max(duration_s, 1e-3))
        watch_diagnostics(self._node, self._watch)
        self._last_discovery = 0.0

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        if end - self._last_discovery > 1.0:
            self._monitor.discover()
            self._last_discovery = end
        while time.monotonic() < end:
            self._executor.spin_once(timeout_sec=0.05)

    def finish(self):
        """Topic rates, and the error naming the nodes never heard on /diagnostics once the discovery
        timeout has passed (None: all were heard, or the graph stopped before the timeout, e.g. an early
        Ctrl-C or a node that failed at start: a node not heard yet is no finding then)."""
        import rclpy

        from hrc_fl.discovery_check import NodesNotHeardError

        rates = self._monitor.rates()
        try:
            self._watch.check()
            not_heard = None
        except NodesNotHeardError as exc:
            not_heard = exc
        self._executor.shutdown(timeout_sec=1.0)  # releases the handles its callback generator may hold
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)
        return rates, not_heard
