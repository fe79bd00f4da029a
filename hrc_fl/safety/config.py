"""The safety node's settings and the robot model file (``config/robot_<name>.yaml``) it loads.

:data:`SAFETY_SETTINGS` is every parameter of the safety node, each defined once on a dataclass field
(:class:`SafetyNodeSettings` here for the node's own, :class:`SafetyConfig` and its
:class:`~hrc_fl.safety.zones.ZoneConfig` for the monitor's): the node declares its parameters from it,
``docs/safety.md`` lists it (``python -m hrc_fl.safety.config`` prints that table) and
``tests/test_safety_settings.py`` checks ``config/safety.yaml`` and the docs against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from hrc_fl.safety.geometry import RobotModel, robot_model_from_dict
from hrc_fl.safety.monitor import SafetyConfig
from hrc_fl.safety.settings import markdown_table, setting, settings_of


@dataclass(frozen=True)
class SafetyNodeSettings:
    """Settings of the safety node itself (inputs, rates, executor); the monitor's are in SafetyConfig."""

    workstation_id: str = setting("ws1", "-", "Workstation id (informational; the namespace carries it).")
    robot_config: str = setting("robot_ur5e.yaml", "-", "Robot model file (DH chain, capsule radii, stopping "
                                "table): a name in config/ or an absolute path.")
    base_frame: str = setting("base_link", "-", "Robot base frame; human keypoints and the TCP pose must be "
                              "in it.")
    publish_rate_hz: float = setting(50.0, "Hz", "Fixed rate of safety/state and robot/speed_scale.")
    evaluate_on_input: bool = setting(True, "-", "Also decide and publish at once when a human or robot "
                                      "message arrives.")
    executor: str = setting("single_threaded", "-", "Executor the node runner spins this node with: "
                            "'single_threaded' or 'events' (rclpy's EventsExecutor, cheaper per input; "
                            "hrc_fl.nodes.composition).")
    markers_rate_hz: float = setting(5.0, "Hz", "Rate of safety/markers (0 = off).")

    def __post_init__(self) -> None:
        if not self.publish_rate_hz > 0.0:
            raise ValueError(f"publish_rate_hz must be > 0, got {self.publish_rate_hz!r}")


#: Every parameter of the safety node, node settings first, then the monitor's (field order).
SAFETY_SETTINGS = (*settings_of(SafetyNodeSettings), *settings_of(SafetyConfig))


def unknown_slowdown_intentions(config: SafetyConfig, labels: Sequence[str]) -> tuple[str, ...]:
    """The ``slowdown_intentions`` that are not in the intention label space ``labels``: they never fire."""
    known = set(labels)
    return tuple(label for label in config.slowdown_intentions if label not in known)


def load_robot_model(path: str | Path) -> RobotModel:
    """Parse and validate a robot file; ValueError (with the path) when it is malformed."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: robot config must be a mapping with a 'robot' key")
    try:
        return robot_model_from_dict(doc)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


if __name__ == "__main__":
    print(markdown_table(SAFETY_SETTINGS), end="")
