"""Minimal stand-ins for the ``launch`` and ``launch_ros`` packages (not installable here).

They implement just the API our launch files use, record what they are given, and let a test
"execute" a LaunchDescription: declare arguments, apply overrides, run OpaqueFunctions.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LaunchContext:
    launch_configurations: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # launch's context.environment


class LaunchDescription:
    def __init__(self, entities=None):
        self.entities = list(entities or [])


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=""):
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None):
        self.function, self.args, self.kwargs = function, args or [], kwargs or {}

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class LaunchConfiguration:
    def __init__(self, name, default=None):
        self.name, self.default = name, default

    def perform(self, context):
        if self.name in context.launch_configurations:
            return context.launch_configurations[self.name]
        if self.default is None:
            raise KeyError(f"launch configuration {self.name!r} not set")
        return self.default


class Node:
    def __init__(self, *, package, executable, name=None, namespace=None, parameters=None,
                 remappings=None, output=None, **extra: Any):
        self.package, self.executable, self.name, self.namespace = package, executable, name, namespace
        self.parameters, self.remappings, self.output, self.extra = (
            list(parameters or []), list(remappings or []), output, extra)


def install() -> None:
    """Register the stand-ins in sys.modules as launch, launch.actions, ... launch_ros.actions."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = LaunchDescription
    launch.LaunchContext = LaunchContext
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.OpaqueFunction = OpaqueFunction
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = LaunchConfiguration
    launch.actions, launch.substitutions = actions, substitutions
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    launch_ros.actions = ros_actions
    sys.modules.update({"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
                        "launch_ros": launch_ros, "launch_ros.actions": ros_actions})


def uninstall() -> None:
    for name in ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions"):
        sys.modules.pop(name, None)


def execute(description: LaunchDescription, overrides: dict[str, str] | None = None,
            environment: dict[str, str] | None = None) -> list[Node]:
    """Resolve arguments like ``ros2 launch`` does and return the Node actions it yields;
    ``environment`` is the environment ros2 launch runs in (default: this process's)."""
    context = LaunchContext(environment=dict(os.environ if environment is None else environment))
    nodes: list[Node] = []
    pending = list(description.entities)
    while pending:
        entity = pending.pop(0)
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations.setdefault(entity.name, entity.default_value)
        elif isinstance(entity, OpaqueFunction):
            context.launch_configurations.update(overrides or {})
            pending = list(entity.execute(context) or []) + pending
        elif isinstance(entity, Node):
            nodes.append(entity)
        else:
            raise TypeError(f"unexpected launch entity {entity!r}")
    return nodes
