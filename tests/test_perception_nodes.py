"""Real perception nodes as processes, real DDS, real photos.

The hands and pose nodes are started once for this module (model loading takes seconds); every test
publishes frames with fresh, increasing stamps and waits for the results that carry those stamps.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hrc_fl_msgs.msg import BodyPose, BodyPoseArray, HandGesture, HandLandmarks
from sensor_msgs.msg import CameraInfo, Image

from hrc_fl.data.datasets import OPEN_PALM_PHOTOS, photo_path
from hrc_fl.nodes.camera import image_message
from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS
from hrc_fl.nodes.image_frames import stamp_ms
from hrc_fl.paths import config_file
from hrc_fl.perception.body_localisation import LEFT_HIP, RIGHT_HIP, CameraExtrinsics
from hrc_fl.perception.gesture_classifier import GestureClassifier
from tests.rosutil import NodeProcesses

pytestmark = pytest.mark.timeout(120)

# The probe publishes images too: give it the nodes' Fast DDS profile (large shared-memory segment), or
# frames above 512 kB are fragmented over UDP and often lost (best effort). Read when this process
# creates its first DDS participant, so it helps whenever this module's tests come first in a worker.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(Path(__file__).resolve().parent.parent / "config" / "fastdds.xml"))

MAX_IMAGE_PX = 1024  # the nodes under test reject frames beyond this (huge-image test)
DEPTH_TOPIC = "camera/depth/image_raw"  # the pose node under test reads depth here (bad-depth test)


def _photo(name: str) -> np.ndarray:
    img = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    assert img is not None, name
    return img


def _no_person_photo() -> np.ndarray:
    """A real photo without a person: matplotlib's bundled sample of a gift package."""
    path = matplotlib.cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


_clock = itertools.count(1)


def _stamp():
    """Strictly increasing stamps across the module (MediaPipe VIDEO mode needs them)."""
    t_ms = int(time.time() * 1000) + next(_clock)
    return Time(sec=t_ms // 1000, nanosec=(t_ms % 1000) * 1_000_000)


def _image(frame_bgr: np.ndarray, stamp=None):
    return image_message(frame_bgr, "camera_optical_frame", stamp or _stamp())


def _same(a, b) -> bool:
    return a.sec == b.sec and a.nanosec == b.nanosec


@pytest.fixture(scope="module")
def perception_nodes(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("perception_logs")
    procs = NodeProcesses()
    limits = {"max_image_width_px": MAX_IMAGE_PX, "max_image_height_px": MAX_IMAGE_PX}
    procs.start("hands_node", namespace="ws1", param_files=("hands.yaml",),
                parameters={**limits, "command_hold_frames": 3}, log_dir=log_dir)
    procs.start("pose_node", namespace="ws1", param_files=("pose.yaml",),
                parameters={**limits, "depth_topic": DEPTH_TOPIC}, log_dir=log_dir)
    try:
        yield {"hands": log_dir / "ws1_hands.log", "pose": log_dir / "ws1_pose.log"}
    finally:
        procs.stop_all()


class Session:
    """Probe-side publishers/subscribers for one test."""

    def __init__(self, probe) -> None:
        self.probe = probe
        self.image_pub = probe.publisher(Image, "/ws1/camera/image_raw", SENSOR_QOS)
        self.bodies = probe.collect(BodyPoseArray, "/ws1/humans/bodies/tracked", RESULT_QOS)
        self.gestures = probe.collect(HandGesture, "/ws1/hands/gesture", RESULT_QOS)
        self.landmarks = probe.collect(HandLandmarks, "/ws1/hands/landmarks", RESULT_QOS)
        self.diagnostics = probe.collect(DiagnosticArray, "/diagnostics", 10)
        probe.wait_for_subscribers(self.image_pub, count=2, timeout_s=30.0)
        probe.wait_for_publishers("/ws1/humans/bodies/tracked", timeout_s=30.0)
        probe.wait_for_publishers("/ws1/hands/gesture", timeout_s=30.0)

    def send_until(self, frame_bgr: np.ndarray, done, *, timeout_s: float = 30.0, what: str = "",
                   resend_s: float = 0.5) -> object:
        """Publish ``frame_bgr`` with a new stamp (again every ``resend_s``: best-effort QoS) until
        ``done(stamp)`` holds; returns the last stamp."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            stamp = _stamp()
            self.image_pub.publish(_image(frame_bgr, stamp))
            step_end = min(end, time.monotonic() + resend_s)
            while time.monotonic() < step_end:
                if done(stamp):
                    return stamp
                self.probe.spin_for(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

    def pose_for(self, stamp):
        return [m for m in self.bodies if _same(m.header.stamp, stamp)]

    def landmarks_for(self, stamp):
        return [m for m in self.landmarks if _same(m.header.stamp, stamp)]

    def diag_count(self, node: str, key: str) -> int:
        best = 0
        for array in self.diagnostics:
            for status in array.status:
                if status.name.startswith(f"/ws1/{node}:"):
                    for kv in status.values:
                        if kv.key == f"count/{key}":
                            best = max(best, int(kv.value))
        return best


@pytest.fixture
def session(perception_nodes, ros_probe):
    return Session(ros_probe)


# ---------------------------------------------------------------- acceptance on real photos


@pytest.mark.slow
def test_open_palm_photos_give_a_stop_command(session):
    for name in OPEN_PALM_PHOTOS:
        frame = _photo(name)
        session.send_until(
            frame, lambda stamp: any(_same(g.header.stamp, stamp) and g.gesture == HandGesture.STOP
                                     and g.is_command for g in session.gestures),
            what=f"a debounced STOP HandGesture for {name}", resend_s=0.15)

    stops = [g for g in session.gestures if g.is_command]
    # the node's default threshold is the model's validated one
    threshold = GestureClassifier.load().min_confidence[HandGesture.STOP]
    assert all(g.gesture_name == "STOP" and g.confidence >= threshold for g in stops)
    assert all(len(g.landmarks.image_points) == 63 and np.all(np.isfinite(g.landmarks.world_points))
               for g in stops)


@pytest.mark.slow
def test_people_photo_gives_body_pose_with_33_points(session, ros_probe):
    frame = _photo("messi5.jpg")
    stamp = session.send_until(frame, lambda s: any(m.bodies for m in session.pose_for(s)),
                               what="a BodyPoseArray with a body for messi5.jpg")
    (array,) = session.pose_for(stamp)
    body = array.bodies[0]
    assert len(body.image_points) == 99 and len(body.world_points) == 99 and len(body.visibility) == 33
    image = np.asarray(body.image_points).reshape(33, 3)
    assert np.all((image[:, :2] > -0.5) & (image[:, :2] < 1.5))
    assert body.body_id and body.workstation_frame == "base_link"
    ws = np.asarray(body.workstation_points).reshape(33, 3)
    assert np.all(np.isfinite(ws)) and 0.0 < body.position_uncertainty_m < 5.0 and not body.depth_used
    # The person stands in front of the camera (camera at x = 2 m looking towards -x).
    assert ws[:, 0].mean() < 2.0
    # ... and on the per-body ROS4HRI topic.
    per_body = ros_probe.collect(BodyPose, f"/ws1/humans/bodies/{body.body_id}/pose", RESULT_QOS)
    session.send_until(frame, lambda s: any(_same(m.header.stamp, s) for m in per_body),
                       what=f"humans/bodies/{body.body_id}/pose")
    assert per_body[-1].body_id == body.body_id and len(per_body[-1].workstation_points) == 99


@pytest.mark.slow
def test_image_without_person_gives_empty_result_and_no_error(session, perception_nodes):
    sizes = {k: path.stat().st_size for k, path in perception_nodes.items()}
    frame = _no_person_photo()
    stamps = []
    for _ in range(3):
        stamps.append(session.send_until(frame, lambda s: bool(session.pose_for(s)),
                                         what="a BodyPoseArray for the no-person photo"))
    for stamp in stamps:
        assert session.pose_for(stamp)[0].bodies == []
        assert not session.landmarks_for(stamp)
        assert not [g for g in session.gestures if _same(g.header.stamp, stamp)]
    for node, path in perception_nodes.items():
        new_text = path.read_bytes()[sizes[node]:].decode(errors="replace")
        assert "WARN" not in new_text and "ERROR" not in new_text, new_text


# ---------------------------------------------------------------- bad input


def _bad_frames() -> dict[str, tuple[str, object]]:
    """kind -> (diagnostic key, message factory)."""
    def raw(**fields):
        def make(stamp):
            msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=bytes(64 * 48 * 3))
            for key, value in fields.items():
                setattr(msg, key, value)
            msg.header.stamp = stamp
            return msg
        return make

    huge = np.random.default_rng(1).integers(0, 255, (MAX_IMAGE_PX + 200, 1400, 3), dtype=np.uint8)
    garbage = np.random.default_rng(2).integers(0, 255, 5000, dtype=np.uint8).tobytes()
    return {
        "wrong_encoding": ("unsupported_encoding", raw(encoding="yuv422", step=64 * 2,
                                                       data=bytes(64 * 48 * 2))),
        "zero_size": ("empty_image", raw(height=0, width=0, step=0, data=b"")),
        "wrong_step": ("bad_step", raw(step=64 * 3 - 3, data=bytes((64 * 3 - 3) * 48))),
        "huge_image": ("image_too_large", lambda stamp: _image(huge, stamp)),
        "garbage_bytes": ("bad_image_data", raw(data=garbage)),
    }


def _log_lines(path: Path, key: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if f"{key}:" in line]


def _send_bad_once_per_try(session, make, key, timeout_s: float = 40.0) -> None:
    """Publish the bad frame, one at a time, until both nodes have counted it in /diagnostics."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        session.image_pub.publish(make(_stamp()))
        step_end = time.monotonic() + 2.5  # diagnostics come at 1 Hz
        while time.monotonic() < step_end:
            if session.diag_count("hands", key) >= 1 and session.diag_count("pose", key) >= 1:
                return
            session.probe.spin_for(0.05)
    raise AssertionError(f"no /diagnostics count for {key} from both nodes")


def _assert_recovers(session) -> None:
    frame = _photo("messi5.jpg")
    session.send_until(frame, lambda s: bool(session.pose_for(s)) and bool(session.landmarks_for(s)),
                       what="pose and hand results for a good frame after the bad one")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wrong_encoding", "zero_size", "wrong_step", "huge_image", "garbage_bytes"])
def test_bad_frame_is_logged_once_diagnosed_and_skipped(session, perception_nodes, kind):
    key, make = _bad_frames()[kind]
    before = {node: len(_log_lines(path, key)) for node, path in perception_nodes.items()}
    counts_before = {node: session.diag_count(node, key) for node in perception_nodes}

    _send_bad_once_per_try(session, make, key)
    _assert_recovers(session)
    session.probe.spin_for(1.2)  # one more diagnostics period: counts include every delivered bad frame

    for node, path in perception_nodes.items():
        lines = _log_lines(path, key)[before[node]:]
        delivered = session.diag_count(node, key) - counts_before[node]
        assert delivered >= 1
        assert len(lines) == delivered, lines  # exactly one log line per bad frame
        assert "frame skipped" in lines[0]


def _bad_depth_images() -> dict[str, tuple[str, object]]:
    """kind -> (diagnostic key, 16UC1 depth image): beyond the node's size limit, and truncated data."""
    wide = MAX_IMAGE_PX + 1
    return {
        "oversized_depth": ("depth_image_too_large",
                            Image(height=4, width=wide, encoding="16UC1", step=2 * wide, data=bytes(8 * wide))),
        "corrupt_depth": ("depth_bad_image_data",
                          Image(height=480, width=640, encoding="16UC1", step=1280, data=bytes(1000))),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["oversized_depth", "corrupt_depth"])
def test_bad_depth_image_is_logged_diagnosed_refused_and_pose_keeps_publishing(session, perception_nodes, kind):
    # Prepare
    key, depth = _bad_depth_images()[kind]
    depth_pub = session.probe.publisher(Image, f"/ws1/{DEPTH_TOPIC}", SENSOR_QOS)
    session.probe.wait_for_subscribers(depth_pub, timeout_s=30.0)
    before = len(_log_lines(perception_nodes["pose"], key))
    counts_before = session.diag_count("pose", key)

    # Execute: the bad depth image (again while best effort loses it), then a frame with a person
    end = time.monotonic() + 40.0
    while session.diag_count("pose", key) <= counts_before:
        assert time.monotonic() < end, f"no /diagnostics count for {key}"
        depth_pub.publish(depth)
        session.probe.spin_for(1.5)  # diagnostics come at 1 Hz
    frame = _photo("messi5.jpg")
    stamp = session.send_until(frame, lambda s: any(m.bodies for m in session.pose_for(s)),
                               what="a BodyPoseArray with a body after the bad depth image")
    session.probe.spin_for(1.2)  # one more diagnostics period: counts include every delivered bad image

    # Assert: one line per refused image; the body is placed without it (monocular) and the node goes on
    lines = _log_lines(perception_nodes["pose"], key)[before:]
    assert len(lines) == session.diag_count("pose", key) - counts_before, lines
    assert "depth image skipped" in lines[0]
    (array,) = session.pose_for(stamp)
    assert not any(body.depth_used for body in array.bodies)
    assert all(np.all(np.isfinite(body.workstation_points)) for body in array.bodies)


def _camera_info(width: int, height: int, focal_px: float, stamp) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.stamp = stamp
    info.k = [focal_px, 0.0, width / 2.0, 0.0, focal_px, height / 2.0, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal_px, 0.0, width / 2.0, 0.0, 0.0, focal_px, height / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _hip_depth_m(body: BodyPose) -> float:
    """Depth of the hip midpoint along the camera's optical axis, from the published workstation points."""
    params = yaml.safe_load(config_file("pose.yaml").read_text())["/**/pose"]["ros__parameters"]
    extrinsics = CameraExtrinsics.from_xyz_rpy(params["camera_xyz_m"], params["camera_rpy_rad"])
    points_ws = np.asarray(body.workstation_points, dtype=np.float64).reshape(33, 3)
    points_cam = (points_ws - extrinsics.translation_m) @ extrinsics.rotation  # inverse of R p + t
    return float(points_cam[[LEFT_HIP, RIGHT_HIP], 2].mean())


@pytest.mark.slow
def test_camera_info_sets_the_intrinsics_and_a_bad_one_is_refused(session, perception_nodes):
    # Prepare: the frame's nominal focal length (60 degree field of view, what the node assumes without one)
    info_pub = session.probe.publisher(CameraInfo, "/ws1/camera/camera_info", SENSOR_QOS)
    session.probe.wait_for_subscribers(info_pub, timeout_s=30.0)
    frame = _photo("messi5.jpg")
    height, width = frame.shape[:2]
    nominal_px = (width / 2.0) / math.tan(math.radians(30.0))

    def body_at(focal_px: float | None) -> BodyPose:
        def done(stamp) -> bool:
            if focal_px is not None:
                info_pub.publish(_camera_info(width, height, focal_px, stamp))
            return any(m.bodies for m in session.pose_for(stamp))
        stamp = session.send_until(frame, done, what="a body")
        if focal_px is not None:  # a frame after the CameraInfo surely arrived: best effort may drop some
            info_pub.publish(_camera_info(width, height, focal_px, stamp))
            session.probe.spin_for(0.5)
            stamp = session.send_until(frame, lambda s: any(m.bodies for m in session.pose_for(s)), what="a body")
        return session.pose_for(stamp)[0].bodies[0]

    try:
        # Execute: a CameraInfo with twice the nominal focal length, then a broken one (fx = 0)
        nominal = body_at(nominal_px)
        zoomed = body_at(2 * nominal_px)
        counts_before = session.diag_count("pose", "bad_camera_info")
        end = time.monotonic() + 40.0
        while session.diag_count("pose", "bad_camera_info") <= counts_before:
            assert time.monotonic() < end, "no /diagnostics count for bad_camera_info"
            info_pub.publish(_camera_info(width, height, 0.0, _stamp()))
            session.probe.spin_for(1.5)
        after_bad = body_at(None)
    finally:
        body_at(nominal_px)  # leave the node as the other tests expect it

    # Assert: the monocular depth scales with the focal length; the broken CameraInfo changed nothing
    assert _hip_depth_m(zoomed) / _hip_depth_m(nominal) == pytest.approx(2.0, rel=0.05)
    assert _hip_depth_m(after_bad) == pytest.approx(_hip_depth_m(zoomed), rel=0.05)


@pytest.mark.slow
def test_non_increasing_stamp_is_logged_diagnosed_and_next_frame_processed(session, perception_nodes):
    key = "non_increasing_stamp"
    frame = _photo("messi5.jpg")
    before = {node: len(_log_lines(path, key)) for node, path in perception_nodes.items()}
    # A frame both nodes processed; then the same stamp again (and an older one).
    stamp = session.send_until(frame, lambda s: bool(session.pose_for(s)) and bool(session.landmarks_for(s)),
                               what="a processed frame")
    end = time.monotonic() + 40.0
    while not (session.diag_count("hands", key) >= 1 and session.diag_count("pose", key) >= 1):
        assert time.monotonic() < end, "no non_increasing_stamp diagnostics"
        session.image_pub.publish(_image(frame, stamp))
        session.probe.spin_for(1.5)
    assert not [m for m in session.bodies if _same(m.header.stamp, stamp)][1:]  # not processed twice
    _assert_recovers(session)
    for node, path in perception_nodes.items():
        lines = _log_lines(path, key)[before[node]:]
        assert lines and str(stamp_ms(stamp)) in lines[0] and "not after" in lines[0]


# ---------------------------------------------------------------- camera node


@pytest.mark.slow
def test_camera_node_publishes_frames_and_matching_camera_info(node_processes, ros_probe, tmp_path):
    for i, name in enumerate(("messi5.jpg", "handSrc.jpg")):
        cv2.imwrite(str(tmp_path / f"{i}.png"), _photo(name))
    images = ros_probe.collect(Image, "/ws1/camera/image_raw", SENSOR_QOS)
    infos = ros_probe.collect(CameraInfo, "/ws1/camera/camera_info", SENSOR_QOS)
    node_processes.start("camera_node", namespace="ws1", param_files=("camera.yaml",),
                         parameters={"source": str(tmp_path), "rate_hz": 20.0, "still_hold_s": 0.1})
    ros_probe.wait_until(lambda: len(images) >= 6 and len(infos) >= 6, 30.0, "camera frames")
    img = images[-1]
    assert (img.width, img.height, img.encoding, img.step) == (640, 480, "bgr8", 1920)
    assert img.header.frame_id == "camera_optical_frame" and len(img.data) == 640 * 480 * 3
    # Each CameraInfo carries the stamp of the image it belongs to (best effort: some may be lost).
    matched = [i for i in infos if any(_same(i.header.stamp, m.header.stamp) for m in images)]
    assert matched
    info = matched[-1]
    assert info.k[0] == pytest.approx(554.3) and (info.width, info.height) == (640, 480)
    assert info.header.frame_id == "camera_optical_frame"
    # Two different photos alternate (the folder loops).
    means = {round(float(np.frombuffer(bytes(m.data), np.uint8).mean()), 1) for m in images}
    assert len(means) >= 2


@pytest.mark.slow
def test_camera_node_reports_missing_device_and_keeps_retrying(node_processes, ros_probe):
    diags = ros_probe.collect(DiagnosticArray, "/diagnostics", 10)
    node_processes.start("camera_node", namespace="ws1", param_files=("camera.yaml",),
                         parameters={"source": "/dev/video_hrc_fl_missing", "reopen_initial_backoff_s": 0.2,
                                     "reopen_max_backoff_s": 0.4})

    def failures() -> int:
        return max([int(kv.value) for a in diags for s in a.status if s.name.startswith("/ws1/camera:")
                    for kv in s.values if kv.key == "count/source_open_failed"] or [0])

    ros_probe.wait_until(lambda: failures() >= 3, 30.0, "repeated open failures on /diagnostics")
    errors = [s for a in diags for s in a.status
              if s.name.startswith("/ws1/camera:") and s.level == DiagnosticStatus.ERROR]
    assert errors and "video_hrc_fl_missing" in errors[-1].message


@pytest.mark.slow
def test_camera_node_relays_a_driver_topic_with_its_own_frame_id(node_processes, ros_probe):
    relayed = ros_probe.collect(Image, "/ws1/camera/image_raw", SENSOR_QOS)
    driver = ros_probe.publisher(Image, "/ws1/driver/image", SENSOR_QOS)
    node_processes.start("camera_node", namespace="ws1", param_files=("camera.yaml",),
                         parameters={"source": "topic:driver/image"})
    ros_probe.wait_for_subscribers(driver, timeout_s=30.0)
    frame = _photo("messi5.jpg")
    msg = _image(frame)
    msg.header.frame_id = "driver_frame"
    end = time.monotonic() + 20.0
    while not relayed and time.monotonic() < end:
        driver.publish(msg)
        ros_probe.spin_for(0.3)
    assert relayed, "no relayed image"
    out = relayed[0]
    assert _same(out.header.stamp, msg.header.stamp) and out.header.frame_id == "camera_optical_frame"
    assert (out.width, out.height) == (frame.shape[1], frame.shape[0]) and bytes(out.data) == frame.tobytes()
