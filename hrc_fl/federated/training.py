"""Local training and evaluation on one client (plain torch).

A loader yields ``(features, labels)`` batches: ``features`` is either a Tensor (passed positionally) or
a dict of keyword tensors for the model's ``forward`` (e.g. ``{"imu": (B, T, 6)}`` for IntentionModel);
``labels`` is a LongTensor (B,) of class indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hrc_fl.federated.split import is_shared

Batch = tuple[torch.Tensor | Mapping[str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainResult:
    """What one call of local training did: samples seen per epoch, optimiser steps, mean loss."""

    num_samples: int
    steps: int
    mean_loss: float


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and macro-F1 (both in [0, 1]) over ``num_samples`` samples."""

    accuracy: float
    macro_f1: float
    num_samples: int


def forward(model: nn.Module, features: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits for a batch whose features are a Tensor or a dict of keyword tensors."""
    if isinstance(features, Mapping):
        return model(**features)
    return model(features)


def train_local(model: nn.Module, loader: Iterable[Batch], *, epochs: int, lr: float,
                proximal_mu: float = 0.0, shared_reference: Mapping[str, np.ndarray] | None = None,
                shared_prefixes: Sequence[str] = ("",), trainable_prefixes: Sequence[str] | None = None,
                weight_decay: float = 0.0) -> TrainResult:
    """Train ``model`` in place with Adam and cross-entropy.

    FedProx (Li et al. 2020, MLSys): with ``proximal_mu`` > 0 the loss gains
    (mu/2) * sum ||w - w_ref||^2 over the shared parameters, ``shared_reference`` holding w_ref (the
    round's global shared tensors by state-dict name). ``trainable_prefixes`` limits which parameters
    are updated (e.g. only the personal head for fine-tuning, FedRep's alternating steps); None = all.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not proximal_mu >= 0:
        raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
    if proximal_mu > 0 and shared_reference is None:
        raise ValueError("proximal_mu > 0 needs shared_reference (the global shared tensors)")
    named = [(n, p) for n, p in model.named_parameters()
             if trainable_prefixes is None or is_shared(n, trainable_prefixes)]
    if not named:
        raise ValueError(f"no parameters match trainable_prefixes {trainable_prefixes}")
    trainable = {n for n, _ in named}
    previous_flags = {name: param.requires_grad for name, param in model.named_parameters()}
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    optimizer = torch.optim.Adam([p for _, p in named], lr=lr, weight_decay=weight_decay)
    anchors: list[tuple[torch.Tensor, torch.Tensor]] = []
    if proximal_mu > 0:
        assert shared_reference is not None
        for name, param in named:
            if is_shared(name, shared_prefixes) and name in shared_reference:
                anchors.append((param, torch.as_tensor(np.asarray(shared_reference[name]), dtype=param.dtype)))
    model.train()
    steps, samples, loss_sum = 0, 0, 0.0
    for _ in range(epochs):
        for features, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(model, features), labels)
            if anchors:
                prox = sum(((p - ref) ** 2).sum() for p, ref in anchors)
                loss = loss + 0.5 * proximal_mu * prox
            loss.backward()
            optimizer.step()
            steps += 1
            samples += int(labels.shape[0])
            loss_sum += float(loss.detach()) * int(labels.shape[0])
    for name, param in model.named_parameters():
        param.requires_grad_(previous_flags[name])
    per_epoch = samples // epochs if epochs else 0
    return TrainResult(num_samples=per_epoch, steps=steps, mean_loss=loss_sum / samples if samples else 0.0)


def predict(model: nn.Module, loader: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over a loader, in eval mode without gradients."""
    model.eval()
    truth: list[np.ndarray] = []
    guess: list[np.ndarray] = []
    with torch.no_grad():
        for features, labels in loader:
            truth.append(labels.cpu().numpy())
            guess.append(forward(model, features).argmax(dim=1).cpu().numpy())
    if not truth:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(truth), np.concatenate(guess)


def macro_f1(truth: np.ndarray, guess: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``truth`` or ``guess``."""
    classes = np.union1d(truth, guess)
    if classes.size == 0:
        return 0.0
    scores = []
    for c in classes:
        tp = float(np.sum((guess == c) & (truth == c)))
        fp = float(np.sum((guess == c) & (truth != c)))
        fn = float(np.sum((guess != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(scores))


def evaluate(model: nn.Module, loader: Iterable[Batch]) -> EvalResult:
    """Accuracy and macro-F1 of ``model`` on a loader."""
    truth, guess = predict(model, loader)
    if truth.size == 0:
        return EvalResult(0.0, 0.0, 0)
    return EvalResult(float(np.mean(truth == guess)), macro_f1(truth, guess), int(truth.size))


def personal_names(model: nn.Module, shared_prefixes: Sequence[str]) -> tuple[str, ...]:
    """Names of the parameters outside ``shared_prefixes`` (the personal head)."""
    return tuple(n for n, _ in model.named_parameters() if not is_shared(n, shared_prefixes))


def train_fedrep(model: nn.Module, loader: Iterable[Batch], *, head_epochs: int, epochs: int, lr: float,
                 shared_prefixes: Sequence[str], proximal_mu: float = 0.0,
                 shared_reference: Mapping[str, np.ndarray] | None = None,
                 weight_decay: float = 0.0) -> TrainResult:
    """One client round of FedRep (Collins et al. 2021): the personal head for ``head_epochs`` with the
    shared encoders frozen, then the shared encoders for ``epochs`` with the head frozen (FedProx term
    ``proximal_mu`` towards ``shared_reference`` on the encoders). Returns the encoder phase's result
    (its ``num_samples`` is the FedAvg weight)."""
    if head_epochs < 0:
        raise ValueError(f"head_epochs must be >= 0, got {head_epochs}")
    if head_epochs:
        personal = personal_names(model, shared_prefixes)
        if not personal:
            raise ValueError("model has no personal parameters outside the shared prefixes")
        train_local(model, loader, epochs=head_epochs, lr=lr, trainable_prefixes=personal,
                    weight_decay=weight_decay)
    return train_local(model, loader, epochs=epochs, lr=lr, proximal_mu=proximal_mu,
                       shared_reference=shared_reference, shared_prefixes=shared_prefixes,
                       trainable_prefixes=tuple(shared_prefixes), weight_decay=weight_decay)


def fine_tune_personal(model: nn.Module, loader: Iterable[Batch], *, epochs: int, lr: float,
                       shared_prefixes: Sequence[str]) -> TrainResult:
    """Train only the parameters outside ``shared_prefixes`` (the personal head), encoders frozen."""
    personal = personal_names(model, shared_prefixes)
    if not personal:
        raise ValueError("model has no personal parameters outside the shared prefixes")
    return train_local(model, loader, epochs=epochs, lr=lr, trainable_prefixes=personal)
