"""A separate process for the round-trip test: republishes every message it receives.

Usage: python -m tests.echo_node TYPE [TYPE ...] where TYPE is e.g. hrc_fl_msgs/msg/BodyPose.
Subscribes ``roundtrip/in/<Name>`` and publishes the received message unchanged on ``roundtrip/out/<Name>``.
"""

from __future__ import annotations

import importlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def import_type(name: str):
    package, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), cls)


def main() -> None:
    rclpy.init()
    node = Node("roundtrip_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    keep = []
    for name in sys.argv[1:]:
        msg_type = import_type(name)
        short = name.rsplit("/", 1)[1]
        pub = node.create_publisher(msg_type, f"roundtrip/out/{short}", qos)
        keep.append(node.create_subscription(msg_type, f"roundtrip/in/{short}",
                                             lambda m, p=pub: p.publish(m), qos))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
