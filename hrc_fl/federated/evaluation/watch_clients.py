"""Federated clients from the real smartwatch IMU recordings: one client per subject (10 clients).

Windows and the time-ordered train / validation / test split with gaps come from
:func:`hrc_fl.intention.windows.make_time_split` (every recording: train on its first part, validate on the
middle part, test on the last part, a gap of ``TimeSplit.gap_samples`` before each later part, no window
across a boundary). The scarce-label regime keeps labels for a random ``label_fraction`` of each client's
training windows (at least one per class the client has); the rest of its training windows become the
client's ``unlabelled_x`` (usable only by its own semi-supervised training; never its validation or test
windows). Validation windows keep their labels: a worker labels them as it labels training windows, and
every choice of the evaluation protocol is made on them (docs/federated_evaluation.md).

What every trainer of these clients shares (the fl-report's simulator runs and the watch learner's
workstations alike): the federation's IMU normalisation (:func:`federated_normalisation`) and the seeded
model factory (:func:`model_factory`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hrc_fl.federated.evaluation.simulator import ClientData
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig
from hrc_fl.intention.windows import TimeSplit, WindowSet, WindowSpec, make_time_split


@dataclass(frozen=True)
class _Recording:
    subject: int
    label: int
    imu: np.ndarray


def load_recordings() -> tuple[list[_Recording], tuple[str, ...]]:
    """The watch recordings and class names (through hrc_fl.data when present, else seglearn)."""
    try:
        from hrc_fl.data.datasets import WATCH_CLASSES, load_watch

        return [_Recording(int(r.subject), int(r.label), r.imu) for r in load_watch()], tuple(WATCH_CLASSES)
    except (ImportError, FileNotFoundError):
        # setup-assets not run yet: seglearn (a registry package) ships the same recordings
        from seglearn.datasets import load_watch as seglearn_watch

        raw = seglearn_watch()
        names = tuple(str(n) for n in raw["y_labels"])
        return [_Recording(int(s), int(y), np.asarray(x, np.float32))
                for x, y, s in zip(raw["X"], raw["y"], raw["subject"], strict=True)], names


def label_subset(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a random ``fraction`` of ``y`` that holds at least one sample of every class present."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(y))
    count = max(1, round(fraction * len(y)))
    chosen = set(rng.choice(len(y), size=count, replace=False).tolist())
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if not chosen.intersection(members.tolist()):
            chosen.add(int(rng.choice(members)))
    return np.array(sorted(chosen), dtype=np.int64)


def watch_clients(*, label_fraction: float = 1.0, seed: int = 0, spec: WindowSpec | None = None,
                  subjects: Sequence[int] | None = None, split: TimeSplit | None = None
                  ) -> tuple[list[ClientData], tuple[str, ...]]:
    """One :class:`ClientData` per subject (ids ``subject-<n>``) and the class names."""
    recordings, class_names = load_recordings()
    train, validation, test = make_time_split(recordings, spec or WindowSpec(), split or TimeSplit())
    rng = np.random.default_rng(seed)
    wanted = sorted(set(train.subject.tolist())) if subjects is None else list(subjects)
    clients = []
    for subject in wanted:
        tr: WindowSet = train.select(train.subject == subject)
        va: WindowSet = validation.select(validation.subject == subject)
        te: WindowSet = test.select(test.subject == subject)
        keep = label_subset(tr.y, label_fraction, rng)
        unlabelled = np.ones(len(tr.y), bool)
        unlabelled[keep] = False
        clients.append(ClientData(f"subject-{subject}", tr.x[keep], tr.y[keep], te.x, te.y,
                                  unlabelled_x=tr.x[unlabelled], val_x=va.x, val_y=va.y))
    return clients, class_names


def joining_worker(subject: int, k: int, *, seed: int = 0, spec: WindowSpec | None = None,
                   split: TimeSplit | None = None) -> ClientData:
    """A worker who joins a trained federation (id ``subject-<n>``): labels on its first ``k`` training
    windows in time (:func:`~hrc_fl.federated.evaluation.onboarding.first_in_time`, ties in a task order drawn from
    ``seed`` and the subject), the rest of its training windows unlabelled; validation and test windows
    as in :func:`watch_clients`. ``k`` >= 1 (a worker with no label trains nothing)."""
    from hrc_fl.federated.evaluation.onboarding import first_in_time

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    recordings, _ = load_recordings()
    train, validation, test = make_time_split(recordings, spec or WindowSpec(), split or TimeSplit(),
                                              subjects=[subject])
    if k > len(train):
        raise ValueError(f"subject {subject} has {len(train)} training windows, fewer than k = {k}")
    order = first_in_time(train.start, train.recording, np.random.default_rng([seed, subject]))
    labelled, rest = order[:k], order[k:]
    return ClientData(f"subject-{subject}", train.x[labelled], train.y[labelled], test.x, test.y,
                      unlabelled_x=train.x[rest], val_x=validation.x, val_y=validation.y)


def federated_normalisation(clients: Sequence[ClientData]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel IMU mean/std from per-client sums over their training windows, labelled and unlabelled
    (what a federation can share once: 12 numbers per client, no raw data; never validation or test)."""
    windows = [np.concatenate([c.train_x, c.unlabelled_x]).reshape(-1, 6).astype(np.float64) for c in clients]
    count = sum(w.shape[0] for w in windows)
    mean = sum(w.sum(axis=0) for w in windows) / count
    squares = sum((w ** 2).sum(axis=0) for w in windows) / count
    std = np.sqrt(np.maximum(squares - mean ** 2, 1e-6))
    return mean.astype(np.float32), std.astype(np.float32)


def model_factory(num_classes: int, window: int, mean: np.ndarray, std: np.ndarray, projector_dim: int = 0
                  ) -> Callable[[int], IntentionModel]:
    """Builds identical IntentionModels for a seed without touching the global torch RNG. Encoders and head
    are the same for any ``projector_dim`` (0 = no projector: methods without self-supervision carry no
    unused tensors, so full-model FedAvg sends only what it trains)."""
    def build(seed: int) -> IntentionModel:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = IntentionModel(IntentionModelConfig(num_classes=num_classes, imu_window=window,
                                                        projector_dim=projector_dim))
        model.set_imu_normalisation(torch.from_numpy(mean), torch.from_numpy(std))
        return model
    return build
