"""Secure aggregation over the real FedML transport: the round server (FedML comm manager, mutual TLS,
wire codec) in process, driven by workstations that run the SecAgg client protocol over their own TLS
transports, some of them faulty on purpose. The sum is exact; nothing unmasked reaches the aggregator's
wire, logs or state; dropouts after masking are recovered up to max_dropouts, more fail the round clearly
and the next one runs; forged adverts, corrupt shares and replayed messages are refused with one line."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.fl_fedml_harness import free_ports

pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group(name="fl_fedml_secagg")]

VECTOR = 1500
CLIP = 1.0
SCALE = 2.0 ** 20


def _config(tmp_path: Path, num_clients: int, *, num_rounds: int, max_dropouts: int, quorum: int = 2,
            dp: dict | None = None, **secure):
    from hrc_fl.federated.core.fl_config import parse_config

    names = [f"ws{i}" for i in range(1, num_clients + 1)]
    ports = free_ports(num_clients + 1)
    data = {"federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                     for r, n in enumerate(["aggregator", *names])],
                           "cert_dir": str(tmp_path / "certs"), "state_dir": str(tmp_path / "state")},
            # the deadline is far beyond the test's timeout: only answers and phase timeouts move a round
            "rounds": {"num_rounds": num_rounds, "quorum": quorum, "deadline_s": 3600.0, "start_wait_s": 0.5},
            "strategy": {"name": "fedavg", "max_update_norm": CLIP, **({"dp": dp} if dp else {})},
            "secure_aggregation": {"enabled": True, "max_dropouts": max_dropouts, "scale": SCALE,
                                   "phase_timeout_s": 2.0, **secure},
            "client": {"epochs": 1, "lr": 0.1, "batch_size": 4, "uplink_encoding": "int8", "min_samples": 1},
            "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.05, "retry_max_s": 0.5, "send_give_up_s": 120.0,
                          "max_message_bytes": 4_000_000, "server_workers": 4},
            "learner": {"module": "hrc_fl.federated.core.synthetic_learner"}}
    return parse_config(data, tmp_path)


class Workstation(threading.Thread):
    """One workstation speaking the SecAgg client protocol over its own mutual-TLS transport.

    ``updates[round]``: its flat update; ``stop_at[round]``: the request it stops answering at (it drops);
    ``forge[round]``: ``signature`` (an advert whose signature does not verify) or ``share`` (the share for
    the first neighbour corrupted); ``replay_in``: the round in which it first sends its round-1 advert again."""

    def __init__(self, config, rank: int, updates: dict[int, np.ndarray], *, stop_at: dict[int, str] | None = None,
                 forge: dict[int, str] | None = None, replay_in: int = 0) -> None:
        from hrc_fl.federated.transport.certs import load_node_credentials
        from hrc_fl.federated.transport.grpc_transport import SecureTransport

        super().__init__(daemon=True)
        self.rank, self.name = rank, config.nodes[rank].name
        self.credentials = load_node_credentials(config.cert_dir, self.name)
        self.transport = SecureTransport(config.nodes[rank], config.nodes, self.credentials, config.transport)
        self.updates, self.stop_at, self.forge = updates, stop_at or {}, forge or {}
        self.replay_in = replay_in
        self.sent: dict[tuple[int, str], bytes] = {}
        self.final: dict | None = None
        self.client = None
        self.round = 0

    def hello(self) -> None:
        self.transport.send(0, {"msg_type": 5, "receiver": 0, "client_status": "ONLINE", "session": self.name})

    def _send(self, phase: str, payload: bytes, refused: dict | None = None, round_index: int | None = None) -> None:
        round_index = self.round if round_index is None else round_index
        self.sent.setdefault((round_index, phase), payload)
        self.transport.send(0, {"msg_type": 9, "receiver": 0, "round": round_index, "phase": phase,
                                "secagg": np.frombuffer(payload, np.uint8).copy(), "refused": refused or {}})

    def run(self) -> None:
        from hrc_fl.federated.core import secagg

        while True:
            envelope = self.transport.receive(timeout_s=120)
            if envelope is None:
                return
            p = envelope.params
            if p["msg_type"] == 6:
                self.hello()
            elif p["msg_type"] == 7:
                self.final = p
                return
            elif p["msg_type"] == 2:
                self.round = int(p["round"])
                params = secagg.decode_params(p["secagg"].tobytes())
                self.client = secagg.SecAggClient(params, self.name, signing_key_pem=self.credentials.private_key_pem,
                                                  certificate_pem=self.credentials.certificate_pem,
                                                  ca_certificate_pem=self.credentials.ca_certificate_pem)
                advert = self.client.advertise()
                if self.forge.get(self.round) == "signature":
                    advert = secagg.KeyAdvert(advert.round_id, advert.sender, advert.cipher_public,
                                              bytes(32), advert.seed_commitment, advert.certificate_pem,
                                              advert.signature)  # mask key swapped: the signature no longer holds
                if self.replay_in == self.round:
                    self._send("advert", self.sent[(1, "advert")])
                    self.sent.pop((self.round, "advert"), None)
                self._send("advert", secagg.encode_message(advert))
            elif p["msg_type"] == 8:
                self._phase(p["phase"], p["secagg"].tobytes(), p.get("names") or [])

    def _phase(self, request: str, payload: bytes, names: list[str]) -> None:
        from hrc_fl.federated.core import secagg

        if self.stop_at.get(self.round) == request:
            return  # this workstation drops here
        params = self.client.params
        if request == "share":
            shares = self.client.share_keys(secagg.decode_messages(payload, params))
            if self.forge.get(self.round) == "share":
                bad = shares[0]
                shares[0] = secagg.EncryptedShare(bad.round_id, bad.sender, bad.receiver, bad.nonce,
                                                  bytes([bad.ciphertext[0] ^ 1]) + bad.ciphertext[1:])
            self._send("shares", secagg.encode_messages(shares))
        elif request == "check":
            self._send("checked", b"", self.client.receive_shares(secagg.decode_messages(payload, params)))
        elif request == "mask":
            self._send("masked", secagg.encode_message(self.client.masked_input(self.updates[self.round], names)))
        elif request == "unmask":
            self._send("unmasked", secagg.encode_message(self.client.unmask(secagg.decode_message(payload, params))))


def _federation(tmp_path, monkeypatch, config, workstations_kw):
    """Certificates, the aggregator (run_server) in a thread with every payload it receives captured, and
    the workstations started; returns (server thread, workstations, captured payloads, statuses)."""
    from hrc_fl.federated.transport import grpc_transport as transport_module
    from hrc_fl.federated.transport.certs import generate_federation
    from hrc_fl.federated.transport.fedml_server import run_server

    generate_federation(config.cert_dir, [p.name for p in config.nodes.values()], valid_days=1)
    captured: list[bytes] = []
    original = transport_module.SecureTransport._handle

    def capture(self, request, context):
        if self.own.rank == 0:
            captured.append(bytes(request))
        return original(self, request, context)

    monkeypatch.setattr(transport_module.SecureTransport, "_handle", capture)
    statuses: list = []
    server = threading.Thread(target=run_server, args=(config, {"encoders.w": np.zeros(VECTOR, np.float32)}),
                              kwargs={"on_status": statuses.append, "audit_path": tmp_path / "audit.jsonl"},
                              daemon=True)
    workstations = [Workstation(config, rank, **workstations_kw(rank)) for rank in config.client_ranks]
    for ws in workstations:
        ws.transport.start()
        ws.start()
    server.start()
    for ws in workstations:
        ws.hello()
    return server, workstations, captured, statuses


def _finish(server, workstations) -> None:
    try:
        for ws in workstations:
            ws.join(timeout=150)
        server.join(timeout=30)
    finally:
        for ws in workstations:
            ws.transport.stop()
    assert not server.is_alive(), "the aggregator did not finish"


def _run(tmp_path, monkeypatch, caplog, num_clients: int, rounds: tuple[int, ...], behaviour, **config_kw):
    """A whole secure federation: each workstation ``ws<rank>`` sends fresh random updates, misbehaving as
    ``behaviour(rank)`` (Workstation keywords) says. Returns (config, names, updates, workstations,
    captured payloads, statuses) once every workstation got the final model."""
    caplog.set_level("INFO", logger="hrc_fl")
    config = _config(tmp_path, num_clients, num_rounds=len(rounds), **config_kw)
    names = [config.nodes[r].name for r in config.client_ranks]
    updates = _updates(names, rounds)
    server, workstations, captured, statuses = _federation(
        tmp_path, monkeypatch, config, lambda rank: {"updates": updates[f"ws{rank}"], **behaviour(rank)})
    _finish(server, workstations)
    return config, names, updates, workstations, captured, statuses


def _plain_sum(updates, clip: float = CLIP, scale: float = SCALE) -> np.ndarray:
    """The plain fixed-point sum, computed here: each coordinate clipped, scaled, rounded, summed as integers."""
    ints = sum(np.rint(np.clip(u, -clip, clip) * scale).astype(np.int64) for u in updates)
    return ints.astype(np.float64) / scale


def _updates(names, rounds, seed=5):
    rng = np.random.default_rng(seed)
    return {n: {r: rng.normal(0.0, 0.01, VECTOR) for r in rounds} for n in names}


def _windows(update: np.ndarray) -> list[bytes]:
    """32-byte pieces of every plain form of ``update`` a careless aggregator could hold: the fixed-point
    ring values (uint32) and the floats (float32, float64)."""
    fixed = (np.rint(np.clip(update, -CLIP, CLIP) * SCALE).astype(np.int64) & 0xFFFFFFFF).astype("<u4").tobytes()
    forms = (fixed, update.astype("<f4").tobytes(), update.astype("<f8").tobytes())
    return [form[i:i + 32] for form in forms for i in range(0, 32 * 40, 32)]


def test_secure_rounds_over_fedml_sum_exactly_and_survive_a_drop_after_masking(tmp_path, monkeypatch, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: 5 workstations (4 neighbours each, 3 shares unmask), one dropout allowed; in round 2
    # ws5 drops after its shares were confirmed, before it sends its masked input
    config, names, updates, workstations, captured, statuses = _run(
        tmp_path, monkeypatch, caplog, 5, (1, 2), lambda rank: {"stop_at": {2: "mask"} if rank == 5 else {}},
        max_dropouts=1)

    # Assert: round 1 = the plain quantised mean of all five; round 2 = that of the four survivors
    registry = ModelRegistry(config.state_dir)
    round1 = registry.load("v00001")
    expected1 = np.float32(0.0) + _plain_sum([updates[n][1] for n in names]).astype(np.float32) / np.float32(5)
    np.testing.assert_array_equal(round1.tensors["encoders.w"], expected1)
    survivors = names[:4]
    expected2 = expected1 + _plain_sum([updates[n][2] for n in survivors]).astype(np.float32) / np.float32(4)
    np.testing.assert_array_equal(registry.latest().tensors["encoders.w"], expected2)
    assert registry.latest().meta["accepted"] == survivors and registry.latest().meta["rule"] == "secure_sum"
    assert registry.latest().meta["metrics"]["num_dropped"] == 1.0
    done = [s for s in statuses if s.state == "done"]
    assert [s.metrics["num_dropped"] for s in done] == [0.0, 1.0]
    for ws in workstations:
        np.testing.assert_array_equal(ws.final["model_params"]["encoders.w"], expected2)
    # no unmasked update on the aggregator's wire, in its log or in its saved state
    state_bytes = [p.read_bytes() for p in Path(config.state_dir).rglob("*") if p.is_file()]
    assert captured and state_bytes
    log_text = caplog.text + (tmp_path / "audit.jsonl").read_text()
    for name in names:
        for r in (1, 2):
            windows = _windows(updates[name][r])
            assert not any(w in blob for blob in captured + state_bytes for w in windows), (name, r)
            assert not any(f"{v:.6g}" in log_text for v in updates[name][r][:8]), (name, r)
    assert not any(b"model_params" in blob for blob in captured)  # no plain update was ever sent


def test_too_many_drops_fail_the_round_clearly_and_the_next_round_runs_despite_a_replay(
        tmp_path, monkeypatch, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: 5 workstations, one dropout allowed; in round 1 ws4 and ws5 both drop after their
    # shares were confirmed; in round 2 ws1 first replays its round-1 advert (a valid signature, old round)
    config, names, updates, _, _, statuses = _run(
        tmp_path, monkeypatch, caplog, 5, (1, 2),
        lambda rank: {"stop_at": {1: "mask"} if rank >= 4 else {}, "replay_in": 2 if rank == 1 else 0},
        max_dropouts=1)

    # Assert: round 1 failed, says why, and left nothing: no model v00001, no sum released
    failed = [s for s in statuses if s.state == "failed"]
    assert len(failed) == 1 and failed[0].round == 1
    assert "2 clients dropped after masking" in failed[0].reason and "at most 1" in failed[0].reason
    registry = ModelRegistry(config.state_dir)
    assert registry.versions() == ["v00000", "v00002"]
    # round 2 ran with everyone, from the unchanged model
    expected = np.float32(0.0) + _plain_sum([updates[n][2] for n in names]).astype(np.float32) / np.float32(5)
    np.testing.assert_array_equal(registry.latest().tensors["encoders.w"], expected)
    assert registry.latest().meta["accepted"] == names
    # the replay was refused with one line naming the round mismatch
    replay_lines = [r.getMessage() for r in caplog.records
                    if "refused advert from ws1" in r.getMessage() and "replayed or stale" in r.getMessage()]
    assert len(replay_lines) == 1, replay_lines


def test_a_forged_advert_and_a_corrupt_share_are_refused_with_one_line_each_and_the_round_survives(
        tmp_path, monkeypatch, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: 6 workstations (5 neighbours, 3 shares unmask) on the packed ring of 8-bit values;
    # ws5's advert does not verify (its mask key was swapped after signing), ws6 sends a corrupt share to its
    # first neighbour
    forge = {5: {1: "signature"}, 6: {1: "share"}}
    config, names, updates, _, _, statuses = _run(
        tmp_path, monkeypatch, caplog, 6, (1,), lambda rank: {"forge": forge.get(rank)}, max_dropouts=1,
        value_bits=8, value_clip=0.02)

    # Assert: the round completed with the four honest workstations' exact sum
    honest = names[:4]
    latest = ModelRegistry(config.state_dir).latest()
    assert latest.version == "v00001" and latest.meta["accepted"] == honest
    assert sorted(latest.meta["rejected"]) == ["ws5", "ws6"] and "refused its share" in latest.meta["rejected"]["ws6"]
    packed = _plain_sum([updates[n][1] for n in honest], clip=0.02, scale=127 / 0.02)
    expected = np.float32(0.0) + packed.astype(np.float32) / np.float32(4)
    np.testing.assert_array_equal(latest.tensors["encoders.w"], expected)
    # one warning line for each, saying what was wrong
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    forged = [m for m in warnings if "ws5" in m and "signature does not verify" in m]
    corrupt = [m for m in warnings if "ws6 excluded before masking" in m and "authentication failed" in m]
    assert len(forged) == 1 and len(corrupt) == 1, warnings
    assert not [s for s in statuses if s.state == "failed"]


def test_central_dp_noise_goes_on_the_unmasked_sum_with_the_fixed_denominator_and_is_accounted(
        tmp_path, monkeypatch, caplog):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare + Execute: 3 workstations, DP with a fixed denominator of 4 (one more than the configured 3)
    dp = {"clip_norm": CLIP, "noise_multiplier": 0.5, "delta": 1e-5, "expected_clients": 4}
    config, names, updates, _, _, statuses = _run(tmp_path, monkeypatch, caplog, 3, (1,), lambda rank: {},
                                                  max_dropouts=0, dp=dp)

    # Assert: the model is the exact sum over the fixed denominator plus Gaussian noise of std z C / m
    latest = ModelRegistry(config.state_dir).latest()
    residual = latest.tensors["encoders.w"].astype(np.float64) - _plain_sum([updates[n][1] for n in names]) / 4
    assert abs(np.std(residual) / (0.5 * CLIP / 4) - 1.0) < 0.15 and abs(np.mean(residual)) < 0.02
    # the accountant took its step: epsilon reported and saved with the checkpoint for a restart
    done = [s for s in statuses if s.state == "done"][-1]
    assert done.metrics["epsilon"] > 0 and latest.meta["metrics"]["dp_denominator"] == 4.0
    assert latest.meta["strategy_state"], latest.meta


def test_real_fedml_processes_run_secure_rounds_and_a_restarted_aggregator_aborts_the_half_done_round(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry
    from tests.fl_fedml_harness import FederationRun

    # Prepare: the aggregator and two FedML client processes (ws1 + ws2 as threads of one, ws3 slow on its own)
    run = FederationRun(tmp_path, ["ws1", "ws2", "ws3"],
                        rounds={"num_rounds": 3, "quorum": 3, "deadline_s": 120.0, "start_wait_s": 60.0},
                        strategy={"name": "fedavg", "max_update_norm": 1.0}, learner_options={},
                        sections={"secure_aggregation": {"enabled": True, "phase_timeout_s": 30.0}})
    try:
        # Execute: kill the aggregator in round 2 once ws1 and ws2 advertised keys, while ws3 still trains
        run.start_aggregator("aggregator_1")
        run.start_clients("fast", ["ws1", "ws2"])
        run.start_client("ws3", train_delay_s=4.0)
        for name in ("ws1", "ws2"):
            run.wait_for_log("aggregator_1", rf"round 2: key advert from {name}", 300)
        run.kill("aggregator_1")
        run.start_aggregator("aggregator_2")
        codes = {key: run.wait_exit(key, 240) for key in ("aggregator_2", "fast", "ws3")}
    finally:
        run.stop_all()

    # Assert: every process finished; rounds 1-3 are secure sums of all three workstations
    assert codes == {"aggregator_2": 0, "fast": 0, "ws3": 0}, {k: run.log_text(k)[-2000:] for k in codes}
    registry = ModelRegistry(Path(run.config["federation"]["state_dir"]))
    assert registry.versions() == ["v00000", "v00001", "v00002", "v00003"]
    for version in registry.versions()[1:]:
        meta = registry.load(version).meta
        assert meta["rule"] == "secure_sum" and meta["accepted"] == ["ws1", "ws2", "ws3"], meta
    # the restarted aggregator opened round 2 afresh (a new round id; it has no keys to resume with) ...
    first, second = run.log_text("aggregator_1"), run.log_text("aggregator_2")
    assert "round 1 closed" in first and "round 2 closed" not in first
    assert "resuming from checkpoint: round 1 completed" in second and "round 2 opened" in second
    # ws3's advert for the aborted round reached the new aggregator and did not count
    assert re.search(r"(ignored secure-aggregation advert from ws3 for round 2|refused advert from ws3: .*replayed)",
                     second), second[-3000:]
    # ... and the workstations dropped the half-done round and trained round 2 again under the new id
    assert run.log_text("fast").count("client ws1 training round 2") == 2
    # the state holds models and the checkpoint only: no keys, seeds, shares or masked vectors
    state = Path(run.config["federation"]["state_dir"])
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()) == [
        "checkpoint.json", *(f"models/{v}.safetensors" for v in registry.versions())]
    for key in ("aggregator_1", "aggregator_2", "fast", "ws3"):
        assert "Traceback" not in run.log_text(key), run.log_text(key)[-3000:]
