"""The FedML round server in process, driven by test clients over the real TLS transport: a stale-round
update is ignored, the round closes at its deadline with the quorum, the checkpoint records who counted;
a client that skips a round says so (the round does not wait for it, and is asked again without quorum)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from tests.fl_fedml_harness import free_ports

pytestmark = pytest.mark.timeout(500)


def _config(tmp_path, names=("ws1", "ws2"), strategy=None, **rounds):
    from hrc_fl.federated.core.fl_config import parse_config

    ports = free_ports(len(names) + 1)
    data = {"federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                     for r, n in enumerate(["aggregator", *names])],
                           "cert_dir": str(tmp_path / "certs"), "state_dir": str(tmp_path / "state")},
            "rounds": {"num_rounds": 1, "quorum": 1, "deadline_s": 3.0, "start_wait_s": 0.5, **rounds},
            "strategy": strategy or {"name": "fedavg"},
            "client": {"epochs": 1, "lr": 0.1, "batch_size": 4, "uplink_encoding": "fp32", "min_samples": 1},
            "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.05, "retry_max_s": 0.5, "send_give_up_s": 120.0,
                          "max_message_bytes": 1_000_000, "server_workers": 2},
            "learner": {"module": "hrc_fl.federated.core.synthetic_learner"}}
    return parse_config(data, tmp_path)


def _update(round_index: int, delta: np.ndarray) -> dict:
    return {"msg_type": 3, "receiver": 0, "round": round_index, "num_samples": 5,
            "model_params": {"scheme": "fp32", "tensors": {"encoders.w": delta}, "scale_names": [],
                             "scales": np.zeros(0, np.float32)}, "metrics": {"train_s": 0.01}}


def test_stale_round_update_is_ignored_and_round_closes_at_deadline_with_quorum(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare: the aggregator in a thread, two test clients speaking the wire protocol directly
    config = _config(tmp_path)
    statuses, audit = [], tmp_path / "audit.jsonl"
    server, clients, syncs = _start_round(config, statuses, audit)
    # Execute: ws2 answers a round that is not open
    finish = _answer_and_finish(server, clients, [(2, _update(0, np.full(3, 5.0, np.float32))),
                                                  (1, _update(1, np.ones(3, np.float32)))])

    # Assert
    assert all(s["round"] == 1 for s in syncs.values())
    assert finish is not None and finish.params["model_version"] == "v00001"
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.ones(3))
    meta = ModelRegistry(config.state_dir).latest().meta
    assert meta["accepted"] == ["ws1"] and meta["rejected"] == {}
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["round"], line["client"]) for line in lines] == [(1, "ws1")]
    done = [s for s in statuses if s.state == "done"]
    assert done and done[-1].metrics["num_accepted"] == 1.0


def _skip(round_index: int) -> dict:
    return {"msg_type": 3, "receiver": 0, "round": round_index, "num_samples": 0,
            "skipped": "3 labelled samples < min_samples 8"}


def _start_round(config, statuses, audit):
    """The aggregator in a thread and two test clients that said hello; returns them and each client's
    first sync (params)."""
    from hrc_fl.federated.transport.certs import generate_federation, load_node_credentials
    from hrc_fl.federated.transport.fedml_server import run_server
    from hrc_fl.federated.transport.grpc_transport import SecureTransport

    generate_federation(config.cert_dir, [p.name for p in config.nodes.values()], valid_days=1)
    clients = {r: SecureTransport(config.nodes[r], config.nodes, load_node_credentials(config.cert_dir, p.name),
                                  config.transport) for r, p in config.nodes.items() if r != 0}
    for transport in clients.values():
        transport.start()
    server = threading.Thread(target=run_server, args=(config, {"encoders.w": np.zeros(3, np.float32)}),
                              kwargs={"on_status": statuses.append, "audit_path": audit}, daemon=True)
    server.start()
    for rank, transport in clients.items():
        transport.send(0, {"msg_type": 5, "receiver": 0, "client_status": "ONLINE", "session": f"s{rank}"})
    syncs = {rank: _next(transport, 2, hello_rank=rank) for rank, transport in clients.items()}
    assert all(syncs.values()), "no round was opened"
    return server, clients, {rank: envelope.params for rank, envelope in syncs.items()}


def _answer_and_finish(server, clients, answers) -> object:
    """Send ``answers`` ((rank, params) pairs) and return the final model ws1 receives (None: none came)."""
    try:
        for rank, params in answers:
            clients[rank].send(0, params)
        finish = _next(clients[1], 7, timeout_s=150)
        server.join(timeout=30)
    finally:
        for transport in clients.values():
            transport.stop()
    return finish


def _next(transport, msg_type: int, hello_rank: int = 0, timeout_s: float = 120.0):
    """The next message of ``msg_type`` (answering status requests on the way), or None."""
    while True:
        envelope = transport.receive(timeout_s=timeout_s)
        if envelope is None:
            return None
        if envelope.params["msg_type"] == 6 and hello_rank:
            transport.send(0, {"msg_type": 5, "receiver": 0, "client_status": "ONLINE", "session": f"s{hello_rank}"})
        if envelope.params["msg_type"] == msg_type:
            return envelope


def test_a_client_that_skips_does_not_hold_the_round_until_its_deadline(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare: a deadline far beyond the test's timeout, so only the skip notice can close the round
    config = _config(tmp_path, deadline_s=3600.0)
    statuses, audit = [], tmp_path / "audit.jsonl"
    server, clients, _ = _start_round(config, statuses, audit)
    # Execute: ws2 has too few samples and says so; ws1 trains
    finish = _answer_and_finish(server, clients, [(2, _skip(1)), (1, _update(1, np.ones(3, np.float32)))])

    # Assert: the round closed with ws1's update; ws2 is neither accepted nor rejected, the audit says skipped
    assert finish is not None and finish.params["model_version"] == "v00001"
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.ones(3))
    meta = ModelRegistry(config.state_dir).latest().meta
    assert meta["accepted"] == ["ws1"] and meta["rejected"] == {}
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sorted((line["client"], line["scheme"]) for line in lines) == [("ws1", "fp32"), ("ws2", "skipped")]


def test_without_quorum_a_skipped_client_is_asked_again_at_the_deadline(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare: both clients are needed (quorum 2)
    config = _config(tmp_path, quorum=2, deadline_s=2.0)
    statuses, audit = [], tmp_path / "audit.jsonl"
    server, clients, _ = _start_round(config, statuses, audit)
    try:
        # Execute: ws2 skips, ws1 answers: no quorum, so the round stays open and ws2 gets round 1 again
        clients[2].send(0, _skip(1))
        clients[1].send(0, _update(1, np.ones(3, np.float32)))
        again = _next(clients[2], 2, timeout_s=60)
        assert again is not None and again.params["round"] == 1
        clients[2].send(0, _update(1, np.full(3, 3.0, np.float32)))
        finish = _next(clients[1], 7, timeout_s=150)
        server.join(timeout=30)
    finally:
        for transport in clients.values():
            transport.stop()

    # Assert: one round, both updates in it (FedAvg of 1 and 3 with equal sample counts)
    assert finish is not None and finish.params["model_version"] == "v00001"
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.full(3, 2.0))
    assert sorted(ModelRegistry(config.state_dir).latest().meta["accepted"]) == ["ws1", "ws2"]


def test_malformed_updates_are_rejected_with_one_line_each_and_the_round_closes_without_its_deadline(
        tmp_path, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare: a deadline far beyond the test's timeout, so only the answers can close the round
    config = _config(tmp_path, names=("ws1", "ws2", "ws3", "ws4"), deadline_s=3600.0)
    statuses, audit = [], tmp_path / "audit.jsonl"
    caplog.set_level("INFO", logger="hrc_fl.federated")
    server, clients, _ = _start_round(config, statuses, audit)
    # Execute: one honest update; a (1,) delta that would broadcast, a NaN delta, an oversized delta
    finish = _answer_and_finish(server, clients, [
        (1, _update(1, np.ones(3, np.float32))), (2, _update(1, np.ones(1, np.float32))),
        (3, _update(1, np.array([1.0, np.nan, 0.0], np.float32))), (4, _update(1, np.ones(3000, np.float32)))])

    # Assert: the round closed on the answers (the deadline is an hour away) with only ws1's update
    assert finish is not None and finish.params["model_version"] == "v00001"
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.ones(3))
    meta = ModelRegistry(config.state_dir).latest().meta
    assert meta["accepted"] == ["ws1"] and sorted(meta["rejected"]) == ["ws2", "ws3", "ws4"]
    assert "(1,) != (3,)" in meta["rejected"]["ws2"] and "non-finite" in meta["rejected"]["ws3"]
    assert "(3000,) != (3,)" in meta["rejected"]["ws4"]
    done = [s for s in statuses if s.state == "done"]
    assert done[-1].metrics["num_accepted"] == 1.0 and done[-1].metrics["num_rejected"] == 3.0
    for name in ("ws2", "ws3", "ws4"):  # one clear line per rejected update, at warning level
        lines = [r for r in caplog.records if name in r.getMessage() and r.levelname == "WARNING"]
        assert len(lines) == 1 and "rejected update" in lines[0].getMessage(), [r.getMessage() for r in lines]


def _three_workstation_round(tmp_path, caplog, strategy, values):
    """One round of 3 workstations under ``strategy``; workstation k sends a delta of 3 x ``values[k]``.
    Returns (finish message, config, statuses)."""
    config = _config(tmp_path, names=("ws1", "ws2", "ws3"), strategy=strategy, deadline_s=3600.0, quorum=3)
    statuses, audit = [], tmp_path / "audit.jsonl"
    caplog.set_level("INFO", logger="hrc_fl.federated")
    server, clients, _ = _start_round(config, statuses, audit)
    finish = _answer_and_finish(server, clients, [(k + 1, _update(1, np.full(3, v, np.float32)))
                                                  for k, v in enumerate(values)])
    assert finish is not None
    return finish, config, statuses


def test_the_deployed_trimmed_mean_of_three_runs_the_median_and_says_so(tmp_path, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: the old shipped rule at the shipped size (trim_fraction 0.2 trims nothing), one
    # client far off
    finish, config, statuses = _three_workstation_round(
        tmp_path, caplog, {"name": "trimmed_mean", "trim_fraction": 0.2}, (1.0, 2.0, 1000.0))
    # Assert: the median ran (a plain mean would be ~334), and the registry, status and log say so
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.full(3, 2.0))
    assert ModelRegistry(config.state_dir).latest().meta["rule"] == "coordinate_median"
    assert [s for s in statuses if s.state == "done"][-1].metrics["median_fallback"] == 1.0
    assert "rule coordinate_median" in caplog.text


def test_the_deployed_median_anchored_mean_of_three_drops_a_flipped_update_and_says_so(tmp_path, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: the shipped rule (config/federated.yaml) at the shipped size; ws3 sends the others'
    # step sign-flipped and scaled
    finish, config, statuses = _three_workstation_round(
        tmp_path, caplog, {"name": "median_anchored", "max_attackers": 1}, (1.0, 2.0, -6.0))
    # Assert: the honest mean (a coordinate median would give 1.0), and the registry, status and log say so
    np.testing.assert_allclose(finish.params["model_params"]["encoders.w"], np.full(3, 1.5))
    meta = ModelRegistry(config.state_dir).latest().meta
    assert meta["rule"] == "median_anchored" and meta["metrics"]["num_filtered"] == 1.0
    done = [s for s in statuses if s.state == "done"][-1].metrics
    assert done["num_filtered"] == 1.0 and done["median_fallback"] == 0.0 and done["kept_current"] == 0.0
    assert "rule median_anchored" in caplog.text
