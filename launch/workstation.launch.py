"""ros2 launch hrc_fl workstation.launch.py — generated from hrc_fl.graph (see hrc-fl launch workstation)."""

from hrc_fl.launch_adapter import launch_description


def generate_launch_description():
    return launch_description("workstation")
