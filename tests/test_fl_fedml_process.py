"""Real FedML processes on loopback: 3 workstations + aggregator over mutual TLS, with attacks on the port.

One federation runs once per test session, also under xdist (FedML's import alone costs ~10 CPU-seconds per
process); each test asserts one aspect of that run.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.fl_fedml_harness import FederationRun, read_log, run_once

CLIENTS = ["ws1", "ws2", "ws3"]
pytestmark = pytest.mark.xdist_group(name="fl_fedml_process")  # one worker runs the session fixture once

ROUNDS = 3


class _TouchMarker:
    """Unpickling this object creates a file: proof that a payload was (or was not) executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _call(channel: grpc.Channel, payload: bytes) -> grpc.StatusCode | None:
    from hrc_fl.federated.transport.grpc_transport import METHOD

    try:
        channel.unary_unary(METHOD)(payload, timeout=5.0)
    except grpc.RpcError as exc:
        return exc.code()
    return None


def _tls_channel(run: FederationRun, cert_dir: Path, name: str) -> grpc.Channel:
    server = run.config["federation"]["nodes"][0]
    creds = grpc.ssl_channel_credentials(
        root_certificates=(run.root / "certs" / "ca.crt").read_bytes(),
        private_key=(cert_dir / f"{name}.key").read_bytes(),
        certificate_chain=(cert_dir / f"{name}.crt").read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{server['port']}", creds,
                               options=[("grpc.ssl_target_name_override", "aggregator")])


def _run_federation(root: Path) -> dict:
    from hrc_fl.federated.core import wire
    from hrc_fl.federated.transport.certs import generate_federation

    # Prepare
    run = FederationRun(root, CLIENTS, rounds={"num_rounds": ROUNDS, "quorum": 2, "deadline_s": 60.0,
                                               "start_wait_s": 60.0},
                        strategy={"name": "fedavg"}, learner_options={})
    probe_log = root / "guard_probe.log"
    env = dict(run.env, HRC_FL_NET_GUARD_LOG=str(probe_log))
    probe = subprocess.run([sys.executable, "-c", "import socket\ntry:\n socket.create_connection(('10.255.255.1', 80),"
                            " timeout=2)\nexcept OSError as e:\n print('refused', e)"],
                           env=env, capture_output=True, text=True, timeout=60)
    marker = root / "pickle_was_executed"
    rogue_dir, intruder_dir = root / "rogue", root / "intruder"
    generate_federation(rogue_dir, ["ws2"], valid_days=1)  # right name, wrong CA
    generate_federation(root / "certs", ["ws9"], valid_days=1)  # right CA, not a member
    intruder_dir.mkdir()
    (root / "certs" / "ws9.crt").rename(intruder_dir / "ws9.crt")
    (root / "certs" / "ws9.key").rename(intruder_dir / "ws9.key")
    attacks: dict[str, grpc.StatusCode | None] = {}
    try:
        # Execute: the clients first (they must retry; their FedML imports overlap), then the server, attacks.
        run.start_client("ws1")
        run.start_clients("ws2_ws3", CLIENTS[1:])  # two clients in one process (fewer FedML imports)
        run.wait_for_log("ws1", r"not reachable .* retrying with back-off", 400)  # imports crawl under load
        run.start_aggregator()
        run.wait_for_log("aggregator", r"listening with mutual TLS", 180)
        pickle_payload = pickle.dumps(_TouchMarker(marker))
        attacks["pickle_authenticated"] = _call(_tls_channel(run, root / "certs", "ws3"), pickle_payload)
        attacks["pickle_plaintext"] = _call(
            grpc.insecure_channel(f"127.0.0.1:{run.config['federation']['nodes'][0]['port']}"), pickle_payload)
        hello = wire.encode({"msg_type": 5, "sender": 2, "receiver": 0, "client_status": "ONLINE"})
        attacks["rogue_ca"] = _call(_tls_channel(run, rogue_dir, "ws2"), hello)
        attacks["unknown_member"] = _call(_tls_channel(run, intruder_dir, "ws9"), hello)
        codes = {key: run.wait_exit(key, 240) for key in ["aggregator", "ws1", "ws2_ws3"]}
    finally:
        run.stop_all()
    return run.summary(codes=codes, attacks={k: None if v is None else v.name for k, v in attacks.items()},
                       marker=str(marker), probe_stdout=probe.stdout, probe_log=str(probe_log))


@pytest.fixture(scope="session")
def federation(tmp_path_factory):
    return run_once(tmp_path_factory, "fl_fedml_process", _run_federation)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_clients_finish_all_rounds_with_equal_shared_layers_and_personal_heads(federation):
    root = Path(federation["root"])
    # Assert: every process exited cleanly, every round is in the registry
    assert federation["codes"] == {"aggregator": 0, "ws1": 0, "ws2_ws3": 0}, read_log(federation, "aggregator")[-2000:]
    checkpoint = json.loads((root / "state" / "checkpoint.json").read_text())
    assert checkpoint["round"] == ROUNDS
    versions = sorted(p.stem for p in (root / "state" / "models").glob("v*.safetensors"))
    assert versions == [f"v{r:05d}" for r in range(ROUNDS + 1)]
    snapshots = {n: load_file(str(root / "snapshots" / f"{n}.safetensors")) for n in CLIENTS}
    final_global = load_file(str(root / "state" / "models" / f"v{ROUNDS:05d}.safetensors"))
    shared = sorted(k for k in snapshots["ws1"] if k.startswith("encoders."))
    heads = sorted(k for k in snapshots["ws1"] if k.startswith("head."))
    assert shared and heads
    assert sorted(final_global) == shared
    for name in CLIENTS:
        for key in shared:
            np.testing.assert_array_equal(snapshots[name][key], final_global[key])
    assert not np.allclose(snapshots["ws1"]["head.weight"], snapshots["ws2"]["head.weight"])
    assert not np.allclose(snapshots["ws2"]["head.weight"], snapshots["ws3"]["head.weight"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_uplink_payload_holds_only_shared_layer_tensors(federation):
    root = Path(federation["root"])
    lines = [json.loads(line) for line in Path(federation["audit"]).read_text().splitlines()]
    final_global = load_file(str(root / "state" / "models" / f"v{ROUNDS:05d}.safetensors"))
    # Assert: one update per client per round (at least), each carrying exactly the shared tensor names
    assert {(line["round"], line["client"]) for line in lines} == {(r, c) for r in range(1, ROUNDS + 1)
                                                                    for c in CLIENTS}
    for line in lines:
        assert line["tensors"] == sorted(final_global), line
        assert not any(name.startswith("head") for name in line["tensors"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_client_started_before_server_retries_and_finishes(federation):
    text = read_log(federation, "ws1")
    assert "retrying with back-off" in text
    assert "delivered" in text and "client ws1 finished" in text
    assert federation["codes"]["ws1"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_process_attempts_an_outbound_connection(federation):
    # Assert: the guard is really active in child processes (probe refused and logged) ...
    assert "refused" in federation["probe_stdout"]
    assert "10.255.255.1" in Path(federation["probe_log"]).read_text()
    # ... and no FL process tried to leave the machine, while the run completed.
    guard_log = Path(federation["guard_log"])
    attempts = guard_log.read_text() if guard_log.exists() else ""
    assert attempts == ""
    assert federation["codes"]["aggregator"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pickle_payload_is_refused_logged_and_never_executed(federation):
    assert federation["attacks"]["pickle_authenticated"] == grpc.StatusCode.INVALID_ARGUMENT.name
    assert federation["attacks"]["pickle_plaintext"] is not None
    assert not Path(federation["marker"]).exists()
    assert "refused payload" in read_log(federation, "aggregator")
    assert federation["codes"]["aggregator"] == 0  # the service kept running and finished its rounds


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_unauthenticated_clients_are_refused(federation):
    attacks = federation["attacks"]
    assert attacks["rogue_ca"] is not None  # TLS handshake fails: certificate not from the federation CA
    assert attacks["unknown_member"] == grpc.StatusCode.PERMISSION_DENIED.name
    assert "refused message from unknown peer 'ws9'" in read_log(federation, "aggregator")
    lines = [json.loads(line) for line in Path(federation["audit"]).read_text().splitlines()]
    assert {line["client"] for line in lines} == set(CLIENTS)
