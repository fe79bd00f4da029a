"""Uplink compression of shared-layer deltas: int8 or fp16 quantisation with error feedback.

int8 is symmetric per-tensor linear quantisation (scale = max|x| / 127, one float32 scale per tensor);
fp16 is a plain cast. Error feedback (Seide et al. 2014, "1-bit SGD"; Karimireddy et al. 2019, "Error
feedback fixes SignSGD", ICML) keeps what quantisation dropped and adds it to the next round's delta, so
the error does not accumulate over rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hrc_fl.federated.core.update import NDArrays

SCHEMES = ("fp32", "fp16", "int8")
SCALE_BYTES = 4  # one float32 scale per int8 tensor


@dataclass(frozen=True)
class QuantizedUpdate:
    """A delta on the wire: ``tensors`` in the scheme's dtype, ``scales`` (int8 only) per tensor."""

    scheme: str
    tensors: dict[str, np.ndarray]
    scales: dict[str, float]


def quantize_update(delta: Mapping[str, np.ndarray], *, scheme: str) -> QuantizedUpdate:
    """Quantise float deltas; ``scheme`` in ("fp32", "fp16", "int8")."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown compression scheme {scheme!r}; choose one of {SCHEMES}")
    tensors: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    for name, value in delta.items():
        value = np.asarray(value, np.float32)
        if scheme == "fp32":
            tensors[name] = value.copy()
        elif scheme == "fp16":
            tensors[name] = value.astype(np.float16)
        else:
            peak = float(np.max(np.abs(value))) if value.size else 0.0
            scale = peak / 127.0 if peak > 0 else 1.0
            tensors[name] = np.clip(np.rint(value / scale), -127, 127).astype(np.int8)
            scales[name] = scale
    return QuantizedUpdate(scheme, tensors, scales)


def dequantize_update(update: QuantizedUpdate) -> NDArrays:
    """Float32 deltas back from a :class:`QuantizedUpdate`."""
    if update.scheme not in SCHEMES:
        raise ValueError(f"unknown compression scheme {update.scheme!r}")
    out: NDArrays = {}
    for name, value in update.tensors.items():
        if update.scheme == "int8":
            if name not in update.scales:
                raise ValueError(f"int8 tensor {name} has no scale")
            out[name] = value.astype(np.float32) * np.float32(update.scales[name])
        else:
            out[name] = np.asarray(value, np.float32)
    return out


def payload_bytes(update: QuantizedUpdate | Mapping[str, np.ndarray]) -> int:
    """Bytes of tensor data (plus int8 scales) an update carries, without names or framing."""
    if isinstance(update, QuantizedUpdate):
        return sum(int(v.nbytes) for v in update.tensors.values()) + SCALE_BYTES * len(update.scales)
    return sum(int(np.asarray(v).nbytes) for v in update.values())


class ErrorFeedbackCompressor:
    """Per-client compressor that carries the quantisation residual from round to round."""

    def __init__(self, *, scheme: str) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown compression scheme {scheme!r}; choose one of {SCHEMES}")
        self.scheme = scheme
        self.residual: NDArrays = {}

    def compress(self, delta: Mapping[str, np.ndarray]) -> QuantizedUpdate:
        """Quantise ``delta + residual`` and keep the new residual (what the receiver will not see)."""
        compensated = {name: np.asarray(v, np.float32) + self.residual.get(name, np.float32(0))
                       for name, v in delta.items()}
        quantized = quantize_update(compensated, scheme=self.scheme)
        received = dequantize_update(quantized)
        self.residual = {name: compensated[name] - received[name] for name in compensated}
        return quantized

    def reset(self) -> None:
        """Forget the residual (e.g. after the shared model was replaced out of band)."""
        self.residual = {}
