"""ONE client update, used by every place a client trains: the deployed learners (fl_client node, FedML
adapter), the in-process simulator, the demo and fl-report.

A client round is: snapshot the global shared tensors it starts from, run the local round (FedRep: the
personal head with the encoders frozen, then the encoders with the head frozen; ``head_epochs`` = 0: head
and encoders jointly, FedPer), take the delta of the shared tensors, apply the uplink transforms (an
optional simulated attack, clipping to ``clip_norm``, compression with error feedback) and hand back
the wire form. When a new global model arrives the client loads its shared part IN PLACE and refreshes
its personal head on it (:func:`receive_global`) before the model is used or trained again.

FedML-free and ROS-free; torch only through :mod:`hrc_fl.federated.core.training`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from hrc_fl.federated.core import aggregation, split, training
from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, QuantizedUpdate
from hrc_fl.federated.core.update import NDArrays, difference


@dataclass(frozen=True)
class LocalRoundPlan:
    """How a client trains in one round: ``head_epochs`` on the personal head (encoders frozen), then
    ``epochs`` on the shared encoders (head frozen); ``head_epochs`` = 0 trains everything jointly for
    ``epochs``. ``fine_tune_epochs``: head refresh on each new global model (0 = none). Adam at ``lr`` with
    ``weight_decay``."""

    epochs: int
    lr: float
    head_epochs: int = 0
    fine_tune_epochs: int = 0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or not self.lr > 0:
            raise ValueError(f"epochs must be >= 1 and lr > 0, got {self.epochs}, {self.lr}")
        if self.head_epochs < 0 or self.fine_tune_epochs < 0 or self.weight_decay < 0:
            raise ValueError("head_epochs, fine_tune_epochs and weight_decay must be >= 0")


@dataclass(frozen=True)
class Uplink:
    """What a client sends for a round: the compressed shared-layer delta, the labelled samples it trained
    on (the FedAvg weight) and its metrics (with ``train_s``, the local round's wall time). The norm of the
    delta is the aggregator's to compute, on what it received (the audit, the strategies' checks)."""

    quantized: QuantizedUpdate | None  # None: the client skips the round (fewer than min_samples)
    num_samples: int
    metrics: dict[str, float]


def local_round(model: nn.Module, loader: Iterable[training.Batch], plan: LocalRoundPlan, *,
                shared_prefixes: Sequence[str], proximal_mu: float = 0.0,
                shared_reference: Mapping[str, np.ndarray] | None = None, **extra: Any) -> training.TrainResult:
    """One local round of ``plan`` on ``model`` in place. ``extra``: the semi-/self-supervised inputs of
    :func:`hrc_fl.federated.core.training.train_local` (``unlabelled``, ``pseudo``, ``ssl_windows``, ``ssl``,
    ``generator``)."""
    if plan.head_epochs:
        return training.train_fedrep(model, loader, head_epochs=plan.head_epochs, epochs=plan.epochs, lr=plan.lr,
                                     shared_prefixes=shared_prefixes, proximal_mu=proximal_mu,
                                     shared_reference=shared_reference, weight_decay=plan.weight_decay, **extra)
    return training.train_local(model, loader, epochs=plan.epochs, lr=plan.lr, proximal_mu=proximal_mu,
                                shared_reference=shared_reference, shared_prefixes=shared_prefixes,
                                weight_decay=plan.weight_decay, **extra)


def receive_global(model: nn.Module, global_shared: Mapping[str, np.ndarray], plan: LocalRoundPlan, *,
                   shared_prefixes: Sequence[str], loader: Iterable[training.Batch] | None,
                   head_prefixes: Sequence[str] | None = None, **extra: Any) -> training.TrainResult | None:
    """Load a new global model's shared tensors into ``model`` in place, then refresh the personal head on
    them for ``plan.fine_tune_epochs`` (encoders frozen) when a loader is given. ``head_prefixes``: the
    split that defines the head (default ``shared_prefixes``). Returns the refresh's result, or None."""
    split.load_shared(model, global_shared, shared_prefixes)
    return refresh_head(model, loader, plan, shared_prefixes=head_prefixes or shared_prefixes, **extra)


def refresh_head(model: nn.Module, loader: Iterable[training.Batch] | None, plan: LocalRoundPlan, *,
                 shared_prefixes: Sequence[str], **extra: Any) -> training.TrainResult | None:
    """Fit the personal head (parameters outside ``shared_prefixes``) to the current encoders for
    ``plan.fine_tune_epochs``; None when there is nothing to do."""
    if not plan.fine_tune_epochs or loader is None:
        return None
    result = training.fine_tune_personal(model, loader, epochs=plan.fine_tune_epochs, lr=plan.lr,
                                         shared_prefixes=shared_prefixes, **extra)
    model.eval()
    return result


def client_update(read_shared: Callable[[], NDArrays], train: Callable[[], tuple[int, Mapping[str, float]]],
                  compressor: ErrorFeedbackCompressor, *, min_samples: int = 1, clip_norm: float | None = None,
                  delta_transform: Callable[[NDArrays], NDArrays] | None = None) -> Uplink:
    """Snapshot -> local round -> delta -> uplink transforms -> wire form.

    ``read_shared()`` returns the client's shared tensors (called before and after ``train()``, which runs
    the local round and returns (labelled samples, metrics)). With fewer than ``min_samples`` labelled
    samples nothing is encoded (``quantized`` None: the client tells the server it skips). ``delta_transform``
    (simulator only: a simulated attacker) acts on the delta; ``clip_norm`` bounds its L2 norm on the
    client; the compressor encodes it (error feedback keeps what quantisation dropped for the next round)."""
    snapshot = read_shared()
    tick = time.perf_counter()
    num_samples, metrics = train()
    metrics = {**metrics, "train_s": time.perf_counter() - tick}
    if num_samples < min_samples:
        return Uplink(None, int(num_samples), metrics)
    delta = difference(read_shared(), snapshot)
    if delta_transform is not None:
        delta = delta_transform(delta)
    if clip_norm is not None:
        delta, _ = aggregation.clip_to_norm(delta, clip_norm)
    return Uplink(compressor.compress(delta), int(num_samples), dict(metrics))
