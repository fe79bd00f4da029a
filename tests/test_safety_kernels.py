"""Compiled safety kernels against plain-numpy oracles (the oracles live only here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrc_fl.safety.kernels import (
    KEYPOINTS_FAR,
    KEYPOINTS_INFINITE,
    KEYPOINTS_OK,
    capsule_distances,
    check_keypoints,
    max_displacement_m,
)


def test_keypoint_check_drops_unknown_rows_and_keeps_the_array_when_all_are_known():
    rng = np.random.default_rng(1)
    points = rng.uniform(-2, 2, (30, 3))
    # Execute / Assert: all known -> the same array, farthest squared norm as numpy gives it.
    status, far_sq, known = check_keypoints(points, 64.0)
    assert status == KEYPOINTS_OK and known is points
    assert far_sq == pytest.approx(float((points * points).sum(axis=1).max()), rel=1e-15)
    # A NaN in any coordinate makes the row unknown: it is dropped, the others keep their order.
    points[[3, 7], [0, 2]] = math.nan
    status, far_sq, known = check_keypoints(points, 64.0)
    keep = ~np.isnan(points).any(axis=1)
    assert status == KEYPOINTS_OK and known.shape == (28, 3)
    assert np.array_equal(known, points[keep])
    # Every row unknown: nothing left (the monitor then reports too few keypoints).
    status, _, known = check_keypoints(np.full((5, 3), math.nan), 64.0)
    assert status == KEYPOINTS_OK and known.shape == (0, 3)


@pytest.mark.parametrize(("row", "expected"), [
    ((math.inf, 0.0, 0.0), KEYPOINTS_INFINITE),
    ((math.nan, -math.inf, 0.0), KEYPOINTS_INFINITE),   # inf beside a NaN is still infinite, not unknown
    ((1e200, 0.0, 0.0), KEYPOINTS_FAR),                 # |p|^2 overflows: beyond any range
    ((8.0, 0.1, 0.0), KEYPOINTS_FAR),                   # just outside 8 m
    ((8.0, 0.0, 0.0), KEYPOINTS_OK),                    # on the border: inside
])
def test_keypoint_check_faults(row, expected):
    points = np.zeros((6, 3))
    points[4] = row
    status, far_sq, _ = check_keypoints(points, 64.0)
    assert status == expected
    if expected == KEYPOINTS_FAR:
        assert far_sq > 64.0


def test_max_displacement_matches_numpy_and_propagates_nan():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (2, 8, 3)), rng.uniform(-1, 1, (2, 8, 3))
    ref = math.sqrt(float(((a - b) ** 2).sum(axis=2).max()))
    assert max_displacement_m(a, b) == pytest.approx(ref, rel=1e-15)
    assert max_displacement_m(a, a) == 0.0
    b[1, 5, 2] = math.nan
    assert math.isnan(max_displacement_m(a, b))


def test_capsule_distance_argmin_is_numpy_argmin():
    # Ties, an all-inf matrix and NaN anywhere: the index numpy's argmin gives on the same matrix.
    segments = np.zeros((2, 3, 3))
    segments[1, :, 2] = 1.0                     # three identical capsules along z
    radii = np.array([0.1, 0.1, 0.1])
    points = np.array([[1.0, 0.0, 0.5], [0.5, 0.0, 0.5], [0.5, 0.0, 0.5]])
    dist, flat = capsule_distances(points, segments, radii)
    assert flat == int(np.argmin(dist)) == 3
    points[2, 1] = math.nan
    dist, flat = capsule_distances(points, segments, radii)
    assert flat == int(np.argmin(dist)) == 6
    far = np.array([[1e200, 0.0, 0.0], [-1e200, 0.0, 0.0]])  # squares overflow: every distance +inf
    dist, flat = capsule_distances(far, segments[:, :1].copy(), radii[:1].copy())
    assert np.isposinf(dist).all() and flat == int(np.argmin(dist)) == 0
    assert capsule_distances(np.zeros((0, 3)), segments, radii)[1] == -1


def test_kernels_refuse_other_types_instead_of_compiling_in_a_cycle():
    with pytest.raises(TypeError):
        check_keypoints(np.zeros((4, 3), dtype=np.float32), 64.0)
    with pytest.raises(TypeError):
        check_keypoints(np.asfortranarray(np.zeros((4, 3))), 64.0)
