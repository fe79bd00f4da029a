"""What the FedML server and client share and that needs no FedML: message numbers, received-params
helpers, the uplink encoding of a shared-layer delta, and the status record.

FedML-free on purpose: the pure helpers (``encode_uplink``, ``uplink_update``) are used by fast unit tests
and the benchmark, which must not pay FedML's import (about 10 CPU-s). Wire format: docs/federated_fedml.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hrc_fl.federated.core.compression import QuantizedUpdate, dequantize_update
from hrc_fl.federated.core.update import ClientUpdate, NDArrays, add, check_same_structure, global_norm

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
NETWORK_TYPES = frozenset({MSG_S2C_SYNC_MODEL, MSG_C2S_SEND_MODEL, MSG_C2S_CLIENT_STATUS, MSG_S2C_CHECK_STATUS,
                           MSG_S2C_FINISH, MSG_S2C_SECAGG, MSG_C2S_SECAGG})
LOCAL_TYPES = frozenset({MSG_LOCAL_DEADLINE, MSG_LOCAL_START, MSG_LOCAL_ABORT, MSG_LOCAL_PHASE})
STATUS_ONLINE = "ONLINE"

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

def numbers(value: Any) -> dict[str, float]:
    """The finite numeric entries of a received mapping (anything else is dropped)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}

def secagg_bytes(value: Any) -> bytes:
    """A received secure-aggregation payload (a uint8 array on the wire) as bytes; b"" when it is none
    (the protocol's decoder then refuses it as malformed)."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    return b""

def secagg_array(payload: bytes) -> np.ndarray:
    """A secure-aggregation payload as the uint8 array the wire carries."""
    return np.frombuffer(payload, np.uint8).copy()

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
    update = ClientUpdate(name, round_index, int(num_samples), add(global_tensors, delta), numbers(metrics))
    return update, quantized, global_norm(delta)
