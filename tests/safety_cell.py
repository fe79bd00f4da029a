"""A probe-side safety cell for tests against a real safety_node process: a camera/pose stand-in (a
standing human as a column of 33 keypoints at x metres), the robot (upright UR5e joint states), and every
SafetyZoneState the node sends. Shared by tests/test_safety_node.py and tests/test_safety_bad_input_ros.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NS = "ws1"
UPRIGHT = [0.0, -math.pi / 2, 0.0, -math.pi / 2, 0.0, 0.0]
JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
          "wrist_3_joint"]


def column_points(x_m: float) -> list[float]:
    """Flat (33 x 3) keypoints of a standing human at (x, 0), 0.1 .. 1.8 m high, in base_link."""
    return [v for i in range(33) for v in (x_m, 0.0, 0.1 + 1.7 * i / 32)]


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@contextmanager
def safety_node(log_dir: Path, parameters: Mapping[str, Any]) -> Iterator[Path]:
    """A safety_node process in namespace ws1 with config/safety.yaml plus ``parameters``; yields its log."""
    from tests.rosutil import NodeProcesses

    procs = NodeProcesses()
    procs.start("safety_node", namespace=NS, param_files=("safety.yaml",), parameters=parameters,
                log_dir=log_dir)
    try:
        yield log_dir / f"{NS}_safety.log"
    finally:
        procs.stop_all()


class SafetyCell:
    """Publishes a body (unless ``x`` is None) and a joint state per :meth:`publish_once`; collects states."""

    def __init__(self, probe, states_qos=None) -> None:
        from hrc_fl_msgs.msg import BodyPoseArray, SafetyZoneState
        from sensor_msgs.msg import JointState

        from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS

        self.probe = probe
        self.bodies_pub = probe.publisher(BodyPoseArray, f"/{NS}/humans/bodies/tracked", RESULT_QOS)
        self.joints_pub = probe.publisher(JointState, f"/{NS}/robot/joint_states", 10)
        self.states = probe.collect(SafetyZoneState, f"/{NS}/safety/state", states_qos or SAFETY_QOS)
        self.x: float | None = 2.6
        self.body_stamps: list[float] = []

    def wait_connected(self, *publishers, timeout_s: float = 20.0) -> None:
        for pub in (self.bodies_pub, self.joints_pub, *publishers):
            self.probe.wait_for_subscribers(pub, timeout_s=timeout_s)
        self.probe.wait_for_publishers(f"/{NS}/safety/state", timeout_s=timeout_s)

    def publish_once(self) -> None:
        from hrc_fl_msgs.msg import BodyPose, BodyPoseArray
        from sensor_msgs.msg import JointState

        now = self.probe.node.get_clock().now().to_msg()
        if self.x is not None:
            msg = BodyPoseArray()
            msg.header.stamp = now
            body = BodyPose(body_id="p1", workstation_frame="base_link", position_uncertainty_m=0.02)
            body.workstation_points = column_points(self.x)
            msg.bodies = [body]
            self.bodies_pub.publish(msg)
            self.body_stamps.append(stamp_s(msg))
        joints = JointState(name=JOINTS, position=UPRIGHT)
        joints.header.stamp = now
        self.joints_pub.publish(joints)

    def drive_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.publish_once()
            self.probe.spin_for(0.05)

    def drive_until(self, predicate, timeout_s: float = 10.0, what: str = ""):
        """Publish at about 20 Hz until the newest state satisfies ``predicate``; return it."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.publish_once()
            self.probe.spin_for(0.05)
            if self.states and predicate(self.states[-1]):
                return self.states[-1]
        last = self.states[-1] if self.states else None
        raise AssertionError(f"timed out waiting for {what}; last state: "
                             f"{None if last is None else (last.zone_name, last.reason)}")
