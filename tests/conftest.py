"""Test fixtures: ROS domain isolation per pytest worker, rclpy contexts, node processes, built assets, torch
threads.

rclpy (and tests.rosutil, which imports it) is imported inside the fixtures, after this module has set the
ROS environment below; torch there too, since its import (4.4 s measured) would otherwise be paid by
every test session, most of which never use it."""

from __future__ import annotations

import hashlib
import os

import pytest

from hrc_fl.data import assets


def _domain_id() -> int:
    """A ROS domain for this worker: distinct per xdist worker and (very likely) per test run, so
    parallel workers and concurrent runs on one machine do not cross-talk (FACTS: they would)."""
    if "HRC_FL_TEST_DOMAIN" in os.environ:
        return int(os.environ["HRC_FL_TEST_DOMAIN"])
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getppid()))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = int(hashlib.sha256(run.encode()).hexdigest(), 16) % 80 + 1
    return base + index * 7 % 20


# Set before any rclpy import in test modules or child processes.
os.environ["ROS_DOMAIN_ID"] = str(_domain_id())
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture
def ros_context():
    """A fresh rclpy context on this worker's domain; shut down after the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.fixture
def ros_probe(ros_context):
    """A test-side node with helpers to publish, collect and wait (see tests/rosutil.py)."""
    from tests.rosutil import Probe

    probe = Probe(ros_context)
    try:
        yield probe
    finally:
        probe.close()


@pytest.fixture
def node_processes():
    """Start hrc_fl node executables as real processes; all are stopped after the test."""
    from tests.rosutil import NodeProcesses

    procs = NodeProcesses()
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def assets_built():
    """What ``hrc-fl setup-assets`` builds is there; else the module's tests fail naming the command.
    Use as ``pytestmark = pytest.mark.usefixtures("assets_built")``."""
    try:
        assets.require_assets()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: more torch intra-op threads only add contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
