"""ros2 launch hrc_fl aggregator.launch.py — generated from hrc_fl.graph (see hrc-fl launch aggregator)."""

from hrc_fl.launch_adapter import launch_description


def generate_launch_description():
    return launch_description("aggregator")
