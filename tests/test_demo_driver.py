"""The demo driver's scenario start: it waits until every workstation's slow nodes are up."""

from __future__ import annotations

import time

import pytest
import rclpy

from hrc_fl.demo.driver import DemoDriver
from hrc_fl.sim.scenario import Scenario, ScenarioConfig


def _driver(context, wait_for):
    return DemoDriver(["ws1", "ws2"], Scenario(ScenarioConfig(length_s=60.0)), tick_rate_hz=1.0,
                      warmup_timeout_s=600.0, start_on="bodies", wait_for=wait_for, context=context)


def test_scenario_starts_only_when_every_workstation_sent_every_signal():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        driver = _driver(context, ("intention", "fl_client"))
        for ws, signal in [("ws1", "bodies"), ("ws1", "intention"), ("ws1", "fl_client"), ("ws2", "bodies"),
                           ("ws2", "bodies"), ("ws2", "intention"), ("ws3", "fl_client")]:
            driver._signal(ws, signal)
            assert not driver.started, (ws, signal)   # ws2's FL client has not come up yet
        driver._signal("ws2", "fl_client")
        assert driver.started and driver.scenario_time_s() >= 0.0
        driver.destroy_node()

        # without wait_for the first body on every workstation is enough
        plain = _driver(context, ())
        plain._signal("ws1", "bodies")
        plain._signal("ws1", "intention")
        assert not plain.started
        plain._signal("ws2", "bodies")
        assert plain.started
        plain.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_unknown_wait_signal_is_refused():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="wait_for"):
            _driver(context, ("camera",))
    finally:
        rclpy.try_shutdown(context=context)


def test_driver_sees_rounds_closed_and_clients_finished_from_federated_status():
    # The demo stops only once the last round closed and every FL client stored the final model: a
    # client's "finished" counts, an aggregator's "finished" or a client's "sent" does not.
    from hrc_fl_msgs.msg import FederatedStatus
    from rclpy.executors import SingleThreadedExecutor

    from hrc_fl.nodes.common import RESULT_QOS

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        driver = _driver(context, ())
        talker = rclpy.create_node("status_talker", context=context)
        plant = talker.create_publisher(FederatedStatus, "/plant/federated/status", RESULT_QOS)
        ws1 = talker.create_publisher(FederatedStatus, "/ws1/federated/status", RESULT_QOS)
        ws2 = talker.create_publisher(FederatedStatus, "/ws2/federated/status", RESULT_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(driver)
        executor.add_node(talker)

        def spin_until(condition, timeout_s=10.0):
            end = time.monotonic() + timeout_s
            while not condition() and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            return condition()

        plant.publish(FederatedStatus(role="aggregator", node_id="plant", round=2, state="done"))
        plant.publish(FederatedStatus(role="aggregator", node_id="plant", round=2, state="finished"))
        ws1.publish(FederatedStatus(role="client", node_id="ws1", round=2, state="sent"))
        assert spin_until(lambda: driver.fl_rounds_done() == 2 and len(driver.record.federated) == 3)
        assert driver.fl_clients_finished() == set()
        ws1.publish(FederatedStatus(role="client", node_id="ws1", round=2, state="finished"))
        ws2.publish(FederatedStatus(role="client", node_id="ws2", round=2, state="finished"))
        assert spin_until(lambda: driver.fl_clients_finished() == {"ws1", "ws2"}), driver.record.federated
        executor.shutdown(timeout_sec=1.0)
    finally:
        rclpy.try_shutdown(context=context)


def test_scenario_start_reaches_the_workstations_latched():
    # The workstations play the scenario themselves, timed from the start the driver announces once on
    # /scenario/start; a process that subscribes after the start still gets it.
    from rclpy.executors import SingleThreadedExecutor

    from hrc_fl.nodes.scenario_clock import ScenarioClock

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        driver = _driver(context, ())
        driver._signal("ws1", "bodies")
        driver._signal("ws2", "bodies")
        assert driver.started
        late = rclpy.create_node("late_workstation", context=context)
        clock = ScenarioClock(late)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(driver)
        executor.add_node(late)
        end = time.monotonic() + 10.0
        while not clock.started and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert clock.started
        assert clock.seconds_now() == pytest.approx(driver.scenario_time_s(), abs=0.5)
        assert clock.seconds_now() < 5.0
        executor.shutdown(timeout_sec=1.0)
    finally:
        rclpy.try_shutdown(context=context)
