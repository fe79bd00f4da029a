"""Helpers for tests that exchange real messages with real node processes over DDS."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hrc_fl.graph import NodeSpec
from hrc_fl.launcher import Launcher, node_command


class Probe:
    """A test-side rclpy node: publishers, collecting subscriptions, and waits that spin."""

    def __init__(self, context) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.context = context
        self.node = Node("test_probe", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type, topic: str, qos=10) -> list[Any]:
        """Subscribe and append every message on ``topic`` to the returned list."""
        bucket = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, bucket.append, qos)
        return bucket

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str = "") -> None:
        """Spin until ``predicate()`` holds; AssertionError naming ``what`` on timeout."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return
            self.executor.spin_once(timeout_sec=0.05)
        if not predicate():
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")

    def wait_for_subscribers(self, publisher, count: int = 1, timeout_s: float = 15.0) -> None:
        self.wait_until(lambda: publisher.get_subscription_count() >= count, timeout_s,
                        f"{count} subscriber(s) on {publisher.topic_name}")

    def wait_for_publishers(self, topic: str, count: int = 1, timeout_s: float = 15.0) -> None:
        self.wait_until(lambda: self.node.count_publishers(topic) >= count, timeout_s,
                        f"{count} publisher(s) on {topic}")

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


class NodeProcesses:
    """Real node processes started like ``hrc-fl launch`` would (same argv, same environment)."""

    def __init__(self) -> None:
        self._launchers: list[Launcher] = []

    def start(self, executable: str, *, name: str | None = None, namespace: str = "",
              param_files: tuple[str, ...] = (), parameters: Mapping[str, Any] | None = None,
              remappings: tuple[tuple[str, str], ...] = (), log_dir: Path | None = None) -> Launcher:
        spec = NodeSpec(executable=executable, name=name or executable.removesuffix("_node"),
                        namespace=namespace, param_files=param_files, parameters=parameters or {},
                        remappings=remappings)
        launcher = Launcher([spec], log_dir=log_dir, stop_timeout_s=8.0)
        launcher.start()
        self._launchers.append(launcher)
        return launcher

    def command(self, spec: NodeSpec) -> list[str]:
        return node_command(spec)

    def stop_all(self) -> None:
        for launcher in self._launchers:
            launcher.stop()

    @staticmethod
    def output(launcher: Launcher) -> str:
        proc: subprocess.Popen = launcher.nodes[0].process
        return "" if proc.stdout is None else proc.stdout.read().decode(errors="replace")


def run_cli_while_spinning(probe, argv: list[str], tick: Callable[[], None], timeout_s: float = 60.0) -> str:
    """Run ``hrc-fl <argv>`` as a process while calling ``tick()`` and spinning ``probe`` every 50 ms;
    assert it exited 0 and return its output (stdout and stderr)."""
    import sys

    hrc_fl = str(Path(sys.executable).parent / "hrc-fl")
    proc = subprocess.Popen([hrc_fl, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < end:
            tick()
            probe.spin_for(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    return out


def still_robot(probe: Probe, ns: str):
    """Publish ``/<ns>/robot/joint_states`` at 50 Hz: a robot standing still at its first waypoint
    (config/robot_sim.yaml). Returns the timer (destroy it to stop)."""
    import yaml
    from sensor_msgs.msg import JointState

    from hrc_fl.nodes.common import SENSOR_QOS
    from hrc_fl.nodes.robot_sim import PARAMETERS as ROBOT_PARAMETERS

    joint_pub = probe.publisher(JointState, f"/{ns}/robot/joint_states", SENSOR_QOS)
    names = list(ROBOT_PARAMETERS["joint_names"][0])
    waypoints = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "robot_sim.yaml")
                               .read_text())["/**/robot_sim"]["ros__parameters"]["waypoints_rad"]

    def publish_joints() -> None:
        msg = JointState(name=names, position=[float(v) for v in waypoints[:6]], velocity=[0.0] * 6)
        msg.header.stamp = probe.node.get_clock().now().to_msg()
        joint_pub.publish(msg)

    return probe.node.create_timer(0.02, publish_joints)
