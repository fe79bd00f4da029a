"""FedML's comm-manager seam over our mutual-TLS transport: :class:`SecureGrpcCommManager`.

FedML's ``GRPCCommManager`` (insecure port, pickle, busy-spin, a channel per message, a crash when the peer
is not up yet) is replaced by this drop-in over
:class:`hrc_fl.federated.transport.grpc_transport.SecureTransport` (mutual TLS, safe wire codec, blocking
queue, per-peer channels with back-off retries); :func:`~hrc_fl.federated.transport.fedml_runtime.fedml_init`
installs it. Received envelopes become FedML ``Message`` records here, and only of the types we handle.
"""

from __future__ import annotations

import logging
from typing import Any

from hrc_fl.federated.transport.fedml_runtime import BaseCommunicationManager, Message
from hrc_fl.federated.transport.fedml_wire import LOCAL_TYPES, MSG_CONNECTION_READY, NETWORK_TYPES
from hrc_fl.federated.transport.grpc_transport import Envelope, SecureTransport

LOG = logging.getLogger("hrc_fl.federated.fedml")


class SecureGrpcCommManager(BaseCommunicationManager):
    """Drop-in for FedML's GRPCCommManager (same constructor) over :class:`SecureTransport`.

    The transport comes from ``args.hrc_transport`` (set by
    :func:`~hrc_fl.federated.transport.fedml_runtime.fedml_init` only).
    """

    def __init__(self, grpc_ipconfig_path: str = "", topic: str = "fedml", client_rank: int = 0,
                 client_num: int = 0, args: Any = None) -> None:
        transport = getattr(args, "hrc_transport", None)
        if not isinstance(transport, SecureTransport):
            raise RuntimeError("SecureGrpcCommManager needs args.hrc_transport (see fedml_runtime.fedml_init)")
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
            msg = message_from_envelope(envelope, local=envelope.sender_rank == -1)
            if msg is None:
                continue
            self._dispatch(msg.get_type(), msg)

    def stop_receive_message(self) -> None:
        self.is_running = False
        self.transport.stop()


def message_from_envelope(envelope: Envelope, local: bool) -> Message | None:
    """FedML Message from a decoded envelope, or None (logged) when its type is not one we handle."""
    params = envelope.params
    msg_type = params.get("msg_type")
    allowed = LOCAL_TYPES if local else NETWORK_TYPES
    if not isinstance(msg_type, int) or msg_type not in allowed:
        LOG.warning("dropped message of unknown type %r from %s", msg_type, envelope.sender_name)
        return None
    msg = Message()
    params["sender"] = envelope.sender_rank  # authenticated rank, not what the payload claims
    params.setdefault("receiver", 0)
    msg.init_from_json_object(params)
    return msg


def inject_local(transport: SecureTransport, msg_type: int, **params: Any) -> None:
    """Queue a local event (a timer, a stop) on ``transport``'s receive queue, handled on the receive thread."""
    transport.inject(Envelope(-1, "local", {"msg_type": msg_type, "receiver": transport.own.rank, **params}))
