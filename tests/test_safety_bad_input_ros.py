"""Bad input through real topics into a real safety_node process with the shipped config/safety.yaml:
a flood of invalid bodies does not silence the state, a stalled camera stops within one cycle, and a
camera that returns clears only through the configured restart interlock.

Rates and times are taken from the states' own stamps (the node's decision times, same host clock), so
the probe's scheduling on a loaded machine does not enter them; waits are on conditions with generous
timeouts. The flood comes from its own publisher process.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hrc_fl.paths import config_file
from tests.safety_cell import NS, SafetyCell, safety_node, stamp_s

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

X_FAR = 3.0  # human column 3 m from the upright UR5e: CLEAR with the shipped values
SHIPPED = yaml.safe_load(config_file("safety.yaml").read_text())["/**/safety"]["ros__parameters"]
RATE_HZ = float(SHIPPED["publish_rate_hz"])
FLOOD_RATE_HZ, FLOOD_S = 2000.0, 5.0

# Six kinds of invalid bodies, in turn: every cause of a refused message the issue names.
FLOODER = r"""
import json, math, sys, time
import rclpy
from hrc_fl_msgs.msg import BodyPose, BodyPoseArray
from hrc_fl.nodes.common import RESULT_QOS
topic, rate_hz, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("flooder")
pub = node.create_publisher(BodyPoseArray, topic, RESULT_QOS)
column = [v for i in range(33) for v in (3.0, 0.0, 0.1 + 1.7 * i / 32)]
def body(points, frame="base_link", sigma=0.02):
    b = BodyPose(body_id="flood", workstation_frame=frame, position_uncertainty_m=sigma)
    b.workstation_points = points
    return b
kinds = [
    ("nan", 0.0, body([math.nan] * 99)),
    ("inf", 0.0, body([math.inf] + column[1:])),
    ("far", 0.0, body([1e30] + column[1:])),
    ("frame", 0.0, body(column, frame="camera_optical_frame")),
    ("future", 5.0, body(column)),
    ("old", -5.0, body(column)),
]
msgs = []
for name, offset_s, b in kinds:
    m = BodyPoseArray(bodies=[b])
    m.header.frame_id = "base_link"
    msgs.append((offset_s, m))
end = time.monotonic() + 20.0
while pub.get_subscription_count() < 1 and time.monotonic() < end:
    time.sleep(0.05)
period = 1.0 / rate_hz
sent = 0
start_wall = time.time()
start = next_t = time.monotonic()
while time.monotonic() - start < seconds:
    offset_s, m = msgs[sent % len(msgs)]
    now_ns = node.get_clock().now().nanoseconds + int(offset_s * 1e9)
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
    pub.publish(m)
    sent += 1
    next_t += period
    delay = next_t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(json.dumps({"sent": sent, "start_s": start_wall, "end_s": time.time()}), flush=True)
node.destroy_node()
rclpy.shutdown()
"""


@pytest.fixture(scope="module")
def safety_log(tmp_path_factory):
    with safety_node(tmp_path_factory.mktemp("safety_bad_input"), {"markers_rate_hz": 0.0}) as log:
        yield log


def _cell(probe) -> SafetyCell:
    """The shared cell at X_FAR, collecting states deep enough that a probe behind its schedule loses none
    (the rate is counted from them)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    cell = SafetyCell(probe, QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE))
    cell.x = X_FAR
    cell.wait_connected(timeout_s=30.0)
    return cell


def _error_lines(log: Path) -> list[str]:
    """The ERROR messages of the node's log, without rclpy's prefix."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if "[ERROR]" in line and "]: " in line:
            out.append(line.split("]: ", 1)[1])
    return out


def test_flood_of_invalid_bodies_keeps_the_state_rate_never_clear_and_logs_each_cause_about_once_a_second(
        safety_log, ros_probe):
    from hrc_fl.safety.monitor import reason_kind

    # Prepare: the cell runs CLEAR (automatic restart of the shipped config after the start-up stop)
    cell = _cell(ros_probe)
    cell.drive_until(lambda s: s.zone_name == "CLEAR", timeout_s=60.0, what="CLEAR before the flood")
    errors_before = len(_error_lines(safety_log))

    # Execute: 2,000 invalid bodies a second for 5 s from their own process, while the good camera
    # stand-in and the robot go on at 20 Hz
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, f"/{NS}/humans/bodies/tracked",
                                str(FLOOD_RATE_HZ), str(FLOOD_S)], stdout=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + FLOOD_S + 40.0
        while flooder.poll() is None and time.monotonic() < end:
            cell.drive_for(0.2)
        out, _ = flooder.communicate(timeout=10)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
    report = json.loads(out.strip().splitlines()[-1])
    cell.drive_for(1.0)  # states decided at the end of the flood arrive
    time.sleep(1.5)      # the node's log lines are flushed

    # Assert: the flood was one (>= half the asked rate reached the wire)
    assert report["sent"] >= 0.5 * FLOOD_RATE_HZ * FLOOD_S, report
    start_s, end_s = report["start_s"], report["end_s"]
    # from the first decision on a flood message (the flood's first messages take a moment to arrive)
    first_s = min(stamp_s(s) for s in cell.states if start_s <= stamp_s(s) and any("flood" in f for f in s.faults))
    assert first_s - start_s < 1.0
    during = [s for s in cell.states if first_s <= stamp_s(s) <= end_s]
    # never CLEAR (nor anything but the stop) while invalid bodies arrive, each state says why
    assert during and all(s.zone_name == "PROTECTIVE_STOP" and s.speed_scale == 0.0 for s in during)
    assert all(s.reason for s in during)
    # the state keeps its configured rate (measured over the inner part of the flood, on the node's stamps)
    inner = [s for s in during if start_s + 0.5 <= stamp_s(s) <= end_s - 0.5]
    rate_hz = len(inner) / (end_s - start_s - 1.0)
    assert abs(rate_hz - RATE_HZ) <= 0.1 * RATE_HZ, f"state rate {rate_hz:.1f} Hz in the flood, configured {RATE_HZ}"
    # every cause was recognised ...
    seen = {reason_kind(f) for s in during for f in s.faults}
    for cause in ("cannot locate the human", "infinite keypoint", "working range of the camera", "in frame",
                  "in the future", "out of order"):
        assert any(cause in kind for kind in seen), (cause, seen)
    # ... and logged about once a second per cause, with the number of messages left out
    lines = _error_lines(safety_log)[errors_before:]
    per_cause: dict[str, int] = {}
    for line in lines:
        kind = reason_kind(re.sub(r" \(\d+ more since the last line\)$", "", line))
        per_cause[kind] = per_cause.get(kind, 0) + 1
    limit = math.ceil(end_s - start_s) + 2
    assert per_cause and max(per_cause.values()) <= limit, per_cause
    assert any("more since the last line" in line for line in lines), lines[:5]


def test_stalled_camera_stops_within_one_cycle_and_the_returning_camera_clears_through_the_interlock(
        safety_log, ros_probe):
    # Prepare: CLEAR with a live camera stand-in
    cell = _cell(ros_probe)
    cell.drive_until(lambda s: s.zone_name == "CLEAR", timeout_s=60.0, what="CLEAR with a live camera")

    # Execute: the camera stalls (bodies stop, the robot goes on) ...
    cell.x = None
    last_body_s = cell.body_stamps[-1]
    stopped = cell.drive_until(lambda s: s.zone_name == "PROTECTIVE_STOP", timeout_s=10.0, what="stop on stall")
    cell.drive_for(0.5)
    # ... and comes back
    cell.x = X_FAR
    first_back = len(cell.body_stamps)
    back_from = len(cell.states)
    cleared = cell.drive_until(lambda s: s.zone_name != "PROTECTIVE_STOP", timeout_s=30.0,
                               what="restart after the camera returned")
    first_body_back_s = cell.body_stamps[first_back]

    # Assert: no decision taken later than bodies_max_age_s after the last frame is anything but a stop
    # (the first heartbeat past the limit stops: within one cycle), and it names the stale input
    late = [s for s in cell.states[:back_from] if stamp_s(s) > last_body_s + SHIPPED["bodies_max_age_s"]]
    assert late and all(s.zone_name == "PROTECTIVE_STOP" for s in late)
    assert any(f.startswith("bodies: stale") for f in stopped.faults) and stopped.speed_scale == 0.0
    # the restart waited for the configured interlock: the area clear for auto_reset_clear_s after the
    # first frame that came back, the waiting states saying so
    assert SHIPPED["restart_interlock"] == "auto"
    assert stamp_s(cleared) - first_body_back_s >= SHIPPED["auto_reset_clear_s"]
    waiting = [s for s in cell.states[back_from:] if s.zone_name == "PROTECTIVE_STOP" and not s.faults]
    assert waiting and all("restart interlock" in s.reason or "protective stop held" in s.reason
                           for s in waiting)
