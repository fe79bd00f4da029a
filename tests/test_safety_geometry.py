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


def _oracle_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Reference (N,M) surface distances in plain numpy, straight from the definition (test oracle only)."""
    axis = ends - starts                                         # (M,3)
    length_sq = (axis * axis).sum(axis=1)                        # (M,)
    rel = points[:, None, :] - starts[None, :, :]                # (N,M,3)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length_sq > 0.0, (rel * axis).sum(axis=2) / np.where(length_sq > 0.0, length_sq, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(rel - t[:, :, None] * axis[None, :, :], axis=2) - radii


def _oracle_dh(chain, q) -> tuple[np.ndarray, np.ndarray]:
    """Frame origins and flange rotation from 4x4 DH matrix products (test oracle only)."""
    frame, origins = np.eye(4), [np.zeros(3)]
    for qi, off, a, d, alpha in zip(q, chain.theta_offset_rad, chain.a_m, chain.d_m, chain.alpha_rad, strict=True):
        ct, st, ca, sa = math.cos(qi + off), math.sin(qi + off), math.cos(alpha), math.sin(alpha)
        frame = frame @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st],
                                  [0.0, sa, ca, d], [0.0, 0.0, 0.0, 1.0]])
        origins.append(frame[:3, 3].copy())
    return np.array(origins), frame[:3, :3]


def test_compiled_distances_match_the_numpy_oracle_on_random_and_edge_cases():
    # Prepare: random capsules (one of zero length: a sphere), random points, points exactly on the
    # segment ends and on the axis, inside the radius, and very far away.
    rng = np.random.default_rng(5)
    starts, ends = rng.uniform(-1, 1, (7, 3)), rng.uniform(-1, 1, (7, 3))
    ends[3] = starts[3]
    radii = rng.uniform(0.02, 0.2, 7)
    points = np.concatenate([rng.uniform(-2, 2, (40, 3)), starts, ends, (starts + ends) / 2,
                             [[1e6, -1e6, 1e6], [-3e3, 0.0, 0.0]]])
    caps = Capsules(starts, ends, radii)
    # Execute
    got = point_capsule_distances(points, caps)
    # Assert: same distances; a point on a segment end or on the axis is exactly -radius away.
    ref = _oracle_distances(points, starts, ends, radii)
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)
    on_axis = got[40:61]
    for j in range(7):
        assert on_axis[j, j] == pytest.approx(-radii[j], abs=1e-15)          # at its start
        assert on_axis[7 + j, j] == pytest.approx(-radii[j], abs=1e-15)      # at its end
        assert on_axis[14 + j, j] == pytest.approx(-radii[j], abs=1e-12)     # half way
    result = min_separation(points, caps)
    flat = int(np.argmin(ref))
    assert (result.point_index, result.capsule_index) == divmod(flat, ref.shape[1])
    assert result.min_distance_m == pytest.approx(ref.min(), abs=1e-12)


def test_compiled_kernels_take_any_layout_and_dtype_through_the_public_functions():
    # Prepare: a Fortran-ordered int point array and capsules from lists (the kernels need C float64).
    caps = Capsules([[0, 0, 0]], [[0, 0, 1]], [0.1])
    points = np.asfortranarray(np.array([[1, 0, 0], [0, 0, 3]]))
    # Execute / Assert
    assert point_capsule_distances(points, caps)[:, 0] == pytest.approx([0.9, 1.9])
    with pytest.raises(ValueError, match="must be"):
        min_separation(np.zeros((4, 2)), caps)


def test_dh_kinematics_match_the_matrix_product_oracle():
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    chain = robot.chain
    rng = np.random.default_rng(9)
    for q in rng.uniform(-math.pi, math.pi, (20, 6)):
        # Execute
        origins, rotation = chain.frame_origins(q)
        caps = chain.capsules(tuple(q.tolist()))
        # Assert: origins, flange rotation, and the capsules built from them (links, tool along the
        # flange z, the static capsules unchanged).
        ref_origins, ref_rot = _oracle_dh(chain, q)
        assert origins == pytest.approx(ref_origins, abs=1e-12)
        assert rotation == pytest.approx(ref_rot, abs=1e-12)
        assert caps.starts[:7] == pytest.approx(ref_origins, abs=1e-12)
        assert caps.ends[:6] == pytest.approx(ref_origins[1:], abs=1e-12)
        assert caps.ends[6] == pytest.approx(ref_origins[6] + ref_rot[:, 2] * chain.tool.length_m, abs=1e-12)
        assert caps.starts[7] == pytest.approx(robot.static[0].start)
        assert caps.ends[7] == pytest.approx(robot.static[0].end)
        assert caps.radii_m.tolist() == [*chain.link_radii_m, chain.tool.radius_m, robot.static[0].radius_m]
    with pytest.raises(ValueError, match="finite joint positions"):
        chain.capsules([0.0, 0.0, math.nan, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="finite joint positions"):
        chain.capsules([0.0] * 5)
