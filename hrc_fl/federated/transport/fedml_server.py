"""The FedML server side: :class:`StrategyAggregator` and :class:`RoundServerManager`, plus
:func:`run_server`, checkpoint resume and the registry metadata of a round.

FedML's ``FedMLServerManager`` waits for every client forever; :class:`RoundServerManager` only translates
FedML messages and timer events into :class:`~hrc_fl.federated.core.round_state.RoundState` events and carries
out the actions it returns (the round logic is there, FedML-free): a round closes at a deadline once a
quorum of valid updates arrived, late or stale-round updates are ignored, every round is checkpointed
atomically and a restart resumes from the checkpoint. With ``secure_aggregation.enabled`` the same manager
carries the SecAgg phases (messages 8 and 9) and only ever holds masked vectors and their sum.
FedML comes in through :mod:`hrc_fl.federated.transport.fedml_runtime` (why that is safe: its docstring).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrc_fl.federated.core import secagg
from hrc_fl.federated.core.fl_config import FederationConfig
from hrc_fl.federated.core.privacy import DPStrategy
from hrc_fl.federated.core.registry import ModelRegistry
from hrc_fl.federated.core.round_state import (
    DEADLINE,
    PHASE,
    SECURE_PHASES,
    START_WAIT,
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
from hrc_fl.federated.core.strategies import Strategy
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import AggregationResult, ClientUpdate, NDArrays
from hrc_fl.federated.transport import fedml_wire as wire
from hrc_fl.federated.transport.certs import load_node_credentials
from hrc_fl.federated.transport.fedml_comm import SecureGrpcCommManager, inject_local
from hrc_fl.federated.transport.fedml_runtime import (
    FedMLCommManager,
    Message,
    ServerAggregator,
    fedml_init,
    stop_on_event,
)
from hrc_fl.federated.transport.fedml_wire import (
    StatusCallback,
    StatusReport,
    secagg_array,
    secagg_bytes,
    uplink_update,
)
from hrc_fl.federated.transport.grpc_transport import SecureTransport

LOG = logging.getLogger("hrc_fl.federated.fedml")

_TIMER_TYPES = {DEADLINE: wire.MSG_LOCAL_DEADLINE, START_WAIT: wire.MSG_LOCAL_START, PHASE: wire.MSG_LOCAL_PHASE}
STRATEGY_STATE_KEY = "strategy_state"


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


class RoundServerManager(FedMLCommManager):
    """Thin translator: FedML messages and timers -> :class:`~hrc_fl.federated.core.round_state.RoundState`
    events; its actions -> FedML messages, timers, aggregation + registry commit, status and audit."""

    def __init__(self, args: Any, config: FederationConfig, aggregator: StrategyAggregator, registry: ModelRegistry,
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
        self.register_message_receive_handler(wire.MSG_CONNECTION_READY, lambda msg: self._do(self.rounds.on_ready()))
        self.register_message_receive_handler(wire.MSG_C2S_CLIENT_STATUS, self._on_client_status)
        self.register_message_receive_handler(wire.MSG_C2S_SEND_MODEL, self._on_model)
        self.register_message_receive_handler(
            wire.MSG_LOCAL_DEADLINE, lambda msg: self._do(self.rounds.on_deadline(msg.get("round"))))
        self.register_message_receive_handler(wire.MSG_LOCAL_START, lambda msg: self._do(self.rounds.on_start_wait()))
        self.register_message_receive_handler(
            wire.MSG_LOCAL_ABORT, lambda msg: self._do(self.rounds.on_abort("stop requested")))
        self.register_message_receive_handler(wire.MSG_C2S_SECAGG, self._on_secagg)
        self.register_message_receive_handler(
            wire.MSG_LOCAL_PHASE,
            lambda msg: self._do(self.rounds.on_phase_deadline(msg.get("round"), str(msg.get("phase")))))
        for t in (wire.MSG_S2C_SYNC_MODEL, wire.MSG_S2C_CHECK_STATUS, wire.MSG_S2C_FINISH, wire.MSG_S2C_SECAGG):
            self.register_message_receive_handler(t, self._on_unexpected)

    def _on_unexpected(self, msg: Any) -> None:
        LOG.warning("server ignored message type %s from rank %s", msg.get_type(), msg.get_sender_id())

    def _on_client_status(self, msg: Any) -> None:
        if msg.get("client_status") == wire.STATUS_ONLINE:
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
                                       secagg_bytes(msg.get("secagg")), refused))

    # -- actions
    def _do(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if isinstance(action, SendSync):
                self._send_sync(action.rank, action.round, action.secagg)
            elif isinstance(action, SendSecAgg):
                out = Message(wire.MSG_S2C_SECAGG, 0, action.rank)
                out.add_params("round", action.round)
                out.add_params("phase", action.phase)
                out.add_params("secagg", secagg_array(action.payload))
                out.add_params("names", list(action.names))
                self.send_message(out)
            elif isinstance(action, AskStatus):
                self.send_message(Message(wire.MSG_S2C_CHECK_STATUS, 0, action.rank))
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
        timer = threading.Timer(delay_s, inject_local, (self.transport, msg_type), params)
        timer.daemon = True
        timer.start()
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]

    def _send_sync(self, rank: int, round_index: int, announcement: bytes = b"") -> None:
        msg = Message(wire.MSG_S2C_SYNC_MODEL, 0, rank)
        msg.add_params("round", round_index)
        msg.add_params("model_version", self.version)
        msg.add_params("model_params", self.aggregator.get_model_params())
        msg.add_params("config", dict(self.aggregator.strategy.client_config(round_index)))
        if announcement:
            msg.add_params("secagg", secagg_array(announcement))
        self.send_message(msg)

    def _send_finish(self, rank: int, round_index: int) -> None:
        msg = Message(wire.MSG_S2C_FINISH, 0, rank)
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
    credentials = load_node_credentials(config.cert_dir, config.nodes[0].name)
    transport = SecureTransport(config.nodes[0], config.nodes, credentials, config.transport)
    args = fedml_init(config, 0, transport, SecureGrpcCommManager)
    aggregator = StrategyAggregator(strategy, global_tensors, args)
    secure = None
    if config.secure_aggregation.enabled:
        # nothing of a secure round is in the checkpoint: a restarted aggregator opens the round afresh
        secure = SecureSetup(config.secure_aggregation, float(config.client_clip_norm or 0.0),
                             credentials.ca_certificate_pem, int(secagg.flatten(global_tensors).size))
    manager = RoundServerManager(args, config, aggregator, registry, on_status, audit_path, first_round, version,
                                 secure)
    # the stop is an event of the round state (handled on the receive thread), not a kill of the loop
    stop_on_event(stop_event, lambda: inject_local(manager.transport, wire.MSG_LOCAL_ABORT))
    manager.run()
    return manager.version

