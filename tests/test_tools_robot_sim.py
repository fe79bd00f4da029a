"""Simulated robot: kinematics, speed-scale obedience, fail-safe stop; and the node over DDS."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hrc_fl.sim.robot import RobotSim, RobotSimConfig, forward_kinematics

PATH = np.array([[0.0, -1.2, 1.4, -1.77, -1.57, 0.0], [0.8, -1.0, 1.2, -1.77, -1.57, 0.0]])


def _run(sim: RobotSim, t0: float, t1: float, dt: float = 0.01, scale: float | None = None):
    states = []
    t = t0
    while t <= t1 + 1e-9:
        if scale is not None:
            sim.set_scale(scale, t)
        states.append(sim.step(t))
        t += dt
    return states


def test_forward_kinematics_of_ur5e_zero_pose():
    # Prepare: at zero angles the UR5e arm is stretched along -x: x = a2 + a3, y = -(d4 + d6),
    # z = d1 - d5 (UR's published DH values 0.425, 0.3922, 0.1333, 0.0996, 0.1625, 0.0997 m).
    expected = np.array([-0.425 - 0.3922, -(0.1333 + 0.0996), 0.1625 - 0.0997])

    # Execute
    position, quat = forward_kinematics(np.zeros(6))

    # Assert
    np.testing.assert_allclose(position, expected, atol=1e-9)
    assert np.linalg.norm(quat) == pytest.approx(1.0)
    # Turning the base by 90 degrees rotates the TCP about z.
    turned, _ = forward_kinematics(np.array([math.pi / 2, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(turned, [-expected[1], expected[0], expected[2]], atol=1e-9)


def test_robot_does_not_move_without_a_scale():
    sim = RobotSim(RobotSimConfig(PATH))
    states = _run(sim, 0.0, 2.0)
    assert all(s.scale_stale and s.applied_scale == 0.0 for s in states)
    np.testing.assert_array_equal(states[-1].joints_rad, PATH[0])


def test_scale_sets_speed_of_the_fastest_joint():
    # Prepare: two robots, scale 1 and 0.5, ramp 0.1 s, path segment 0.8 rad long on joint 0
    full = RobotSim(RobotSimConfig(PATH, joint_speed_rad_s=1.0, stop_time_s=0.1))
    half = RobotSim(RobotSimConfig(PATH, joint_speed_rad_s=1.0, stop_time_s=0.1))

    # Execute
    f = _run(full, 0.0, 0.5, scale=1.0)
    h = _run(half, 0.0, 0.5, scale=0.5)

    # Assert: after the ramp joint 0 moves at 1.0 and 0.5 rad/s; other joints in proportion
    assert f[-1].joint_velocities_rad_s[0] == pytest.approx(1.0, rel=1e-6)
    assert h[-1].joint_velocities_rad_s[0] == pytest.approx(0.5, rel=1e-6)
    assert f[-1].joint_velocities_rad_s[1] == pytest.approx(0.25, rel=1e-6)  # 0.2 rad over 0.8 rad
    travel_full = f[-1].joints_rad[0] - PATH[0, 0]
    travel_half = h[-1].joints_rad[0] - PATH[0, 0]
    assert travel_full == pytest.approx(0.5 - 0.05, abs=0.02)  # minus half the ramp
    assert travel_half < travel_full
    assert f[-1].tcp_speed_mps > h[-1].tcp_speed_mps > 0


def test_stale_scale_stops_the_robot_fail_safe():
    # Prepare
    sim = RobotSim(RobotSimConfig(PATH, scale_timeout_s=0.2, stop_time_s=0.1))
    _run(sim, 0.0, 0.3, scale=1.0)

    # Execute: no more scale messages
    after = _run(sim, 0.31, 1.5)

    # Assert: still moving within the timeout, stopped after timeout + ramp, and stays stopped
    assert after[0].applied_scale > 0.0 and not after[0].scale_stale
    stopped = [s for s in after if s.t_s > 0.3 + 0.2 + 0.1 + 0.02]
    assert stopped and all(s.scale_stale and s.applied_scale == 0.0 for s in stopped)
    assert all(np.array_equal(s.joints_rad, stopped[0].joints_rad) for s in stopped)


def test_non_finite_scale_is_rejected_and_values_are_clipped():
    sim = RobotSim(RobotSimConfig(PATH))
    assert not sim.set_scale(float("nan"), 0.0)
    assert sim.rejected_scales == 1
    assert sim.commanded_scale(0.0) == (0.0, True)
    assert sim.set_scale(7.0, 0.0) and sim.commanded_scale(0.1) == (1.0, False)
    assert sim.set_scale(-1.0, 0.2) and sim.commanded_scale(0.2) == (0.0, False)


def test_path_loops_through_waypoints():
    sim = RobotSim(RobotSimConfig(PATH, joint_speed_rad_s=4.0, stop_time_s=0.01))
    segments = {s.segment for s in _run(sim, 0.0, 1.0, scale=1.0)}
    assert segments == {0, 1}
    joints = np.array([s.joints_rad for s in _run(sim, 1.01, 2.0, scale=1.0)])
    assert np.all(joints[:, 0] >= PATH[0, 0] - 1e-9) and np.all(joints[:, 0] <= PATH[1, 0] + 1e-9)


@pytest.mark.parametrize("kwargs, match", [
    ({"waypoints_rad": np.zeros((1, 6))}, "N>=2"),
    ({"waypoints_rad": np.zeros((2, 5))}, "N>=2"),
    ({"waypoints_rad": np.zeros((2, 6))}, "differ"),
    ({"waypoints_rad": PATH, "joint_speed_rad_s": 0.0}, "joint_speed_rad_s"),
    ({"waypoints_rad": PATH, "scale_timeout_s": float("nan")}, "scale_timeout_s"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RobotSimConfig(**kwargs)
    with pytest.raises(ValueError, match="6 values"):
        RobotSimConfig.from_flat([0.0] * 7)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_node_moves_with_scale_and_stops_when_it_goes_stale(ros_probe, node_processes):
    # Prepare
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64

    from hrc_fl.nodes.common import SAFETY_QOS

    scale_pub = ros_probe.publisher(Float64, "/ws1/robot/speed_scale", SAFETY_QOS)
    joints = ros_probe.collect(JointState, "/ws1/robot/joint_states", SAFETY_QOS)
    poses = ros_probe.collect(PoseStamped, "/ws1/robot/tcp_pose", SAFETY_QOS)
    node_processes.start("robot_sim_node", namespace="ws1", param_files=("robot_sim.yaml",),
                         parameters={"scale_timeout_s": 0.3})
    ros_probe.wait_for_subscribers(scale_pub, timeout_s=20.0)
    ros_probe.wait_until(lambda: len(joints) >= 5 and poses, 20.0, "joint states and poses")

    # Execute 1: without any scale the robot holds still
    ros_probe.spin_for(0.5)
    still = [tuple(m.position) for m in joints]
    # Execute 2: scale 1 at 20 Hz until it moved clearly
    start = len(joints)

    def moved() -> bool:
        scale_pub.publish(Float64(data=1.0))
        return len(joints) > start + 5 and abs(joints[-1].position[0] - joints[start].position[0]) > 0.05
    ros_probe.wait_until(moved, 20.0, "robot motion under scale 1")
    # Execute 3: stop publishing; wait until it stands still for 10 consecutive messages
    def stopped() -> bool:
        tail = [tuple(m.position) for m in joints[-10:]]
        return len(joints) > start + 20 and len(set(tail)) == 1
    ros_probe.wait_until(stopped, 20.0, "fail-safe stop after the scale went stale")
    stop_position = tuple(joints[-1].position)
    ros_probe.spin_for(0.5)

    # Assert: still, then moving; its joints never faster between two messages (by their stamps) than
    # the configured joint speed: each state carries the stamp of the instant it was computed for
    # (the safety node's finite-difference robot speed reads exactly this)
    assert len(set(still)) == 1
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in joints]
    speeds = [np.abs(np.subtract(b.position, a.position)).max() / (tb - ta)
              for (a, ta), (b, tb) in itertools.pairwise(zip(joints, stamps, strict=True)) if tb > ta]
    assert 0.5 < max(speeds) <= 1.0 * 1.001, max(speeds)  # float64 seconds since 1970: ~0.2 us steps
    assert joints[0].name == ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                              "wrist_1_joint", "wrist_2_joint", "wrist_3_joint"]
    assert tuple(joints[-1].position) == stop_position
    assert poses[-1].header.frame_id == "base_link"
    reach = math.dist((0, 0, 0.1625), (poses[-1].pose.position.x, poses[-1].pose.position.y,
                                        poses[-1].pose.position.z))
    assert 0.1 < reach < 0.95  # inside the UR5e's 850 mm reach from the shoulder
