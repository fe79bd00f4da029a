"""The one epoch/batch training loop and its result (plain torch; no ROS, no FedML, no package imports).

The intention model (:mod:`hrc_fl.intention.training`), the federated client's local round
(:mod:`hrc_fl.federated.core.training`) and the landmark classifiers (:mod:`hrc_fl.perception.landmark_mlp`)
train through :func:`run_epochs`. What differs between them stays with the caller: the optimiser (and
which parameters it holds), how an epoch's batches are drawn, the loss of one batch (cross-entropy plus
whatever terms the caller adds), a learning-rate schedule stepped after each epoch, and the train/eval
mode and ``requires_grad`` flags the model is left with. It sits below the cores that use it
(docs/architecture.md, "Layers") because perception and intention share a layer and may not import
each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

Batch = TypeVar("Batch")


@dataclass(frozen=True)
class TrainResult:
    """What one training call did.

    ``num_samples``: labelled samples seen per epoch (the FedAvg weight; unlabelled windows never count);
    ``steps``: optimiser steps; ``mean_loss``: sample-weighted mean loss over every step (0 when there
    were none); ``final_loss``: the same over the last epoch only (NaN when it had no step); ``epochs``:
    passes over the data. With pseudo-labelling (:mod:`hrc_fl.federated.core.training`) also the unlabelled
    windows drawn and how many passed the confidence threshold (summed over all steps).
    """

    num_samples: int
    steps: int
    mean_loss: float
    final_loss: float = math.nan
    epochs: int = 0
    unlabelled_seen: int = 0
    pseudo_labelled: int = 0


def run_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, *, epochs: int,
               batches: Callable[[], Iterable[Batch]], batch_loss: Callable[[Batch], tuple[torch.Tensor, int]],
               after_epoch: Callable[[], None] | None = None) -> TrainResult:
    """Train ``model`` in place for ``epochs`` passes: per batch zero the gradients, ``batch_loss(batch)``
    -> (loss, labelled samples in it), backward, ``optimizer.step()``; ``after_epoch`` (a scheduler's
    ``step``) after each pass. ``batches()`` is called once per epoch (a fresh shuffle). The model is put
    in train mode first and left so; the caller decides what comes after.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    model.train()
    steps, samples, loss_sum = 0, 0, 0.0
    epoch_loss, epoch_samples = 0.0, 0
    for _ in range(epochs):
        epoch_loss, epoch_samples = 0.0, 0
        for batch in batches():
            optimizer.zero_grad(set_to_none=True)
            loss, count = batch_loss(batch)
            loss.backward()
            optimizer.step()
            weighted = float(loss.detach()) * count
            steps += 1
            samples += count
            loss_sum += weighted
            epoch_samples += count
            epoch_loss += weighted
        if after_epoch is not None:
            after_epoch()
    return TrainResult(num_samples=samples // epochs if epochs else 0, steps=steps,
                       mean_loss=loss_sum / samples if samples else 0.0,
                       final_loss=epoch_loss / epoch_samples if epoch_samples else math.nan,
                       epochs=epochs)
