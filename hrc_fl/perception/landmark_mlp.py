"""A small MLP over landmark features, its training loop, safetensors storage and evaluation reports.

Shared by the gesture and arm-signal classifiers. ROS-free; torch on CPU, for training. The nodes run
the saved models without torch through :mod:`hrc_fl.perception.landmark_mlp_numpy` (same files); keep
the two forward passes in step when the architecture changes (a test compares them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from hrc_fl.data.atomic_io import atomic_write_bytes, atomic_write_text
from hrc_fl.perception.landmark_mlp_numpy import read_meta
from hrc_fl.training_loop import run_epochs


class LandmarkMLP(nn.Module):
    """features (B, in_dim) -> logits (B, num_classes); two ReLU hidden layers with dropout, no normalisation."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 2 or hidden < 1:
            raise ValueError(f"bad MLP shape in_dim={in_dim} num_classes={num_classes} hidden={hidden}")
        self.in_dim, self.num_classes, self.hidden = in_dim, num_classes, hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, num_classes) for features (N, in_dim): the interface of
        :class:`~hrc_fl.perception.landmark_mlp_numpy.NumpyLandmarkMLP`, so a classifier runs either."""
        return predict_proba(self, features)


#: ``(raw samples, their labels, rng) -> (features, labels)``: one epoch's augmented, featurised data.
#: Labels may change with the augmentation (a thumb turned over is another gesture).
EpochData = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def train_mlp(epoch_data: EpochData, raw: np.ndarray, labels: np.ndarray, *, in_dim: int, num_classes: int,
              epochs: int, seed: int, lr: float = 2e-3, batch_size: int = 256, hidden: int = 128) -> LandmarkMLP:
    """Train on ``raw`` samples; ``epoch_data(raw, labels, rng)`` augments and featurises each epoch."""
    # one thread: tiny matrices, and several threads on a shared 2-core machine are much slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(epoch_data, raw, labels, in_dim=in_dim, num_classes=num_classes, epochs=epochs,
                      seed=seed, lr=lr, batch_size=batch_size, hidden=hidden)
    finally:
        torch.set_num_threads(threads)


def _train(epoch_data: EpochData, raw: np.ndarray, labels: np.ndarray, *, in_dim: int, num_classes: int,
           epochs: int, seed: int, lr: float, batch_size: int, hidden: int) -> LandmarkMLP:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LandmarkMLP(in_dim, num_classes, hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        x, y = epoch_data(raw, labels, rng)  # a fresh augmentation every epoch
        x_all = torch.as_tensor(x, dtype=torch.float32)
        y_all = torch.as_tensor(y, dtype=torch.long)
        order = torch.as_tensor(rng.permutation(len(raw)))
        for start in range(0, len(raw), batch_size):
            idx = order[start:start + batch_size]
            yield x_all[idx], y_all[idx]

    def batch_loss(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        x, y = batch
        return loss_fn(model(x), y), len(y)

    with torch.inference_mode(False):
        run_epochs(model, opt, epochs=epochs, batches=batches, batch_loss=batch_loss, after_epoch=sched.step)
    model.eval()
    return model


def predict_proba(model: LandmarkMLP, features: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, num_classes) for features (N, in_dim)."""
    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        return torch.softmax(logits, dim=1).numpy()


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices, ``test_fraction`` of every class held out, fixed seed."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def save_model(weights_path: Path, model: LandmarkMLP, meta: dict) -> None:
    """Weights as safetensors + ``<name>.json`` meta next to them, both written atomically."""
    meta = {**meta, "in_dim": model.in_dim, "num_classes": model.num_classes, "hidden": model.hidden}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(weights_path, save(state, metadata={"format": "pt"}))
    atomic_write_text(Path(weights_path).with_suffix(".json"), json.dumps(meta, indent=1) + "\n")


def load_model(weights_path: Path) -> tuple[LandmarkMLP, dict]:
    """Model and meta saved by :func:`save_model`; ValueError on a mismatched file."""
    meta_path = Path(weights_path).with_suffix(".json")
    meta = read_meta(weights_path)
    model = LandmarkMLP(int(meta["in_dim"]), int(meta["num_classes"]), int(meta["hidden"]))
    try:
        model.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as exc:
        raise ValueError(f"{weights_path} does not match its meta {meta_path}: {exc}") from exc
    model.eval()
    return model, meta


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    denom = precision + recall
    return np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)


def write_report(out_dir: Path, name: str, cm: np.ndarray, class_names: Sequence[str], metrics: dict) -> None:
    """``<name>_metrics.json``, ``<name>_confusion.csv`` and ``<name>_confusion.png`` in ``out_dir``."""
    # here, not at the top: matplotlib with pyplot costs 0.7 s of import (measured, loaded machine) that
    # every importer of this module (training commands, tests) would pay for a report written once
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{name}_metrics.json", json.dumps(metrics, indent=1) + "\n")
    rows = ["true\\pred," + ",".join(class_names)]
    rows += [f"{n}," + ",".join(str(int(v)) for v in row) for n, row in zip(class_names, cm, strict=True)]
    atomic_write_text(out_dir / f"{name}_confusion.csv", "\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 0.8 + 0.6 * len(class_names)))
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{name}: held-out confusion matrix")
    fig.tight_layout()
    tmp = out_dir / f".{name}_confusion.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_dir / f"{name}_confusion.png")
