"""Unit tests of the ROS-free perception cores: filters, debouncing, tracking, image checks, sources,
calibration and the monocular body localisation."""

from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np
import pytest

from hrc_fl.paths import config_file
from hrc_fl.perception.arm_signal_classifier import ArmSignalClassifier
from hrc_fl.perception.body_localisation import (
    LEFT_HIP,
    LEFT_SHOULDER,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    BodyScale,
    CameraExtrinsics,
    DepthEstimate,
    DepthImageModel,
    PinholeIntrinsics,
    hip_depth_from_depth_image,
    locate_body,
    monocular_hip_depth,
    rotation_from_rpy,
)
from hrc_fl.perception.body_pipeline import BodyPipeline
from hrc_fl.perception.body_tracker import BodyTracker
from hrc_fl.perception.camera_sources import (
    CameraCalibration,
    ImageListSource,
    ReopeningSource,
    SourceError,
    VideoFileSource,
    fit_frame,
    load_calibration,
    open_source,
    parse_source,
)
from hrc_fl.perception.debounce import CommandDebouncer
from hrc_fl.perception.image_decoding import (
    BadStepError,
    EmptyImageError,
    ImageDataSizeError,
    ImageLimits,
    ImageTooLargeError,
    UnsupportedEncodingError,
    decode_depth_image,
    decode_raw_image,
)
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.mediapipe_pose import DetectedPose
from hrc_fl.perception.mediapipe_runner import (
    HAND_LANDMARKER,
    POSE_LANDMARKER,
    NonIncreasingTimestampError,
    TimestampGuard,
    VideoModeRunner,
    open_video_landmarker,
)
from hrc_fl.perception.one_euro import OneEuroFilter, OneEuroFilterBank
from hrc_fl.perception.scene_cut import SceneCutDetector

# ---------------------------------------------------------------- One Euro


def test_one_euro_reduces_jitter_of_a_still_signal():
    rng = np.random.default_rng(0)
    noisy = 1.0 + rng.normal(0.0, 0.05, size=300)
    filt = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0)
    out = np.array([filt(np.array([x]), i / 30.0)[0] for i, x in enumerate(noisy)])
    # An EMA with alpha = 0.17 (1 Hz cut-off at 30 Hz) leaves sqrt(a / (2 - a)) = 0.31 of white noise.
    assert np.std(out[30:]) < 0.4 * np.std(noisy[30:])
    assert abs(np.mean(out[30:]) - 1.0) < 0.02


def test_one_euro_beta_reduces_lag_on_fast_motion():
    t = np.arange(60) / 30.0
    ramp = 2.0 * t  # 2 units/s
    slow = OneEuroFilter(min_cutoff_hz=0.5, beta=0.0)
    fast = OneEuroFilter(min_cutoff_hz=0.5, beta=5.0)
    lag_slow = ramp[-1] - [slow(np.array(x), ti) for x, ti in zip(ramp, t, strict=True)][-1]
    lag_fast = ramp[-1] - [fast(np.array(x), ti) for x, ti in zip(ramp, t, strict=True)][-1]
    assert 0 <= lag_fast < 0.5 * lag_slow


def test_one_euro_restarts_on_non_increasing_time_and_rejects_bad_params():
    filt = OneEuroFilter(min_cutoff_hz=1.0)
    filt(np.array([0.0]), 1.0)
    assert filt(np.array([5.0]), 1.0)[0] == 5.0  # same time: restart, no division by zero
    with pytest.raises(ValueError, match="min_cutoff_hz"):
        OneEuroFilter(min_cutoff_hz=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroFilter(beta=-1.0)


def test_one_euro_passes_nan_through_without_poisoning_state():
    filt = OneEuroFilter(min_cutoff_hz=1.0)
    filt(np.array([1.0, 1.0]), 0.0)
    out = filt(np.array([np.nan, 1.0]), 0.1)
    assert np.isnan(out[0]) and out[1] == pytest.approx(1.0)
    out = filt(np.array([2.0, 1.0]), 0.2)
    assert np.all(np.isfinite(out))


# ---------------------------------------------------------------- debouncer


def test_debouncer_needs_n_consecutive_frames():
    deb = CommandDebouncer(hold_frames=3)
    flags = [deb.update(g).is_command for g in (1, 1, 2, 2, 2, 2, 0, 0, 0)]
    assert flags == [False, False, False, False, True, True, False, False, False]


def test_debouncer_reset_and_validation():
    deb = CommandDebouncer(hold_frames=2)
    deb.update(1)
    deb.reset()
    assert not deb.update(1).is_command
    assert deb.update(1).is_command
    for single in (0, 1):  # a command from a single frame is refused at construction
        with pytest.raises(ValueError, match="hold_frames"):
            CommandDebouncer(hold_frames=single)


def test_debouncer_never_emits_a_command_from_a_single_frame():
    # Prepare: random label streams with many isolated frames (flicker) and a few steady runs
    rng = np.random.default_rng(8)
    for hold in (2, 3, 5):
        deb = CommandDebouncer(hold_frames=hold)
        labels = np.where(rng.random(5000) < 0.7, rng.integers(0, 7, 5000), 1)
        history: list[int] = []
        for label in labels.tolist():
            # Execute
            state = deb.update(label)
            history.append(label)

            # Assert: a command only after `hold` equal non-NONE frames in a row, this one included
            if state.is_command:
                assert label != 0 and history[-hold:] == [label] * hold
            elif label != 0 and len(history) >= hold and history[-hold:] == [label] * hold:
                raise AssertionError(f"held {hold} frames of {label} without a command")


# ---------------------------------------------------------------- tracker


def test_tracker_keeps_ids_for_moving_bodies_and_swapped_order():
    tracker = BodyTracker(max_distance=0.2, max_missed_frames=2)
    first = tracker.update([np.array([0.2, 0.5]), np.array([0.8, 0.5])]).ids
    second = tracker.update([np.array([0.82, 0.5]), np.array([0.25, 0.52])]).ids
    assert len(set(first)) == 2
    assert second == [first[1], first[0]]


def test_tracker_new_id_beyond_gate_and_drops_after_grace():
    tracker = BodyTracker(max_distance=0.1, max_missed_frames=1)
    (a,) = tracker.update([np.array([0.2, 0.2])]).ids
    (b,) = tracker.update([np.array([0.9, 0.9])]).ids
    assert b != a
    update = tracker.update([np.array([0.9, 0.9])])
    assert a in update.dropped_ids and update.ids == [b]
    (c,) = tracker.update([np.array([0.2, 0.2])]).ids
    assert c not in (a, b)  # ids are never reused


def test_tracker_rejects_bad_parameters():
    with pytest.raises(ValueError):
        BodyTracker(max_distance=0.0)
    with pytest.raises(ValueError):
        BodyTracker(id_prefix="1x")


# ---------------------------------------------------------------- image decoding


def _raw(img: np.ndarray, encoding: str = "bgr8") -> dict:
    h, w = img.shape[:2]
    ch = 1 if img.ndim == 2 else img.shape[2]
    return dict(height=h, width=w, encoding=encoding, step=w * ch, data=img.tobytes())


def test_decode_converts_encodings_to_rgb():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    rgb = decode_raw_image(**_raw(bgr, "bgr8"))
    assert rgb.shape == (4, 5, 3) and rgb[0, 0, 2] == 200 and rgb[0, 0, 0] == 0
    mono = decode_raw_image(**_raw(np.full((3, 2), 7, np.uint8), "mono8"))
    assert mono.shape == (3, 2, 3) and np.all(mono == 7)


def test_decode_honours_row_padding():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = img.reshape(2, 9)
    out = decode_raw_image(height=2, width=3, encoding="rgb8", step=12, data=padded.tobytes())
    assert np.array_equal(out, img)


@pytest.mark.parametrize(("fields", "error", "words"), [
    (dict(encoding="yuv422"), UnsupportedEncodingError, "encoding"),
    (dict(height=0, width=0, step=0, data=b""), EmptyImageError, "zero-size"),
    (dict(step=5), BadStepError, "step"),
    (dict(height=5000, width=5000, step=15000), ImageTooLargeError, "exceeds"),
    (dict(data=b"\x00garbage"), ImageDataSizeError, "bytes"),
])
def test_decode_rejects_malformed_frames_with_specific_errors(fields, error, words):
    base = _raw(np.zeros((4, 5, 3), np.uint8))
    base.update(fields)
    with pytest.raises(error, match=words):
        decode_raw_image(**base, limits=ImageLimits(4096, 4096))


def test_timestamp_guard_rejects_non_increasing():
    guard = TimestampGuard()
    guard.check(10)
    guard.accept(10)
    with pytest.raises(NonIncreasingTimestampError, match="not after"):
        guard.check(10)
    guard.check(11)


class _FakeLandmarker:
    """Records the frames a VideoModeRunner hands to MediaPipe."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], int]] = []
        self.closed = 0

    def detect_for_video(self, image, timestamp_ms: int) -> str:
        self.calls.append((image.numpy_view().shape, timestamp_ms))
        return f"result@{timestamp_ms}"

    def close(self) -> None:
        self.closed += 1


def test_video_mode_runner_resets_tracks_on_scene_cut_and_closes_once():
    fake = _FakeLandmarker()
    runner = VideoModeRunner(fake, "Fake")
    frame = np.zeros((8, 6, 3), np.uint8)
    assert runner.run(frame, 10, new_scene=False) == "result@10"
    with pytest.raises(NonIncreasingTimestampError):
        runner.run(frame, 10, new_scene=False)
    assert runner.run(frame, 20, new_scene=True) == "result@20"
    # The scene cut feeds a blank frame one millisecond earlier; no blank when there is no room for one.
    assert fake.calls == [((8, 6, 3), 10), ((64, 64, 3), 19), ((8, 6, 3), 20)]
    runner.run(frame, 21, new_scene=True)
    assert fake.calls[-1] == ((8, 6, 3), 21) and len(fake.calls) == 4
    with pytest.raises(ValueError, match="uint8"):
        runner.run(frame.astype(np.float32), 30, new_scene=False)
    runner.close()
    runner.close()
    assert fake.closed == 1
    with pytest.raises(RuntimeError, match="Fake is closed"):
        runner.run(frame, 40, new_scene=False)


@pytest.mark.parametrize(("kind", "count", "confidence", "error", "words"), [
    (HAND_LANDMARKER, 0, 0.5, ValueError, "num_hands must be >= 1"),
    (POSE_LANDMARKER, 0, 0.5, ValueError, "num_poses must be >= 1"),
    (POSE_LANDMARKER, 1, 1.5, ValueError, "min_presence_confidence must be in"),
    (HAND_LANDMARKER, 1, 0.5, FileNotFoundError, "hand landmarker model not found"),
])
def test_open_video_landmarker_checks_options_before_loading(tmp_path, kind, count, confidence, error, words):
    with pytest.raises(error, match=words):
        open_video_landmarker(kind, tmp_path / "absent.task", count, 0.5, confidence, 0.5)


# ---------------------------------------------------------------- sources and calibration


def test_fit_frame_keeps_aspect_with_padding():
    frame = np.full((100, 200, 3), 255, np.uint8)
    out = fit_frame(frame, 640, 480)
    assert out.shape == (480, 640, 3)
    assert out[0, 320].sum() == 0 and out[240, 320].sum() == 3 * 255  # black bars top, image middle


def test_image_list_source_loops(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 100 * i, np.uint8))
    source = ImageListSource(sorted(tmp_path.glob("*.png")))
    values = [int(source.read()[0, 0, 0]) for _ in range(4)]
    assert values == [0, 100, 0, 100]


def test_image_list_source_rejects_unreadable_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="cannot decode"):
        ImageListSource([bad])


def test_parse_source_kinds(tmp_path):
    assert parse_source("") == ("replay", "")
    assert parse_source("0") == ("device", "0")
    assert parse_source("/dev/video2") == ("device", "/dev/video2")
    assert parse_source("topic:/cam/image") == ("topic", "/cam/image")
    assert parse_source(str(tmp_path)) == ("folder", str(tmp_path))
    assert parse_source("clip.avi")[0] == "video"
    with pytest.raises(ValueError):
        parse_source("topic:")
    with pytest.raises(ValueError):
        parse_source("what.xyz")


class _FlakySource:
    description = "flaky"

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def read(self):
        if self.frames <= 0:
            raise SourceError("gone")
        self.frames -= 1
        return np.zeros((2, 2, 3), np.uint8)

    def close(self) -> None:
        pass


def test_reopening_source_backs_off_exponentially_and_reopens():
    now = [0.0]
    attempts = []
    events = []
    plan = iter([_FlakySource(1), SourceError("no device"), SourceError("no device"), _FlakySource(5)])

    def factory():
        attempts.append(now[0])
        item = next(plan)
        if isinstance(item, Exception):
            raise item
        return item

    source = ReopeningSource(factory, initial_backoff_s=1.0, max_backoff_s=8.0,
                             on_event=events.append, clock=lambda: now[0])
    assert source.read() is not None  # opened at t=0
    assert source.read() is None  # lost: retry after 1 s
    for t in np.arange(0.0, 10.0, 0.25):
        now[0] = float(t)
        frame = source.read()
        if frame is not None:
            break
    assert attempts == [0.0, 1.0, 3.0, 7.0]  # waits 1, 2, 4 s
    assert [e.kind for e in events] == ["lost", "open_failed", "open_failed", "reopened"]
    assert source.reopen_count == 1 and source.backoff_s == 1.0


def test_calibration_yaml_roundtrip_and_scaling(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text(
        "image_width: 640\nimage_height: 480\ncamera_name: test\n"
        "camera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 510, 240, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\n"
        "distortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}\n"
        "rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n"
        "projection_matrix: {rows: 3, cols: 4, data: [500, 0, 320, 0, 0, 510, 240, 0, 0, 0, 1, 0]}\n")
    cal = load_calibration(path)
    assert (cal.fx, cal.fy, cal.cx, cal.cy) == (500, 510, 320, 240) and cal.d[0] == pytest.approx(0.1)
    half = cal.scaled_to(320, 240)
    assert (half.fx, half.fy, half.cx, half.cy) == (250, 255, 160, 120) and half.p[0] == 250


def test_calibration_rejects_wrong_matrix_size(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {data: [1, 2, 3]}\n"
                    "projection_matrix: {data: [0,0,0,0,0,0,0,0,0,0,0,0]}\n")
    with pytest.raises(ValueError, match="camera_matrix"):
        load_calibration(path)


def test_packaged_camera_info_loads():

    cal = load_calibration(config_file("camera_info.yaml"))
    assert cal.width_px > 0 and cal.fx > 0


# ---------------------------------------------------------------- monocular body localisation


def _synthetic_body(depth_m: float, intr: PinholeIntrinsics, shoulder_m: float = 0.36,
                    torso_m: float = 0.50, lateral_m: float = 0.0):
    """A body facing the camera at a known hip depth: world points and their exact projection."""
    world = np.zeros((33, 3))
    world[LEFT_SHOULDER] = [shoulder_m / 2, -torso_m, 0.0]
    world[RIGHT_SHOULDER] = [-shoulder_m / 2, -torso_m, 0.0]
    world[LEFT_HIP] = [0.14, 0.0, 0.0]
    world[RIGHT_HIP] = [-0.14, 0.0, 0.0]
    world[0] = [0.0, -torso_m - 0.25, 0.0]  # nose
    hip_cam = np.array([lateral_m, 0.0, depth_m])
    cam = world + hip_cam
    u = intr.fx_px * cam[:, 0] / cam[:, 2] + intr.cx_px
    v = intr.fy_px * cam[:, 1] / cam[:, 2] + intr.cy_px
    image = np.stack([u / intr.width_px, v / intr.height_px, np.zeros(33)], axis=1)
    return image, world, np.ones(33), cam


INTR = PinholeIntrinsics(600.0, 600.0, 320.0, 240.0, 640, 480)


@pytest.mark.parametrize("depth_m", [1.0, 2.5, 4.0])
def test_monocular_depth_recovers_depth_of_a_nominal_body(depth_m):
    image, world, vis, _ = _synthetic_body(depth_m, INTR)
    est = monocular_hip_depth(image, world, vis, INTR, BodyScale(0.36, 0.50, 0.1))
    # Shoulders are 0.5 m above the hips, i.e. at the same depth: exact pinhole geometry.
    assert est is not None
    assert est.depth_m == pytest.approx(depth_m, rel=0.02)
    assert est.sigma_m == pytest.approx(0.1 * depth_m, rel=0.2)


def test_monocular_uncertainty_grows_when_the_body_is_not_nominal():
    image, world, vis, _ = _synthetic_body(2.0, INTR, shoulder_m=0.45, torso_m=0.50)
    est = monocular_hip_depth(image, world, vis, INTR, BodyScale(0.36, 0.50, 0.0))
    assert est is not None and est.sigma_m > 0.05  # segments disagree -> spread enters sigma


def test_monocular_corrects_foreshortened_shoulders():
    image, world, vis, _ = _synthetic_body(2.0, INTR)
    yaw = math.radians(60)  # body turned: shoulder line recedes in depth
    rot = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    world_turned = world @ rot.T
    cam = world_turned + np.array([0.0, 0.0, 2.0])
    u = INTR.fx_px * cam[:, 0] / cam[:, 2] + INTR.cx_px
    v = INTR.fy_px * cam[:, 1] / cam[:, 2] + INTR.cy_px
    image = np.stack([u / 640, v / 480, np.zeros(33)], axis=1)
    est = monocular_hip_depth(image, world_turned, vis, INTR, BodyScale(0.36, 0.50, 0.1))
    assert est is not None and est.depth_m == pytest.approx(2.0, rel=0.1)


def test_monocular_returns_none_without_visible_torso():
    image, world, vis, _ = _synthetic_body(2.0, INTR)
    vis[[LEFT_SHOULDER, RIGHT_HIP]] = 0.0
    assert monocular_hip_depth(image, world, vis, INTR) is None


def test_locate_body_places_points_in_workstation_frame():
    image, world, vis, cam = _synthetic_body(2.0, INTR, lateral_m=0.4)
    # Camera 1.5 m above base_link looking along +x (optical z -> base x, optical x -> base -y).
    rot = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    ext = CameraExtrinsics(rot, np.array([0.0, 0.0, 1.5]))
    body = locate_body(image, world, vis, INTR, ext, DepthEstimate(2.0, 0.2), depth_used=False)
    expected = cam @ rot.T + np.array([0.0, 0.0, 1.5])
    assert np.allclose(body.points_m, expected, atol=1e-6)
    assert body.points_m[LEFT_HIP, 0] == pytest.approx(2.0)  # 2 m in front of the camera
    assert 0.2 <= body.position_uncertainty_m < 0.3


def test_depth_image_gives_hip_depth():
    image, _, vis, _ = _synthetic_body(2.0, INTR)
    depth = np.full((480, 640), 1.8, np.float32)
    depth[:10] = np.nan
    est = hip_depth_from_depth_image(image, vis, depth, body_offset_m=0.1, sigma_m=0.03)
    assert est is not None and est.depth_m == pytest.approx(1.9) and est.sigma_m == 0.03
    assert hip_depth_from_depth_image(image, vis, np.zeros((480, 640))) is None


def test_extrinsics_validation_and_rpy():
    assert np.allclose(rotation_from_rpy(0, 0, math.pi / 2) @ [1, 0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="rotation"):
        CameraExtrinsics(np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    with pytest.raises(ValueError):
        CameraExtrinsics.from_xyz_rpy([0, 0], [0, 0, 0])


# ---------------------------------------------------------------- newest-frame worker


def test_latest_worker_drops_stale_items_and_processes_newest():


    gate = threading.Event()
    seen: list[int] = []

    def handler(item: int) -> None:
        gate.wait(5.0)
        seen.append(item)

    worker = LatestOnlyWorker(handler)
    try:
        worker.submit(0)  # picked up at once, blocks on the gate
        for _ in range(200):
            if worker.wait_idle(0.01):
                break
        replaced = [worker.submit(i) for i in (1, 2, 3)]
        gate.set()
        assert worker.wait_idle(5.0)
        for _ in range(100):
            if worker.processed == 2:
                break
            threading.Event().wait(0.01)
    finally:
        worker.stop()
    assert replaced == [False, True, True]
    assert seen == [0, 3] and worker.dropped == 2


# ---------------------------------------------------------------- scene cuts and slideshow


def test_scene_cut_detector_flags_content_and_size_changes():

    rng = np.random.default_rng(3)
    a = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    noisy = np.clip(a.astype(int) + rng.integers(-5, 6, a.shape), 0, 255).astype(np.uint8)
    other = 255 - a
    det = SceneCutDetector(threshold=40.0)
    assert [det.is_cut(x) for x in (a, noisy, other, other, a[:40])] == [False, False, True, False, True]
    never = SceneCutDetector(threshold=0.0)
    assert not any(never.is_cut(x) for x in (a, other))


def test_image_list_source_holds_each_still(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 100 * i, np.uint8))
    source = ImageListSource(sorted(tmp_path.glob("*.png")), hold_frames=3)
    assert [int(source.read()[0, 0, 0]) for _ in range(7)] == [0, 0, 0, 100, 100, 100, 0]


def test_depth_image_conversion_and_rejection_under_the_colour_frames_limits():
    # Prepare / Execute / Assert: millimetres and metres, either byte order, padded rows
    mm = np.array([[1000, 2000], [0, 1500]], dtype="<u2")
    assert np.allclose(decode_depth_image(height=2, width=2, encoding="16UC1", step=4, data=mm.tobytes()), mm / 1000.0)
    big = mm.astype(">u2")
    assert np.allclose(decode_depth_image(height=2, width=2, encoding="16UC1", step=4, data=big.tobytes(),
                                          is_bigendian=1), mm / 1000.0)
    padded = np.zeros((2, 6), np.uint8)
    padded[:, :4] = mm.view(np.uint8).reshape(2, 4)
    assert np.allclose(decode_depth_image(height=2, width=2, encoding="mono16", step=6, data=padded.tobytes()),
                       mm / 1000.0)
    metres = np.array([[1.25, np.nan]], dtype="<f4")
    out = decode_depth_image(height=1, width=2, encoding="32FC1", step=8, data=metres.tobytes())
    assert out.dtype == np.float32 and out[0, 0] == pytest.approx(1.25) and np.isnan(out[0, 1])
    with pytest.raises(UnsupportedEncodingError, match="encoding"):
        decode_depth_image(height=1, width=1, encoding="rgb8", step=3, data=b"abc")
    with pytest.raises(ImageDataSizeError, match="bytes"):
        decode_depth_image(height=2, width=2, encoding="16UC1", step=4, data=b"12")
    with pytest.raises(BadStepError):
        decode_depth_image(height=2, width=2, encoding="32FC1", step=4, data=bytes(8))
    limits = ImageLimits(max_width_px=8, max_height_px=8)
    with pytest.raises(ImageTooLargeError):  # checked before the buffer is read
        decode_depth_image(height=4, width=9, encoding="16UC1", step=18, data=bytes(1), limits=limits)
    at_limit = decode_depth_image(height=8, width=8, encoding="16UC1", step=16, data=bytes(128), limits=limits)
    assert at_limit.shape == (8, 8)


def test_latest_worker_reports_handler_errors_and_keeps_going():

    errors: list[BaseException] = []
    seen: list[int] = []

    def handler(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        seen.append(item)

    worker = LatestOnlyWorker(handler, on_error=errors.append)
    try:
        for item in (1, 2):
            worker.submit(item)
            assert worker.wait_idle(5.0)
            for _ in range(200):
                if worker.processed + len(errors) >= item:
                    break
                time.sleep(0.01)
    finally:
        worker.stop()
    assert [str(e) for e in errors] == ["boom"] and seen == [2]


def test_video_file_source_loops_and_fits_frames(tmp_path):

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    for value in (0, 250):
        writer.write(np.full((60, 80, 3), value, np.uint8))
    writer.release()
    source = open_source(*parse_source(str(path)), width_px=160, height_px=120)
    assert isinstance(source, VideoFileSource)
    frames = [source.read() for _ in range(5)]
    source.close()
    assert all(f.shape == (120, 160, 3) for f in frames)
    assert [int(f[60, 80, 0]) > 128 for f in frames] == [False, True, False, True, False]
    with pytest.raises(SourceError):
        VideoFileSource(tmp_path / "missing.avi")


# ---------------------------------------------------------------- the pose node's per-frame pipeline

# Camera 1.5 m above base_link looking along +x (optical z -> base x, optical x -> base -y).
LOOK_ALONG_X = CameraExtrinsics(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
                                np.array([0.0, 0.0, 1.5]))


def _pipeline(max_missed_frames: int = 1) -> BodyPipeline:
    return BodyPipeline(
        tracker=BodyTracker(max_distance=0.2, max_missed_frames=max_missed_frames),
        smoothing=OneEuroFilterBank(min_cutoff_hz=1.0, beta=0.0, derivative_cutoff_hz=1.0),
        scale=BodyScale(0.36, 0.50, 0.1), extrinsics=LOOK_ALONG_X, depth_model=DepthImageModel(0.1, 0.05),
        landmark_sigma_m=0.05, arm_classifier=ArmSignalClassifier.load(), arm_signal_min_confidence=0.6)


def _detected(image: np.ndarray, world: np.ndarray, vis: np.ndarray) -> DetectedPose:
    return DetectedPose(image.astype(np.float32), world.astype(np.float32), vis.astype(np.float32), 0.9)


def test_body_pipeline_locates_a_body_from_the_depth_image_else_monocular():
    # Prepare: a body 2 m in front of the camera; the depth camera sees its surface 0.1 m nearer
    image, world, vis, cam = _synthetic_body(2.0, INTR, lateral_m=0.4)
    truth = LOOK_ALONG_X.to_workstation(cam)
    surface = np.full((480, 640), 1.9, np.float32)
    pipeline = _pipeline()

    # Execute
    with_depth = pipeline.process([_detected(image, world, vis)], 10.0, INTR, surface).bodies[0]
    monocular = pipeline.process([_detected(image, world, vis)], 10.1, INTR, None).bodies[0]

    # Assert: same track; the depth image places it exactly, the monocular estimate within its 3 sigma
    assert with_depth.body_id == monocular.body_id
    assert with_depth.depth_used and not monocular.depth_used
    assert np.allclose(with_depth.workstation_points_m, truth, atol=1e-4)
    error_m = np.linalg.norm(monocular.workstation_points_m - truth, axis=1).max()
    assert error_m <= 3 * monocular.position_uncertainty_m
    assert with_depth.position_uncertainty_m < monocular.position_uncertainty_m
    assert with_depth.arm_signal in (0, 1) and 0.0 <= with_depth.arm_signal_confidence <= 1.0


def test_body_pipeline_reports_an_unlocatable_body_as_nan_and_infinitely_uncertain():
    # Prepare: torso not visible, and a depth image without valid depth
    image, world, vis, _ = _synthetic_body(2.0, INTR)
    vis[[LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP]] = 0.0

    # Execute
    body = _pipeline().process([_detected(image, world, vis)], 1.0, INTR, np.zeros((480, 640))).bodies[0]

    # Assert: no position, and no arm signal can be read without shoulders
    assert np.all(np.isnan(body.workstation_points_m)) and body.position_uncertainty_m == math.inf
    assert not body.depth_used and body.arm_signal == 0


def test_body_pipeline_smooths_per_track_and_forgets_an_ended_track():
    # Prepare: two bodies far apart in the image
    left, left_world, vis, _ = _synthetic_body(2.0, INTR, lateral_m=-0.8)
    right, right_world, _, _ = _synthetic_body(2.0, INTR, lateral_m=0.8)
    pipeline = _pipeline(max_missed_frames=1)
    first = pipeline.process([_detected(left, left_world, vis), _detected(right, right_world, vis)], 0.0, INTR)
    moved = left.copy()
    moved[:, 0] += 0.01

    # Execute: the left body moves a little; then only the right body is seen for two frames
    second = pipeline.process([_detected(moved, left_world, vis), _detected(right, right_world, vis)], 0.033, INTR)
    pipeline.process([_detected(right, right_world, vis)], 0.066, INTR)
    third = pipeline.process([_detected(right, right_world, vis)], 0.1, INTR)

    # Assert: ids kept in detection order; the moved body lags behind its raw points (smoothed), the still one
    # does not move; the left track ends after its grace frame and its filter goes with it
    left_id, right_id = (b.body_id for b in first.bodies)
    assert [b.body_id for b in second.bodies] == [left_id, right_id]
    lagged_x = second.bodies[0].image_points[:, 0]
    assert np.all((lagged_x > left[:, 0]) & (lagged_x < moved[:, 0]))
    assert np.allclose(second.bodies[1].image_points, right, atol=1e-6)
    assert third.dropped_ids == [left_id]
    assert pipeline.smoothing.keys == [right_id]


def test_filter_bank_keeps_one_independent_filter_per_key():
    # Prepare
    bank = OneEuroFilterBank(min_cutoff_hz=1.0, beta=0.0, derivative_cutoff_hz=1.0)
    bank("a", np.zeros(3), 0.0)

    # Execute
    a = bank("a", np.ones(3), 0.1)
    b = bank("b", np.ones(3), 0.1)
    bank.forget("a")
    a_again = bank("a", np.full(3, 2.0), 0.2)

    # Assert: a's history smooths its step; b and a forgotten key start from their first sample
    assert np.all((a > 0) & (a < 1)) and np.array_equal(b, np.ones(3)) and np.array_equal(a_again, np.full(3, 2.0))
    with pytest.raises(ValueError):
        OneEuroFilterBank(min_cutoff_hz=0.0, beta=0.0, derivative_cutoff_hz=1.0)


def test_calibration_gives_the_pinhole_model_at_the_frame_size():
    # Prepare: a calibration at 640x480 used for a 320x240 frame
    calibration = CameraCalibration.nominal(640, 480, 90.0)

    # Execute
    pinhole = calibration.scaled_to(320, 240).pinhole()

    # Assert: a 90 degree field of view is a focal length of half the image width
    assert (pinhole.fx_px, pinhole.fy_px, pinhole.cx_px, pinhole.cy_px) == pytest.approx((160, 160, 160, 120))
    assert (pinhole.width_px, pinhole.height_px) == (320, 240)
