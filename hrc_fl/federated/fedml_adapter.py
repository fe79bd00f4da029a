"""The ONLY module that imports FedML: cross-silo horizontal server and client over a hardened transport.

FedML 0.9.6 supplies the process model (``FedMLCommManager``: observers, message-type dispatch, the
``Message`` record), ``ClientTrainer`` and ``ServerAggregator``. This adapter replaces what is unsafe or
fragile there (docs/federated_fedml.md):

- ``fedml.init`` runs with the remote config fetch disabled (no outbound connection) and ``check_env=False``.
- FedML's ``GRPCCommManager`` (insecure port, pickle, busy-spin, channel per message, crash when the peer
  is not up yet) is replaced, before any manager is built, by :class:`SecureGrpcCommManager` over
  :class:`hrc_fl.federated.transport.SecureTransport` (mutual TLS, safe wire codec, blocking queue,
  per-peer channels with back-off retries).
- FedML's ``FedMLServerManager`` waits for every client forever; :class:`RoundServerManager` closes a
  round at a deadline once a quorum of valid updates arrived, ignores late or stale-round updates,
  checkpoints every round atomically and resumes from the checkpoint after a restart.
- Only the shared layers move: :class:`SharedLayerTrainer` (a FedML ``ClientTrainer``) gets/sets only
  what the :class:`~hrc_fl.federated.learner.LocalLearner` shares, and refuses to upload anything else;
  :class:`StrategyAggregator` (a FedML ``ServerAggregator``) delegates to the core :class:`Strategy`.
- With ``secure_aggregation.enabled`` the same managers carry the SecAgg phases (messages 8 and 9, wire
  bytes from :mod:`hrc_fl.federated.secagg`): the round state drives them, the client runs its
  :class:`~hrc_fl.federated.secagg.SecAggClient`, and the aggregator only ever holds masked vectors and their sum.

Nothing outside this module sees FedML or its ``args``; callers use :func:`run_server` / :func:`run_client`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from hrc_fl.federated import secagg
from hrc_fl.federated.certs import NodeCredentials, load_node_credentials
from hrc_fl.federated.client_update import client_update
from hrc_fl.federated.compression import ErrorFeedbackCompressor, QuantizedUpdate, dequantize_update
from hrc_fl.federated.fl_config import FederationConfig
from hrc_fl.federated.learner import LocalLearner
from hrc_fl.federated.privacy import DPStrategy
from hrc_fl.federated.registry import ModelRegistry
from hrc_fl.federated.round_state import (
    ADVERT,
    CHECKED,
    DEADLINE,
    MASKED,
    PHASE,
    SECURE_PHASES,
    SHARES,
    START_WAIT,
    UNMASKED,
    ArmTimer,
    AskStatus,
    Audit,
    CloseRound,
    CloseSecure,
    RoundState,
    SecureSetup,
    SendFinish,
    SendSecAgg,
    SendSync,
    Status,
)
from hrc_fl.federated.strategies import Strategy
from hrc_fl.federated.strategy_config import make_strategy
from hrc_fl.federated.transport import Envelope, SecureTransport
from hrc_fl.federated.update import (
    AggregationResult,
    ClientUpdate,
    NDArrays,
    add,
    check_same_structure,
    global_norm,
)

LOG = logging.getLogger("hrc_fl.federated.fedml")

# Message types: FedML's cross-silo numbering, plus one local event.
MSG_CONNECTION_READY = 0
MSG_S2C_SYNC_MODEL = 2
MSG_C2S_SEND_MODEL = 3
MSG_C2S_CLIENT_STATUS = 5
MSG_S2C_CHECK_STATUS = 6
MSG_S2C_FINISH = 7
MSG_S2C_SECAGG = 8  # a secure round's request (share | check | mask | unmask), ours
MSG_C2S_SECAGG = 9  # a secure round's answer (advert | shares | checked | masked | unmasked), ours
MSG_LOCAL_DEADLINE = 100  # injected by the server's own timer, never accepted from the network
MSG_LOCAL_START = 101
MSG_LOCAL_ABORT = 102
MSG_LOCAL_PHASE = 103
_NETWORK_TYPES = {MSG_S2C_SYNC_MODEL, MSG_C2S_SEND_MODEL, MSG_C2S_CLIENT_STATUS, MSG_S2C_CHECK_STATUS,
                  MSG_S2C_FINISH, MSG_S2C_SECAGG, MSG_C2S_SECAGG}
_LOCAL_TYPES = {MSG_LOCAL_DEADLINE, MSG_LOCAL_START, MSG_LOCAL_ABORT, MSG_LOCAL_PHASE}
_TIMER_TYPES = {DEADLINE: MSG_LOCAL_DEADLINE, START_WAIT: MSG_LOCAL_START, PHASE: MSG_LOCAL_PHASE}
STATUS_ONLINE = "ONLINE"

_FEDML_LOCK = threading.Lock()
_FEDML_READY = False


@dataclass(frozen=True)
class StatusReport:
    """What a federated process reports for ``FederatedStatus`` (role, round, state, metrics)."""

    role: str
    node_id: str
    round: int
    model_version: str
    state: str
    participants: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # why, when the state is a failure (e.g. a secure round that could not be unmasked)


StatusCallback = Callable[[StatusReport], None]


# --------------------------------------------------------------------------------------- FedML setup
def _import_fedml_offline() -> Any:
    """Import FedML with every phone-home path disabled; install the secure comm manager. Idempotent."""
    global _FEDML_READY
    with _FEDML_LOCK:
        # FACTS: fedml.init() calls a remote config endpoint five times with no timeout; a stale
        # ~/.fedml/.env can override FEDML_ENV_VERSION, so set it and also stub the fetch itself.
        os.environ["FEDML_ENV_VERSION"] = "local"
        import fedml
        import fedml.core.mlops as fedml_mlops
        from fedml.core.distributed.communication.grpc import grpc_comm_manager as fedml_grpc

        if not _FEDML_READY:
            def _no_remote_config(args: Any, version: str = "release") -> None:
                LOG.debug("fedml remote config fetch suppressed (offline federation)")

            fedml_mlops.fetch_config = _no_remote_config
            # fedml_comm_manager imports GRPCCommManager lazily from this module when backend == GRPC.
            fedml_grpc.GRPCCommManager = _secure_comm_manager_class()
            _FEDML_READY = True
        return fedml


def _fedml_args(config: FederationConfig, rank: int) -> SimpleNamespace:
    """The FedML ``args`` namespace for a cross-silo horizontal process (kept inside this module)."""
    return SimpleNamespace(
        training_type="cross_silo", scenario="horizontal", backend="GRPC", using_mlops=False,
        enable_tracking=False, rank=rank, role="server" if rank == 0 else "client",
        comm_round=config.rounds.num_rounds, client_num_in_total=len(config.client_ranks),
        client_num_per_round=len(config.client_ranks), client_id_list=json.dumps(config.client_ranks),
        random_seed=config.seed, worker_num=len(config.client_ranks), run_id="hrc_fl",
        grpc_ipconfig_path="", dataset="hrc_fl", model="intention", federated_optimizer="FedAvg",
        device_type="cpu", using_gpu=False, enable_wandb=False, local_server="127.0.0.1",
        enable_dp=False, enable_attack=False, enable_defense=False, enable_fhe=False, enable_contribution=False,
    )


def fedml_init(config: FederationConfig, rank: int) -> SimpleNamespace:
    """``fedml.init`` for an FL process: offline, no environment collection, no log upload."""
    fedml = _import_fedml_offline()
    fedml.set_env_version("local")
    args = _fedml_args(config, rank)
    return fedml.init(args, check_env=False, should_init_logs=False)


# ------------------------------------------------------------------------------ the comm manager
def _secure_comm_manager_class() -> type:
    from fedml.core.distributed.communication.base_com_manager import BaseCommunicationManager
    from fedml.core.distributed.communication.message import Message

    class SecureGrpcCommManager(BaseCommunicationManager):
        """Drop-in for FedML's GRPCCommManager (same constructor) over :class:`SecureTransport`.

        The transport comes from ``args.hrc_transport`` (set by this adapter only).
        """

        def __init__(self, grpc_ipconfig_path: str = "", topic: str = "fedml", client_rank: int = 0,
                     client_num: int = 0, args: Any = None) -> None:
            transport = getattr(args, "hrc_transport", None)
            if not isinstance(transport, SecureTransport):
                raise RuntimeError("SecureGrpcCommManager needs args.hrc_transport (use hrc_fl's adapter)")
            if transport.own.rank != int(client_rank):
                raise RuntimeError(f"transport is rank {transport.own.rank}, manager rank {client_rank}")
            self.transport = transport
            self.rank = int(client_rank)
            self._observers: list[Any] = []
            self.is_running = False
            transport.start()

        def send_message(self, msg: Any) -> None:
            params = dict(msg.get_params())
            params[Message.MSG_ARG_KEY_SENDER] = self.rank
            self.transport.send(int(msg.get_receiver_id()), params, label=f"type {msg.get_type()}")

        def add_observer(self, observer: Any) -> None:
            self._observers.append(observer)

        def remove_observer(self, observer: Any) -> None:
            self._observers.remove(observer)

        def _dispatch(self, msg_type: int, msg: Any) -> None:
            for observer in self._observers:
                observer.receive_message(msg_type, msg)

        def handle_receive_message(self) -> None:
            """Blocking receive loop: waits on the transport's queue (no polling, no busy-spin)."""
            self.is_running = True
            ready = Message(MSG_CONNECTION_READY, self.rank, self.rank)
            self._dispatch(MSG_CONNECTION_READY, ready)
            while self.is_running:
                envelope = self.transport.receive()
                if envelope is None:
                    break
                msg = _message_from_envelope(envelope, Message, local=envelope.sender_rank == -1)
                if msg is None:
                    continue
                self._dispatch(msg.get_type(), msg)

        def stop_receive_message(self) -> None:
            self.is_running = False
            self.transport.stop()

    return SecureGrpcCommManager


def _message_from_envelope(envelope: Envelope, message_cls: type, local: bool) -> Any:
    """FedML Message from a decoded envelope, or None (logged) when its type is not one we handle."""
    params = envelope.params
    msg_type = params.get("msg_type")
    allowed = _LOCAL_TYPES if local else _NETWORK_TYPES
    if not isinstance(msg_type, int) or msg_type not in allowed:
        LOG.warning("dropped message of unknown type %r from %s", msg_type, envelope.sender_name)
        return None
    msg = message_cls()
    params["sender"] = envelope.sender_rank  # authenticated rank, not what the payload claims
    params.setdefault("receiver", 0)
    msg.init_from_json_object(params)
    return msg


def _numbers(value: Any) -> dict[str, float]:
    """The finite numeric entries of a received mapping (anything else is dropped)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}


def _inject_local(transport: SecureTransport, msg_type: int, **params: Any) -> None:
    transport.inject(Envelope(-1, "local", {"msg_type": msg_type, "receiver": transport.own.rank, **params}))


def _secagg_bytes(value: Any) -> bytes:
    """A received secure-aggregation payload (a uint8 array on the wire) as bytes; b"" when it is none
    (the protocol's decoder then refuses it as malformed)."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    return b""


def _secagg_array(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, np.uint8).copy()


def _only(messages: Sequence[Any], kind: type) -> list[Any]:
    """``messages`` when every one is a ``kind``, else SecAggError (a message of another phase)."""
    if not all(isinstance(m, kind) for m in messages):
        raise secagg.SecAggError(f"malformed request: expected {kind.__name__} messages")
    return list(messages)


# ----------------------------------------------------------------------- uplink update encoding
def encode_uplink(quantized: QuantizedUpdate) -> dict[str, Any]:
    """Wire form of a compressed shared-layer delta (plain JSON + arrays)."""
    # Scales travel as one float32 array (JSON cannot carry a faulty client's NaN; the strategy must see it).
    names = sorted(quantized.scales)
    return {"scheme": quantized.scheme, "tensors": dict(quantized.tensors), "scale_names": names,
            "scales": np.asarray([quantized.scales[n] for n in names], np.float32)}


def decode_uplink(value: Any) -> QuantizedUpdate:
    """Inverse of :func:`encode_uplink`; raises ValueError for a malformed update."""
    if not isinstance(value, Mapping) or not isinstance(value.get("tensors"), Mapping):
        raise ValueError("update has no tensors")
    tensors = dict(value["tensors"])
    if not all(isinstance(v, np.ndarray) for v in tensors.values()):
        raise ValueError("update tensors must be arrays")
    names, scales = value.get("scale_names") or [], value.get("scales")
    if scales is None:
        scales = np.zeros(0, np.float32)
    if (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
            or not isinstance(scales, np.ndarray) or scales.shape != (len(names),)):
        raise ValueError("update scales must be one array matching scale_names")
    return QuantizedUpdate(str(value.get("scheme")), tensors, {n: float(v) for n, v in zip(names, scales, strict=True)})


# ------------------------------------------------------------------- FedML trainer / aggregator
def _trainer_class() -> type:
    from fedml.core import ClientTrainer

    class SharedLayerTrainer(ClientTrainer):
        """FedML ClientTrainer whose model parameters are only the learner's SHARED tensors."""

        def __init__(self, learner: LocalLearner, args: Any) -> None:
            super().__init__(None, args)
            self.learner = learner
            self.shared_names = sorted(learner.get_shared())

        def get_model_params(self) -> NDArrays:
            tensors = self.learner.get_shared()
            if sorted(tensors) != self.shared_names:
                raise ValueError("learner's shared tensor names changed; refusing to upload")
            return tensors

        def set_model_params(self, model_parameters: Mapping[str, np.ndarray]) -> None:
            if sorted(model_parameters) != self.shared_names:
                raise ValueError(f"global model names differ from shared names: "
                                 f"{sorted(set(model_parameters) ^ set(self.shared_names))[:5]}")
            self.learner.set_shared(model_parameters)

        def train(self, train_data: Any, device: Any, args: Any) -> tuple[int, dict[str, float]]:
            return self.learner.train_round(int(train_data["round"]), train_data["config"])

    return SharedLayerTrainer


def _aggregator_class() -> type:
    from fedml.core import ServerAggregator

    class StrategyAggregator(ServerAggregator):
        """FedML ServerAggregator that delegates to the core strategy and holds the global shared tensors."""

        def __init__(self, strategy: Strategy, initial: NDArrays | None, args: Any) -> None:
            super().__init__(None, args)
            self.strategy = strategy
            self.global_tensors: NDArrays | None = initial

        def get_model_params(self) -> NDArrays | None:
            return self.global_tensors

        def set_model_params(self, model_parameters: NDArrays) -> None:
            self.global_tensors = {k: np.asarray(v, np.float32) for k, v in model_parameters.items()}

        def aggregate_round(self, server_round: int, updates: Sequence[ClientUpdate]) -> AggregationResult:
            assert self.global_tensors is not None
            result = self.strategy.aggregate(server_round, updates, self.global_tensors)
            self.set_model_params(result.tensors)
            return result

        def apply_secure_sum(self, result: secagg.SecureSum) -> AggregationResult:
            """The new global model from a secure round's unmasked sum; with a DP strategy the central noise
            goes on the sum (fixed denominator) and the accountant takes its step."""
            assert self.global_tensors is not None
            dp = self.strategy if isinstance(self.strategy, DPStrategy) else None
            aggregated = secagg.apply_secure_sum(self.global_tensors, result, dp=dp)
            self.set_model_params(aggregated.tensors)
            return aggregated

        def aggregate(self, raw_client_model_or_grad_list: list[tuple[float, NDArrays]]) -> NDArrays:
            updates = [ClientUpdate(f"client{i}", 0, int(n), dict(t))
                       for i, (n, t) in enumerate(raw_client_model_or_grad_list)]
            return self.aggregate_round(0, updates).tensors

        def test(self, test_data: Any, device: Any, args: Any) -> None:
            return None

    return StrategyAggregator


# ---------------------------------------------------------------------------------- the server
def uplink_update(name: str, round_index: int, num_samples: Any, payload: Any, global_tensors: NDArrays,
                  metrics: Any) -> tuple[ClientUpdate, QuantizedUpdate, float]:
    """A received uplink payload as a :class:`ClientUpdate` against the round's global tensors, with the
    decoded payload and its delta norm. ValueError (or TypeError) names why it is malformed: not a
    compressed update, other tensor names, any shape other than the global tensor's (no broadcasting, no
    oversized tensors), a non-integer sample count. Non-finite values are left for the strategy's check."""
    quantized = decode_uplink(payload)
    check_same_structure(quantized.tensors, global_tensors)  # before dequantizing anything of a wrong size
    delta = dequantize_update(quantized)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(f"num_samples must be an integer, got {type(num_samples).__name__}")
    update = ClientUpdate(name, round_index, int(num_samples), add(global_tensors, delta), _numbers(metrics))
    return update, quantized, global_norm(delta)


def _server_manager_class() -> type:
    from fedml.core.distributed.communication.message import Message
    from fedml.core.distributed.fedml_comm_manager import FedMLCommManager

    class RoundServerManager(FedMLCommManager):
        """Thin translator: FedML messages and timers -> :class:`~hrc_fl.federated.round_state.RoundState`
        events; its actions -> FedML messages, timers, aggregation + registry commit, status and audit."""

        def __init__(self, args: Any, config: FederationConfig, aggregator: Any, registry: ModelRegistry,
                     on_status: StatusCallback | None, audit_path: Path | None,
                     first_round: int, version: str, secure: SecureSetup | None = None) -> None:
            self.config = config
            self.aggregator = aggregator
            self.registry = registry
            self.on_status = on_status or (lambda report: None)
            self.audit_path = audit_path
            self.names = {r: p.name for r, p in config.nodes.items()}
            self.rounds = RoundState(config.rounds, {r: self.names[r] for r in config.client_ranks},
                                     first_round=first_round, version=version, secure=secure)
            self._timers: list[threading.Timer] = []
            super().__init__(args, None, 0, len(config.nodes), "GRPC")
            self.transport: SecureTransport = self.com_manager.transport

        @property
        def version(self) -> str:
            return self.rounds.version

        # -- FedML plumbing
        def register_message_receive_handlers(self) -> None:
            self.register_message_receive_handler(MSG_CONNECTION_READY, lambda msg: self._do(self.rounds.on_ready()))
            self.register_message_receive_handler(MSG_C2S_CLIENT_STATUS, self._on_client_status)
            self.register_message_receive_handler(MSG_C2S_SEND_MODEL, self._on_model)
            self.register_message_receive_handler(
                MSG_LOCAL_DEADLINE, lambda msg: self._do(self.rounds.on_deadline(msg.get("round"))))
            self.register_message_receive_handler(MSG_LOCAL_START, lambda msg: self._do(self.rounds.on_start_wait()))
            self.register_message_receive_handler(
                MSG_LOCAL_ABORT, lambda msg: self._do(self.rounds.on_abort("stop requested")))
            self.register_message_receive_handler(MSG_C2S_SECAGG, self._on_secagg)
            self.register_message_receive_handler(
                MSG_LOCAL_PHASE,
                lambda msg: self._do(self.rounds.on_phase_deadline(msg.get("round"), str(msg.get("phase")))))
            for t in (MSG_S2C_SYNC_MODEL, MSG_S2C_CHECK_STATUS, MSG_S2C_FINISH, MSG_S2C_SECAGG):
                self.register_message_receive_handler(t, self._on_unexpected)

        def _on_unexpected(self, msg: Any) -> None:
            LOG.warning("server ignored message type %s from rank %s", msg.get_type(), msg.get_sender_id())

        def _on_client_status(self, msg: Any) -> None:
            if msg.get("client_status") == STATUS_ONLINE:
                self._do(self.rounds.on_client_online(int(msg.get_sender_id()), str(msg.get("session") or "")))

        def _on_model(self, msg: Any) -> None:
            rank = int(msg.get_sender_id())
            round_index = msg.get("round")
            if msg.get("skipped"):
                self._do(self.rounds.on_skip(rank, round_index, str(msg.get("skipped"))[:200]))
                return
            current = self.rounds.expecting(rank, round_index)
            if current is None:
                return  # stale, late, unexpected or duplicate: logged by the round state, nothing to decode
            if self.rounds.secure is not None:  # never decoded: the aggregator must not read an update
                self._do(self.rounds.on_refused(rank, round_index, "a plain update while secure aggregation is "
                                                                   "on: refused unread"))
                return
            try:
                update, quantized, norm = uplink_update(self.names[rank], current.index, msg.get("num_samples"),
                                                        msg.get("model_params"), self.aggregator.global_tensors,
                                                        msg.get("metrics"))
            except (ValueError, TypeError, KeyError) as exc:
                self._do(self.rounds.on_refused(rank, round_index, str(exc)))
                return
            if not np.isfinite(norm):  # NaN/inf: refused here with one line, so the round need not wait
                self._do(self.rounds.on_refused(rank, round_index, "non-finite values in the update"))
                return
            self._do(self.rounds.on_update(rank, round_index, update, scheme=quantized.scheme, delta_norm=norm))

        def _on_secagg(self, msg: Any) -> None:
            phase = msg.get("phase")
            if phase not in SECURE_PHASES:
                LOG.warning("server ignored a secure-aggregation message of phase %r from rank %s", phase,
                            msg.get_sender_id())
                return
            refused = msg.get("refused")
            refused = ({str(k): str(v) for k, v in refused.items()} if isinstance(refused, Mapping) else {})
            self._do(self.rounds.on_secagg(int(msg.get_sender_id()), msg.get("round"), phase,
                                           _secagg_bytes(msg.get("secagg")), refused))

        # -- actions
        def _do(self, actions: Sequence[Any]) -> None:
            for action in actions:
                if isinstance(action, SendSync):
                    self._send_sync(action.rank, action.round, action.secagg)
                elif isinstance(action, SendSecAgg):
                    out = Message(MSG_S2C_SECAGG, 0, action.rank)
                    out.add_params("round", action.round)
                    out.add_params("phase", action.phase)
                    out.add_params("secagg", _secagg_array(action.payload))
                    out.add_params("names", list(action.names))
                    self.send_message(out)
                elif isinstance(action, AskStatus):
                    self.send_message(Message(MSG_S2C_CHECK_STATUS, 0, action.rank))
                elif isinstance(action, SendFinish):
                    self._send_finish(action.rank, action.round)
                elif isinstance(action, ArmTimer):
                    kind = _TIMER_TYPES[action.kind]
                    self._arm(action.delay_s, kind, round=action.round, phase=action.phase)
                elif isinstance(action, CloseRound):
                    self._do(self._close_round(action))
                elif isinstance(action, CloseSecure):
                    self._do(self._close_secure(action))
                elif isinstance(action, Status):
                    self._status(action.state, action.metrics, action.round, action.reason)
                    if action.state in ("finished", "aborted"):
                        self.transport.flush(self.config.transport.rpc_timeout_s)
                        self.finish()
                elif isinstance(action, Audit):
                    self._audit(action)

        def _status(self, state: str, metrics: Mapping[str, float] | None = None,
                    round_index: int | None = None, reason: str = "") -> None:
            participants = tuple(self.names[r] for r in sorted(self.rounds.online))
            index = self.rounds.round_index if round_index is None else round_index
            self.on_status(StatusReport("aggregator", self.names[0], index, self.version, state,
                                        participants, dict(metrics or {}), reason))

        def _arm(self, delay_s: float, msg_type: int, **params: Any) -> None:
            timer = threading.Timer(delay_s, _inject_local, (self.transport, msg_type), params)
            timer.daemon = True
            timer.start()
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]

        def _send_sync(self, rank: int, round_index: int, announcement: bytes = b"") -> None:
            msg = Message(MSG_S2C_SYNC_MODEL, 0, rank)
            msg.add_params("round", round_index)
            msg.add_params("model_version", self.version)
            msg.add_params("model_params", self.aggregator.get_model_params())
            msg.add_params("config", dict(self.aggregator.strategy.client_config(round_index)))
            if announcement:
                msg.add_params("secagg", _secagg_array(announcement))
            self.send_message(msg)

        def _send_finish(self, rank: int, round_index: int) -> None:
            msg = Message(MSG_S2C_FINISH, 0, rank)
            msg.add_params("round", round_index)
            msg.add_params("model_version", self.version)
            msg.add_params("model_params", self.aggregator.get_model_params())
            self.send_message(msg)

        def _audit(self, entry: Audit) -> None:
            if self.audit_path is None:
                return
            norm = entry.delta_norm if entry.delta_norm is not None and np.isfinite(entry.delta_norm) else None
            line = json.dumps({"round": entry.round, "client": entry.client, "tensors": list(entry.tensors),
                               "scheme": entry.scheme, "delta_norm": norm})
            with open(self.audit_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

        def _close_round(self, closed: CloseRound) -> list[Any]:
            tick = time.perf_counter()
            result = self.aggregator.aggregate_round(closed.round, list(closed.updates))
            aggregate_s = time.perf_counter() - tick
            for client, reason in result.rejected.items():  # the refused ones were logged when they arrived
                LOG.warning("round %d rejected update from %s: %s", closed.round, client, reason)
            result.rejected.update(closed.refused)
            version = self.registry.commit_round(closed.round, result.tensors,
                                                 round_meta(result, self.aggregator.strategy))
            LOG.info("round %d closed (%s): rule %s, accepted %s, rejected %s, version %s, open %.1f s, "
                     "aggregated in %.2f s", closed.round, closed.why, result.rule or "?", result.accepted_ids,
                     sorted(result.rejected), version, closed.open_s, aggregate_s)
            train_s = [u.metrics.get("train_s", 0.0) for u in closed.updates]
            metrics = {"num_accepted": float(len(result.accepted_ids)), "num_rejected": float(len(result.rejected)),
                       "aggregate_s": aggregate_s,
                       "max_train_s": max(train_s, default=0.0),
                       # which rule ran (with the configured one): the median fallback, no rule (the model
                       # kept), or how many updates the median-anchored mean dropped
                       **{key: float(result.metrics.get(key, 0.0))
                          for key in ("median_fallback", "kept_current", "num_filtered")}}
            return self.rounds.on_committed(version, metrics)

        def _close_secure(self, closed: CloseSecure) -> list[Any]:
            tick = time.perf_counter()
            result = self.aggregator.apply_secure_sum(closed.result)
            aggregate_s = time.perf_counter() - tick
            result.rejected.update(closed.refused)  # who was refused or excluded, with why (no values)
            version = self.registry.commit_round(closed.round, result.tensors,
                                                 round_meta(result, self.aggregator.strategy))
            LOG.info("round %d closed (%s): rule %s, survivors %s, dropped after masking %s, version %s, "
                     "open %.1f s, aggregated in %.2f s", closed.round, closed.why, result.rule,
                     list(closed.result.survivors), list(closed.result.dropped), version, closed.open_s, aggregate_s)
            metrics = {"num_accepted": float(len(result.accepted_ids)), "num_rejected": float(len(result.rejected)),
                       "aggregate_s": aggregate_s, "num_dropped": float(len(closed.result.dropped)),
                       "secure_aggregation": 1.0,
                       **{k: float(v) for k, v in result.metrics.items() if k in ("epsilon", "noise_std")}}
            return self.rounds.on_committed(version, metrics)

        def finish(self) -> None:
            for timer in self._timers:
                timer.cancel()
            super().finish()

    return RoundServerManager


STRATEGY_STATE_KEY = "strategy_state"


def round_meta(result: AggregationResult, strategy: Strategy) -> dict[str, Any]:
    """Registry metadata of a completed round: the rule that ran, accepted and rejected clients, metrics, and
    the strategy's state (e.g. the DP accountant) so that a restarted aggregator continues from it."""
    return {"rule": result.rule, "accepted": result.accepted_ids, "rejected": result.rejected,
            "metrics": {k: float(v) for k, v in result.metrics.items()},
            STRATEGY_STATE_KEY: strategy.state_dict()}


def resume_from_checkpoint(registry: ModelRegistry, strategy: Strategy,
                           initial_shared: NDArrays) -> tuple[NDArrays, int, str]:
    """(global tensors, first round to run, version) from the registry's checkpoint, restoring the strategy's
    state saved with it; a fresh federation commits ``initial_shared`` as round 0."""
    latest = registry.latest()
    if latest is None:
        global_tensors = {k: np.asarray(v, np.float32) for k, v in initial_shared.items()}
        return global_tensors, 1, registry.commit_round(0, global_tensors, {"initial": True})
    LOG.info("resuming from checkpoint: round %d completed (version %s)", latest.round, latest.version)
    state = latest.meta.get(STRATEGY_STATE_KEY)
    if state:
        try:
            strategy.load_state_dict(state)
        except ValueError as exc:  # e.g. the strategy in the config changed: say so, keep serving
            LOG.warning("strategy state in checkpoint %s not restored: %s", latest.version, exc)
    return latest.tensors, latest.round + 1, latest.version


def run_server(config: FederationConfig, initial_shared: NDArrays, *, on_status: StatusCallback | None = None,
               audit_path: Path | None = None, stop_event: threading.Event | None = None) -> str:
    """Run the aggregator until all rounds are done (or ``stop_event``); return the final model version.

    ``initial_shared`` is the round-0 global shared model, used only when no checkpoint exists; with a
    checkpoint in ``config.state_dir`` the federation resumes after the last completed round.
    """
    registry = ModelRegistry(config.state_dir)
    strategy = make_strategy(config.strategy)
    global_tensors, first_round, version = resume_from_checkpoint(registry, strategy, initial_shared)
    if first_round > config.rounds.num_rounds:
        LOG.info("all %d rounds already completed", config.rounds.num_rounds)
        return version
    args = fedml_init(config, 0)
    credentials = load_node_credentials(config.cert_dir, config.nodes[0].name)
    args.hrc_transport = SecureTransport(config.nodes[0], config.nodes, credentials, config.transport)
    aggregator = _aggregator_class()(strategy, global_tensors, args)
    secure = None
    if config.secure_aggregation.enabled:
        # nothing of a secure round is in the checkpoint: a restarted aggregator opens the round afresh
        secure = SecureSetup(config.secure_aggregation, float(config.client_clip_norm or 0.0),
                             credentials.ca_certificate_pem, int(secagg.flatten(global_tensors).size))
    manager = _server_manager_class()(args, config, aggregator, registry, on_status, audit_path,
                                      first_round, version, secure)
    # the stop is an event of the round state (handled on the receive thread), not a kill of the loop
    _stop_on_event(stop_event, lambda: _inject_local(manager.transport, MSG_LOCAL_ABORT))
    manager.run()
    return manager.version


def _stop_on_event(stop_event: threading.Event | None, stop: Callable[[], None]) -> None:
    if stop_event is None:
        return

    def wait_and_stop() -> None:
        stop_event.wait()
        stop()

    threading.Thread(target=wait_and_stop, name="fl-stop", daemon=True).start()


# ---------------------------------------------------------------------------------- the client
@dataclass
class _SecureClientRound:
    """A workstation's part in one secure round: its protocol object (keys and seed live only there, for
    this round) and its clipped flat delta, masked only when the aggregator asks."""

    index: int
    client: secagg.SecAggClient
    vector: np.ndarray


def secure_round_params(config: FederationConfig, name: str, round_index: int,
                        announcement: bytes) -> secagg.RoundParams:
    """The aggregator's announcement of secure round ``round_index``, checked against this federation's own
    configuration: ValueError when it is missing (the client would send a readable update), malformed, for
    another round, or announces a configuration or clip bound other than the configured one (an aggregator
    must not lower the threshold or widen the clip bound)."""
    if not announcement:
        raise ValueError("the round carries no secure-aggregation announcement: refusing to send a readable update")
    params = secagg.decode_params(announcement)
    if not params.round_id.startswith(f"{round_index}-"):
        raise ValueError(f"announcement {params.round_id!r} is not for round {round_index}")
    if params.config != config.secure_aggregation or params.clip_norm != float(config.client_clip_norm or 0.0):
        raise ValueError("the announced secure-aggregation settings differ from this federation's configuration")
    if name not in params.clients:
        raise ValueError(f"{name} is not among the round's clients")
    return params


def _client_manager_class() -> type:
    from fedml.core.distributed.communication.message import Message
    from fedml.core.distributed.fedml_comm_manager import FedMLCommManager

    class RoundClientManager(FedMLCommManager):
        """A workstation: announces itself (retrying until the server is up), trains on each round's
        global model, sends its compressed shared-layer delta, and loads the final model."""

        def __init__(self, args: Any, config: FederationConfig, rank: int, trainer: Any,
                     on_status: StatusCallback | None, credentials: NodeCredentials | None = None) -> None:
            self.config = config
            self.credentials = credentials  # the certificate key signs this node's secure-aggregation adverts
            self.secure_round: _SecureClientRound | None = None
            self.trainer = trainer
            self.on_status = on_status or (lambda report: None)
            self.name = config.nodes[rank].name
            self.compressor = ErrorFeedbackCompressor(scheme=config.client.uplink_encoding)
            self.last_round = 0
            self.version = ""
            self.session = uuid.uuid4().hex  # lets the server tell a restarted client from a repeated hello
            super().__init__(args, None, rank, len(config.nodes), "GRPC")

        def register_message_receive_handlers(self) -> None:
            self.register_message_receive_handler(MSG_CONNECTION_READY, self._announce)
            self.register_message_receive_handler(MSG_S2C_CHECK_STATUS, self._announce)
            self.register_message_receive_handler(MSG_S2C_SYNC_MODEL, self._on_sync)
            self.register_message_receive_handler(MSG_S2C_FINISH, self._on_finish)
            self.register_message_receive_handler(MSG_S2C_SECAGG, self._on_secagg)
            for t in (MSG_C2S_SEND_MODEL, MSG_C2S_CLIENT_STATUS, MSG_C2S_SECAGG):
                self.register_message_receive_handler(t, self._on_unexpected)

        def _status(self, state: str, round_index: int, metrics: Mapping[str, float] | None = None) -> None:
            self.on_status(StatusReport("client", self.name, round_index, self.version, state, (self.name,),
                                        dict(metrics or {})))

        def _on_unexpected(self, msg: Any) -> None:
            LOG.warning("client ignored message type %s from rank %s", msg.get_type(), msg.get_sender_id())

        def _from_server(self, msg: Any) -> bool:
            if int(msg.get_sender_id()) != 0:
                LOG.warning("client ignored a server message from rank %s", msg.get_sender_id())
                return False
            return True

        def _announce(self, msg: Any) -> None:
            if int(msg.get_sender_id()) not in (0, self.rank):
                return
            status = Message(MSG_C2S_CLIENT_STATUS, self.rank, 0)
            status.add_params("client_status", STATUS_ONLINE)
            status.add_params("session", self.session)
            self.send_message(status)
            self._status("waiting", self.last_round)

        def _load_global(self, msg: Any) -> int:
            round_index = int(msg.get("round"))
            self.trainer.set_model_params(dict(msg.get("model_params")))
            version = str(msg.get("model_version") or "")
            if version and version != self.version:
                self.version = version
                self.trainer.learner.on_global_model(round_index, version)
            return round_index

        def _on_sync(self, msg: Any) -> None:
            if not self._from_server(msg):
                return
            try:
                round_index = self._load_global(msg)
            except (ValueError, TypeError, KeyError) as exc:
                LOG.error("client %s refused a global model: %s", self.name, exc)
                return
            params = None
            if self.config.secure_aggregation.enabled:
                self.secure_round = None  # a new round: an earlier round's keys and seed are dropped
                try:
                    params = secure_round_params(self.config, self.name, round_index,
                                                 _secagg_bytes(msg.get("secagg")))
                except ValueError as exc:
                    LOG.error("client %s refused round %d: %s", self.name, round_index, exc)
                    return
            LOG.info("client %s training round %d", self.name, round_index)
            self._status("training", round_index)
            train_input = {"round": round_index, "config": _numbers(msg.get("config"))}
            secure = params is not None
            uplink = client_update(self.trainer.get_model_params,
                                   lambda: self.trainer.train(train_input, "cpu", self.args),
                                   ErrorFeedbackCompressor(scheme="fp32") if secure else self.compressor,
                                   min_samples=self.config.client.min_samples,
                                   clip_norm=self.config.client_clip_norm if secure else None)
            if uplink.quantized is None:
                reason = f"{uplink.num_samples} labelled samples < min_samples {self.config.client.min_samples}"
                self._skip(round_index, reason)
                return
            if params is not None:
                self._advertise(round_index, params, secagg.flatten(dequantize_update(uplink.quantized)))
                return
            out = Message(MSG_C2S_SEND_MODEL, self.rank, 0)
            out.add_params("round", round_index)
            out.add_params("num_samples", uplink.num_samples)
            out.add_params("model_params", encode_uplink(uplink.quantized))
            out.add_params("metrics", {k: float(v) for k, v in uplink.metrics.items() if np.isfinite(v)})
            self.send_message(out)
            self.last_round = round_index
            self._status("sent", round_index, uplink.metrics)

        def _skip(self, round_index: int, reason: str) -> None:
            LOG.info("client %s skips round %d: %s", self.name, round_index, reason)
            skip = Message(MSG_C2S_SEND_MODEL, self.rank, 0)  # tell the server not to wait for us
            skip.add_params("round", round_index)
            skip.add_params("num_samples", 0)
            skip.add_params("skipped", reason)
            self.send_message(skip)
            self._status("waiting", round_index)

        def _advertise(self, round_index: int, params: secagg.RoundParams, vector: np.ndarray) -> None:
            """Secure round: keep the clipped delta, send only the signed key advert (phase 1)."""
            if not np.all(np.isfinite(vector)):
                self._skip(round_index, "the local update holds non-finite values")
                return
            if self.credentials is None:
                raise RuntimeError("secure aggregation needs the node's certificate key")
            client = secagg.SecAggClient(params, self.name, signing_key_pem=self.credentials.private_key_pem,
                                         certificate_pem=self.credentials.certificate_pem,
                                         ca_certificate_pem=self.credentials.ca_certificate_pem)
            self.secure_round = _SecureClientRound(round_index, client, vector)
            self._send_secagg(round_index, ADVERT, secagg.encode_message(client.advertise()))
            self.last_round = round_index
            self._status("sent", round_index)

        def _send_secagg(self, round_index: int, phase: str, payload: bytes,
                         refused: Mapping[str, str] | None = None) -> None:
            out = Message(MSG_C2S_SECAGG, self.rank, 0)
            out.add_params("round", round_index)
            out.add_params("phase", phase)
            out.add_params("secagg", _secagg_array(payload))
            out.add_params("refused", dict(refused or {}))
            self.send_message(out)

        def _on_secagg(self, msg: Any) -> None:
            """Phases 2-4 of the secure round, as the aggregator asks; any refusal ends this client's part in
            the round (one log line; the aggregator goes on without it)."""
            if not self._from_server(msg):
                return
            current, phase = self.secure_round, msg.get("phase")
            if current is None or msg.get("round") != current.index:
                LOG.warning("client %s ignored a secure-aggregation %r request for round %r (none open here)",
                            self.name, phase, msg.get("round"))
                return
            client, payload = current.client, _secagg_bytes(msg.get("secagg"))
            try:
                if phase == "share":
                    adverts = _only(secagg.decode_messages(payload, client.params), secagg.KeyAdvert)
                    answer, body, refused = SHARES, secagg.encode_messages(client.share_keys(adverts)), {}
                elif phase == "check":
                    shares = _only(secagg.decode_messages(payload, client.params), secagg.EncryptedShare)
                    answer, body, refused = CHECKED, b"", client.receive_shares(shares)
                    for sender, why in refused.items():
                        LOG.warning("client %s refused the share from %s: %s", self.name, sender, why)
                elif phase == "mask":
                    names = msg.get("names")
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise secagg.SecAggError("malformed participant list")
                    masked = client.masked_input(current.vector, names)
                    answer, body, refused = MASKED, secagg.encode_message(masked), {}
                elif phase == "unmask":
                    request = _only([secagg.decode_message(payload, client.params)], secagg.UnmaskRequest)[0]
                    answer, body, refused = UNMASKED, secagg.encode_message(client.unmask(request)), {}
                    self.secure_round = None  # the round is done here: its keys and seed go with it
                else:
                    LOG.warning("client %s ignored a secure-aggregation request %r", self.name, phase)
                    return
            except (secagg.RoundFailed, ValueError, TypeError) as exc:  # SecAggError is a ValueError
                LOG.error("client %s left secure round %d at %s: %s", self.name, current.index, phase, exc)
                self.secure_round = None
                return
            self._send_secagg(current.index, answer, body, refused)

        def _on_finish(self, msg: Any) -> None:
            if not self._from_server(msg):
                return
            try:
                round_index = self._load_global(msg)
            except (ValueError, TypeError, KeyError) as exc:
                LOG.error("client %s refused the final model: %s", self.name, exc)
                round_index = self.last_round
            LOG.info("client %s finished after round %d (model %s)", self.name, round_index, self.version)
            self._status("finished", round_index)
            self.finish()

    return RoundClientManager


def run_client(config: FederationConfig, name: str, learner: LocalLearner, *,
               on_status: StatusCallback | None = None, stop_event: threading.Event | None = None) -> str:
    """Run workstation ``name`` until the aggregator says finish (or ``stop_event``); return the model version."""
    rank = config.rank_of(name)
    if rank == 0:
        raise ValueError(f"{name!r} is the aggregator, not a client")
    args = fedml_init(config, rank)
    credentials = load_node_credentials(config.cert_dir, name)
    args.hrc_transport = SecureTransport(config.nodes[rank], config.nodes, credentials, config.transport)
    trainer = _trainer_class()(learner, args)
    manager = _client_manager_class()(args, config, rank, trainer, on_status, credentials)
    _stop_on_event(stop_event, manager.com_manager.stop_receive_message)
    manager.run()
    return manager.version
