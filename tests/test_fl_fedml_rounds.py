"""The FedML round server in process, driven by test clients over the real TLS transport: a stale-round
update is ignored, the round closes at its deadline with the quorum, the checkpoint records who counted."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from tests.fl_fedml_harness import free_ports

pytestmark = pytest.mark.timeout(500)


def _config(tmp_path):
    from hrc_fl.federated.fl_config import parse_config

    ports = free_ports(3)
    data = {"federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                     for r, n in enumerate(["aggregator", "ws1", "ws2"])],
                           "cert_dir": str(tmp_path / "certs"), "state_dir": str(tmp_path / "state")},
            "rounds": {"num_rounds": 1, "quorum": 1, "deadline_s": 3.0, "start_wait_s": 0.5},
            "strategy": {"name": "fedavg"},
            "client": {"epochs": 1, "lr": 0.1, "batch_size": 4, "uplink_encoding": "fp32", "min_samples": 1},
            "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.05, "retry_max_s": 0.5, "send_give_up_s": 120.0,
                          "max_message_bytes": 1_000_000, "server_workers": 2},
            "learner": {"module": "hrc_fl.federated.synthetic_learner"}}
    return parse_config(data, tmp_path)


def _update(round_index: int, delta: np.ndarray) -> dict:
    return {"msg_type": 3, "receiver": 0, "round": round_index, "num_samples": 5,
            "model_params": {"scheme": "fp32", "tensors": {"encoders.w": delta}, "scale_names": [],
                             "scales": np.zeros(0, np.float32)}, "metrics": {"train_s": 0.01}}


def test_stale_round_update_is_ignored_and_round_closes_at_deadline_with_quorum(tmp_path):
    from hrc_fl.federated.certs import generate_federation, load_node_credentials
    from hrc_fl.federated.fedml_adapter import run_server
    from hrc_fl.federated.registry import ModelRegistry
    from hrc_fl.federated.transport import SecureTransport

    # Prepare: the aggregator in a thread, two test clients speaking the wire protocol directly
    config = _config(tmp_path)
    generate_federation(config.cert_dir, ["aggregator", "ws1", "ws2"], valid_days=1)
    clients = {r: SecureTransport(config.nodes[r], config.nodes, load_node_credentials(config.cert_dir, n),
                                  config.transport) for r, n in ((1, "ws1"), (2, "ws2"))}
    for transport in clients.values():
        transport.start()
    statuses = []
    audit = tmp_path / "audit.jsonl"
    server = threading.Thread(target=run_server, args=(config, {"encoders.w": np.zeros(3, np.float32)}),
                              kwargs={"on_status": statuses.append, "audit_path": audit}, daemon=True)
    server.start()
    try:
        # Execute
        for rank, transport in clients.items():
            transport.send(0, {"msg_type": 5, "receiver": 0, "client_status": "ONLINE", "session": f"s{rank}"})
        syncs = {}
        for rank, transport in clients.items():
            while rank not in syncs:
                envelope = transport.receive(timeout_s=120)
                assert envelope is not None, "no round was opened"
                if envelope.params["msg_type"] == 6:  # the server's status request (it started after our hello)
                    transport.send(0, {"msg_type": 5, "receiver": 0, "client_status": "ONLINE", "session": f"s{rank}"})
                if envelope.params["msg_type"] == 2:
                    syncs[rank] = envelope.params
        clients[2].send(0, _update(0, np.full(3, 5.0, np.float32)))  # answers a round that is not open
        clients[1].send(0, _update(1, np.ones(3, np.float32)))
        finish = clients[1].receive(timeout_s=150)
        while finish is not None and finish.params["msg_type"] != 7:
            finish = clients[1].receive(timeout_s=150)
        server.join(timeout=30)
    finally:
        for transport in clients.values():
            transport.stop()

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
