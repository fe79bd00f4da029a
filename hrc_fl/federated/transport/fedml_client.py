"""The FedML client side: :class:`SharedLayerTrainer` and :class:`RoundClientManager` (a workstation's
rounds, plain or secure), plus :func:`run_client`.

Only the shared layers move: the trainer (a FedML ``ClientTrainer``) gets and sets only what the
:class:`~hrc_fl.federated.core.learner.LocalLearner` shares and refuses to upload anything else; the manager
translates the server's messages into calls of the FedML-free :func:`~hrc_fl.federated.core.client_update.
client_update` and, with secure aggregation on, of its :class:`~hrc_fl.federated.core.secagg.SecAggClient`.
FedML comes in through :mod:`hrc_fl.federated.transport.fedml_runtime` (why that is safe: its docstring).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrc_fl.federated.core import secagg
from hrc_fl.federated.core.client_update import client_update
from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update
from hrc_fl.federated.core.fl_config import FederationConfig
from hrc_fl.federated.core.learner import LocalLearner
from hrc_fl.federated.core.round_state import ADVERT, CHECKED, MASKED, SHARES, UNMASKED
from hrc_fl.federated.core.update import NDArrays
from hrc_fl.federated.transport import fedml_wire as wire
from hrc_fl.federated.transport.certs import NodeCredentials, load_node_credentials
from hrc_fl.federated.transport.fedml_comm import SecureGrpcCommManager
from hrc_fl.federated.transport.fedml_runtime import ClientTrainer, FedMLCommManager, Message, fedml_init, stop_on_event
from hrc_fl.federated.transport.fedml_wire import (
    StatusCallback,
    StatusReport,
    encode_uplink,
    numbers,
    secagg_array,
    secagg_bytes,
)
from hrc_fl.federated.transport.grpc_transport import SecureTransport

LOG = logging.getLogger("hrc_fl.federated.fedml")


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


def _only(messages: Sequence[Any], kind: type) -> list[Any]:
    """``messages`` when every one is a ``kind``, else SecAggError (a message of another phase)."""
    if not all(isinstance(m, kind) for m in messages):
        raise secagg.SecAggError(f"malformed request: expected {kind.__name__} messages")
    return list(messages)



class RoundClientManager(FedMLCommManager):
    """A workstation: announces itself (retrying until the server is up), trains on each round's
    global model, sends its compressed shared-layer delta, and loads the final model."""

    def __init__(self, args: Any, config: FederationConfig, rank: int, trainer: SharedLayerTrainer,
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
        self.register_message_receive_handler(wire.MSG_CONNECTION_READY, self._announce)
        self.register_message_receive_handler(wire.MSG_S2C_CHECK_STATUS, self._announce)
        self.register_message_receive_handler(wire.MSG_S2C_SYNC_MODEL, self._on_sync)
        self.register_message_receive_handler(wire.MSG_S2C_FINISH, self._on_finish)
        self.register_message_receive_handler(wire.MSG_S2C_SECAGG, self._on_secagg)
        for t in (wire.MSG_C2S_SEND_MODEL, wire.MSG_C2S_CLIENT_STATUS, wire.MSG_C2S_SECAGG):
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
        status = Message(wire.MSG_C2S_CLIENT_STATUS, self.rank, 0)
        status.add_params("client_status", wire.STATUS_ONLINE)
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
                                             secagg_bytes(msg.get("secagg")))
            except ValueError as exc:
                LOG.error("client %s refused round %d: %s", self.name, round_index, exc)
                return
        LOG.info("client %s training round %d", self.name, round_index)
        self._status("training", round_index)
        train_input = {"round": round_index, "config": numbers(msg.get("config"))}
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
        out = Message(wire.MSG_C2S_SEND_MODEL, self.rank, 0)
        out.add_params("round", round_index)
        out.add_params("num_samples", uplink.num_samples)
        out.add_params("model_params", encode_uplink(uplink.quantized))
        out.add_params("metrics", {k: float(v) for k, v in uplink.metrics.items() if np.isfinite(v)})
        self.send_message(out)
        self.last_round = round_index
        self._status("sent", round_index, uplink.metrics)

    def _skip(self, round_index: int, reason: str) -> None:
        LOG.info("client %s skips round %d: %s", self.name, round_index, reason)
        skip = Message(wire.MSG_C2S_SEND_MODEL, self.rank, 0)  # tell the server not to wait for us
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
        out = Message(wire.MSG_C2S_SECAGG, self.rank, 0)
        out.add_params("round", round_index)
        out.add_params("phase", phase)
        out.add_params("secagg", secagg_array(payload))
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
        client, payload = current.client, secagg_bytes(msg.get("secagg"))
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


def run_client(config: FederationConfig, name: str, learner: LocalLearner, *,
               on_status: StatusCallback | None = None, stop_event: threading.Event | None = None) -> str:
    """Run workstation ``name`` until the aggregator says finish (or ``stop_event``); return the model version."""
    rank = config.rank_of(name)
    if rank == 0:
        raise ValueError(f"{name!r} is the aggregator, not a client")
    credentials = load_node_credentials(config.cert_dir, name)
    transport = SecureTransport(config.nodes[rank], config.nodes, credentials, config.transport)
    args = fedml_init(config, rank, transport, SecureGrpcCommManager)
    trainer = SharedLayerTrainer(learner, args)
    manager = RoundClientManager(args, config, rank, trainer, on_status, credentials)
    stop_on_event(stop_event, manager.com_manager.stop_receive_message)
    manager.run()
    return manager.version
