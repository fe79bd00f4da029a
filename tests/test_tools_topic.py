"""`hrc-fl topic list|echo|hz` against a probe publisher, plus the ROS-free core."""

from __future__ import annotations

import math
import time

import pytest

from hrc_fl.tools.msgtypes import import_message_type, normalize_type_name
from hrc_fl.tools.topic import RateWindow, message_to_text, subscription_qos
from tests.rosutil import run_cli_while_spinning as run_cli


def test_type_names_normalise_and_import():
    # Execute / Assert
    assert normalize_type_name("std_msgs/Float64") == "std_msgs/msg/Float64"
    assert import_message_type("hrc_fl_msgs/msg/SafetyZoneState").__name__ == "SafetyZoneState"
    with pytest.raises(ValueError, match="pkg/msg/Type"):
        normalize_type_name("Float64")
    with pytest.raises(ValueError, match="not installed"):
        import_message_type("nosuch_msgs/msg/X")
    with pytest.raises(ValueError, match="no type"):
        import_message_type("std_msgs/msg/NoSuchType")


def test_message_text_abbreviates_arrays_and_nests_lists():
    # Prepare
    from hrc_fl_msgs.msg import BodyPose, BodyPoseArray

    msg = BodyPoseArray(bodies=[BodyPose(body_id="worker_a", score=0.5), BodyPose(body_id="worker_b")])
    msg.bodies[0].visibility[:4] = [0.25, 0.5, 0.75, 1.0]

    # Execute
    text = message_to_text(msg, max_array=3)
    full = message_to_text(msg, max_array=0)

    # Assert
    assert "- header:" in text and "body_id: worker_a" in text and "body_id: worker_b" in text
    assert "visibility: [0.25, 0.5, 0.75, ...]  # 33 items" in text
    assert full.count("0.0") > text.count("0.0")
    assert "..." not in full


def test_rate_window_statistics():
    # Prepare: periods 0.1, 0.1, 0.2, 0.2
    window = RateWindow(window=5)
    for t in (0.0, 0.1, 0.2, 0.4, 0.6):
        window.add(t)

    # Execute
    stats = window.stats()

    # Assert
    assert stats.count == 5
    assert stats.rate_hz == pytest.approx(1 / 0.15)
    assert stats.min_period_s == pytest.approx(0.1) and stats.max_period_s == pytest.approx(0.2)
    assert stats.std_period_s == pytest.approx(0.05)
    window.add(0.7)  # the oldest (0.0) drops out of the 5-message window
    assert window.stats().rate_hz == pytest.approx(4 / 0.6)
    with pytest.raises(ValueError, match="backwards"):
        window.add(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        RateWindow(1)
    assert RateWindow(3).stats() is None


def test_subscription_qos_matches_all_publishers():
    # Prepare
    from types import SimpleNamespace

    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from hrc_fl.nodes.common import LATCHED_QOS, SAFETY_QOS, SENSOR_QOS

    def info(qos):
        return SimpleNamespace(qos_profile=qos)

    # Execute / Assert
    assert subscription_qos([]).reliability == ReliabilityPolicy.BEST_EFFORT
    assert subscription_qos([info(SAFETY_QOS)]).reliability == ReliabilityPolicy.RELIABLE
    mixed = subscription_qos([info(SAFETY_QOS), info(SENSOR_QOS)])
    assert mixed.reliability == ReliabilityPolicy.BEST_EFFORT
    assert subscription_qos([info(LATCHED_QOS)]).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert mixed.durability == DurabilityPolicy.VOLATILE


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_topic_cli_list_echo_hz(ros_probe):
    # Prepare: a best-effort custom-type stream, a reliable Float64 stream and a latched string
    from hrc_fl_msgs.msg import SafetyZoneState
    from std_msgs.msg import Float64, String

    from hrc_fl.nodes.common import LATCHED_QOS, SAFETY_QOS, SENSOR_QOS

    state_pub = ros_probe.publisher(SafetyZoneState, "/ws1/safety/state", SENSOR_QOS)
    scale_pub = ros_probe.publisher(Float64, "/ws1/robot/speed_scale", SAFETY_QOS)
    latched_pub = ros_probe.publisher(String, "/ws1/intention/model_available", LATCHED_QOS)
    latched_pub.publish(String(data="v7"))
    sent: list[float] = []

    def tick() -> None:
        state_pub.publish(SafetyZoneState(zone=SafetyZoneState.WARNING, zone_name="WARNING",
                                          min_separation_m=2.5))
        scale_pub.publish(Float64(data=0.5))
        sent.append(time.monotonic())

    # Execute
    listed = run_cli(ros_probe, ["topic", "list", "--wait-s", "8"], tick)
    echoed = run_cli(ros_probe, ["topic", "echo", "/ws1/safety/state", "-n", "2", "--timeout-s", "30"], tick)
    latched = run_cli(ros_probe, ["topic", "echo", "ws1/intention/model_available", "-n", "1",
                                   "--timeout-s", "30"], lambda: None)
    sent.clear()
    hz = run_cli(ros_probe, ["topic", "hz", "/ws1/robot/speed_scale", "--duration-s", "5"], tick)

    # Assert
    assert "/ws1/safety/state [hrc_fl_msgs/msg/SafetyZoneState]" in listed
    assert "/ws1/robot/speed_scale [std_msgs/msg/Float64]" in listed
    assert echoed.count("---") == 2
    assert "zone_name: WARNING" in echoed and "min_separation_m: 2.5" in echoed
    assert "data: v7" in latched
    rates = [float(line.split()[2]) for line in hz.splitlines() if line.startswith("average rate:")]
    assert rates, hz
    published_hz = (len(sent) - 1) / (sent[-1] - sent[0])
    assert math.isfinite(rates[-1]) and 0.5 * published_hz < rates[-1] < 2.0 * published_hz
