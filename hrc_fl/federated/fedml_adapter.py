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

from hrc_fl.federated.certs import load_node_credentials
from hrc_fl.federated.compression import ErrorFeedbackCompressor, QuantizedUpdate, dequantize_update
from hrc_fl.federated.fl_config import FederationConfig
from hrc_fl.federated.learner import LocalLearner
from hrc_fl.federated.registry import ModelRegistry
from hrc_fl.federated.strategies import Strategy, make_strategy
from hrc_fl.federated.transport import Envelope, SecureTransport
from hrc_fl.federated.update import AggregationResult, ClientUpdate, NDArrays, add, difference, global_norm

LOG = logging.getLogger("hrc_fl.federated.fedml")

# Message types: FedML's cross-silo numbering, plus one local event.
MSG_CONNECTION_READY = 0
MSG_S2C_SYNC_MODEL = 2
MSG_C2S_SEND_MODEL = 3
MSG_C2S_CLIENT_STATUS = 5
MSG_S2C_CHECK_STATUS = 6
MSG_S2C_FINISH = 7
MSG_LOCAL_DEADLINE = 100  # injected by the server's own timer, never accepted from the network
MSG_LOCAL_START = 101
_NETWORK_TYPES = {MSG_S2C_SYNC_MODEL, MSG_C2S_SEND_MODEL, MSG_C2S_CLIENT_STATUS, MSG_S2C_CHECK_STATUS,
                  MSG_S2C_FINISH}
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
    allowed = {MSG_LOCAL_DEADLINE, MSG_LOCAL_START} if local else _NETWORK_TYPES
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

        def aggregate(self, raw_client_model_or_grad_list: list[tuple[float, NDArrays]]) -> NDArrays:
            updates = [ClientUpdate(f"client{i}", 0, int(n), dict(t))
                       for i, (n, t) in enumerate(raw_client_model_or_grad_list)]
            return self.aggregate_round(0, updates).tensors

        def test(self, test_data: Any, device: Any, args: Any) -> None:
            return None

    return StrategyAggregator


# ---------------------------------------------------------------------------------- the server
@dataclass
class _OpenRound:
    index: int
    opened_s: float
    selected: set[int]
    updates: dict[int, ClientUpdate] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # malformed updates, with the reason
    skipped: dict[int, str] = field(default_factory=dict)  # rank -> why it sent no update (e.g. too few samples)


def _server_manager_class() -> type:
    from fedml.core.distributed.communication.message import Message
    from fedml.core.distributed.fedml_comm_manager import FedMLCommManager

    class RoundServerManager(FedMLCommManager):
        """Rounds with quorum + deadline over FedML's comm manager; checkpoint and registry each round."""

        def __init__(self, args: Any, config: FederationConfig, aggregator: Any, registry: ModelRegistry,
                     on_status: StatusCallback | None, audit_path: Path | None,
                     first_round: int, version: str) -> None:
            self.config = config
            self.aggregator = aggregator
            self.registry = registry
            self.on_status = on_status or (lambda report: None)
            self.audit_path = audit_path
            self.round_index = first_round
            self.version = version
            self.online: set[int] = set()
            self.sessions: dict[int, str] = {}
            self.open_round: _OpenRound | None = None
            # Clients that did not answer the last round: still sent every round, but a round does not
            # wait for them to close early (so a dead workstation costs one deadline, not one per round).
            self.missed: set[int] = set()
            self.finished = False
            self._timers: list[threading.Timer] = []
            self._start_armed = False
            self.names = {r: p.name for r, p in config.nodes.items()}
            super().__init__(args, None, 0, len(config.nodes), "GRPC")
            self.transport: SecureTransport = self.com_manager.transport

        # -- FedML plumbing
        def register_message_receive_handlers(self) -> None:
            self.register_message_receive_handler(MSG_CONNECTION_READY, self._on_ready)
            self.register_message_receive_handler(MSG_C2S_CLIENT_STATUS, self._on_client_status)
            self.register_message_receive_handler(MSG_C2S_SEND_MODEL, self._on_model)
            self.register_message_receive_handler(MSG_LOCAL_DEADLINE, self._on_deadline)
            self.register_message_receive_handler(MSG_LOCAL_START, self._on_start_wait)
            for t in (MSG_S2C_SYNC_MODEL, MSG_S2C_CHECK_STATUS, MSG_S2C_FINISH):
                self.register_message_receive_handler(t, self._on_unexpected)

        def _status(self, state: str, metrics: Mapping[str, float] | None = None) -> None:
            participants = tuple(self.names[r] for r in sorted(self.online))
            self.on_status(StatusReport("aggregator", self.names[0], self.round_index, self.version, state,
                                        participants, dict(metrics or {})))

        def _arm(self, delay_s: float, msg_type: int, **params: Any) -> None:
            timer = threading.Timer(delay_s, _inject_local, (self.transport, msg_type), params)
            timer.daemon = True
            timer.start()
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]

        def _on_unexpected(self, msg: Any) -> None:
            LOG.warning("server ignored message type %s from rank %s", msg.get_type(), msg.get_sender_id())

        def _on_ready(self, msg: Any) -> None:
            LOG.info("aggregator up: round %d next, %d clients configured", self.round_index,
                     len(self.config.client_ranks))
            self._status("waiting")
            # Ask every client; those started earlier answer now, later ones announce themselves.
            for rank in self.config.client_ranks:
                self.send_message(Message(MSG_S2C_CHECK_STATUS, 0, rank))

        def _on_client_status(self, msg: Any) -> None:
            rank = int(msg.get_sender_id())
            if msg.get("client_status") != STATUS_ONLINE:
                return
            session = str(msg.get("session") or "")
            new = rank not in self.online
            restarted = not new and self.sessions.get(rank) != session
            self.sessions[rank] = session
            self.online.add(rank)
            if new:
                LOG.info("client %s online (%d/%d)", self.names[rank], len(self.online),
                         len(self.config.client_ranks))
                if self.open_round is None and not self.finished:
                    self._status("waiting")
            if self.finished:
                self._send_finish(rank)
                return
            if self.open_round is not None:
                if restarted:
                    self.missed.discard(rank)
                if rank not in self.open_round.updates and (rank not in self.open_round.selected or restarted):
                    # A client joining or restarting mid-round gets the current round's model.
                    self.open_round.selected.add(rank)
                    self._send_sync(rank, self.open_round.index)
                return
            self._maybe_start()

        def _maybe_start(self) -> None:
            if self.open_round is not None or self.finished:
                return
            if len(self.online) == len(self.config.client_ranks):
                self._open_round()
            elif len(self.online) >= self.config.rounds.quorum and not self._start_armed:
                self._start_armed = True
                self._arm(self.config.rounds.start_wait_s, MSG_LOCAL_START)

        def _on_start_wait(self, msg: Any) -> None:
            if self.open_round is None and not self.finished and len(self.online) >= self.config.rounds.quorum:
                LOG.info("start wait over with %d/%d clients online", len(self.online),
                         len(self.config.client_ranks))
                self._open_round()

        def _open_round(self) -> None:
            self.open_round = _OpenRound(self.round_index, time.monotonic(), set(self.online))
            LOG.info("round %d opened for %s", self.round_index, sorted(self.names[r] for r in self.online))
            for rank in sorted(self.online):
                self._send_sync(rank, self.round_index)
            self._arm(self.config.rounds.deadline_s, MSG_LOCAL_DEADLINE, round=self.round_index)
            self._status("training")

        def _send_sync(self, rank: int, round_index: int) -> None:
            msg = Message(MSG_S2C_SYNC_MODEL, 0, rank)
            msg.add_params("round", round_index)
            msg.add_params("model_version", self.version)
            msg.add_params("model_params", self.aggregator.get_model_params())
            msg.add_params("config", dict(self.aggregator.strategy.client_config(round_index)))
            self.send_message(msg)

        def _on_model(self, msg: Any) -> None:
            rank = int(msg.get_sender_id())
            name = self.names[rank]
            update_round = msg.get("round")
            current = self.open_round
            if current is None or update_round != current.index:
                LOG.warning("ignored stale/late update from %s for round %r (open round: %s)", name,
                            update_round, None if current is None else current.index)
                return
            if rank not in current.selected or rank in current.updates:
                LOG.warning("ignored unexpected or duplicate update from %s in round %d", name, current.index)
                return
            skipped = msg.get("skipped")
            if skipped:
                # the client answered without an update (e.g. too few labelled samples): the round need not
                # wait for it; at a deadline without quorum it is asked again (_on_deadline)
                reason = str(skipped)[:200]
                LOG.info("%s skips round %d: %s", name, current.index, reason)
                current.updates[rank] = ClientUpdate(name, current.index, 0, {})
                current.skipped[rank] = reason
                self._audit(current.index, name, [], "skipped")
                self._maybe_close(current)
                return
            try:
                quantized = decode_uplink(msg.get("model_params"))
                if set(quantized.tensors) != set(self.aggregator.global_tensors):
                    raise ValueError(f"tensor names differ from the global shared model: "
                                     f"{sorted(set(quantized.tensors) ^ set(self.aggregator.global_tensors))[:3]}")
                delta = dequantize_update(quantized)
                tensors = add(self.aggregator.global_tensors, delta)
                num_samples = int(msg.get("num_samples"))
            except (ValueError, TypeError, KeyError) as exc:
                LOG.warning("refused malformed update from %s in round %d: %s", name, current.index, exc)
                current.updates[rank] = ClientUpdate(name, current.index, 0, {})
                current.refused[name] = f"malformed update: {exc}"
                self._audit(current.index, name, [], "malformed")
                return
            current.updates[rank] = ClientUpdate(name, current.index, num_samples, tensors,
                                                 _numbers(msg.get("metrics")))
            self._audit(current.index, name, sorted(quantized.tensors), quantized.scheme, global_norm(delta))
            self.missed.discard(rank)
            self._maybe_close(current)

        def _maybe_close(self, current: _OpenRound) -> None:
            answered = set(current.updates)
            valid = sum(1 for u in current.updates.values() if u.tensors)
            if answered >= current.selected and (valid >= self.config.rounds.quorum or not current.skipped):
                self._close_round("all selected clients answered")
            elif answered >= current.selected - self.missed and valid >= self.config.rounds.quorum:
                self._close_round("all responsive clients answered")

        def _audit(self, round_index: int, name: str, tensor_names: list[str], scheme: str,
                   delta_norm: float = float("nan")) -> None:
            if self.audit_path is None:
                return
            norm = delta_norm if np.isfinite(delta_norm) else None
            line = json.dumps({"round": round_index, "client": name, "tensors": tensor_names, "scheme": scheme,
                               "delta_norm": norm})
            with open(self.audit_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

        def _on_deadline(self, msg: Any) -> None:
            current = self.open_round
            if current is None or msg.get("round") != current.index:
                return
            valid = [u for u in current.updates.values() if u.tensors]
            if len(valid) >= self.config.rounds.quorum:
                self._close_round(f"deadline with {len(valid)}/{len(current.selected)} updates")
            else:
                LOG.warning("round %d deadline: %d updates < quorum %d; waiting another %.1f s", current.index,
                            len(valid), self.config.rounds.quorum, self.config.rounds.deadline_s)
                for rank in sorted(current.skipped):  # they may have enough samples by now: ask again
                    current.updates.pop(rank, None)
                    current.skipped.pop(rank)
                    self._send_sync(rank, current.index)
                self._arm(self.config.rounds.deadline_s, MSG_LOCAL_DEADLINE, round=current.index)

        def _close_round(self, why: str) -> None:
            current = self.open_round
            assert current is not None
            self._status("aggregating")
            updates = [current.updates[r] for r in sorted(current.updates)]
            self.missed = current.selected - set(current.updates)
            if self.missed:
                LOG.warning("round %d: no update from %s", current.index, sorted(self.names[r] for r in self.missed))
            tick = time.perf_counter()
            result = self.aggregator.aggregate_round(current.index, [u for u in updates if u.tensors])
            aggregate_s = time.perf_counter() - tick
            result.rejected.update(current.refused)
            self.version = self.registry.commit_round(current.index, result.tensors,
                                                      round_meta(result, self.aggregator.strategy))
            for client, reason in result.rejected.items():
                LOG.warning("round %d rejected update from %s: %s", current.index, client, reason)
            LOG.info("round %d closed (%s): accepted %s, version %s, %.1f s", current.index, why,
                     result.accepted_ids, self.version, time.monotonic() - current.opened_s)
            self.open_round = None
            train_s = [u.metrics.get("train_s", 0.0) for u in updates if u.tensors]
            self._status("done", {"num_accepted": float(len(result.accepted_ids)),
                                  "num_rejected": float(len(result.rejected)),
                                  "round_s": time.monotonic() - current.opened_s, "aggregate_s": aggregate_s,
                                  "max_train_s": max(train_s, default=0.0)})
            self.round_index = current.index + 1
            if self.round_index > self.config.rounds.num_rounds:
                self.finished = True
                for rank in sorted(self.online):
                    self._send_finish(rank)
                self.transport.flush(self.config.transport.rpc_timeout_s)
                self._status("finished")
                self.finish()
            else:
                self._open_round()

        def _send_finish(self, rank: int) -> None:
            msg = Message(MSG_S2C_FINISH, 0, rank)
            msg.add_params("round", self.round_index - 1)
            msg.add_params("model_version", self.version)
            msg.add_params("model_params", self.aggregator.get_model_params())
            self.send_message(msg)

        def finish(self) -> None:
            for timer in self._timers:
                timer.cancel()
            super().finish()

    return RoundServerManager


STRATEGY_STATE_KEY = "strategy_state"


def round_meta(result: AggregationResult, strategy: Strategy) -> dict[str, Any]:
    """Registry metadata of a completed round: accepted and rejected clients, metrics, and the strategy's
    state (e.g. the DP accountant) so that a restarted aggregator continues from it."""
    return {"accepted": result.accepted_ids, "rejected": result.rejected,
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
    args.hrc_transport = SecureTransport(config.nodes[0], config.nodes,
                                         load_node_credentials(config.cert_dir, config.nodes[0].name),
                                         config.transport)
    aggregator = _aggregator_class()(strategy, global_tensors, args)
    manager = _server_manager_class()(args, config, aggregator, registry, on_status, audit_path,
                                      first_round, version)
    _stop_on_event(stop_event, manager)
    manager.run()
    return manager.version


def _stop_on_event(stop_event: threading.Event | None, manager: Any) -> None:
    if stop_event is None:
        return

    def wait_and_stop() -> None:
        stop_event.wait()
        manager.com_manager.stop_receive_message()

    threading.Thread(target=wait_and_stop, name="fl-stop", daemon=True).start()


# ---------------------------------------------------------------------------------- the client
def _client_manager_class() -> type:
    from fedml.core.distributed.communication.message import Message
    from fedml.core.distributed.fedml_comm_manager import FedMLCommManager

    class RoundClientManager(FedMLCommManager):
        """A workstation: announces itself (retrying until the server is up), trains on each round's
        global model, sends its compressed shared-layer delta, and loads the final model."""

        def __init__(self, args: Any, config: FederationConfig, rank: int, trainer: Any,
                     on_status: StatusCallback | None) -> None:
            self.config = config
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
            for t in (MSG_C2S_SEND_MODEL, MSG_C2S_CLIENT_STATUS):
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
            reference = self.trainer.get_model_params()
            LOG.info("client %s training round %d", self.name, round_index)
            self._status("training", round_index)
            tick = time.perf_counter()
            num_samples, metrics = self.trainer.train({"round": round_index, "config": _numbers(msg.get("config"))},
                                                      "cpu", self.args)
            metrics = {**metrics, "train_s": time.perf_counter() - tick}
            if num_samples < self.config.client.min_samples:
                reason = f"{num_samples} labelled samples < min_samples {self.config.client.min_samples}"
                LOG.info("client %s skips round %d: %s", self.name, round_index, reason)
                skip = Message(MSG_C2S_SEND_MODEL, self.rank, 0)  # tell the server not to wait for us
                skip.add_params("round", round_index)
                skip.add_params("num_samples", 0)
                skip.add_params("skipped", reason)
                self.send_message(skip)
                self._status("waiting", round_index)
                return
            delta = difference(self.trainer.get_model_params(), reference)
            quantized = self.compressor.compress(delta)
            out = Message(MSG_C2S_SEND_MODEL, self.rank, 0)
            out.add_params("round", round_index)
            out.add_params("num_samples", int(num_samples))
            out.add_params("model_params", encode_uplink(quantized))
            out.add_params("metrics", {k: float(v) for k, v in metrics.items() if np.isfinite(v)})
            self.send_message(out)
            self.last_round = round_index
            self._status("sent", round_index, metrics)

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
    args.hrc_transport = SecureTransport(config.nodes[rank], config.nodes,
                                         load_node_credentials(config.cert_dir, name), config.transport)
    trainer = _trainer_class()(learner, args)
    manager = _client_manager_class()(args, config, rank, trainer, on_status)
    _stop_on_event(stop_event, manager)
    manager.run()
    return manager.version
