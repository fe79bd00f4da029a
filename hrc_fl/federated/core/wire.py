"""Safe wire format for federated messages: plain JSON values + numpy tensors, never pickle.

A message is a mapping of parameter names to values built from ``None``, ``bool``, ``int``, ``float``,
``str``, lists, string-keyed dicts and numpy arrays (torch tensors are converted on encode). On the wire
it is one safetensors blob: every array is a safetensors tensor named ``t<index>``; the JSON structure,
with each array replaced by ``{"__tensor__": "t<index>"}``, is carried in the safetensors metadata under
``hrc_fl_wire``. Decoding parses JSON and raw little-endian tensor bytes only, so a received message can
never execute code (unlike FedML's ``pickle.loads``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

WIRE_KEY = "hrc_fl_wire"
WIRE_VERSION = "1"
#: dtypes a message may carry (float weights, quantised int8 deltas, counters).
ALLOWED_DTYPES = frozenset({"float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool"})
_TENSOR_TAG = "__tensor__"


class WireError(ValueError):
    """A payload that is not a valid hrc_fl wire message (wrong magic, bad JSON, bad tensor)."""


def _to_numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def encode(params: Mapping[str, Any]) -> bytes:
    """Message parameters -> bytes. Raises WireError for values that are not plain JSON types or arrays."""
    tensors: dict[str, np.ndarray] = {}

    def walk(value: Any, path: str) -> Any:
        array = _to_numpy(value)
        if array is not None:
            if array.dtype.name not in ALLOWED_DTYPES:
                raise WireError(f"{path}: dtype {array.dtype} not allowed on the wire")
            name = f"t{len(tensors)}"
            tensors[name] = np.ascontiguousarray(array)
            return {_TENSOR_TAG: name}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(float(value)):
                # JSON has no NaN; scalars must be finite (tensors may carry NaN and are checked later).
                raise WireError(f"{path}: non-finite scalar {value!r}")
            return float(value)
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise WireError(f"{path}: dict keys must be str, got {type(key).__name__}")
                if key == _TENSOR_TAG:
                    raise WireError(f"{path}: reserved key {_TENSOR_TAG!r}")
                out[key] = walk(item, f"{path}.{key}")
            return out
        raise WireError(f"{path}: type {type(value).__name__} cannot be sent (plain JSON types and arrays only)")

    structure = walk(dict(params), "params")
    metadata = {WIRE_KEY: WIRE_VERSION, "structure": json.dumps(structure, allow_nan=False)}
    # safetensors refuses an empty dict of tensors in some versions: keep one marker scalar.
    if not tensors:
        tensors["_empty"] = np.zeros((0,), np.uint8)
    return st_save(tensors, metadata=metadata)


def _read_metadata(payload: bytes) -> dict[str, str]:
    if len(payload) < 8:
        raise WireError(f"payload of {len(payload)} bytes is too short")
    header_len = int.from_bytes(payload[:8], "little")
    if header_len <= 0 or 8 + header_len > len(payload):
        raise WireError("payload header length is out of range (not a safetensors blob)")
    try:
        header = json.loads(payload[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"payload header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise WireError("payload has no metadata")
    return header["__metadata__"]


def decode(payload: bytes, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Bytes -> message parameters. Raises WireError for anything that is not a valid message."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise WireError(f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if max_bytes is not None and len(payload) > max_bytes:
        raise WireError(f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}")
    metadata = _read_metadata(payload)
    if metadata.get(WIRE_KEY) != WIRE_VERSION:
        raise WireError(f"unsupported wire version {metadata.get(WIRE_KEY)!r}")
    try:
        tensors = st_load(payload)
    except (SafetensorError, ValueError) as exc:
        raise WireError(f"bad tensor data: {exc}") from exc
    for name, array in tensors.items():
        if array.dtype.name not in ALLOWED_DTYPES:
            raise WireError(f"tensor {name}: dtype {array.dtype} not allowed")
    try:
        structure = json.loads(metadata.get("structure", ""))
    except json.JSONDecodeError as exc:
        raise WireError(f"bad message structure: {exc}") from exc

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_TENSOR_TAG}:
                name = value[_TENSOR_TAG]
                if name not in tensors:
                    raise WireError(f"message refers to missing tensor {name!r}")
                return tensors[name]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    decoded = walk(structure)
    if not isinstance(decoded, dict):
        raise WireError("message structure must be a JSON object")
    return decoded


def tensor_names(params: Mapping[str, Any], key: str) -> list[str]:
    """Names of the tensors in ``params[key]`` when it is a name -> array mapping (for audits)."""
    value = params.get(key)
    if not isinstance(value, Mapping):
        return []
    return sorted(str(k) for k, v in value.items() if isinstance(v, np.ndarray))
