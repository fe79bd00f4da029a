"""Training, fine-tuning and scoring of the intention model (plain torch, no ROS, no FedML).

Modality dropout happens inside the model in training mode (``config.modality_dropout_p``), so every
function here that trains with several modalities trains for missing streams too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import Tensor, nn

from hrc_fl.intention.model import MODALITIES, IntentionModel, is_shared_key
from hrc_fl.training_loop import TrainResult, run_epochs


@dataclass(frozen=True)
class Samples:
    """A labelled data set; a modality is None when no sample has it. ``present`` (N, 3) marks per
    sample which of (imu, hands, pose) is real (absent rows hold zeros)."""

    y: np.ndarray                    # (N,) int64
    imu: np.ndarray | None = None    # (N, T, 6) float32, m/s² and rad/s
    hands: np.ndarray | None = None  # (N, hands_dim) float32
    pose: np.ndarray | None = None   # (N, pose_dim) float32
    present: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        for name in MODALITIES:
            x = getattr(self, name)
            if x is not None and len(x) != n:
                raise ValueError(f"{name} has {len(x)} rows, labels have {n}")
        if all(getattr(self, m) is None for m in MODALITIES):
            raise ValueError("Samples need at least one modality")
        if self.present is not None and self.present.shape != (n, len(MODALITIES)):
            raise ValueError(f"present must have shape ({n}, {len(MODALITIES)})")

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self, index: np.ndarray | slice) -> dict[str, Tensor | None]:
        out: dict[str, Tensor | None] = {}
        for name in MODALITIES:
            x = getattr(self, name)
            out[name] = None if x is None else torch.from_numpy(np.ascontiguousarray(x[index]))
        out["present"] = None if self.present is None else torch.from_numpy(
            np.ascontiguousarray(self.present[index]).astype(np.float32))
        return out


def fit_imu_normalisation(model: IntentionModel, imu: np.ndarray) -> None:
    """Set the IMU encoder's input mean/std from training windows (N, T, 6)."""
    flat = imu.reshape(-1, imu.shape[-1]).astype(np.float64)
    std = np.maximum(flat.std(axis=0), 1e-3)
    with torch.no_grad():
        model.set_imu_normalisation(torch.tensor(flat.mean(axis=0), dtype=torch.float32),
                                    torch.tensor(std, dtype=torch.float32))


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train_model(model: IntentionModel, data: Samples, *, epochs: int, lr: float = 3e-3,
                batch_size: int = 64, weight_decay: float = 1e-4, seed: int = 0,
                part: str = "all", class_weights: np.ndarray | None = None) -> TrainResult:
    """Train ``part`` ("all", "shared" or "personal") of ``model`` with Adam and cross-entropy.

    ``seed`` fixes batch order and dropout masks; the model is left in eval mode.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    if part not in ("all", "shared", "personal"):
        raise ValueError(f"part must be all, shared or personal, got {part!r}")
    if len(data) == 0:
        raise ValueError("no training samples")
    params = [p for n, p in model.named_parameters()
              if part == "all" or (part == "shared") == is_shared_key(n)]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    y_all = torch.from_numpy(data.y.astype(np.int64))

    def batch_loss(idx: np.ndarray) -> tuple[Tensor, int]:
        t = data.tensors(idx)
        logits = model(t["imu"], t["hands"], t["pose"], present=t["present"])
        return loss_fn(logits, y_all[idx]), len(idx)

    result = run_epochs(model, optimizer, epochs=epochs, batches=lambda: _batches(len(data), batch_size, rng),
                        batch_loss=batch_loss)
    model.eval()
    return result


@torch.no_grad()
def predict_proba(model: IntentionModel, data: Samples, batch_size: int = 512) -> np.ndarray:
    """(N, num_classes) class probabilities in eval mode (no modality dropout)."""
    model.eval()
    out = []
    for i in range(0, len(data), batch_size):
        t = data.tensors(slice(i, i + batch_size))
        out.append(torch.softmax(model(t["imu"], t["hands"], t["pose"], present=t["present"]), dim=1))
    if not out:
        return np.zeros((0, model.config.num_classes), dtype=np.float32)
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    num_samples: int


def score(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Scores:
    """Accuracy and macro-F1 over the classes present in ``y_true`` or ``y_pred``."""
    if len(y_true) == 0:
        raise ValueError("cannot score an empty test set")
    labels = sorted(set(int(v) for v in np.concatenate([y_true, y_pred])) & set(range(num_classes)))
    return Scores(accuracy=float(np.mean(y_true == y_pred)),
                  macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
                  num_samples=len(y_true))


def evaluate(model: IntentionModel, data: Samples) -> Scores:
    proba = predict_proba(model, data)
    return score(data.y, proba.argmax(axis=1), model.config.num_classes)
