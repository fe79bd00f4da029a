"""ros2 launch hrc_fl plant_demo.launch.py — generated from hrc_fl.graph (see hrc-fl launch plant_demo)."""

from hrc_fl.launch_adapter import launch_description


def generate_launch_description():
    return launch_description("plant_demo")
