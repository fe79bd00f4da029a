"""workstation node: a workstation's nodes composed in one process (``ros2 run hrc_fl workstation_node``).

    workstation_node [--nodes camera_node,hands_node,...] [--param NODE:NAME=YAML_VALUE ...] --ros-args ...

Each node is the same class its own executable runs (``camera_node``, ``hands_node``, ...), with the
same name, topics, parameters (the global ``--params-file`` files are keyed by node name) and services;
``-r NODE:from:=to`` remaps for one node only. ``--param`` sets a parameter of one node (ROS's ``-p``
would set it for every node of the process).

With a camera and pose and/or hands in the process, frames go from the camera to one shared pipeline in
memory (:mod:`hrc_fl.nodes.perception_pipeline`): decoded once, pose and hands each on its own
thread with the newest frame only. The camera still publishes its image topics for rviz and recording.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml
from rclpy.node import Node

#: Executable -> (module, node class) of every node a workstation process can hold.
COMPOSABLE: dict[str, tuple[str, str]] = {
    "camera_node": ("hrc_fl.nodes.camera", "CameraNode"),
    "hands_node": ("hrc_fl.nodes.hands", "HandsNode"),
    "pose_node": ("hrc_fl.nodes.pose", "PoseNode"),
    "wearable_node": ("hrc_fl.nodes.wearable", "WearableNode"),
    "intention_node": ("hrc_fl.nodes.intention", "IntentionNode"),
    "safety_node": ("hrc_fl.nodes.safety", "SafetyNode"),
    "robot_sim_node": ("hrc_fl.nodes.robot_sim", "RobotSimNode"),
}
#: What ``workstation_node`` runs without ``--nodes`` (the FL client stays its own process, DESIGN.md).
DEFAULT_NODES = ("camera_node", "hands_node", "pose_node", "wearable_node", "intention_node", "safety_node")
#: Nodes that take decoded frames from the shared pipeline instead of subscribing to images.
FRAME_CONSUMERS = ("pose_node", "hands_node")


def parse_node_parameter(text: str) -> tuple[str, str, object]:
    """``NODE:NAME=VALUE`` -> (node, name, value parsed as YAML, as ROS parses ``-p``). Not ``:=``: rcl
    takes any ``a:=b`` word of the command line, even before ``--ros-args``, for a (deprecated) remap."""
    target, sep, raw = text.partition("=")
    node, colon, name = target.partition(":")
    if not sep or not colon or not node or not name:
        raise ValueError(f"--param wants NODE:NAME=VALUE, got {text!r}")
    return node, name, yaml.safe_load(raw) if raw else ""


def node_parameter_file(overrides: list[tuple[str, str, object]], folder: Path) -> Path | None:
    """A parameter YAML with one section per node (``/**/<node>``), or None when there is nothing."""
    sections: dict[str, dict] = {}
    for node, name, value in overrides:
        sections.setdefault(f"/**/{node}", {"ros__parameters": {}})["ros__parameters"][name] = value
    if not sections:
        return None
    path = folder / "node_parameters.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def build_workstation(executables: list[str], nodes: list[Node], closers: list[Callable[[], None]]) -> None:
    """Construct the nodes in order into ``nodes``; wire camera -> shared pipeline -> pose/hands."""
    unknown = [e for e in executables if e not in COMPOSABLE]
    if unknown:
        raise ValueError(f"cannot compose {unknown}; composable nodes: {', '.join(COMPOSABLE)}")
    shared = "camera_node" in executables and any(e in executables for e in FRAME_CONSUMERS)
    by_exe: dict[str, Node] = {}
    for exe in executables:
        module, cls = COMPOSABLE[exe]
        node_class = getattr(importlib.import_module(module), cls)
        node = node_class(images_from_topic=False) if shared and exe in FRAME_CONSUMERS else node_class()
        nodes.append(node)
        by_exe[exe] = node
    if shared:
        from hrc_fl.nodes.perception_pipeline import SharedFramePipeline

        pipeline = SharedFramePipeline(pose=by_exe.get("pose_node"), hands=by_exe.get("hands_node"))
        closers.append(pipeline.close)
        by_exe["camera_node"].add_frame_listener(pipeline.submit)


def main(args: list[str] | None = None) -> None:
    from rclpy.utilities import remove_ros_args

    from hrc_fl.nodes.composition import run_nodes

    argv = list(sys.argv if args is None else args)
    parser = argparse.ArgumentParser(prog="workstation_node", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default=",".join(DEFAULT_NODES),
                        help="comma-separated node executables to compose, in start order")
    parser.add_argument("--param", action="append", default=[], metavar="NODE:NAME=VALUE",
                        help="a parameter of one node (repeatable)")
    own = parser.parse_args(remove_ros_args(argv)[1:])
    executables = [e.strip() for e in own.nodes.split(",") if e.strip()]
    try:
        overrides = [parse_node_parameter(p) for p in own.param]
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="hrc_fl_workstation_", ignore_cleanup_errors=True) as folder:
        param_file = node_parameter_file(overrides, Path(folder))
        # After every other parameter source, so a per-node value wins as a -p would.
        ros_args = argv + (["--ros-args", "--params-file", str(param_file)] if param_file else [])
        # rcl reads the file at init; removed by a closer too, since run_nodes may end the process with
        # os._exit (stopped while starting, or a worker still busy) before this block exits.
        closers: list[Callable[[], None]] = [lambda: shutil.rmtree(folder, ignore_errors=True)]
        run_nodes(lambda nodes: build_workstation(executables, nodes, closers), ros_args, closers=closers)


if __name__ == "__main__":
    main()
