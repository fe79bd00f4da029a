"""Split a model into shared parameter groups (sent to the server) and personal ones (never sent).

Personalisation by layer split (FedPer: Arivazhagan et al. 2019; FedRep: Collins et al. 2021, ICML):
tensors whose state-dict name starts with one of the model's ``SHARED_PREFIXES`` are federated, the
rest (the head) stays on the device. Every function here checks that no personal tensor leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from hrc_fl.federated.core.update import NDArrays

ALL_PARAMETERS: tuple[str, ...] = ("",)
"""Prefixes that share the whole model (plain FedAvg / FedProx baselines)."""


class PersonalTensorLeak(ValueError):
    """A tensor outside the shared prefixes was about to leave the device."""


def shared_prefixes_of(model: nn.Module) -> tuple[str, ...]:
    """The model's ``SHARED_PREFIXES`` (attribute of the model or of its module)."""
    prefixes = getattr(model, "SHARED_PREFIXES", None)
    if prefixes is None:
        import sys

        prefixes = getattr(sys.modules[type(model).__module__], "SHARED_PREFIXES", None)
    if not prefixes:
        raise ValueError(f"{type(model).__name__} declares no SHARED_PREFIXES")
    return tuple(prefixes)


def is_shared(name: str, prefixes: Sequence[str]) -> bool:
    """Whether the state-dict entry ``name`` belongs to a shared group."""
    return any(name.startswith(prefix) for prefix in prefixes)


def assert_only_shared(tensors: Mapping[str, object], prefixes: Sequence[str]) -> None:
    """Raise :class:`PersonalTensorLeak` if any name is outside ``prefixes``."""
    leaked = sorted(name for name in tensors if not is_shared(name, prefixes))
    if leaked:
        raise PersonalTensorLeak(f"personal tensors in an uplink payload: {leaked[:5]}")


def shared_state(model: nn.Module, prefixes: Sequence[str] | None = None) -> NDArrays:
    """Copies (float32 numpy) of the model's shared PARAMETERS, by state-dict name.

    Buffers are never federated: input normalisation (the IMU encoder's ``input_mean``/``input_std``),
    running statistics and counters stay what each workstation's model has, so no client can move them
    for the others (a small delta could drive ``input_std`` to 0) and DP noise never random-walks them.
    """
    prefixes = tuple(prefixes) if prefixes is not None else shared_prefixes_of(model)
    out = {name: value.detach().cpu().numpy().astype(np.float32, copy=True)
           for name, value in model.named_parameters() if is_shared(name, prefixes)}
    if not out:
        raise ValueError(f"no tensors match the shared prefixes {prefixes}")
    assert_only_shared(out, prefixes)
    return out


def load_shared(model: nn.Module, tensors: Mapping[str, np.ndarray],
                prefixes: Sequence[str] | None = None) -> None:
    """Copy received shared tensors into ``model`` in place; names and shapes must match exactly (a tensor
    named after a buffer, e.g. ``input_std``, is refused: only parameters are shared)."""
    prefixes = tuple(prefixes) if prefixes is not None else shared_prefixes_of(model)
    assert_only_shared(tensors, prefixes)
    expected = shared_state(model, prefixes)
    if set(expected) != set(tensors):
        raise ValueError(f"shared tensor names differ: {sorted(set(expected) ^ set(tensors))[:5]}")
    state = model.state_dict()
    with torch.no_grad():
        for name, value in tensors.items():
            if tuple(np.shape(value)) != tuple(state[name].shape):
                raise ValueError(f"wrong shape for {name}: {np.shape(value)} != {tuple(state[name].shape)}")
            state[name].copy_(torch.as_tensor(np.asarray(value), dtype=state[name].dtype))


def parameter_names(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Names of trainable parameters inside the shared groups."""
    return [name for name, _ in model.named_parameters() if is_shared(name, prefixes)]
