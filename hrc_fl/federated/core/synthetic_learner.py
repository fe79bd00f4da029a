"""A small synthetic learner module for federated benchmarks and process tests (no data sets needed).

Model: ``encoders.mlp`` (shared) and ``head`` (personal). Each workstation draws its own Gaussian class
clusters from a seed derived from its name, and permutes the class labels per workstation, so a shared
encoder helps everyone while the heads must differ (the personalised setting in miniature).

Options (config ``learner.options`` or ``hrc-fl fl-client --option``): ``num_samples``, ``in_dim``,
``hidden``, ``num_classes``, ``epochs``, ``lr``, ``batch_size``; ``head_epochs`` and ``fine_tune_epochs``
(the FedRep client flow of :class:`~hrc_fl.federated.core.learner.TorchLearner`; 0 = joint training);
``train_delay_s`` (sleep after training,
to simulate a slow workstation); ``fault``: ``none`` | ``nan`` | ``scale100`` | ``signflip`` (a faulty or
malicious client: its uploaded shared tensors are corrupted after training), ``faults``: per-workstation
override ``{name: fault}`` (several clients in one process); ``snapshot_dir``: write the
full local model (shared + head) there after each new global model, as ``<name>.safetensors``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hrc_fl.federated.core.learner import TorchLearner

SHARED_PREFIXES = ("encoders.",)
FAULTS = ("none", "nan", "scale100", "signflip")
DEFAULTS = {"num_samples": 64, "in_dim": 8, "hidden": 16, "num_classes": 3, "epochs": 1, "lr": 0.01,
            "batch_size": 32, "head_epochs": 0, "fine_tune_epochs": 0, "train_delay_s": 0.0, "fault": "none",
            "faults": {}, "snapshot_dir": ""}


class SyntheticModel(nn.Module):
    """encoders (shared) -> head (personal)."""

    SHARED_PREFIXES = SHARED_PREFIXES

    def __init__(self, in_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"mlp": nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())})
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoders["mlp"](x))


def _options(options: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic learner options: {unknown}")
    merged = {**DEFAULTS, **options}
    for fault in (merged["fault"], *dict(merged["faults"]).values()):
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    return merged


def _name_seed(name: str, seed: int) -> int:
    return int(hashlib.sha256(f"{name}/{seed}".encode()).hexdigest()[:8], 16)


def _model(opts: Mapping[str, object], seed: int) -> SyntheticModel:
    torch.manual_seed(seed)
    return SyntheticModel(int(opts["in_dim"]), int(opts["hidden"]), int(opts["num_classes"]))


def initial_shared(options: Mapping[str, object], seed: int) -> dict[str, np.ndarray]:
    """Round-0 shared tensors (same model init as every client)."""
    from hrc_fl.federated.core.split import shared_state

    return shared_state(_model(_options(options), seed), SHARED_PREFIXES)


class _Loader:
    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        self.x, self.y, self.batch_size, self.rng = x, y, batch_size, rng

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.rng.permutation(len(self.y))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])


class SyntheticLearner(TorchLearner):
    """TorchLearner on synthetic per-workstation data, with optional faults and snapshots."""

    def __init__(self, name: str, opts: Mapping[str, object], seed: int) -> None:
        self.name = name
        self.opts = dict(opts)
        self.opts["fault"] = dict(self.opts["faults"]).get(name, self.opts["fault"])
        rng = np.random.default_rng(_name_seed(name, seed))
        classes, dim, n = int(opts["num_classes"]), int(opts["in_dim"]), int(opts["num_samples"])
        centres = np.random.default_rng(seed).normal(0.0, 2.0, (classes, dim))  # common structure
        y_true = rng.integers(0, classes, n)
        self.x = (centres[y_true] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32)
        self.y = rng.permutation(classes)[y_true].astype(np.int64)  # personal label mapping
        self.rng = rng
        self._trained = False
        super().__init__(_model(opts, seed), self._loader, epochs=int(opts["epochs"]), lr=float(opts["lr"]),
                         head_epochs=int(opts["head_epochs"]), fine_tune_epochs=int(opts["fine_tune_epochs"]))

    def _loader(self, server_round: int) -> _Loader:
        return _Loader(self.x, self.y, int(self.opts["batch_size"]), self.rng)

    def get_shared(self) -> dict[str, np.ndarray]:
        tensors = super().get_shared()
        if not self._trained or self.opts["fault"] == "none":
            return tensors
        if self.opts["fault"] == "nan":
            return {k: np.full_like(v, np.nan) for k, v in tensors.items()}
        # Corrupt the update (trained - reference) rather than the weights themselves.
        factor = 100.0 if self.opts["fault"] == "scale100" else -1.0
        return {k: (self._reference[k] + factor * (v - self._reference[k])).astype(np.float32)
                for k, v in tensors.items()}

    def set_shared(self, tensors: Mapping[str, np.ndarray]) -> None:
        super().set_shared(tensors)
        self._trained = False

    def train_round(self, server_round: int, config: Mapping[str, float]) -> tuple[int, dict[str, float]]:
        self._reference = super().get_shared()
        result = super().train_round(server_round, config)
        self._trained = True
        delay_s = float(self.opts["train_delay_s"])
        if delay_s > 0:
            time.sleep(delay_s)
        return result

    def on_global_model(self, server_round: int, version: str) -> None:
        super().on_global_model(server_round, version)  # head refresh when fine_tune_epochs > 0
        snapshot_dir = str(self.opts["snapshot_dir"])
        if not snapshot_dir:
            return
        from safetensors.torch import save_file

        Path(snapshot_dir).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        tmp = Path(snapshot_dir) / f".{self.name}.tmp"
        save_file(state, str(tmp), metadata={"round": str(server_round), "version": version})
        tmp.replace(Path(snapshot_dir) / f"{self.name}.safetensors")


def make_learner(name: str, options: Mapping[str, object], seed: int) -> SyntheticLearner:
    return SyntheticLearner(name, _options(options), seed)
