"""Plain data records exchanged between an FL client, a transport and a strategy.

Engine-independent (no FedML, no gRPC): tensors are numpy arrays keyed by the model's state-dict names.
Convention: ``ClientUpdate.tensors`` holds the client's NEW values of the shared parameters (absolute
values, float32), not deltas. A transport that sends compressed deltas (see :mod:`.compression`) adds them
back to the round's reference before building a ``ClientUpdate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

NDArrays = dict[str, np.ndarray]
"""Named float tensors, e.g. the shared part of a state dict (name -> array)."""


@dataclass(frozen=True)
class ClientUpdate:
    """One client's result for one round.

    client_id: stable id of the workstation; round: server round the update answers;
    num_samples: labelled samples trained on (weight in FedAvg, >= 0); tensors: new shared parameters.
    """

    client_id: str
    round: int
    num_samples: int
    tensors: NDArrays
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AggregationResult:
    """What a strategy returns: the new shared tensors, who was used, who was refused and why, and the
    aggregation rule that actually ran (e.g. ``coordinate_median`` when a trimmed mean would trim nothing)."""

    tensors: NDArrays
    accepted_ids: list[str]
    rejected: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    rule: str = ""


def copy_arrays(tensors: Mapping[str, np.ndarray]) -> NDArrays:
    """Deep copy of named arrays (so callers never alias a strategy's state)."""
    return {name: np.array(value, copy=True) for name, value in tensors.items()}


def check_same_structure(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    """ValueError unless ``a`` and ``b`` hold the same names with exactly the same shapes (no broadcasting:
    a ``(1,)`` array never stands in for a ``(16, 8)`` one)."""
    if set(a) != set(b):
        raise ValueError(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
    for name in a:
        if np.shape(a[name]) != np.shape(b[name]):
            raise ValueError(f"wrong shape for {name}: {np.shape(a[name])} != {np.shape(b[name])}")


def difference(new: Mapping[str, np.ndarray], old: Mapping[str, np.ndarray]) -> NDArrays:
    """Element-wise ``new - old`` per name (float32); names and shapes must match exactly."""
    check_same_structure(new, old)
    return {name: (np.asarray(new[name], np.float32) - np.asarray(old[name], np.float32)) for name in new}


def add(base: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> NDArrays:
    """Element-wise ``base + delta`` per name (float32); names and shapes must match exactly."""
    check_same_structure(base, delta)
    return {name: (np.asarray(base[name], np.float32) + np.asarray(delta[name], np.float32)) for name in base}


def global_norm(tensors: Mapping[str, np.ndarray]) -> float:
    """L2 norm over all tensors taken together (as one flat vector)."""
    total = 0.0
    for value in tensors.values():
        flat = np.asarray(value, np.float64).ravel()
        total += float(flat @ flat)
    return float(np.sqrt(total))
