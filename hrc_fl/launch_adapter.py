"""Turns a :mod:`hrc_fl.graph` description into a launch_ros ``LaunchDescription``.

Imported only by ``launch/*.launch.py`` under ``ros2 launch``; the launch system is not installable
from the package registries, so nothing else in hrc_fl imports ``launch``.
"""

from __future__ import annotations

from hrc_fl.graph import GRAPHS, NodeSpec, graph_environment, process_arguments
from hrc_fl.paths import resolve_param_file


def launch_description(graph_name: str):  # -> launch.LaunchDescription
    """The LaunchDescription of one named graph (``workstation``, ``aggregator``, ``plant_demo``)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    graph = GRAPHS[graph_name]

    def make_node(spec: NodeSpec, environment: dict[str, str]):
        return Node(
            package=spec.package,
            executable=spec.executable,
            name=None if spec.composed else spec.name,  # a composed process keeps each node's own name
            arguments=process_arguments(spec),
            namespace=spec.namespace,
            parameters=[resolve_param_file(f) for f in spec.param_files] + [dict(spec.parameters)],
            remappings=list(spec.remappings),
            additional_env=dict(environment),
            output="screen",
        )

    def nodes_for_context(context, *args, **kwargs):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.arguments}
        # The same variables `hrc-fl launch` sets, computed from the environment ros2 launch runs in.
        environment = graph_environment(dict(context.environment))
        return [make_node(spec, environment) for spec in graph.build(values)]

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in graph.arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes_for_context)])
