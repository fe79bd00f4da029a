"""ament_python packaging of hrc_fl (colcon) that also installs with pip into a virtual environment."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hrc_fl"
NODES = [
    "camera_node",
    "hands_node",
    "pose_node",
    "wearable_node",
    "intention_node",
    "safety_node",
    "fl_client_node",
    "aggregator_node",
    # a workstation's nodes composed in one process (the default of the launch files and the demo)
    "workstation_node",
    # beyond the fixed eight: the demo's simulated robot and the Foxglove live-view bridge
    "robot_sim_node",
    "foxglove_bridge_node",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")
         + glob("config/*.csv")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="hrc_fl developers",
    maintainer_email="dev@example.com",
    description="HRC cell perception, intention, ISO/TS 15066 safety and federated learning",
    license="Apache-2.0",
    entry_points={
        # hrc_fl.nodes.entry runs hrc_fl.nodes.<name without _node>.main, quiet on a Ctrl-C while it loads
        "console_scripts": [f"{n} = {PACKAGE}.nodes.entry:{n}" for n in NODES]
        + ["hrc-fl = hrc_fl.cli:main"],
    },
)
