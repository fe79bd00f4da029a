"""Time alignment buffers and landmark features."""

from __future__ import annotations

import numpy as np
import pytest

from hrc_fl.intention.alignment import AlignmentConfig, StampedBuffer, StreamAligner
from hrc_fl.intention.features import POSE_FEATURE_DIM, hand_features, pose_features


def test_buffer_is_bounded_and_rejects_out_of_order_duplicate_and_nan():
    buf: StampedBuffer[int] = StampedBuffer(3)
    for i in range(5):
        assert buf.add(float(i), i) is None
    assert len(buf) == 3
    assert buf.add(4.0, 9) == "duplicate"
    assert buf.add(3.5, 9) == "out_of_order"
    assert buf.add(float("nan"), 9) == "non_finite"
    assert buf.latest_at(3.7) == (3.0, 3)
    assert buf.latest_at(1.0) is None  # evicted


def _aligner(**kw) -> StreamAligner:
    return StreamAligner(AlignmentConfig(imu_window=10, imu_rate_hz=50.0, imu_capacity=50, **kw))


def _fill_imu(al: StreamAligner, t0: float, n: int, dt: float = 0.02) -> None:
    for k in range(n):
        assert al.add_imu(t0 + k * dt, np.full(6, k, np.float32)) is None


def test_imu_window_is_the_newest_samples_at_or_before_the_reference():
    al = _aligner()
    _fill_imu(al, 100.0, 30)
    inputs = al.at(100.0 + 20 * 0.02 + 0.001)
    assert inputs.imu is not None and inputs.imu.shape == (10, 6)
    np.testing.assert_array_equal(inputs.imu[:, 0], np.arange(11, 21))


def test_imu_absent_when_stale_too_short_or_full_of_gaps():
    al = _aligner(imu_max_age_s=0.1)
    _fill_imu(al, 100.0, 5)
    assert al.at(100.1).imu is None  # fewer than a window
    _fill_imu(al, 100.1, 10)
    assert al.at(100.3).imu is not None
    assert al.at(100.3 + 0.2).imu is None  # newest sample too old
    gappy = _aligner()
    for k in range(10):
        gappy.add_imu(200.0 + k * 0.1, np.zeros(6))  # 0.9 s span for a nominal 0.18 s window
    assert gappy.at(201.0).imu is None


def test_non_finite_imu_sample_is_rejected():
    al = _aligner()
    assert al.add_imu(1.0, np.array([0, 0, np.nan, 0, 0, 0])) == "non_finite"
    assert len(al.imu) == 0


def test_hands_and_pose_follow_stamps_and_explicit_absence():
    al = _aligner(hands_max_age_s=0.3, pose_max_age_s=0.3)
    hand = np.ones(42, np.float32)
    al.add_hands(10.0, hand)
    al.add_pose(10.0, np.ones(POSE_FEATURE_DIM, np.float32))
    assert al.at(9.9).hands is None  # nothing at or before the reference yet
    assert al.at(10.1).hands is not None and al.at(10.1).pose is not None
    assert al.at(10.5).hands is None  # too old
    al.add_pose(10.2, None)  # frame with nobody
    inputs = al.at(10.25)
    assert inputs.pose is None and inputs.hands is not None
    assert inputs.present == (False, True, False)


def _hand() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([rng.uniform(0.3, 0.6, 21), rng.uniform(0.3, 0.6, 21)])


def test_hand_features_are_translation_and_scale_invariant_and_mirror_left():
    pts = _hand()
    f = hand_features(pts, "Right")
    g = hand_features(pts * 0.5 + 0.2, "Right")
    np.testing.assert_allclose(f, g, atol=1e-5)
    assert f.shape == (42,)
    assert np.max(np.linalg.norm(f.reshape(21, 2), axis=1)) == pytest.approx(1.0, abs=1e-6)
    left = hand_features(pts, "Left").reshape(21, 2)
    np.testing.assert_allclose(left[:, 0], -f.reshape(21, 2)[:, 0], atol=1e-6)
    flat_xyz = np.column_stack([pts, np.zeros(21)]).reshape(-1)
    np.testing.assert_allclose(hand_features(flat_xyz, "Right"), f, atol=1e-6)


def test_hand_features_reject_bad_input():
    pts = _hand()
    pts[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        hand_features(pts, "Right")
    with pytest.raises(ValueError, match="degenerate"):
        hand_features(np.zeros((21, 2)), "Right")
    with pytest.raises(ValueError, match="shape"):
        hand_features(np.zeros((20, 2)), "Right")


def _pose() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    pts = rng.uniform(0.2, 0.8, (33, 2))
    pts[11], pts[12] = (0.6, 0.4), (0.4, 0.4)
    pts[23], pts[24] = (0.58, 0.8), (0.42, 0.8)
    return pts, np.ones(33)


def test_pose_features_normalise_by_body_and_zero_unseen_joints():
    pts, vis = _pose()
    f = pose_features(pts, vis)
    np.testing.assert_allclose(f, pose_features(pts * 2.0 - 0.3, vis), atol=1e-5)
    assert f.shape == (POSE_FEATURE_DIM,)
    vis[0] = 0.1  # nose unseen
    assert np.all(pose_features(pts, vis)[:2] == 0.0)
    vis[11] = 0.0
    with pytest.raises(ValueError, match="shoulders"):
        pose_features(pts, vis)
