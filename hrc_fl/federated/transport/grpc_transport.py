"""Mutual-TLS gRPC transport for federated messages (FedML-free; the adapter wraps it for FedML).

What it fixes in FedML 0.9.6's ``GRPCCommManager`` (see docs/federated_fedml.md):
- TLS with per-node certificates instead of ``add_insecure_port``; a peer must present a certificate from
  the federation CA whose common name is a configured node, and the sender rank it claims in the message
  must belong to that name, else the call is refused (PERMISSION_DENIED) and logged.
- No pickle: payloads are :mod:`hrc_fl.federated.core.wire` blobs, decoded in the gRPC handler before they are
  queued; anything else is refused (INVALID_ARGUMENT), logged and counted, and the service keeps running.
- Receiving blocks on a queue (no busy-spin); one long-lived channel per peer instead of one per message.
- Sending is asynchronous with one ordered sender thread per peer that retries UNAVAILABLE peers with
  exponential back-off (so a client may start before its server), up to ``send_give_up_s``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from hrc_fl.federated.core import wire
from hrc_fl.federated.core.fl_config import Peer, TransportConfig
from hrc_fl.federated.transport.certs import NodeCredentials

LOG = logging.getLogger("hrc_fl.federated.transport.grpc_transport")
METHOD = "/hrcfl.Federation/Send"
_SERVICE = "hrcfl.Federation"
#: Parameter holding the sender's rank in every message (FedML's Message uses the same key).
SENDER_KEY = "sender"
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
QUEUE_FULL = "receive queue full"  # RESOURCE_EXHAUSTED with this detail: retried (an oversized message is not)


@dataclass(frozen=True)
class Envelope:
    """A received, authenticated, decoded message."""

    sender_rank: int
    sender_name: str
    params: dict[str, Any]


class _PeerSender:
    """Ordered delivery to one peer over one reused channel, with back-off retries."""

    def __init__(self, transport: SecureTransport, peer: Peer) -> None:
        self._transport = transport
        self.peer = peer
        self._queue: queue.Queue[tuple[bytes, str] | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._channel: grpc.Channel | None = None
        self._thread = threading.Thread(target=self._loop, name=f"send-{peer.name}", daemon=True)
        self._thread.start()

    def put(self, payload: bytes, label: str) -> None:
        self._idle.clear()
        self._queue.put((payload, label))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=2.0)
        if self._channel is not None:
            self._channel.close()

    def wait_idle(self, timeout_s: float) -> bool:
        return self._idle.wait(timeout_s)

    def _call(self) -> Callable[..., bytes]:
        if self._channel is None:
            self._channel = self._transport.open_channel(self.peer)
        return self._channel.unary_unary(METHOD)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            payload, label = item
            self._deliver(payload, label)
            if self._queue.empty():
                self._idle.set()

    def _deliver(self, payload: bytes, label: str) -> None:
        cfg = self._transport.config
        give_up_at = time.monotonic() + cfg.send_give_up_s
        delay_s = cfg.retry_initial_s
        attempt = 0
        while not self._transport.stopping.is_set():
            attempt += 1
            try:
                self._call()(payload, timeout=cfg.rpc_timeout_s)
                if attempt > 1:
                    LOG.info("delivered %s to %s after %d attempts", label, self.peer.name, attempt)
                return
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                queue_full = code == grpc.StatusCode.RESOURCE_EXHAUSTED and exc.details() == QUEUE_FULL
                if code not in _RETRYABLE and not queue_full:
                    LOG.error("peer %s refused %s: %s %s", self.peer.name, label, code, exc.details())
                    return
                if time.monotonic() + delay_s > give_up_at:
                    LOG.error("giving up sending %s to %s after %d attempts (%s)", label, self.peer.name,
                              attempt, code)
                    return
                if attempt == 1:
                    LOG.warning("peer %s at %s not reachable (%s); retrying with back-off", self.peer.name,
                                self.peer.target, code)
                self._transport.stopping.wait(delay_s)
                delay_s = min(delay_s * 2.0, cfg.retry_max_s)


class SecureTransport:
    """Listen for, authenticate and decode messages from peers; send messages to peers by rank."""

    def __init__(self, own: Peer, peers: Mapping[int, Peer], credentials: NodeCredentials,
                 config: TransportConfig) -> None:
        if credentials.name != own.name:
            raise ValueError(f"credentials are for {credentials.name!r}, node is {own.name!r}")
        if own.rank not in peers or peers[own.rank] != own:
            raise ValueError("own peer must be listed in peers under its rank")
        names = [p.name for p in peers.values()]
        if len(set(names)) != len(names):
            raise ValueError(f"peer names must be unique: {names}")
        self.own = own
        self.peers = dict(peers)
        self.config = config
        self._credentials = credentials
        self._rank_by_name = {p.name: r for r, p in self.peers.items()}
        # local events (deadlines, stop) are never refused; network messages hold one of a bounded set of slots
        self._inbox: queue.Queue[Envelope | None] = queue.Queue()
        self._network_slots = threading.BoundedSemaphore(config.max_queued_messages)
        self._senders: dict[int, _PeerSender] = {}
        self._senders_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: grpc.Server | None = None

    # ----------------------------------------------------------------- receiving
    def start(self) -> None:
        """Bind the TLS port and start serving. Raises RuntimeError if the port cannot be bound."""
        opts = [("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.config.server_workers), options=opts)
        handler = grpc.unary_unary_rpc_method_handler(self._handle)  # raw bytes in and out
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {"Send": handler}),))
        creds = grpc.ssl_server_credentials(
            [(self._credentials.private_key_pem, self._credentials.certificate_pem)],
            root_certificates=self._credentials.ca_certificate_pem, require_client_auth=True)
        bound = server.add_secure_port(self.own.target, creds)
        if bound == 0:
            raise RuntimeError(f"cannot bind TLS port {self.own.target}")
        server.start()
        self._server = server
        LOG.info("%s listening with mutual TLS on %s", self.own.name, self.own.target)

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    def _handle(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        auth = context.auth_context()
        names = auth.get("x509_common_name") or [b""]
        peer_name = names[0].decode("utf-8", "replace")
        if peer_name not in self._rank_by_name:
            self._count("refused_unknown_peer")
            LOG.warning("refused message from unknown peer %r (%s)", peer_name, context.peer())
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "unknown peer")
        try:
            params = wire.decode(request, max_bytes=self.config.max_message_bytes)
        except wire.WireError as exc:
            self._count("refused_bad_payload")
            LOG.warning("refused payload of %d bytes from %s: %s (not decoded, never unpickled)",
                        len(request), peer_name, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not an hrc_fl wire message")
        claimed = params.get(SENDER_KEY)
        if not isinstance(claimed, int) or self._rank_by_name[peer_name] != claimed:
            self._count("refused_rank_mismatch")
            LOG.warning("refused message from %s claiming rank %r (its rank is %d)", peer_name, claimed,
                        self._rank_by_name[peer_name])
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "sender rank does not match certificate")
        if not self._network_slots.acquire(blocking=False):
            self._count("refused_queue_full")
            LOG.warning("receive queue full (%d messages): refused a message from %s (it will retry)",
                        self.config.max_queued_messages, peer_name)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, QUEUE_FULL)
        self._count("received")
        self._inbox.put(Envelope(claimed, peer_name, params))
        return b""

    def receive(self, timeout_s: float | None = None) -> Envelope | None:
        """Block until a message arrives (None on stop or timeout). Never spins."""
        try:
            envelope = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if envelope is not None and envelope.sender_rank >= 0:
            self._network_slots.release()
        return envelope

    def inject(self, envelope: Envelope) -> None:
        """Queue a local event (e.g. a round deadline) so it is handled on the receive thread."""
        self._inbox.put(envelope)

    # ------------------------------------------------------------------- sending
    def open_channel(self, peer: Peer) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._credentials.ca_certificate_pem,
            private_key=self._credentials.private_key_pem,
            certificate_chain=self._credentials.certificate_pem)
        opts = [("grpc.ssl_target_name_override", peer.name),  # the peer must hold ITS certificate
                ("grpc.max_send_message_length", self.config.max_message_bytes),
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.enable_http_proxy", 0)]
        return grpc.secure_channel(peer.target, creds, options=opts)

    def send(self, receiver_rank: int, params: Mapping[str, Any], label: str = "message") -> None:
        """Encode now (so errors surface to the caller) and queue for ordered delivery."""
        if receiver_rank not in self.peers:
            raise ValueError(f"unknown receiver rank {receiver_rank}")
        payload = wire.encode({**params, SENDER_KEY: self.own.rank})
        if len(payload) > self.config.max_message_bytes:
            raise ValueError(f"message of {len(payload)} bytes exceeds max_message_bytes")
        with self._senders_lock:
            sender = self._senders.get(receiver_rank)
            if sender is None:
                sender = self._senders[receiver_rank] = _PeerSender(self, self.peers[receiver_rank])
        self._count("sent")
        sender.put(payload, label)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued message was delivered or given up; True when all are done."""
        deadline = time.monotonic() + timeout_s
        with self._senders_lock:
            senders = list(self._senders.values())
        return all(s.wait_idle(max(0.0, deadline - time.monotonic())) for s in senders)

    def stop(self) -> None:
        """Stop sending and serving; wakes a blocked :meth:`receive` with None."""
        self.stopping.set()
        with self._senders_lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.close()
        if self._server is not None:
            self._server.stop(grace=0.5)
        self._inbox.put(None)
