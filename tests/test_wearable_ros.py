"""The wearable node as a real process fed over UDP: valid samples become sensor_msgs/Imu with mapped
stamps; each kind of bad sample is dropped and counted on /diagnostics and in WearableState."""

from __future__ import annotations

import socket
import time
from itertools import pairwise

import pytest

from hrc_fl.wearable.protocol import ImuSample, format_line

pytestmark = [pytest.mark.slow]
NS = "ws1"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line(t: float, ax: float = 0.1, hr: float = float("nan")) -> str:
    return format_line(ImuSample(t_device_s=t, accel_ms2=(ax, 0.2, 9.8), gyro_rads=(0.01, 0.02, 0.03),
                                 heart_rate_bpm=hr))


@pytest.mark.timeout(90)
def test_udp_samples_are_published_and_bad_ones_dropped_and_counted(ros_probe, node_processes):
    from diagnostic_msgs.msg import DiagnosticArray
    from hrc_fl_msgs.msg import WearableState
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Imu

    from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS

    # Prepare
    port = _free_udp_port()
    node_processes.start("wearable_node", namespace=NS, param_files=("wearable.yaml",),
                         parameters={"source": "udp", "udp_port": port, "state_rate_hz": 5.0})
    deep_sensor_qos = QoSProfile(depth=100, reliability=SENSOR_QOS.reliability)  # a burst of 10 fits
    imus = ros_probe.collect(Imu, f"/{NS}/wearable/imu", deep_sensor_qos)
    states = ros_probe.collect(WearableState, f"/{NS}/wearable/state", RESULT_QOS)
    diagnostics = ros_probe.collect(DiagnosticArray, "/diagnostics", 50)
    ros_probe.wait_for_publishers(f"/{NS}/wearable/imu", timeout_s=30.0)
    ros_probe.wait_until(lambda: len(states) > 0, 30.0, "wearable/state (node up)")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    device_t0 = 50.0

    # Execute: 10 good samples (one 4-sample gap), then one of each bad kind, then 2 good ones
    good = [device_t0 + k * 0.02 for k in (0, 1, 2, 3, 4, 5, 10, 11, 12, 13)]
    before_s = time.time()
    sender.sendto("".join(_line(t, hr=72.0) for t in good).encode(), ("127.0.0.1", port))
    bad = [_line(device_t0 + 0.28, ax=float("nan")),  # non-finite
           _line(device_t0 + 0.28, ax=400.0),         # saturated (beyond 16 g)
           _line(good[-1]),                           # duplicate
           _line(device_t0 + 0.1),                    # out of order
           "1.0,2.0,three\n"]                         # malformed
    sender.sendto("".join(bad).encode(), ("127.0.0.1", port))
    sender.sendto((_line(device_t0 + 0.28) + _line(device_t0 + 0.30)).encode(), ("127.0.0.1", port))
    sender.close()
    ros_probe.wait_until(lambda: len(imus) >= 12, 20.0, "12 IMU messages")
    ros_probe.wait_until(lambda: any(s.samples_dropped >= 5 for s in states), 20.0, "WearableState with drops")

    def wearable_diag():
        for msg in reversed(diagnostics):
            for status in msg.status:
                if "wearable" in status.name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    ros_probe.wait_until(lambda: wearable_diag().get("dropped/malformed") == "1", 10.0, "diagnostic counters")
    ros_probe.spin_for(0.3)

    # Assert
    assert len(imus) == 12
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in imus]
    device = [*good, device_t0 + 0.28, device_t0 + 0.30]
    offsets = [s - d for s, d in zip(stamps, device, strict=True)]
    # one offset per batch maps device time to ROS time (a later batch may lower the minimum-delay estimate)
    assert max(offsets[:10]) - min(offsets[:10]) < 1e-6
    assert all(b > a for a, b in pairwise(stamps))
    assert before_s - 1.0 < stamps[0] and stamps[-1] < time.time()  # on the ROS (system) clock, never ahead
    assert all(m.header.frame_id == "wrist_imu" for m in imus)
    assert imus[0].orientation_covariance[0] == -1.0 and imus[0].linear_acceleration_covariance[0] > 0
    assert imus[0].linear_acceleration.z == pytest.approx(9.8)
    values = wearable_diag()
    for reason in ("non_finite", "saturated", "duplicate", "out_of_order", "malformed"):
        assert values[f"dropped/{reason}"] == "1", reason
    assert values["gaps"] == "1" and values["missing_samples"] == "4"
    state = states[-1]
    assert state.samples_dropped == 5 and state.heart_rate_valid and state.heart_rate_bpm == pytest.approx(72.0)
    assert 0.0 < state.link_quality <= 1.0 or state.link_quality == 0.0
