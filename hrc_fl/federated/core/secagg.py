"""Secure aggregation (Bonawitz et al. 2017, CCS; sparse neighbour graph of SecAgg+, Bell et al. 2020, CCS).

The aggregator learns the SUM of the clients' clipped, quantised updates and nothing else: each client adds
to its update a self-mask (a keystream from its own random seed) and, per neighbour, a pairwise mask (a
keystream from an X25519 agreement with that neighbour, + for one of the pair and - for the other) in the
ring Z_{2^ring_bits}. Pairwise masks cancel in the sum; the self-masks and the pairwise masks of clients
that dropped after masking are removed with Shamir shares the surviving neighbours hold.

Phases of one round (pure state objects, no transport; messages are the frozen dataclasses below):

1. advertise keys: each client makes two fresh X25519 key pairs (one to encrypt shares, one for masks) and a
   commitment to a fresh self-mask seed, signs them with its node certificate key (ECDSA, the mTLS
   certificate from :mod:`hrc_fl.federated.transport.certs`) over the round id, and sends a :class:`KeyAdvert`. The
   aggregator and every peer check the signature and that the certificate is the sender's, issued by the
   plant CA: the aggregator cannot swap keys.
2. share keys: each client Shamir-shares its self-mask seed and its mask private key among its neighbours
   (``threshold`` of them recover a secret) and encrypts each neighbour's shares with AES-GCM under the
   pairwise key, associated data = round id + sender + receiver (:class:`EncryptedShare`).
3. masked input: each client that shared sends its quantised update plus masks (:class:`MaskedInput`).
   The aggregator adds it to a running sum and keeps no individual vector.
4. unmask: the aggregator names the survivors and the dropped; each survivor returns its share of every
   surviving neighbour's seed and of every dropped neighbour's mask key, never both for one peer
   (:class:`UnmaskResponse`). With ``threshold`` shares per secret the aggregator removes the masks and
   dequantises the sum; with more than ``max_dropouts`` drops, or too few shares, it raises
   :class:`RoundFailed` and holds only the masked sum, which reveals nothing.

Every message carries the round id, which the aggregator announces (random per round); a message of any
other round is refused (:class:`ReplayError`), and signatures and AES-GCM associated data bind it too.
All randomness comes from the OS CSPRNG; keys and seeds live in memory for one round and are never
checkpointed (a restarted aggregator has no round to resume). Threat model: docs/federated_secagg.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from hrc_fl.federated.core import shamir, wire
from hrc_fl.federated.core.update import AggregationResult, NDArrays

if TYPE_CHECKING:
    from hrc_fl.federated.core.privacy import DPStrategy

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
_DOMAIN = b"hrc_fl secagg v1"


class SecAggError(ValueError):
    """A secure-aggregation message was refused (the message names the sender and why)."""


class ReplayError(SecAggError):
    """A message bound to another round id (e.g. replayed from an earlier round)."""


class RoundFailed(RuntimeError):
    """The round cannot be unmasked (too many dropouts or too few shares): no sum is released."""


# ---------------------------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class SecAggConfig:
    """The ``secure_aggregation`` section of config/federated.yaml.

    ``neighbours`` k: peers each client masks with and shares to (0 = automatic: every other client up to
    9 clients, else the smallest even number >= 2 log2 N: SecAgg+'s sparse graph); ``threshold`` t: shares
    that recover a secret (0 = automatic: floor(k / 2) + 1); ``max_dropouts``: clients that may drop after
    masking with the round still completing (needs k - max_dropouts >= t); ``ring_bits``: the modular ring
    Z_{2^ring_bits}; ``scale``: ring units per unit of update (fixed point); each coordinate is clipped to
    ``clip_norm`` (the client's L2 clip bound), so N * clip_norm * scale must stay below 2^(ring_bits - 1).
    ``phase_timeout_s``: how long the aggregator waits for the answers of each phase after the adverts
    (shares, share checks, masked inputs, unmask answers) before it goes on without the silent clients.

    ``value_bits`` > 0 narrows the ring to what the sum needs (the uplink saving): each coordinate is
    clipped to +-``value_clip`` and rounded to ``value_bits``-bit signed fixed point (scale
    (2^(value_bits-1) - 1) / value_clip: resolution value_clip / (2^(value_bits-1) - 1)); the ring is
    value_bits + ceil(log2 N) bits (at least 8), so the sum of N such values never wraps, and masked vectors
    travel bit-packed at that width. ``ring_bits`` and ``scale`` are then unused. 0 = the fixed ring above.
    """

    enabled: bool = False
    neighbours: int = 0
    threshold: int = 0
    max_dropouts: int = 0
    ring_bits: int = 32
    scale: float = 2.0 ** 20
    phase_timeout_s: float = 30.0
    value_bits: int = 0
    value_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.neighbours < 0 or self.threshold < 0 or self.max_dropouts < 0:
            raise ValueError("secure_aggregation neighbours, threshold and max_dropouts must be >= 0")
        if not 8 <= self.ring_bits <= 64:
            raise ValueError(f"secure_aggregation.ring_bits must be in [8, 64], got {self.ring_bits}")
        if self.value_bits and not (2 <= self.value_bits <= 24 and self.value_clip > 0
                                    and math.isfinite(self.value_clip)):
            raise ValueError(f"secure_aggregation.value_bits must be 0 or in [2, 24] with value_clip > 0, got "
                             f"{self.value_bits} and {self.value_clip}")
        if not self.scale > 0 or not math.isfinite(self.scale):
            raise ValueError(f"secure_aggregation.scale must be a positive number, got {self.scale}")
        if not self.phase_timeout_s > 0:
            raise ValueError(f"secure_aggregation.phase_timeout_s must be > 0, got {self.phase_timeout_s}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> SecAggConfig:
        """Parse the YAML section (None = disabled); unknown keys raise ValueError."""
        if not data:
            return cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown keys in secure_aggregation: {unknown}")
        # each value cast to its field's type; absent keys keep the defaults declared above
        return cls(**{k: type(fields[k].default)(v) for k, v in data.items()})

    def degree(self, num_clients: int) -> int:
        """Neighbours per client for ``num_clients`` (see the class docstring)."""
        if self.neighbours:
            return min(self.neighbours, num_clients - 1)
        if num_clients <= 9:
            return num_clients - 1
        return min(num_clients - 1, 2 * math.ceil(math.log2(num_clients)))

    def shares_needed(self, num_clients: int) -> int:
        return self.threshold or self.degree(num_clients) // 2 + 1

    def validate(self, num_clients: int, clip_norm: float) -> None:
        """ValueError when a federation of ``num_clients`` clipped at ``clip_norm`` cannot run this safely."""
        k, t = self.degree(num_clients), self.shares_needed(num_clients)
        if num_clients < 2:
            raise ValueError("secure aggregation needs at least 2 clients")
        if not k // 2 < t <= k:
            raise ValueError(f"secure_aggregation.threshold must be in ({k // 2}, {k}] for {k} neighbours "
                             f"(more than half, so one peer's two kinds of shares never both reach the aggregator), "
                             f"got {t}")
        if k - self.max_dropouts < t:
            raise ValueError(f"secure_aggregation: {k} neighbours minus max_dropouts {self.max_dropouts} leaves "
                             f"fewer than the {t} shares needed to unmask")
        if k < num_clients - 1 and k % 2:
            raise ValueError(f"secure_aggregation.neighbours must be even for a sparse graph, got {k}")
        if not clip_norm > 0:
            raise ValueError("secure aggregation needs a client clip bound (strategy.dp.clip_norm or max_update_norm)")
        if not self.value_bits and num_clients * clip_norm * self.scale >= 2.0 ** (self.ring_bits - 1):
            raise ValueError(f"secure_aggregation: {num_clients} clients x clip {clip_norm} x scale {self.scale:g} "
                             f"overflows the 2^{self.ring_bits} ring; lower scale or raise ring_bits")


@dataclasses.dataclass(frozen=True)
class RoundParams:
    """What the aggregator announces for one secure round: ``round_id`` (unique, random per round),
    the ordered ``clients`` (node names), the neighbour graph's public ``graph_seed``, ``clip_norm`` and the
    configuration. Share points are 1-based positions in ``clients``."""

    round_id: str
    clients: tuple[str, ...]
    config: SecAggConfig
    clip_norm: float
    graph_seed: bytes

    def __post_init__(self) -> None:
        if len(set(self.clients)) != len(self.clients):
            raise ValueError("client names must be unique")
        self.config.validate(len(self.clients), self.clip_norm)

    @classmethod
    def announce(cls, round_index: int, clients: Sequence[str], config: SecAggConfig,
                 clip_norm: float) -> RoundParams:
        """The aggregator's announcement for ``round_index``: a fresh random round id and graph seed."""
        return cls(f"{round_index}-{secrets.token_hex(8)}", tuple(clients), config, float(clip_norm),
                   os.urandom(16))

    @property
    def threshold(self) -> int:
        return self.config.shares_needed(len(self.clients))

    @functools.cached_property
    def ring(self) -> SecAggConfig:
        """The ring this round computes in (``ring_bits``, ``scale``): the configured one, or with
        ``value_bits`` the narrow one that just holds the sum of this round's clients."""
        config = self.config
        if not config.value_bits:
            return config
        bits = max(8, config.value_bits + math.ceil(math.log2(len(self.clients))))
        return dataclasses.replace(config, ring_bits=bits, scale=(2 ** (config.value_bits - 1) - 1) / config.value_clip,
                                   value_bits=0, value_clip=0.0)

    @property
    def coordinate_clip(self) -> float:
        """The bound each coordinate is clipped to before quantisation (update units)."""
        return min(self.clip_norm, self.config.value_clip) if self.config.value_bits else self.clip_norm

    def point(self, name: str) -> int:
        return self.clients.index(name) + 1

    def neighbours(self, name: str) -> tuple[str, ...]:
        """``name``'s neighbours: all others (dense) or k/2 on each side on a ring in a random order drawn
        from ``graph_seed`` (a random k-regular Harary graph, SecAgg+)."""
        return self._graph[name]

    @functools.cached_property
    def _graph(self) -> dict[str, tuple[str, ...]]:
        k, n = self.config.degree(len(self.clients)), len(self.clients)
        if k >= n - 1:
            return {name: tuple(c for c in self.clients if c != name) for name in self.clients}
        order = sorted(self.clients, key=lambda c: hashlib.sha256(self.graph_seed + c.encode()).digest())
        return {name: tuple(sorted({order[(i + d) % n] for d in range(-(k // 2), k // 2 + 1) if d}))
                for i, name in enumerate(order)}

    def check_round(self, round_id: str, what: str, sender: str) -> None:
        if round_id != self.round_id:
            raise ReplayError(f"{what} from {sender} is for round {round_id!r}, not {self.round_id!r}: refused "
                              f"(replayed or stale)")


# ---------------------------------------------------------------------------------------------- messages
@dataclasses.dataclass(frozen=True)
class KeyAdvert:
    round_id: str
    sender: str
    cipher_public: bytes  # X25519, encrypts shares
    mask_public: bytes  # X25519, pairwise masks
    seed_commitment: bytes  # SHA-256 of the round id and the self-mask seed
    certificate_pem: bytes
    signature: bytes  # ECDSA-SHA256 with the sender's certificate key over _advert_bytes


@dataclasses.dataclass(frozen=True)
class EncryptedShare:
    round_id: str
    sender: str
    receiver: str
    nonce: bytes
    ciphertext: bytes  # AES-GCM(seed share | mask-key share), AD = round id, sender, receiver


@dataclasses.dataclass(frozen=True)
class MaskedInput:
    round_id: str
    sender: str
    masked: np.ndarray  # unsigned ring elements, one per coordinate
    bits: int = 0  # on the wire bit-packed at this ring width (0: whole uint16/32/64 little-endian elements)


@dataclasses.dataclass(frozen=True)
class UnmaskRequest:
    round_id: str
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class UnmaskResponse:
    round_id: str
    sender: str
    seed_shares: dict[str, bytes]  # surviving neighbour -> this client's share of its self-mask seed
    key_shares: dict[str, bytes]  # dropped neighbour -> this client's share of its mask private key


# ---------------------------------------------------------------------------------------------- wire form
_MESSAGE_TYPES = {cls.__name__: cls for cls in (KeyAdvert, EncryptedShare, MaskedInput, UnmaskRequest,
                                                 UnmaskResponse)}


def _pack(value: object) -> object:
    if isinstance(value, bytes):
        return np.frombuffer(value, np.uint8).copy()
    if isinstance(value, np.ndarray):  # ring elements, little-endian bytes
        return np.ascontiguousarray(value.astype(value.dtype.newbyteorder("<"))).view(np.uint8).copy()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):  # name -> bytes (shares): one blob and its cut points, not an array each
        names = sorted(value)
        return {"names": names, "blob": np.frombuffer(b"".join(value[n] for n in names), np.uint8).copy(),
                "sizes": np.asarray([len(value[n]) for n in names], np.int64)}
    return value


def _cut(blob: object, sizes: object, count: int, what: str) -> list[bytes]:
    """``blob`` (uint8 array) cut into ``count`` pieces of ``sizes``; SecAggError when they do not fit."""
    if (not isinstance(blob, np.ndarray) or blob.dtype != np.uint8 or blob.ndim != 1
            or not isinstance(sizes, np.ndarray) or sizes.dtype != np.int64 or sizes.shape != (count,)
            or np.any(sizes < 0) or int(sizes.sum()) != blob.size):
        raise SecAggError(f"malformed secure-aggregation message: {what} do not fit their blob")
    data, ends = blob.tobytes(), np.cumsum(sizes)
    return [data[end - size:end] for end, size in zip(ends.tolist(), sizes.tolist(), strict=True)]


def _unpack(kind: str, value: object, ring_bits: int) -> object:
    if kind == "bytes" and isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "np.ndarray" and isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        dtype = np.dtype(ring_dtype(ring_bits)).newbyteorder("<")
        if value.size % dtype.itemsize:
            raise SecAggError(f"masked vector of {value.size} bytes is not a whole number of ring elements")
        return value.view(dtype).astype(ring_dtype(ring_bits))
    if kind == "tuple[str, ...]" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if kind == "dict[str, bytes]" and isinstance(value, dict) and set(value) == {"names", "blob", "sizes"}:
        names = value["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise SecAggError("malformed secure-aggregation message: share names")
        return dict(zip(names, _cut(value["blob"], value["sizes"], len(names), "shares"), strict=True))
    raise SecAggError(f"malformed secure-aggregation message: a {kind} field holds {type(value).__name__}")


Message = KeyAdvert | EncryptedShare | MaskedInput | UnmaskRequest | UnmaskResponse


def _body(message: Message) -> dict[str, object]:
    body: dict[str, object] = {"secagg": type(message).__name__}
    body.update({f.name: _pack(getattr(message, f.name)) for f in dataclasses.fields(message)})
    if isinstance(message, MaskedInput) and message.bits:
        body["masked"] = np.frombuffer(pack_bits(message.masked, message.bits), np.uint8).copy()
    return body


def _parse(body: object, params: RoundParams) -> Message:
    if not isinstance(body, dict):
        raise SecAggError("malformed secure-aggregation message: not a mapping")
    body = dict(body)
    cls = _MESSAGE_TYPES[str(body.pop("secagg"))]
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    if set(body) != set(fields):
        raise SecAggError(f"malformed {cls.__name__}: fields {sorted(body)}, expected {sorted(fields)}")
    if cls is MaskedInput and body["bits"]:
        bits, packed = body["bits"], body["masked"]
        if bits != params.ring.ring_bits or not isinstance(packed, np.ndarray) or packed.dtype != np.uint8:
            raise SecAggError(f"malformed MaskedInput: packed at {bits!r} bits, the round's ring is "
                              f"{params.ring.ring_bits}")
        body["masked"] = unpack_bits(packed.tobytes(), bits)
        return MaskedInput(str(body["round_id"]), str(body["sender"]), body["masked"], bits)
    return cls(**{name: _unpack(str(kind), body[name], params.ring.ring_bits) for name, kind in fields.items()})


def encode_message(message: Message) -> bytes:
    """A protocol message in the project's safe wire format (:mod:`hrc_fl.federated.core.wire`: no pickle)."""
    return wire.encode(_body(message))


def encode_messages(messages: Sequence[Message]) -> bytes:
    """Several messages (e.g. one client's shares for all its neighbours) as one wire payload. Encrypted
    shares of one round travel as columns (receivers, senders, one nonce blob, one ciphertext blob with its
    cut points): a wire array each would cost more header than share."""
    if messages and all(isinstance(m, EncryptedShare) for m in messages) \
            and len({m.round_id for m in messages}) == 1:  # type: ignore[union-attr]
        shares: list[EncryptedShare] = list(messages)  # type: ignore[arg-type]
        return wire.encode({"secagg": "share_batch", "round_id": shares[0].round_id,
                            "senders": [m.sender for m in shares], "receivers": [m.receiver for m in shares],
                            "nonces": _pack({str(i): m.nonce for i, m in enumerate(shares)}),
                            "ciphertexts": _pack({str(i): m.ciphertext for i, m in enumerate(shares)})})
    return wire.encode({"secagg": "batch", "items": [_body(m) for m in messages]})


def _share_batch(body: Mapping[str, object]) -> list[EncryptedShare]:
    senders, receivers, round_id = body.get("senders"), body.get("receivers"), body.get("round_id")
    if (not isinstance(senders, list) or not isinstance(receivers, list) or len(senders) != len(receivers)
            or not all(isinstance(n, str) for n in (*senders, *receivers)) or not isinstance(round_id, str)):
        raise SecAggError("malformed secure-aggregation share batch")
    columns = []
    for key in ("nonces", "ciphertexts"):
        column = _unpack("dict[str, bytes]", body.get(key), 32)
        if set(column) != {str(i) for i in range(len(senders))}:  # type: ignore[arg-type]
            raise SecAggError("malformed secure-aggregation share batch: columns do not match")
        columns.append(column)
    nonces, ciphertexts = columns
    return [EncryptedShare(round_id, s, r, nonces[str(i)], ciphertexts[str(i)])  # type: ignore[index]
            for i, (s, r) in enumerate(zip(senders, receivers, strict=True))]


def decode_message(payload: bytes, params: RoundParams) -> Message:
    """The message in ``payload``; SecAggError when it is not a well-formed one (the round is unaffected)."""
    try:
        return _parse(wire.decode(payload), params)
    except (wire.WireError, KeyError) as exc:
        raise SecAggError(f"malformed secure-aggregation message: {exc}") from exc


def decode_messages(payload: bytes, params: RoundParams) -> list[Message]:
    """What :func:`encode_messages` wrote; SecAggError when malformed."""
    try:
        body = wire.decode(payload)
        if body.get("secagg") == "share_batch":
            return list(_share_batch(body))
        if body.get("secagg") != "batch" or not isinstance(body.get("items"), list):
            raise SecAggError("malformed secure-aggregation batch")
        return [_parse(item, params) for item in body["items"]]
    except (wire.WireError, KeyError) as exc:
        raise SecAggError(f"malformed secure-aggregation batch: {exc}") from exc


def encode_params(params: RoundParams) -> bytes:
    """The aggregator's round announcement in the wire format."""
    return wire.encode({"round_id": params.round_id, "clients": list(params.clients),
                        "config": dataclasses.asdict(params.config), "clip_norm": params.clip_norm,
                        "graph_seed": _pack(params.graph_seed)})


def decode_params(payload: bytes) -> RoundParams:
    """A round announcement; ValueError when malformed or unsafe (validated like a configuration)."""
    body = wire.decode(payload)
    try:
        return RoundParams(str(body["round_id"]), tuple(str(c) for c in body["clients"]),
                           SecAggConfig.from_mapping(body["config"]), float(body["clip_norm"]),
                           bytes(_unpack("bytes", body["graph_seed"], 32)))  # type: ignore[arg-type]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed secure-aggregation round announcement: {exc}") from exc


# ---------------------------------------------------------------------------------------------- primitives
def _advert_bytes(round_id: str, sender: str, cipher_public: bytes, mask_public: bytes, commitment: bytes) -> bytes:
    return b"\x00".join([_DOMAIN, b"advert", round_id.encode(), sender.encode(), cipher_public, mask_public,
                         commitment])


def _commit(round_id: str, seed: bytes) -> bytes:
    return hashlib.sha256(_DOMAIN + b"\x00seed\x00" + round_id.encode() + b"\x00" + seed).digest()


def _derive(secret: bytes, label: str, round_id: str, *names: str) -> bytes:
    """A 32-byte key from ``secret`` for ``label`` bound to the round and the (ordered) names."""
    info = b"\x00".join([_DOMAIN, label.encode(), round_id.encode(), *(n.encode() for n in names)])
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _share_ad(round_id: str, sender: str, receiver: str) -> bytes:
    return b"\x00".join([_DOMAIN, b"share", round_id.encode(), sender.encode(), receiver.encode()])


def keystream(key: bytes, length: int, ring_bits: int) -> np.ndarray:
    """``length`` uniform ring elements (uint64, < 2^ring_bits) from ChaCha20 keyed with ``key``."""
    width = 4 if ring_bits <= 32 else 8
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(width * length))
    values = np.frombuffer(stream, dtype=np.uint32 if width == 4 else np.uint64).astype(np.uint64)
    return values & np.uint64((1 << ring_bits) - 1) if ring_bits < 64 else values


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Ring elements (< 2^bits) as a little-endian bit stream of ``bits`` per value (8 <= bits <= 64; at
    16, 32 or 64 bits the same bytes as the little-endian integers)."""
    flat = np.asarray(values, np.uint64).ravel()
    planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack_bits(payload: bytes, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: floor(8 len / bits) values (unique for bits >= 8), ring dtype."""
    if not 8 <= bits <= 64:
        raise SecAggError(f"ring width {bits} outside [8, 64]")
    count = len(payload) * 8 // bits
    planes = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little")[:count * bits]
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    values = (planes.reshape(count, bits).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return values.astype(ring_dtype(bits))


def ring_dtype(ring_bits: int) -> type[np.unsignedinteger]:
    return np.uint16 if ring_bits <= 16 else np.uint32 if ring_bits <= 32 else np.uint64


def quantize(vector: np.ndarray, config: SecAggConfig, clip_norm: float) -> np.ndarray:
    """Fixed point: each coordinate clipped to +-``clip_norm``, times ``scale``, rounded, mod 2^ring_bits."""
    clipped = np.clip(np.asarray(vector, np.float64), -clip_norm, clip_norm)
    values = np.rint(clipped * config.scale).astype(np.int64).astype(np.uint64)
    return values & np.uint64((1 << config.ring_bits) - 1) if config.ring_bits < 64 else values


def dequantize_sum(ring_sum: np.ndarray, config: SecAggConfig) -> np.ndarray:
    """A ring sum back to floats (signed: values >= 2^(ring_bits-1) are negative), divided by ``scale``."""
    values = np.asarray(ring_sum, np.uint64)
    if config.ring_bits < 64:
        half = np.uint64(1 << (config.ring_bits - 1))
        signed = values.astype(np.int64) - np.where(values >= half, np.int64(1 << config.ring_bits), 0)
    else:
        signed = values.astype(np.int64)
    return signed.astype(np.float64) / config.scale


def flatten(tensors: Mapping[str, np.ndarray]) -> np.ndarray:
    """One float64 vector of ``tensors`` in sorted-name order (the order :func:`unflatten` expects)."""
    return np.concatenate([np.asarray(tensors[k], np.float64).ravel() for k in sorted(tensors)])


def unflatten(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> NDArrays:
    """Split ``vector`` into float32 tensors named and shaped like ``like``."""
    out, offset = {}, 0
    for name in sorted(like):
        size = int(np.size(like[name]))
        out[name] = vector[offset:offset + size].reshape(np.shape(like[name])).astype(np.float32)
        offset += size
    if offset != vector.size:
        raise ValueError(f"vector has {vector.size} values, tensors need {offset}")
    return out


def verify_advert(advert: KeyAdvert, params: RoundParams, ca_certificate: x509.Certificate) -> None:
    """SecAggError unless ``advert`` is for this round, from a client of it, signed with the key of a
    certificate for that client issued by the CA and valid now."""
    params.check_round(advert.round_id, "key advert", advert.sender)
    if advert.sender not in params.clients:
        raise SecAggError(f"key advert from {advert.sender!r}, not a client of round {params.round_id}")
    try:
        cert = x509.load_pem_x509_certificate(advert.certificate_pem)
        cert.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise SecAggError(f"key advert from {advert.sender}: certificate not issued by the federation CA "
                          f"({exc})") from exc
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not common_names or common_names[0].value != advert.sender:
        raise SecAggError(f"key advert from {advert.sender} carries another node's certificate")
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SecAggError(f"key advert from {advert.sender}: certificate expired or not yet valid")
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise SecAggError(f"key advert from {advert.sender}: certificate key is not ECDSA")
    if len(advert.cipher_public) != 32 or len(advert.mask_public) != 32 or len(advert.seed_commitment) != 32:
        raise SecAggError(f"key advert from {advert.sender}: malformed public keys or commitment")
    try:
        public_key.verify(advert.signature, _advert_bytes(advert.round_id, advert.sender, advert.cipher_public,
                                                          advert.mask_public, advert.seed_commitment),
                          ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SecAggError(f"key advert from {advert.sender}: signature does not verify (keys swapped or "
                          f"altered)") from exc


def _load_ca(ca_certificate_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca_certificate_pem)


# ---------------------------------------------------------------------------------------------- client
class SecAggClient:
    """One workstation's side of one secure round. Keys and seed exist only in this object (one round)."""

    def __init__(self, params: RoundParams, name: str, *, signing_key_pem: bytes, certificate_pem: bytes,
                 ca_certificate_pem: bytes) -> None:
        if name not in params.clients:
            raise ValueError(f"{name!r} is not a client of round {params.round_id}")
        key = serialization.load_pem_private_key(signing_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the node certificate key must be an ECDSA key")
        self.params, self.name = params, name
        self._signing_key = key
        self._certificate_pem = certificate_pem
        self._ca = _load_ca(ca_certificate_pem)
        self._cipher_key = X25519PrivateKey.generate()
        self._mask_key = X25519PrivateKey.generate()
        self._seed = os.urandom(32)
        self._peers: dict[str, KeyAdvert] = {}  # verified neighbours' adverts
        self._held: dict[str, tuple[bytes, bytes]] = {}  # sender -> (seed share, mask-key share) for me
        self._share_keys: dict[str, AESGCM] = {}  # peer -> AES-GCM under the pairwise share key
        self._masked = False
        self._unmasked = False

    def advertise(self) -> KeyAdvert:
        """Phase 1: signed fresh public keys and the seed commitment."""
        cipher_public = self._cipher_key.public_key().public_bytes(*_RAW)
        mask_public = self._mask_key.public_key().public_bytes(*_RAW)
        commitment = _commit(self.params.round_id, self._seed)
        signature = self._signing_key.sign(_advert_bytes(self.params.round_id, self.name, cipher_public,
                                                         mask_public, commitment), ec.ECDSA(hashes.SHA256()))
        return KeyAdvert(self.params.round_id, self.name, cipher_public, mask_public, commitment,
                         self._certificate_pem, signature)

    def _share_key(self, peer: str) -> AESGCM:
        if peer not in self._share_keys:
            agreed = self._cipher_key.exchange(X25519PublicKey.from_public_bytes(self._peers[peer].cipher_public))
            self._share_keys[peer] = AESGCM(_derive(agreed, "share key", self.params.round_id,
                                                    *sorted((self.name, peer))))
        return self._share_keys[peer]

    def share_keys(self, adverts: Iterable[KeyAdvert]) -> list[EncryptedShare]:
        """Phase 2: verify the neighbours' adverts the aggregator forwarded (SecAggError on any that fails:
        the aggregator tampered, so this client stops), then one encrypted share pair per neighbour."""
        if self._peers:
            raise SecAggError(f"{self.name} already shared its keys in round {self.params.round_id}")
        neighbours = set(self.params.neighbours(self.name))
        for advert in adverts:
            if advert.sender == self.name or advert.sender not in neighbours:
                continue
            verify_advert(advert, self.params, self._ca)
            self._peers[advert.sender] = advert
        if len(self._peers) < self.params.threshold:
            raise RoundFailed(f"{self.name}: {len(self._peers)} neighbours advertised keys, "
                              f"{self.params.threshold} needed")
        points = {peer: self.params.point(peer) for peer in self._peers}
        seed_shares = shamir.split(self._seed, list(points.values()), self.params.threshold)
        key_bytes = self._mask_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption())
        key_shares = shamir.split(key_bytes, list(points.values()), self.params.threshold)
        out = []
        for peer in sorted(self._peers):
            nonce = os.urandom(12)
            plaintext = seed_shares[points[peer]] + key_shares[points[peer]]
            ciphertext = self._share_key(peer).encrypt(nonce, plaintext,
                                                               _share_ad(self.params.round_id, self.name, peer))
            out.append(EncryptedShare(self.params.round_id, self.name, peer, nonce, ciphertext))
        return out

    def receive_shares(self, shares: Iterable[EncryptedShare]) -> dict[str, str]:
        """Phase 2, receiving: decrypt and keep the shares neighbours sent me. Returns sender -> reason for
        every share refused (wrong round, not for me, unknown sender, failed authentication, malformed):
        the aggregator excludes those senders before masking, and the round goes on without them."""
        refused: dict[str, str] = {}
        for share in shares:
            try:
                self.params.check_round(share.round_id, "share", share.sender)
                if share.receiver != self.name or share.sender not in self._peers:
                    raise SecAggError(f"share from {share.sender} to {share.receiver} is not for {self.name}")
                if share.sender in self._held:
                    raise SecAggError(f"second share from {share.sender}: refused")
                try:
                    plaintext = self._share_key(share.sender).decrypt(
                        share.nonce, share.ciphertext, _share_ad(share.round_id, share.sender, share.receiver))
                except (InvalidTag, ValueError) as exc:
                    raise SecAggError(f"share from {share.sender}: authentication failed (corrupt or forged)") from exc
                seed_share, key_share = plaintext[:shamir.SHARE_BYTES], plaintext[shamir.SHARE_BYTES:]
                shamir.parse_share(seed_share)
                shamir.parse_share(key_share)
            except (SecAggError, ValueError) as exc:
                refused[share.sender] = str(exc)
                continue
            self._held[share.sender] = (seed_share, key_share)
        return refused

    def masked_input(self, update: np.ndarray, participants: Sequence[str]) -> MaskedInput:
        """Phase 3: ``update`` (flat floats, already L2-clipped by the client) quantised, self-masked and
        pairwise-masked with every neighbour among ``participants`` (the clients whose shares all arrived)."""
        if self._masked:
            raise SecAggError(f"{self.name} already sent its masked input for round {self.params.round_id}")
        if self.name not in participants:
            raise SecAggError(f"{self.name} is not among the round's participants")
        # every participating neighbour masks with me, so I must mask with every one of them (and hold its
        # shares): a neighbour left out would leave its mask in the sum
        mates = sorted(set(participants) & set(self.params.neighbours(self.name)))
        missing = [p for p in mates if p not in self._held]
        if missing:
            raise SecAggError(f"{self.name} holds no shares from participants {missing}: refusing to mask")
        if len(mates) < self.params.threshold:
            raise RoundFailed(f"{self.name}: {len(mates)} participating neighbours, {self.params.threshold} needed")
        if not np.all(np.isfinite(update)):
            raise ValueError(f"{self.name}: the update holds non-finite values: nothing masked or sent")
        config, n = self.params.ring, int(np.size(update))
        total = quantize(np.ravel(update), config, self.params.coordinate_clip)
        total += keystream(_derive(self._seed, "self mask", self.params.round_id, self.name), n, config.ring_bits)
        for peer in mates:
            stream = keystream(self._pair_seed(peer), n, config.ring_bits)
            total = total + stream if self.name < peer else total - stream
        self._masked = True
        return MaskedInput(self.params.round_id, self.name, _reduce(total, config.ring_bits), config.ring_bits)

    def _pair_seed(self, peer: str) -> bytes:
        agreed = self._mask_key.exchange(X25519PublicKey.from_public_bytes(self._peers[peer].mask_public))
        return _derive(agreed, "pair mask", self.params.round_id, *sorted((self.name, peer)))

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Phase 4: seed shares of surviving neighbours, mask-key shares of dropped ones; never both for a peer,
        never for a round this client did not mask in, and only once."""
        self.params.check_round(request.round_id, "unmask request", "the aggregator")
        survivors, dropped = set(request.survivors), set(request.dropped)
        if survivors & dropped:
            raise SecAggError(f"unmask request names {sorted(survivors & dropped)} both surviving and dropped")
        if not self._masked or self.name in dropped:
            raise SecAggError(f"{self.name} masked its input: it refuses an unmask request that calls it dropped")
        if self._unmasked:
            raise SecAggError(f"{self.name} already answered the unmask request of round {self.params.round_id}")
        if len(survivors) < self.params.threshold:
            raise RoundFailed(f"{self.name}: {len(survivors)} survivors < threshold {self.params.threshold}: "
                              f"refusing to unmask")
        self._unmasked = True
        seed_shares = {p: self._held[p][0] for p in sorted(survivors) if p in self._held}
        key_shares = {p: self._held[p][1] for p in sorted(dropped) if p in self._held}
        return UnmaskResponse(self.params.round_id, self.name, seed_shares, key_shares)


def _reduce(values: np.ndarray, ring_bits: int) -> np.ndarray:
    """uint64 values mod 2^ring_bits in the ring's wire dtype."""
    if ring_bits < 64:
        values = values & np.uint64((1 << ring_bits) - 1)
    return values.astype(ring_dtype(ring_bits))


# ---------------------------------------------------------------------------------------------- aggregator
@dataclasses.dataclass(frozen=True)
class SecureSum:
    """What an unmasked round releases: the SUM of the participants' clipped updates (float64, flat), who
    is in it and who dropped after masking."""

    total: np.ndarray
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


def apply_secure_sum(current: Mapping[str, np.ndarray], result: SecureSum, *,
                     dp: DPStrategy | None = None) -> AggregationResult:
    """The new global model from an unmasked round: ``current`` + the sum of the survivors' clipped deltas
    divided by their number (equal weights: a weight would have to be sent in the clear), or, with ``dp``,
    by the fixed denominator with central Gaussian noise on the sum (:meth:`DPStrategy.release_sum`)."""
    clipped_sum = unflatten(result.total, current)
    metrics = {"secure_aggregation": 1.0, "num_dropped": float(len(result.dropped)),
               "num_accepted": float(len(result.survivors))}
    if dp is not None:
        tensors = dp.release_sum(current, clipped_sum, len(result.survivors), metrics)
    else:
        count = len(result.survivors)
        tensors = {k: (np.asarray(current[k], np.float32) + clipped_sum[k] / np.float32(count)).astype(np.float32)
                   for k in current}
    return AggregationResult(tensors, list(result.survivors), {}, metrics, "secure_sum")


class SecAggServer:
    """The aggregator's side of one secure round. It holds adverts (public), encrypted shares in transit,
    the running masked sum and, at the end, the shares survivors return; never an individual update and no
    key of its own. Refused messages raise :class:`SecAggError` and leave the round as it was."""

    def __init__(self, params: RoundParams, *, ca_certificate_pem: bytes, vector_size: int) -> None:
        self.params = params
        self.vector_size = int(vector_size)
        self._ca = _load_ca(ca_certificate_pem)
        self.adverts: dict[str, KeyAdvert] = {}
        self._mailbox: dict[str, list[EncryptedShare]] = {}
        self.shared: set[str] = set()  # sent their shares
        self.excluded: dict[str, str] = {}  # name -> why it is out before masking
        self.masked_from: set[str] = set()
        self._sum = np.zeros(self.vector_size, np.uint64)
        self._request: UnmaskRequest | None = None
        self._responses: dict[str, UnmaskResponse] = {}

    # phase 1
    def receive_advert(self, advert: KeyAdvert) -> None:
        verify_advert(advert, self.params, self._ca)
        if advert.sender in self.adverts:
            raise SecAggError(f"second key advert from {advert.sender} in round {self.params.round_id}: refused")
        self.adverts[advert.sender] = advert

    def adverts_for(self, name: str) -> list[KeyAdvert]:
        return [self.adverts[p] for p in self.params.neighbours(name) if p in self.adverts]

    # phase 2
    def receive_shares(self, sender: str, shares: Sequence[EncryptedShare]) -> None:
        for share in shares:
            self.params.check_round(share.round_id, "share", share.sender)
        if sender not in self.adverts:
            raise SecAggError(f"shares from {sender}, which advertised no keys this round")
        if sender in self.shared:
            raise SecAggError(f"second set of shares from {sender}: refused")
        neighbours = set(self.params.neighbours(sender))
        for share in shares:
            if share.sender != sender or share.receiver not in neighbours:
                raise SecAggError(f"share {share.sender}->{share.receiver} in the shares of {sender}: refused")
        for share in shares:
            self._mailbox.setdefault(share.receiver, []).append(share)
        self.shared.add(sender)

    def shares_for(self, name: str) -> list[EncryptedShare]:
        return list(self._mailbox.get(name, []))

    def exclude(self, name: str, reason: str) -> None:
        """Take ``name`` out before masking (e.g. a receiver refused its share): the round goes on."""
        self.excluded[name] = reason

    def participants(self) -> tuple[str, ...]:
        """Who masks: clients that shared and were not excluded (announced with the masked-input request)."""
        return tuple(c for c in self.params.clients if c in self.shared and c not in self.excluded)

    # phase 3
    def receive_masked(self, message: MaskedInput) -> None:
        self.params.check_round(message.round_id, "masked input", message.sender)
        if self._request is not None:
            raise SecAggError(f"masked input from {message.sender} after unmasking started: refused")
        if message.sender not in self.participants():
            raise SecAggError(f"masked input from {message.sender}, not a participant: refused")
        if message.sender in self.masked_from:
            raise SecAggError(f"second masked input from {message.sender}: refused")
        masked = np.asarray(message.masked)
        if masked.dtype != ring_dtype(self.params.ring.ring_bits) or masked.shape != (self.vector_size,):
            raise SecAggError(f"masked input from {message.sender}: {masked.dtype}{masked.shape}, expected "
                              f"{np.dtype(ring_dtype(self.params.ring.ring_bits))}({self.vector_size},)")
        self._sum += masked.astype(np.uint64)  # wraps mod 2^64, reduced mod 2^ring_bits at the end
        self.masked_from.add(message.sender)

    # phase 4
    def unmask_request(self) -> UnmaskRequest:
        """Close masking. RoundFailed (and the masked sum is dropped) when more than ``max_dropouts``
        participants did not send their masked input."""
        dropped = tuple(c for c in self.participants() if c not in self.masked_from)
        if len(dropped) > self.params.config.max_dropouts:
            self._fail()
            raise RoundFailed(f"round {self.params.round_id}: {len(dropped)} clients dropped after masking "
                              f"({list(dropped)}), at most {self.params.config.max_dropouts} allowed: no sum released")
        survivors = tuple(c for c in self.params.clients if c in self.masked_from)
        self._request = UnmaskRequest(self.params.round_id, survivors, dropped)
        return self._request

    def receive_unmask(self, response: UnmaskResponse) -> None:
        self.params.check_round(response.round_id, "unmask response", response.sender)
        request = self._request
        if request is None or response.sender not in request.survivors:
            raise SecAggError(f"unmask response from {response.sender}, not asked: refused")
        if response.sender in self._responses:
            raise SecAggError(f"second unmask response from {response.sender}: refused")
        if set(response.seed_shares) & set(response.key_shares):
            raise SecAggError(f"unmask response from {response.sender} holds both shares of one peer: refused")
        for share in (*response.seed_shares.values(), *response.key_shares.values()):
            try:
                shamir.parse_share(share)
            except ValueError as exc:
                raise SecAggError(f"unmask response from {response.sender}: {exc}") from exc
        self._responses[response.sender] = response

    def finish(self) -> SecureSum:
        """Remove the masks and return the sum; RoundFailed (nothing released) with too few shares."""
        request = self._request
        if request is None:
            raise RoundFailed("unmask_request() was not called")
        config, t, n = self.params.ring, self.params.threshold, self.vector_size
        total = self._sum.copy()
        for owner in request.survivors:
            seed = self._recover(owner, "seed_shares", t)
            if _commit(self.params.round_id, seed) != self.adverts[owner].seed_commitment:
                self._fail()
                raise RoundFailed(f"round {self.params.round_id}: the shares of {owner}'s seed are inconsistent")
            total -= keystream(_derive(seed, "self mask", self.params.round_id, owner), n, config.ring_bits)
        for owner in request.dropped:
            key = X25519PrivateKey.from_private_bytes(self._recover(owner, "key_shares", t))
            if key.public_key().public_bytes(*_RAW) != self.adverts[owner].mask_public:
                self._fail()
                raise RoundFailed(f"round {self.params.round_id}: the shares of {owner}'s mask key are inconsistent")
            for peer in self.params.neighbours(owner):
                if peer not in self.masked_from:
                    continue
                agreed = key.exchange(X25519PublicKey.from_public_bytes(self.adverts[peer].mask_public))
                stream = keystream(_derive(agreed, "pair mask", self.params.round_id, *sorted((owner, peer))),
                                   n, config.ring_bits)
                # the survivor added +stream when its name sorts first, -stream otherwise: undo that
                total = total - stream if peer < owner else total + stream
        ring_sum = _reduce(total, config.ring_bits)
        return SecureSum(dequantize_sum(ring_sum, config), request.survivors, request.dropped)

    def _recover(self, owner: str, kind: str, threshold: int) -> bytes:
        shares = {self.params.point(r.sender): getattr(r, kind)[owner] for r in self._responses.values()
                  if owner in getattr(r, kind)}
        if len(shares) < threshold:
            self._fail()
            raise RoundFailed(f"round {self.params.round_id}: {len(shares)} shares of {owner}'s "
                              f"{'seed' if kind == 'seed_shares' else 'mask key'} arrived, {threshold} needed: "
                              f"no sum released")
        try:
            return shamir.combine(shares, threshold)
        except ValueError as exc:
            self._fail()
            raise RoundFailed(f"round {self.params.round_id}: shares of {owner} do not combine ({exc})") from exc

    def _fail(self) -> None:
        """Forget the masked sum and the shares: a failed round releases nothing."""
        self._sum = np.zeros(0, np.uint64)
        self._responses.clear()

    def held_state(self) -> dict[str, object]:
        """Everything this object holds (for the tests that nothing secret or individual is in it)."""
        return {"adverts": dict(self.adverts), "mailbox": {k: list(v) for k, v in self._mailbox.items()},
                "sum": self._sum.copy(), "responses": dict(self._responses)}
