"""A workstation as one composed process (the default of ``hrc-fl launch workstation``) against the
same graph as one process per node, through real topics, real MediaPipe on real photos.

Both graphs are launched from :mod:`hrc_fl.graph` exactly as users launch them. The test plays the
camera driver (``camera_source:=topic:...``) and the robot (a fixed joint state), replays the same
photo sequence lock-step (each frame is sent only once the previous one's bodies came back, so no graph
skips a frame) and compares the safety node's zone sequences.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.rosutil import still_robot

pytestmark = pytest.mark.timeout(400)

os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(Path(__file__).resolve().parent.parent / "config" / "fastdds.xml"))

SAFETY_RATE_HZ = 20.0
#: Test-only limits (not the packaged ones): a lock-step replay on a loaded 2-core machine must not flip
#: a zone because one frame took longer; the stall test below uses the packaged watchdog semantics.
REPLAY_CONFIG = {"/**/safety": {"ros__parameters": {
    "bodies_max_age_s": 2.0, "robot_max_age_s": 2.0, "gesture_max_age_s": 2.0, "publish_rate_hz": SAFETY_RATE_HZ,
    "intention_speed_scale": 1.0}}}
STALL_CONFIG = {"/**/safety": {"ros__parameters": {
    "bodies_max_age_s": 1.0, "robot_max_age_s": 1.0, "publish_rate_hz": SAFETY_RATE_HZ,
    "intention_speed_scale": 1.0}}}

_last_ms = [0]


def _stamp():
    """Now, strictly increasing (MediaPipe VIDEO mode), never ahead of the clock by more than 1 ms per
    call in the same millisecond (the safety node refuses stamps from the future)."""
    from builtin_interfaces.msg import Time

    t_ms = max(int(time.time() * 1000), _last_ms[0] + 1)
    _last_ms[0] = t_ms
    return Time(sec=t_ms // 1000, nanosec=(t_ms % 1000) * 1_000_000)


def _key(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _photo(name: str) -> np.ndarray:
    """The worker photo as the demo's scenario shows it: messi5's relaxed open hand (a STOP gesture, which
    would hold the robot for a manual reset) blurred."""
    from hrc_fl.data.datasets import photo_path
    from hrc_fl.perception.camera_sources import fit_frame
    from hrc_fl.sim.scenario import WORKER_PHOTO_BLUR_BOX, blur_region

    image = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    return fit_frame(blur_region(image, WORKER_PHOTO_BLUR_BOX) if name == "messi5.jpg" else image, 640, 480)


def _no_person() -> np.ndarray:
    import matplotlib.cbook

    from hrc_fl.perception.camera_sources import fit_frame

    path = matplotlib.cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)
    return fit_frame(cv2.imread(str(path), cv2.IMREAD_COLOR), 640, 480)


def _reason_kind(reason: str) -> str:
    """A state's reason without its numbers (distances and ages differ with timing, not with meaning)."""
    return re.sub(r"-?\d+(\.\d+)?", "#", reason)


class Workstation:
    """A launched workstation graph plus the test's camera driver and robot."""

    def __init__(self, probe, ns: str, composed: bool, config: dict, tmp_path: Path) -> None:
        from hrc_fl_msgs.msg import BodyPoseArray, SafetyZoneState
        from sensor_msgs.msg import Image

        from hrc_fl.launcher import Launcher, specs_for
        from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, SENSOR_QOS

        config_file = tmp_path / f"{ns}.yaml"
        config_file.write_text(yaml.safe_dump(config))
        self.specs = specs_for("workstation", {"workstation_id": ns, "fl": "false", "config_file": str(config_file),
                                               "camera_source": "topic:test/image_raw",
                                               "composed": "true" if composed else "false"})
        self.launcher = Launcher(self.specs, log_dir=tmp_path / f"logs_{ns}", stop_timeout_s=10.0)
        self.probe = probe
        self.image_pub = probe.publisher(Image, f"/{ns}/test/image_raw", SENSOR_QOS)
        self.bodies: dict[int, object] = {}
        self.sent: set[int] = set()
        self.states: list = []
        probe.node.create_subscription(BodyPoseArray, f"/{ns}/humans/bodies/tracked",
                                       lambda m: self.bodies.__setitem__(_key(m.header.stamp), m), RESULT_QOS)
        probe.node.create_subscription(SafetyZoneState, f"/{ns}/safety/state", self.states.append, SAFETY_QOS)
        self._timer = still_robot(probe, ns)
        self.launcher.start()
        probe.wait_for_subscribers(self.image_pub, timeout_s=60.0)
        probe.wait_for_publishers(f"/{ns}/safety/state", timeout_s=60.0)

    def send(self, frame: np.ndarray, *, timeout_s: float = 60.0, resend_s: float = 2.0) -> object:
        """Publish ``frame`` with a fresh stamp (again after ``resend_s``: best effort) until its bodies
        come back; returns the stamp that was processed."""
        from hrc_fl.nodes.camera import image_message

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            stamp = _stamp()
            self.sent.add(_key(stamp))
            self.image_pub.publish(image_message(frame, "camera_optical_frame", stamp))
            step_end = min(end, time.monotonic() + resend_s)
            while time.monotonic() < step_end:
                if _key(stamp) in self.bodies:
                    return stamp
                self.probe.spin_for(0.01)
        raise AssertionError(f"no bodies came back for a frame within {timeout_s} s")

    def play(self, frame: np.ndarray, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.send(frame)

    def wait_zone(self, zone: int, timeout_s: float, frame: np.ndarray) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.send(frame)
            if self.states and self.states[-1].zone == zone:
                return
        raise AssertionError(f"zone {zone} not reached within {timeout_s} s; last: "
                             f"{self.states[-1].zone_name if self.states else None} "
                             f"{self.states[-1].reason if self.states else ''}")

    def stop(self) -> dict[str, int]:
        self.probe.node.destroy_timer(self._timer)
        return self.launcher.stop()


def _zone_sequence(states) -> list[tuple[str, str]]:
    """(zone, reason kind) with consecutive repeats collapsed."""
    out: list[tuple[str, str]] = []
    for s in states:
        item = (s.zone_name, _reason_kind(s.reason))
        if not out or out[-1] != item:
            out.append(item)
    return out


def _replay(ws: Workstation, person: np.ndarray, empty: np.ndarray) -> list[tuple[str, str]]:
    from hrc_fl_msgs.msg import SafetyZoneState

    ws.wait_zone(SafetyZoneState.CLEAR, 90.0, empty)  # start-up interlock passed, nobody in view
    ws.states.clear()
    ws.play(empty, 1.0)
    ws.play(person, 2.0)
    ws.play(empty, 1.0)
    ws.wait_zone(SafetyZoneState.CLEAR, 30.0, empty)
    ws.play(empty, 0.5)
    return _zone_sequence(ws.states)


def test_composed_and_separate_processes_give_the_same_safety_states(ros_probe, tmp_path):
    # Prepare
    person, empty = _photo("messi5.jpg"), _no_person()
    sequences, codes, processes = {}, {}, {}

    # Execute: the same replay through each graph, one after the other (2 cores)
    for ns, composed in (("wsc", True), ("wss", False)):
        ws = Workstation(ros_probe, ns, composed, REPLAY_CONFIG, tmp_path)
        try:
            processes[ns] = len(ws.specs)
            sequences[ns] = _replay(ws, person, empty)
        finally:
            codes[ns] = ws.stop()

    # Assert: one process against six; the person stopped the robot and the area cleared through the
    # interlock in both; and the zone sequences are identical
    assert processes == {"wsc": 1, "wss": 6}
    for ns, seq in sequences.items():
        zones = [z for z, _ in seq]
        assert zones[0] == "CLEAR" and zones[-1] == "CLEAR", (ns, seq)
        assert "PROTECTIVE_STOP" in zones, (ns, seq)
        assert any("restart interlock" in r for _, r in seq), (ns, seq)
    assert sequences["wsc"] == sequences["wss"]
    # and every process ended on SIGINT with exit 0; the composed process and the perception nodes
    # cleanly: no worker thread publishing into a finished context (RCLError)
    assert all(code == 0 for c in codes.values() for code in c.values()), codes
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("logs_*/*.log")}
    checked = ["wsc_workstation.log", "wss_camera.log", "wss_hands.log", "wss_pose.log"]
    assert set(checked) <= set(logs), sorted(logs)
    assert not [name for name in checked if "Traceback" in logs[name] or "RCLError" in logs[name]]


def test_stalled_camera_stops_and_a_returning_camera_clears_through_the_interlock(ros_probe, tmp_path):
    from hrc_fl_msgs.msg import SafetyZoneState
    from sensor_msgs.msg import Image

    from hrc_fl.nodes.common import SENSOR_QOS, stamp_to_s

    # Prepare: the composed workstation, nobody in view, CLEAR; a viewer (rviz) on its camera topic
    empty = _no_person()
    ws = Workstation(ros_probe, "wst", True, STALL_CONFIG, tmp_path)
    viewed = ros_probe.collect(Image, "/wst/camera/image_raw", SENSOR_QOS)
    try:
        ws.wait_zone(SafetyZoneState.CLEAR, 90.0, empty)
        last = ws.send(empty)
        ws.states.clear()

        # Execute: the camera stalls (no frame for 3 s), then returns
        ros_probe.spin_for(3.0)
        stalled = list(ws.states)
        ws.states.clear()
        ws.wait_zone(SafetyZoneState.CLEAR, 30.0, empty)
        returned = list(ws.states)
    finally:
        codes = ws.stop()

    # Assert: no state decided later than the age limit + one cycle after the last frame is CLEAR; they
    # are PROTECTIVE_STOP for stale bodies; recovery passes the restart interlock before CLEAR
    limit_s = stamp_to_s(last) + 1.0 + 1.0 / SAFETY_RATE_HZ
    late = [s for s in stalled if stamp_to_s(s.header.stamp) > limit_s]
    assert late, "the safety node published nothing while the camera stalled"
    assert all(s.zone == SafetyZoneState.PROTECTIVE_STOP for s in late)
    assert all("bodies: stale" in s.reason for s in late), {s.reason for s in late}
    kinds = [r for _, r in _zone_sequence(returned)]
    assert any("restart interlock" in r for r in kinds), kinds
    assert returned[-1].zone == SafetyZoneState.CLEAR
    assert all(code == 0 for code in codes.values()), codes
    # the frames handed over in memory were still published for the viewer, with their capture stamps
    assert viewed and {_key(m.header.stamp) for m in viewed} <= ws.sent
