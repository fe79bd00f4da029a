"""Unit tests of the FedML adapter's FedML-free parts: wire codec, certificates, transport authentication,
registry/checkpoint, sample store, federation config, uplink encoding, intention learner."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import time

import numpy as np
import pytest

from hrc_fl.federated.core import wire


# ----------------------------------------------------------------------------------------------- wire
def test_wire_roundtrip_keeps_structure_values_and_dtypes():
    params = {"msg_type": 3, "round": 7, "ok": True, "none": None, "name": "ws1", "x": 0.25,
              "model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "q": np.array([-3, 4], np.int8)},
              "list": [1, "two", {"t": np.ones(2, np.float16)}]}
    decoded = wire.decode(wire.encode(params))
    assert decoded["msg_type"] == 3 and decoded["ok"] is True and decoded["none"] is None and decoded["x"] == 0.25
    np.testing.assert_array_equal(decoded["model"]["a"], params["model"]["a"])
    assert decoded["model"]["q"].dtype == np.int8 and decoded["list"][2]["t"].dtype == np.float16
    assert decoded["list"][:2] == [1, "two"]


def test_wire_carries_nan_inside_tensors_for_the_strategy_to_reject():
    decoded = wire.decode(wire.encode({"t": np.array([np.nan, 1.0], np.float32)}))
    assert np.isnan(decoded["t"][0])


@pytest.mark.parametrize("value", [object(), {1: "int key"}, np.array(["s"], dtype=object), float("nan"),
                                   {"__tensor__": "t0"}])
def test_wire_refuses_to_encode_anything_but_plain_values_and_numeric_arrays(value):
    with pytest.raises(wire.WireError):
        wire.encode({"v": value})


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("payload", [pickle.dumps(_Exploit()), b"", b"\x00" * 7, b"\xff" * 64,
                                     (10).to_bytes(8, "little") + b"not json!!"])
def test_wire_refuses_pickles_and_garbage(payload):
    with pytest.raises(wire.WireError):
        wire.decode(payload)


def test_wire_refuses_oversized_payload_and_dangling_tensor_reference():
    from safetensors.numpy import save

    big = wire.encode({"t": np.zeros(1000, np.float32)})
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(big, max_bytes=1000)
    dangling = save({"t0": np.zeros(1, np.float32)},
                    metadata={wire.WIRE_KEY: wire.WIRE_VERSION, "structure": json.dumps({"x": {"__tensor__": "t9"}})})
    with pytest.raises(wire.WireError, match="missing tensor"):
        wire.decode(dangling)


# ---------------------------------------------------------------------------------------------- certs
def test_certificates_name_each_node_and_keys_are_private(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from hrc_fl.federated.transport.certs import generate_federation, load_node_credentials

    generate_federation(tmp_path, ["aggregator", "ws1"], valid_days=2)
    creds = load_node_credentials(tmp_path, "ws1")
    cert = x509.load_pem_x509_certificate(creds.certificate_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ws1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ws1" in sans.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE((tmp_path / "ws1.key").stat().st_mode) == 0o600
    (tmp_path / "ws2.crt").write_bytes((tmp_path / "ws1.crt").read_bytes())
    (tmp_path / "ws2.key").write_bytes((tmp_path / "ws1.key").read_bytes())
    with pytest.raises(ValueError, match="not the certificate of 'ws2'"):
        load_node_credentials(tmp_path, "ws2")
    with pytest.raises(FileNotFoundError, match="fl-certs"):
        load_node_credentials(tmp_path, "ws7")


def test_transport_refuses_a_member_claiming_another_rank_and_delivers_honest_messages(tmp_path):
    import grpc

    from hrc_fl.federated.core.fl_config import Peer, TransportConfig
    from hrc_fl.federated.transport.certs import generate_federation, load_node_credentials
    from hrc_fl.federated.transport.grpc_transport import METHOD, SecureTransport
    from tests.fl_fedml_harness import free_ports

    generate_federation(tmp_path, ["aggregator", "ws1", "ws2"], valid_days=1)
    ports = free_ports(3)
    peers = {r: Peer(n, r, "127.0.0.1", ports[r]) for r, n in enumerate(["aggregator", "ws1", "ws2"])}
    cfg = TransportConfig(5.0, 0.05, 0.5, 10.0, 1_000_000, 2)
    server = SecureTransport(peers[0], peers, load_node_credentials(tmp_path, "aggregator"), cfg)
    server.start()
    client = SecureTransport(peers[2], peers, load_node_credentials(tmp_path, "ws2"), cfg)
    try:
        client.send(0, {"msg_type": 5, "x": np.ones(2, np.float32)})
        honest = server.receive(timeout_s=20)
        with pytest.raises(grpc.RpcError) as refused:
            client.open_channel(peers[0]).unary_unary(METHOD)(wire.encode({"sender": 1}), timeout=5)
    finally:
        client.stop()
        server.stop()
    assert honest is not None and honest.sender_rank == 2 and honest.sender_name == "ws2"
    np.testing.assert_array_equal(honest.params["x"], np.ones(2, np.float32))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert server.counts()["refused_rank_mismatch"] == 1


def test_receive_queue_is_bounded_and_a_refused_sender_retries_until_delivered(tmp_path):
    from hrc_fl.federated.core.fl_config import Peer, TransportConfig
    from hrc_fl.federated.transport.certs import generate_federation, load_node_credentials
    from hrc_fl.federated.transport.grpc_transport import SecureTransport
    from tests.fl_fedml_harness import free_ports

    # Prepare: a receiver that holds at most 2 unhandled messages
    generate_federation(tmp_path, ["aggregator", "ws1"], valid_days=1)
    ports = free_ports(2)
    peers = {r: Peer(n, r, "127.0.0.1", ports[r]) for r, n in enumerate(["aggregator", "ws1"])}
    server = SecureTransport(peers[0], peers, load_node_credentials(tmp_path, "aggregator"),
                             TransportConfig(5.0, 0.05, 0.2, 60.0, 1_000_000, 2, max_queued_messages=2))
    server.start()
    client = SecureTransport(peers[1], peers, load_node_credentials(tmp_path, "ws1"),
                             TransportConfig(5.0, 0.05, 0.2, 60.0, 1_000_000, 2))
    try:
        # Execute: 5 messages while nobody reads; then read them all
        for i in range(5):
            client.send(0, {"msg_type": 5, "i": i})
        deadline = time.monotonic() + 30
        while server.counts().get("refused_queue_full", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        queued_while_full = server.counts().get("received", 0)
        received = [server.receive(timeout_s=30) for _ in range(5)]
    finally:
        client.stop()
        server.stop()
    # Assert: never more than the bound was held, the refused message was retried, nothing was lost
    assert server.counts()["refused_queue_full"] >= 1 and queued_while_full == 2
    assert [e.params["i"] for e in received if e is not None] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------- registry
def test_registry_checkpoint_points_at_last_committed_round_and_keeps_versions(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry

    registry = ModelRegistry(tmp_path)
    assert registry.latest() is None
    registry.commit_round(0, {"w": np.zeros(3, np.float32)}, {"initial": True})
    registry.commit_round(1, {"w": np.ones(3, np.float32)}, {"accepted": ["ws1"]})
    (tmp_path / "models" / ".v00002.safetensors.tmp").write_bytes(b"half written")  # a crash mid-write
    latest = ModelRegistry(tmp_path).latest()
    assert latest is not None and latest.round == 1 and latest.version == "v00001"
    np.testing.assert_array_equal(latest.tensors["w"], np.ones(3, np.float32))
    assert latest.meta["accepted"] == ["ws1"]
    assert registry.versions() == ["v00000", "v00001"]


# --------------------------------------------------------------------------------------- sample store
def _imu(value: float) -> np.ndarray:
    return np.full((10, 6), value, np.float32)


def test_sample_store_applies_count_and_age_retention_per_worker(tmp_path):
    from hrc_fl.federated.core.sample_store import SampleStore

    store = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=3, max_age_s=100.0)
    for i in range(5):
        store.add("w1", "A", 1000.0 + i, imu=_imu(i), hands=None, pose=None)
    store.add("w2", "A", 10.0, imu=_imu(9), hands=None, pose=None)
    store.add("w2", "B", 500.0, imu=None, hands=np.ones(4, np.float32), pose=None)  # w2's first is now too old
    loaded = store.load("w1", ["A", "B"], imu_window=10, hands_dim=4, pose_dim=2)
    assert store.count("w1") == 3 and store.count("w2") == 1
    assert loaded is not None and list(loaded.stamps_s) == [1002.0, 1003.0, 1004.0]
    assert float(loaded.imu[0, 0, 0]) == 2.0
    with sqlite3.connect(str(tmp_path / "s.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_sample_store_refuses_bad_samples_without_changing_the_store(tmp_path):
    from hrc_fl.federated.core.sample_store import SampleStore

    store = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=10, max_age_s=100.0)
    store.add("w1", "A", 1.0, imu=_imu(1), hands=None, pose=None)
    with pytest.raises(ValueError, match="non-finite"):
        store.add("w1", "A", 2.0, imu=_imu(np.nan), hands=None, pose=None)
    with pytest.raises(ValueError, match="at least one modality"):
        store.add("w1", "A", 3.0, imu=None, hands=None, pose=None)
    assert store.count("w1") == 1


def test_sample_store_load_marks_present_modalities_and_filters_labels_and_shapes(tmp_path):
    from hrc_fl.federated.core.sample_store import SampleStore

    store = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=10, max_age_s=100.0)
    store.add("w1", "A", 1.0, imu=_imu(1), hands=None, pose=np.ones(2, np.float32))
    store.add("w1", "B", 2.0, imu=None, hands=np.ones(4, np.float32), pose=None)
    store.add("w1", "OLD_LABEL", 3.0, imu=_imu(3), hands=None, pose=None)
    store.add("w1", "A", 4.0, imu=np.zeros((20, 6), np.float32), hands=None, pose=None)  # other window length
    loaded = store.load("w1", ["A", "B"], imu_window=10, hands_dim=4, pose_dim=2)
    assert loaded is not None
    assert list(loaded.y) == [0, 1]
    assert loaded.present.tolist() == [[True, False, True], [False, True, False]]
    assert not loaded.imu[1].any()


# ---------------------------------------------------------------------------------- config and uplink
def _config_dict(quorum: int = 1, encoding: str = "int8") -> dict:
    return {"federation": {"nodes": [{"name": "aggregator", "rank": 0, "host": "127.0.0.1", "port": 47000},
                                     {"name": "ws1", "rank": 1, "host": "127.0.0.1", "port": 47001}]},
            "rounds": {"num_rounds": 2, "quorum": quorum, "deadline_s": 5.0, "start_wait_s": 1.0},
            "client": {"epochs": 1, "lr": 0.1, "batch_size": 4, "uplink_encoding": encoding, "min_samples": 1},
            "transport": {"rpc_timeout_s": 1.0, "retry_initial_s": 0.1, "retry_max_s": 1.0, "send_give_up_s": 5.0,
                          "max_message_bytes": 100000, "server_workers": 2},
            "learner": {"module": "hrc_fl.federated.core.synthetic_learner"}}


def test_federation_config_validates_quorum_encoding_and_missing_keys(tmp_path):
    from hrc_fl.federated.core.fl_config import load_config, parse_config

    assert parse_config(_config_dict(), tmp_path).rank_of("ws1") == 1
    with pytest.raises(ValueError, match="quorum"):
        parse_config(_config_dict(quorum=2), tmp_path)
    with pytest.raises(ValueError, match="uplink_encoding"):
        parse_config(_config_dict(encoding="int4"), tmp_path)
    broken = _config_dict()
    del broken["rounds"]
    with pytest.raises(ValueError, match="rounds"):
        parse_config(broken, tmp_path)
    packaged = load_config()
    assert packaged.rounds.quorum <= len(packaged.client_ranks)
    if packaged.strategy["name"] == "median_anchored":  # the shipped rule can act on every round it closes
        assert packaged.rounds.quorum >= 2 * int(packaged.strategy["max_attackers"]) + 1
    three = _config_dict()
    three["federation"]["nodes"] += [{"name": f"ws{i}", "rank": i, "host": "127.0.0.1", "port": 47100 + i}
                                     for i in (2, 3)]
    three["rounds"]["quorum"] = 2
    with pytest.raises(ValueError, match=r"quorum 2 is below the 3 valid updates median_anchored needs"):
        parse_config({**three, "strategy": {"name": "median_anchored", "max_attackers": 1}}, tmp_path)
    assert parse_config({**three, "strategy": {"name": "median_anchored", "max_attackers": 0}},
                        tmp_path).rounds.quorum == 2
    with pytest.raises(ValueError, match="expected_clients"):  # the DP denominator below the configured clients
        parse_config({**_config_dict(), "strategy": {"name": "fedavg", "dp": {
            "clip_norm": 1.0, "noise_multiplier": 1.0, "expected_clients": 0}}}, tmp_path)


@pytest.mark.parametrize("scheme", ["fp32", "fp16", "int8"])
def test_uplink_encoding_survives_the_wire(scheme):
    from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update
    from hrc_fl.federated.transport.fedml_wire import decode_uplink, encode_uplink

    delta = {"encoders.a": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "encoders.b": np.ones(2, np.float32)}
    quantized = ErrorFeedbackCompressor(scheme=scheme).compress(delta)
    received = decode_uplink(wire.decode(wire.encode({"u": encode_uplink(quantized)}))["u"])
    for name, value in dequantize_update(received).items():
        np.testing.assert_allclose(value, delta[name], atol=0.01)


@pytest.mark.parametrize("bad", [None, {"tensors": [1, 2]}, {"tensors": {"a": 1.0}},
                                 {"tensors": {"a": np.ones(2, np.float32)}, "scale_names": ["a"],
                                  "scales": np.ones(3, np.float32)}])
def test_uplink_decoding_refuses_malformed_updates(bad):
    from hrc_fl.federated.transport.fedml_wire import decode_uplink

    with pytest.raises(ValueError):
        decode_uplink(bad)



@pytest.mark.parametrize(("tensors", "why"), [
    ({"encoders.a": np.ones((1,), np.float32), "encoders.b": np.ones(2, np.float32)}, "wrong shape"),  # broadcasts
    ({"encoders.a": np.ones((3, 5), np.float32), "encoders.b": np.ones(2, np.float32)}, "wrong shape"),  # oversized
    ({"encoders.a": np.ones((3, 4), np.float32)}, "names differ"),
    ({"encoders.a": np.ones((3, 4), np.float32), "encoders.b": np.ones(2, np.float32),
      "encoders.c": np.ones(1, np.float32)}, "names differ")])
def test_uplink_update_refuses_other_names_or_shapes_than_the_global_model(tensors, why):
    from hrc_fl.federated.core.compression import ErrorFeedbackCompressor
    from hrc_fl.federated.transport.fedml_wire import encode_uplink, uplink_update

    global_tensors = {"encoders.a": np.zeros((3, 4), np.float32), "encoders.b": np.zeros(2, np.float32)}
    payload = encode_uplink(ErrorFeedbackCompressor(scheme="int8").compress(tensors))
    with pytest.raises(ValueError, match=why):
        uplink_update("ws1", 1, 10, payload, global_tensors, {})
    good = {"encoders.a": np.full((3, 4), 0.5, np.float32), "encoders.b": np.ones(2, np.float32)}
    update, quantized, norm = uplink_update("ws1", 1, 10, encode_uplink(ErrorFeedbackCompressor(scheme="fp32")
                                                                        .compress(good)), global_tensors, {"loss": 1.0})
    assert update.round == 1 and update.num_samples == 10 and quantized.scheme == "fp32"
    np.testing.assert_array_equal(update.tensors["encoders.a"], good["encoders.a"])
    assert norm == pytest.approx(np.sqrt(12 * 0.25 + 2))


# ------------------------------------------------------------------------------------ intention learner
def test_intention_learner_runs_fedrep_shares_only_encoders_and_refreshes_the_head_before_saving(
        tmp_path, monkeypatch):
    import torch

    from hrc_fl.federated.core import training
    from hrc_fl.federated.core.intention_learner import IntentionLearner
    from hrc_fl.federated.core.sample_store import SampleStore
    from hrc_fl.intention.model import IntentionModelConfig
    from hrc_fl.intention.model_store import ModelStore

    samples = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=100, max_age_s=1e6)
    rng = np.random.default_rng(0)
    for i in range(12):
        samples.add("w1", ["A", "B"][i % 2], float(i), imu=rng.normal(0, 1, (32, 6)).astype(np.float32),
                    hands=None, pose=None)
    announced: list[str] = []
    learner = IntentionLearner(worker_id="w1", labels=["A", "B"],
                               model_config=IntentionModelConfig(num_classes=2, imu_window=32),
                               model_store=ModelStore(tmp_path / "models"), sample_store=samples, epochs=1, lr=0.01,
                               batch_size=4, seed=0, head_epochs=1, fine_tune_epochs=2, on_model=announced.append)
    calls: list[dict] = []
    real_train_local = training.train_local

    def spy(model, loader, **kwargs):
        calls.append(kwargs)
        return real_train_local(model, loader, **kwargs)

    monkeypatch.setattr(training, "train_local", spy)  # the core's loop must be the one that trains
    shared = learner.get_shared()
    head_before = {k: v.clone() for k, v in learner.model.head.state_dict().items()}
    # Execute: one FedRep round with a FedProx term, then a new global model arrives
    num, metrics = learner.train_round(1, {"proximal_mu": 0.5})
    trained_shared = learner.get_shared()
    round_calls = list(calls)
    head_after_round = {k: v.clone() for k, v in learner.model.head.state_dict().items()}
    global_shared = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in shared.items()}
    learner.set_shared(global_shared)
    learner.on_global_model(1, "v00001")
    # Assert: head first with encoders frozen, then encoders with head frozen and the proximal term
    assert [c["epochs"] for c in round_calls] == [1, 1]
    head_phase, encoder_phase = round_calls
    assert head_phase["trainable_prefixes"] and not any(n.startswith("encoders.")
                                                        for n in head_phase["trainable_prefixes"])
    assert tuple(encoder_phase["trainable_prefixes"]) == ("encoders.",)
    assert encoder_phase["proximal_mu"] == 0.5
    assert all(np.array_equal(encoder_phase["shared_reference"][k], v) for k, v in shared.items())
    assert shared and all(k.startswith("encoders.") for k in shared)
    assert any(not np.array_equal(trained_shared[k], shared[k]) for k in shared)
    assert num == 12 and np.isfinite(metrics["loss"])
    assert any(not np.allclose(head_before[k], v) for k, v in head_after_round.items())
    # ... and on the new global model the head is refreshed (encoders frozen) before the version is written
    assert calls[2]["epochs"] == 2 and calls[2]["trainable_prefixes"] == head_phase["trainable_prefixes"]
    assert announced and announced[0] in ModelStore(tmp_path / "models").versions()
    stored = ModelStore(tmp_path / "models").load(announced[0]).model.state_dict()
    for name, value in global_shared.items():
        np.testing.assert_array_equal(stored[name].numpy(), value)
    assert any(not torch.equal(stored[f"head.{k}"], v) for k, v in head_after_round.items())


# ------------------------------------------------------------------------------- DP state in the checkpoint
def test_restarted_aggregator_restores_the_dp_accountant_and_no_registry_file_holds_noise_state(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry
    from hrc_fl.federated.core.strategy_config import make_strategy
    from hrc_fl.federated.core.update import ClientUpdate
    from hrc_fl.federated.transport.fedml_server import resume_from_checkpoint, round_meta

    config = {"name": "fedavg", "dp": {"clip_norm": 1.0, "noise_multiplier": 0.8, "delta": 1e-5,
                                       "expected_clients": 3}}
    initial = {"encoders.w": np.zeros(16, np.float32)}

    def updates(round_index: int) -> list[ClientUpdate]:
        return [ClientUpdate(f"ws{i}", round_index, 10, {"encoders.w": np.full(16, 0.1 * i, np.float32)})
                for i in (1, 2, 3)]

    # Prepare: an aggregator runs 2 rounds, checkpointing each (what RoundServerManager does)
    uninterrupted = make_strategy(config)
    registry = ModelRegistry(tmp_path / "state")
    current, first_round, _ = resume_from_checkpoint(registry, uninterrupted, initial)
    for round_index in (1, 2):
        result = uninterrupted.aggregate(round_index, updates(round_index), current)
        registry.commit_round(round_index, result.tensors, round_meta(result, uninterrupted))
        current = result.tensors
    # Execute: a restarted aggregator (fresh strategy from the same config) resumes from the checkpoint
    restarted = make_strategy(config)
    resumed, next_round, version = resume_from_checkpoint(ModelRegistry(tmp_path / "state"), restarted, initial)
    after_restart = restarted.aggregate(3, updates(3), resumed)
    without_restart = uninterrupted.aggregate(3, updates(3), current)
    # Assert: round and model continue, epsilon keeps counting, no file holds a noise-generator state
    assert (first_round, next_round, version) == (1, 3, "v00002")
    np.testing.assert_array_equal(resumed["encoders.w"], current["encoders.w"])
    assert after_restart.metrics["epsilon"] == pytest.approx(without_restart.metrics["epsilon"])
    assert after_restart.metrics["epsilon"] > registry.load("v00002").meta["metrics"]["epsilon"] > 0
    assert not np.allclose(after_restart.tensors["encoders.w"], without_restart.tensors["encoders.w"])
    for version_name in registry.versions():
        assert "rng" not in json.dumps(registry.load(version_name).meta)
    # a checkpoint written by an older version with a generator state still resumes (the state is ignored)
    old = registry.load("v00002")
    registry.commit_round(2, old.tensors, {**old.meta, "strategy_state": {
        **old.meta["strategy_state"], "rng": {"bit_generator": "PCG64", "state": {"state": 1, "inc": 3}}}})
    again = make_strategy(config)
    resume_from_checkpoint(registry, again, initial)
    assert again.epsilon == pytest.approx(registry.load("v00002").meta["metrics"]["epsilon"])


def test_checkpoint_state_of_another_strategy_is_reported_not_fatal(tmp_path, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry
    from hrc_fl.federated.core.strategy_config import make_strategy
    from hrc_fl.federated.core.update import ClientUpdate
    from hrc_fl.federated.transport.fedml_server import resume_from_checkpoint, round_meta

    dp = make_strategy({"name": "fedavg", "dp": {"clip_norm": 1.0, "noise_multiplier": 1.0, "expected_clients": 1}})
    registry = ModelRegistry(tmp_path / "state")
    current, _, _ = resume_from_checkpoint(registry, dp, {"encoders.w": np.zeros(4, np.float32)})
    result = dp.aggregate(1, [ClientUpdate("ws1", 1, 5, {"encoders.w": np.ones(4, np.float32)})], current)
    registry.commit_round(1, result.tensors, round_meta(result, dp))
    # Execute: the config now names a rule without DP
    with caplog.at_level("WARNING"):
        _, next_round, _ = resume_from_checkpoint(registry, make_strategy({"name": "median"}), current)
    assert next_round == 2
    assert "strategy state in checkpoint v00001 not restored" in caplog.text


def test_importing_the_fl_nodes_commands_and_wire_helpers_does_not_import_fedml():
    # Prepare: a fresh interpreter (this test process may already hold FedML from another test)
    import subprocess
    import sys

    code = ("import sys\n"
            "import hrc_fl.nodes.fl_client, hrc_fl.nodes.aggregator, hrc_fl.commands.fl_client\n"
            "import hrc_fl.commands.aggregator, hrc_fl.federated.transport.fedml_wire\n"
            "print('FEDML_LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'fedml')[:3])\n"
            "import hrc_fl.federated.transport.fedml_client\n"
            "print('FEDML_AFTER_CLIENT', 'fedml' in sys.modules)\n")

    # Execute
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)

    # Assert: FedML comes only with the FL modules (fedml_runtime), not with a node, command or wire import
    assert "FEDML_LOADED []" in out.stdout, out.stdout + out.stderr
    assert "FEDML_AFTER_CLIENT True" in out.stdout, out.stdout + out.stderr
