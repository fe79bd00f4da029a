"""Marker builders (ROS-free), the shipped rviz config and the consistency of safety.yaml with the node."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from hrc_fl.paths import config_file
from hrc_fl.safety.config import load_robot_model
from hrc_fl.safety.monitor import BodiesInput, BodyObservation, JointInput, SafetyConfig, SafetyInputs, SafetyMonitor
from hrc_fl.safety.zones import Zone, ZoneConfig
from hrc_fl.viz.markers import ZONE_COLORS, align_z_quaternion, point_zone, safety_markers

ROBOT = load_robot_model(config_file("robot_ur5e.yaml"))


def _decision(x_m: float):
    mon = SafetyMonitor(SafetyConfig(robot=ROBOT, zones=ZoneConfig(restart_interlock="auto",
                                                                   auto_reset_clear_s=0.0, min_dwell_s=0.0)))
    pts = np.stack([np.full(33, x_m), np.zeros(33), np.linspace(0.1, 1.8, 33)], axis=1)
    pts[0] = (0.6, 0.0, 1.0)  # one keypoint (a hand) reaching towards the robot
    t = 100.0
    return mon.step(t, SafetyInputs(bodies=[BodiesInput(t - 0.03, (BodyObservation("b", pts, 0.02, "base_link"),))],
                                    robot=[JointInput(t - 0.01, ROBOT.chain.joint_names, (0.0,) * 6)]))


@pytest.mark.parametrize("direction", [(0, 0, 1), (1, 0, 0), (0, 1, 1), (0, 0, -1), (0.3, -0.2, 0.9)])
def test_align_z_quaternion_rotates_z_onto_direction(direction):
    x, y, z, w = align_z_quaternion(np.array(direction, dtype=float))
    # Third column of the rotation matrix = rotated z axis.
    rotated_z = np.array([2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)])
    assert rotated_z == pytest.approx(np.array(direction) / np.linalg.norm(direction), abs=1e-9)


def test_keypoints_coloured_by_their_own_zone_and_label_present():
    decision = _decision(2.5)
    markers = safety_markers(decision)
    keypoints = next(m for m in markers if m.ns == "human_keypoints")
    assert keypoints.points.shape == (33, 3)
    expected = [ZONE_COLORS[point_zone(float(d), decision)] for d in decision.point_distances_m]
    assert list(keypoints.colors) == expected
    # The reaching hand is in a more restrictive zone than the feet far away.
    assert point_zone(float(decision.point_distances_m[0]), decision) > point_zone(
        float(decision.point_distances_m[-1]), decision)
    label = next(m for m in markers if m.kind == "text")
    assert decision.zone.name in label.text
    zone_ns = {m.ns for m in markers}
    assert {"robot", "zone_protective_stop", "zone_reduced_speed", "zone_warning", "closest"} <= zone_ns
    stop_caps = [m for m in markers if m.ns == "zone_protective_stop" and m.kind == "sphere_list"]
    assert stop_caps[0].scale[0] == pytest.approx(2 * (ROBOT.chain.link_radii_m[0] + decision.stop_distance_m))


def test_unknown_thresholds_give_grey_points():
    decision = _decision(2.5)
    assert point_zone(1.0, decision) in tuple(Zone)
    unknown = decision.__class__(**{**decision.__dict__, "stop_distance_m": math.nan})
    assert point_zone(1.0, unknown) is None


def test_rviz_config_shows_markers_and_camera_in_base_link():
    doc = yaml.safe_load(config_file("hrc_fl.rviz").read_text())
    manager = doc["Visualization Manager"]
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["rviz_default_plugins/MarkerArray"].endswith("/safety/markers")
    assert topics["rviz_default_plugins/Image"].endswith("/camera/image_raw")
    assert manager["Global Options"]["Fixed Frame"] == "base_link"


def test_safety_yaml_only_sets_declared_parameters_with_matching_types():
    from hrc_fl.nodes.safety import PARAMETERS

    params = yaml.safe_load(config_file("safety.yaml").read_text())["/**/safety"]["ros__parameters"]
    assert set(params) <= set(PARAMETERS), set(params) - set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name][0]
        assert type(value) is type(default) or (isinstance(default, float) and isinstance(value, int)), name


def test_a_reused_marker_message_equals_a_freshly_built_one():
    # Prepare: the node keeps Marker messages between publishes and refills them; a keypoint marker
    # (points, per-point colours) refilled with the label (text, no points) must carry nothing over.
    from builtin_interfaces.msg import Time

    from hrc_fl.nodes.safety import _marker

    specs = safety_markers(_decision(2.5))
    keypoints = next(s for s in specs if s.ns == "human_keypoints")
    label = next(s for s in specs if s.ns == "label")
    stamp = Time(sec=5, nanosec=7)
    reused = _marker(keypoints, "base_link", stamp)
    assert len(reused.points) == keypoints.points.shape[0] and len(reused.colors) == len(keypoints.colors)
    # Execute
    refilled = _marker(label, "base_link", stamp, reuse=reused)
    # Assert
    assert refilled is reused
    assert refilled == _marker(label, "base_link", stamp)
    assert list(refilled.points) == [] and refilled.text == label.text
