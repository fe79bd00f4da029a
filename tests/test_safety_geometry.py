"""Point-capsule distances and robot capsules (DH chain, TCP pose) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrc_fl.paths import config_file
from hrc_fl.safety.config import load_robot_model
from hrc_fl.safety.geometry import Capsules, ToolCapsule, min_separation, point_capsule_distances, tcp_capsules


def _one_capsule() -> Capsules:
    return Capsules(np.array([[0.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]), np.array([0.1]))


def test_point_capsule_distance_side_cap_and_inside():
    # Prepare: capsule along z from 0 to 1 m, radius 0.1 m.
    points = np.array([[1.0, 0.0, 0.5],    # beside the segment: 1.0 - 0.1 = 0.9
                       [0.0, 0.0, 2.0],    # above the end cap: 1.0 - 0.1 = 0.9
                       [0.3, 0.4, -1.0],   # below the start: sqrt(0.09 + 0.16 + 1) - 0.1 = 1.0180
                       [0.05, 0.0, 0.5]])  # inside: 0.05 - 0.1 = -0.05
    # Execute
    dist = point_capsule_distances(points, _one_capsule())
    # Assert
    assert dist[:, 0] == pytest.approx([0.9, 0.9, math.sqrt(1.25) - 0.1, -0.05])


def test_zero_length_capsule_is_a_sphere():
    sphere = Capsules(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 1.0]]), np.array([0.2]))
    dist = point_capsule_distances(np.array([[1.0, 1.0, 0.0]]), sphere)
    assert dist[0, 0] == pytest.approx(0.8)


def test_vectorised_minimum_matches_brute_force():
    # Prepare: random capsules and points; reference by dense sampling along each segment.
    rng = np.random.default_rng(3)
    starts, ends = rng.uniform(-1, 1, (8, 3)), rng.uniform(-1, 1, (8, 3))
    caps = Capsules(starts, ends, rng.uniform(0.02, 0.2, 8))
    points = rng.uniform(-2, 2, (75, 3))
    t = np.linspace(0.0, 1.0, 20001)
    ref = np.array([[np.min(np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)) - r
                     for a, b, r in zip(starts, ends, caps.radii_m, strict=True)] for p in points])
    # Execute
    result = min_separation(points, caps)
    # Assert
    assert result.min_distance_m == pytest.approx(ref.min(), abs=1e-4)
    assert result.point_distances_m == pytest.approx(ref.min(axis=1), abs=1e-4)
    n, m = np.unravel_index(np.argmin(ref), ref.shape)
    assert (result.point_index, result.capsule_index) == (n, m)
    # The closest robot point lies on the capsule surface, |distance| away from the human point.
    assert np.linalg.norm(points[n] - result.closest_robot_point) == pytest.approx(abs(ref.min()), abs=1e-4)


def test_minimum_is_the_full_matrix_minimum_with_row_major_ties_and_nan():
    # Prepare: capsules 1 and 3 identical, keypoints 2 and 5 identical, so the minimum is an exact tie
    # between four pairs; then one keypoint NaN.
    rng = np.random.default_rng(11)
    starts, ends = rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (5, 3))
    starts[3], ends[3] = starts[1], ends[1]
    caps = Capsules(starts, ends, np.array([0.1, 0.05, 0.1, 0.05, 0.1]))
    points = rng.uniform(1.5, 2.5, (8, 3))
    points[2] = points[5] = (starts[1] + ends[1]) / 2 + 0.2
    dense = point_capsule_distances(points, caps)
    # Execute
    result = min_separation(points, caps)
    # Assert: exactly the minimum of every surface distance, at the first pair in row-major order.
    flat = int(np.argmin(dense))
    assert result.min_distance_m == dense.min()
    assert (result.point_index, result.capsule_index) == divmod(flat, dense.shape[1]) == (2, 1)
    assert result.pair_distances_m == pytest.approx(dense, abs=0.0)
    # Execute / Assert: a NaN keypoint gives an unknown (NaN) separation, never a far one.
    points[6] = np.nan
    assert math.isnan(min_separation(points, caps).min_distance_m)


def test_no_points_means_infinite_separation():
    assert min_separation(np.zeros((0, 3)), _one_capsule()).min_distance_m == math.inf


def test_ur5e_zero_pose_matches_published_flange_position():
    # UR5e DH, all joints 0: the flange is at (a2 + a3, -(d4 + d6), d1 - d5)
    # = (-0.425 - 0.3922, -(0.1333 + 0.0996), 0.1625 - 0.0997) = (-0.8172, -0.2329, 0.0628).
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    origins, _ = robot.chain.frame_origins([0.0] * 6)
    assert origins[-1] == pytest.approx([-0.8172, -0.2329, 0.0628], abs=1e-9)
    assert origins[1] == pytest.approx([0.0, 0.0, 0.1625])


def test_ur5e_capsules_follow_the_shoulder_pan():
    # Turning shoulder_pan by +90 deg rotates the whole arm about z: x -> y, y -> -x.
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    zero = robot.chain.capsules([0.0] * 6)
    turned = robot.chain.capsules([math.pi / 2, 0, 0, 0, 0, 0])
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    arm = slice(0, 7)  # links + tool; the static capsules stay put
    assert turned.ends[arm] == pytest.approx(zero.ends[arm] @ rot.T, abs=1e-9)
    assert turned.starts.shape[0] == 8


def test_missing_joint_is_rejected():
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    with pytest.raises(ValueError, match="lacks joints"):
        robot.chain.positions_from(robot.chain.joint_names[:5], [0.0] * 5)


def test_tcp_capsule_points_back_along_tool_z():
    # Prepare: TCP at (0.5, 0, 0.3) pointing down (180 deg about x: tool z = -z base), tool 0.2 m long.
    caps = tcp_capsules((0.5, 0.0, 0.3), (1.0, 0.0, 0.0, 0.0), tool=ToolCapsule(0.2, 0.05))
    # The capsule runs from the TCP up to 0.3 + 0.2 = 0.5 m.
    assert caps.ends[0] == pytest.approx([0.5, 0.0, 0.3])
    assert caps.starts[0] == pytest.approx([0.5, 0.0, 0.5])
    with pytest.raises(ValueError):
        tcp_capsules((0.5, 0.0, 0.3), (0.0, 0.0, 0.0, 0.0), tool=ToolCapsule(0.2, 0.05))


def test_capsule_distance_constants_from_python_points_match_the_numpy_form():
    # Prepare: the same random capsules built both ways (DH path: plain Python; generic path: numpy),
    # including a zero-length capsule (sphere).
    rng = np.random.default_rng(5)
    starts, ends = rng.uniform(-1, 1, (7, 3)), rng.uniform(-1, 1, (7, 3))
    ends[3] = starts[3]
    radii = rng.uniform(0.02, 0.2, 7)
    points = rng.uniform(-2, 2, (40, 3))
    # Execute
    fast = Capsules.from_points([tuple(p) for p in starts.tolist()], [tuple(p) for p in ends.tolist()], radii)
    generic = Capsules(starts, ends, radii)
    # Assert: same geometry, same distance constants, same distances
    assert fast.starts == pytest.approx(starts) and fast.ends == pytest.approx(ends)
    for a, b in zip(fast._distance_terms, generic._distance_terms, strict=True):
        assert a == pytest.approx(b, abs=1e-12)
    assert point_capsule_distances(points, fast) == pytest.approx(point_capsule_distances(points, generic), abs=1e-12)
