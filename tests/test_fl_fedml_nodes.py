"""fl_client_node x2 and aggregator_node as real ROS processes: labelled windows from task events are
stored locally, a federated round runs over FedML/gRPC, and each workstation announces its new model."""

from __future__ import annotations

import os
import sqlite3
import time

import numpy as np
import pytest
import yaml

from tests.fl_fedml_harness import free_ports

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]

WORKSTATIONS = ("ws1", "ws2")
LABELS = ["PEN", "ABD", "FEL"]
IMU_RATE_HZ = 50.0


def _federation(tmp_path) -> str:
    ports = free_ports(3)
    config = {
        "federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                 for r, n in enumerate(["aggregator", *WORKSTATIONS])],
                       "cert_dir": str(tmp_path / "certs"), "state_dir": str(tmp_path / "state")},
        "rounds": {"num_rounds": 1, "quorum": 2, "deadline_s": 120.0, "start_wait_s": 120.0},
        "strategy": {"name": "fedavg"},
        "client": {"epochs": 1, "lr": 0.003, "batch_size": 16, "uplink_encoding": "int8", "min_samples": 1,
                   "self_supervised": {"weight": 0.02, "min_windows": 2}},
        "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.1, "retry_max_s": 1.0, "send_give_up_s": 300.0,
                      "max_message_bytes": 8_000_000, "server_workers": 4},
        "learner": {"module": "hrc_fl.federated.core.intention_learner",
                    "options": {"labels": LABELS, "model": {"imu_window": 100, "imu_rate_hz": IMU_RATE_HZ}}},
        "seed": 1,
    }
    path = tmp_path / "federated.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _thread_nices(pid: int) -> dict[int, int]:
    """Thread id -> nice value for every thread of a process (Linux /proc: field 19 of task/<tid>/stat)."""
    from pathlib import Path

    nices = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        nices[int(stat.parent.name)] = int(fields[16])  # after "(comm)": state is field 3, nice field 19
    return nices


def _sample_count(db_path, table: str = "samples") -> int:
    try:
        with sqlite3.connect(str(db_path)) as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _publish_labelled_stream(ros_probe, publishers, rng, t0_s: float) -> None:
    """220 IMU samples at 50 Hz from ``t0_s`` on each workstation, then two labelled events and a bad one."""
    from hrc_fl_msgs.msg import TaskEvent
    from sensor_msgs.msg import Imu

    from hrc_fl.nodes.common import s_to_stamp

    for imu_pub, event_pub in publishers.values():
        for i in range(220):
            msg = Imu()
            msg.header.stamp = s_to_stamp(t0_s + i / IMU_RATE_HZ)
            a, w = rng.normal(0, 1, 3), rng.normal(0, 0.5, 3)
            msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = map(float, a)
            msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = map(float, w)
            imu_pub.publish(msg)
            ros_probe.spin_for(0.004)  # paced: best-effort IMU QoS with a shallow queue
        for k, label in enumerate(LABELS[:2]):
            event = TaskEvent(worker_id="worker1", label=label, source="task", window_s=0.5)
            event.header.stamp = s_to_stamp(t0_s + (219 - 30 * k) / IMU_RATE_HZ)
            event_pub.publish(event)
        bad = TaskEvent(worker_id="worker1", label="NOT_A_LABEL", source="task", window_s=0.5)
        bad.header.stamp = s_to_stamp(t0_s + 4.0)
        event_pub.publish(bad)


def test_fl_client_nodes_store_samples_train_and_announce_new_models(ros_probe, node_processes, tmp_path):
    from hrc_fl_msgs.msg import FederatedStatus, TaskEvent
    from sensor_msgs.msg import Imu
    from std_msgs.msg import String

    from hrc_fl.federated.transport.certs import generate_federation
    from hrc_fl.intention.model_store import ModelStore
    from hrc_fl.nodes.common import LATCHED_QOS, RESULT_QOS, SENSOR_QOS

    # Prepare: certificates, two workstation clients (started before the aggregator), their inputs
    config_path = _federation(tmp_path)
    generate_federation(tmp_path / "certs", ["aggregator", *WORKSTATIONS], valid_days=1)
    log_dir = tmp_path / "logs"
    clients = {}
    for ws in WORKSTATIONS:
        clients[ws] = node_processes.start(
            "fl_client_node", namespace=ws, param_files=("fl_client.yaml",), log_dir=log_dir,
            parameters={"workstation_id": ws, "labels": LABELS, "federation_config": config_path,
                        "sample_db": str(tmp_path / f"{ws}.sqlite"), "model_store_dir": str(tmp_path / f"models_{ws}")})
    models = {ws: ros_probe.collect(String, f"/{ws}/intention/model_available", LATCHED_QOS) for ws in WORKSTATIONS}
    client_status = ros_probe.collect(FederatedStatus, "/ws1/federated/status", LATCHED_QOS)
    plant_status = ros_probe.collect(FederatedStatus, "/plant/federated/status", LATCHED_QOS)
    statuses = {ws: ros_probe.collect(FederatedStatus, f"/{ws}/federated/status", LATCHED_QOS)
                for ws in WORKSTATIONS[1:]}
    statuses["ws1"] = client_status
    # The FedML client thread is up (its first status) before inputs flow: its import competes for the GIL.
    ros_probe.wait_until(lambda: all(statuses[ws] for ws in WORKSTATIONS), 180, "fl_client statuses")
    # The FL thread (and the gRPC/FedML threads it started) run at the configured lower priority, the
    # node's ROS thread does not: training must not take the CPU from perception and safety.
    # (relative to this test process's own nice value, which the node processes inherit)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nices = _thread_nices(clients["ws1"].nodes[0].process.pid).values()
    assert max(nices) == min(19, base + 10) and min(nices) == base, nices
    rng = np.random.default_rng(0)
    publishers = {ws: (ros_probe.publisher(Imu, f"/{ws}/wearable/imu", SENSOR_QOS),
                       ros_probe.publisher(TaskEvent, f"/{ws}/task/events", RESULT_QOS)) for ws in WORKSTATIONS}
    for imu_pub, event_pub in publishers.values():
        ros_probe.wait_for_subscribers(imu_pub, timeout_s=60)
        ros_probe.wait_for_subscribers(event_pub, timeout_s=60)
    for attempt in range(3):  # best-effort IMU may drop under load: a gap makes a window unusable
        if all(_sample_count(tmp_path / f"{ws}.sqlite") >= 2 for ws in WORKSTATIONS):
            break
        _publish_labelled_stream(ros_probe, publishers, rng, time.time() - 10.0 + attempt)
        try:
            ros_probe.wait_until(lambda: all(_sample_count(tmp_path / f"{ws}.sqlite") >= 2 for ws in WORKSTATIONS),
                                 20, "labelled samples in both stores")
        except AssertionError:
            continue
    assert all(_sample_count(tmp_path / f"{ws}.sqlite") >= 2 for ws in WORKSTATIONS)

    # Execute: the aggregator joins; one round runs
    aggregator = node_processes.start("aggregator_node", namespace="plant", param_files=("aggregator.yaml",),
                                      log_dir=log_dir, parameters={"federation_config": config_path})

    def done() -> bool:
        return any(s.state == "finished" for s in plant_status) and all(models[ws] for ws in WORKSTATIONS)

    try:
        ros_probe.wait_until(done, 300, "aggregator finished and both workstations announced a model")
    except AssertionError:
        logs = {p.name: p.read_text()[-1500:] for p in log_dir.glob("*.log")}
        raise AssertionError(f"federation did not finish: {logs}") from None

    # Assert: samples only with known labels, a new local model per workstation, statuses published
    for ws in WORKSTATIONS:
        with sqlite3.connect(str(tmp_path / f"{ws}.sqlite")) as db:
            labels = {row[0] for row in db.execute("SELECT label FROM samples")}
        assert labels <= set(LABELS[:2]) and labels
        version = models[ws][-1].data
        assert version in ModelStore(tmp_path / f"models_{ws}").versions()
        # unlabelled IMU windows were stored between the events (one per unlabelled_step_s = 2 s of IMU time)
        assert _sample_count(tmp_path / f"{ws}.sqlite", "unlabelled") >= 1
    # the client's round used them: its self-supervised term drew on labelled + unlabelled windows
    sent = [s for s in client_status if s.state == "sent"][-1]
    metrics = dict(zip(sent.metric_names, sent.metric_values, strict=True))
    with sqlite3.connect(str(tmp_path / "ws1.sqlite")) as db:
        labelled_imu = int(db.execute("SELECT COUNT(*) FROM samples WHERE imu IS NOT NULL").fetchone()[0])
    assert metrics["ssl_windows"] == labelled_imu + _sample_count(tmp_path / "ws1.sqlite", "unlabelled"), metrics
    finished = [s for s in plant_status if s.state == "finished"][-1]
    assert finished.role == "aggregator" and set(finished.participants) == set(WORKSTATIONS)
    assert {s.state for s in client_status} >= {"training", "sent"}
    assert (tmp_path / "state" / "checkpoint.json").is_file()
    # the aggregator process (its main thread and the federation thread) runs at nice +10 (aggregator.yaml)
    agg_pid = aggregator.nodes[0].process.pid
    assert _thread_nices(agg_pid)[agg_pid] == min(19, base + 10)
