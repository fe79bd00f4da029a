"""Loading the robot model file (``config/robot_<name>.yaml``) for the safety monitor."""

from __future__ import annotations

from pathlib import Path

import yaml

from hrc_fl.safety.geometry import RobotModel, robot_model_from_dict


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
