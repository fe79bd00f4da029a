"""Nodes that cannot hear each other: the demo and ``hrc-fl launch`` say so, name the nodes, exit non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrc_fl.discovery_check import DiscoveryWatch, NodesNotHeardError, node_of_status, watch_diagnostics
from hrc_fl.graph import SHUTDOWN_BOUND_S

HRC_FL = str(Path(sys.executable).parent / "hrc-fl")
#: The demo's discovery timeout in the test (the default is 90 s), and what start-up may add to it.
DISCOVERY_TIMEOUT_S = 20.0
START_MARGIN_S = 90.0


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_netns = pytest.mark.skipif(not _unshare_works(),
                                 reason="network namespaces unavailable (unshare -n needs root or CAP_SYS_ADMIN)")


def test_status_names_map_to_their_node():
    assert node_of_status("/ws1/camera: camera") == "/ws1/camera"
    assert node_of_status("/plant/aggregator: federated aggregator") == "/plant/aggregator"
    assert node_of_status("camera: no node prefix") is None
    assert node_of_status("/ws1/camera") is None


def test_watch_raises_only_after_the_timeout_and_names_the_missing_nodes():
    # Prepare
    watch = DiscoveryWatch(("/ws1/camera", "/ws1/pose"), timeout_s=10.0, started_s=100.0)
    watch.on_status("/ws1/camera: camera")
    watch.on_status("/ws2/pose: pose")  # another workstation's node is not this one

    # Execute / Assert: quiet before the timeout, then the missing node by name
    watch.check(now_s=109.9)
    with pytest.raises(NodesNotHeardError, match=r"never published.*/ws1/pose \(heard 1 of 2\)") as err:
        watch.check(now_s=110.0)
    assert err.value.missing == ["/ws1/pose"] and not err.value.no_traffic
    watch.on_status("/ws1/pose: pose")
    watch.check(now_s=500.0)  # complete: never raises


def test_watch_with_nothing_heard_says_there_is_no_dds_traffic():
    watch = DiscoveryWatch(("/a/x",), timeout_s=1.0, started_s=0.0)
    error = watch.error({"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert error.no_traffic
    assert "no DDS traffic between the nodes" in str(error)
    assert "ROS_DOMAIN_ID=7" in str(error) and "ip link show lo" in str(error)
    with pytest.raises(ValueError):
        DiscoveryWatch((), timeout_s=1.0)


def test_a_real_node_is_heard_and_an_absent_one_is_named(ros_probe, node_processes):
    # Prepare: one real node process; a second expected node that does not exist
    watch = DiscoveryWatch(("/dc/robot_sim", "/dc/ghost"), timeout_s=60.0)
    watch_diagnostics(ros_probe.node, watch)
    node_processes.start("robot_sim_node", name="robot_sim", namespace="dc")

    # Execute
    ros_probe.wait_until(lambda: "/dc/robot_sim" in watch.heard, 60.0, "robot_sim on /diagnostics")

    # Assert
    error = watch.error()
    assert error.missing == ["/dc/ghost"] and error.heard == ["/dc/robot_sim"]


def test_the_watch_stops_listening_once_every_node_was_heard(ros_probe):
    # Prepare
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    watch = DiscoveryWatch(("/dcw/a", "/dcw/b"), timeout_s=60.0)
    subscription = watch_diagnostics(ros_probe.node, watch)
    publisher = ros_probe.publisher(DiagnosticArray, "/diagnostics")
    ros_probe.wait_for_subscribers(publisher)

    def report(node: str) -> None:
        publisher.publish(DiagnosticArray(status=[DiagnosticStatus(name=f"{node}: test")]))

    # Execute / Assert: still subscribed while a node is missing, gone once the last one reported
    report("/dcw/a")
    ros_probe.wait_until(lambda: "/dcw/a" in watch.heard, 30.0, "/dcw/a heard")
    assert subscription in list(ros_probe.node.subscriptions)
    report("/dcw/b")
    ros_probe.wait_until(lambda: watch.complete, 30.0, "/dcw/b heard")
    assert subscription not in list(ros_probe.node.subscriptions)


def test_launch_names_unheard_nodes_only_once_the_discovery_timeout_passed():
    # Prepare: the monitor of `hrc-fl launch --duration` for a node that never runs
    from hrc_fl.commands.launch import _Monitor
    from hrc_fl.graph import NodeSpec

    environment = dict(os.environ)  # the monitor exports the graph's DDS settings into this process
    spec = NodeSpec(executable="robot_sim_node", name="ghost", namespace="dcm")
    try:
        # Execute: stopped before the timeout (an early Ctrl-C), then once it has passed
        _, early = _Monitor([spec], 3600.0).finish()
        late_monitor = _Monitor([spec], 3600.0)
        late_monitor._watch.started_s -= 3600.0
        _, late = late_monitor.finish()
    finally:
        os.environ.clear()
        os.environ.update(environment)

    # Assert: nothing reported early; after the timeout the node is named
    assert early is None
    assert isinstance(late, NodesNotHeardError) and late.missing == ["/dcm/ghost"]


@needs_netns
@pytest.mark.timeout(300)
def test_demo_without_dds_traffic_exits_non_zero_with_one_clear_error(tmp_path):
    # Prepare: a network namespace of its own, loopback down (as `unshare -n` creates it)
    argv = ["unshare", "-n", HRC_FL, "demo", "--quick", "--no-bag", "--discovery-timeout-s",
            str(DISCOVERY_TIMEOUT_S), "--out", str(tmp_path / "run")]

    # Execute
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=DISCOVERY_TIMEOUT_S + START_MARGIN_S + 60)
    elapsed_s = time.monotonic() - t0

    # Assert: non-zero, within the stated time (timeout + start-up + the nodes' stop), one error naming
    # every workstation node and what to check; no report claiming anything
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed_s < DISCOVERY_TIMEOUT_S + START_MARGIN_S + SHUTDOWN_BOUND_S
    errors = [line for line in proc.stdout.splitlines() if line.startswith("hrc-fl demo: ERROR:")]
    assert len(errors) == 1, proc.stdout[-3000:]
    assert "no DDS traffic between the nodes" in errors[0] and "ip link show lo" in errors[0]
    for node in ("/ws1/camera", "/ws1/safety", "/ws1/intention", "/ws1/wearable"):
        assert node in errors[0]
    assert "# hrc_fl plant demo report" not in proc.stdout and not list((tmp_path / "run").glob("*.md"))


@needs_netns
@pytest.mark.timeout(180)
def test_launch_reports_the_nodes_never_heard():
    # Execute: the aggregator graph for a few seconds where DDS carries nothing
    proc = subprocess.run(["unshare", "-n", HRC_FL, "launch", "aggregator", "--duration", "8"],
                          capture_output=True, text=True, timeout=150)

    # Assert: the node is named, and the command fails
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[launch] ERROR: no DDS traffic between the nodes" in proc.stderr
    assert "/plant/aggregator" in proc.stderr.split("[launch] ERROR:")[1]
