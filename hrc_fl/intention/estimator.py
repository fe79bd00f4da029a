"""Runs a loaded intention model on aligned inputs; swaps models between estimates (no ROS)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hrc_fl.intention.alignment import AlignedInputs
from hrc_fl.intention.model_store import LoadedModel


@dataclass(frozen=True)
class Estimate:
    label: str
    confidence: float
    labels: tuple[str, ...]
    probabilities: np.ndarray  # (num_classes,) float32, same order as labels
    present: tuple[bool, bool, bool]
    model_version: str


class IntentionEstimator:
    """Holds the active model; :meth:`estimate` and :meth:`swap` are safe to call from two threads
    (the swap takes effect for the next estimate, none is lost)."""

    def __init__(self, labels: Sequence[str]) -> None:
        if len(labels) < 2:
            raise ValueError("the label space needs at least two labels")
        self.labels = tuple(labels)
        self._active: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        with self._lock:
            return "" if self._active is None else self._active.meta.version

    @property
    def active(self) -> LoadedModel | None:
        with self._lock:
            return self._active

    def swap(self, loaded: LoadedModel) -> None:
        """Make ``loaded`` the active model (its labels must equal the label space)."""
        if loaded.meta.labels != self.labels:
            raise ValueError(f"model labels {list(loaded.meta.labels)} differ from {list(self.labels)}")
        loaded.model.eval()
        with self._lock:
            self._active = loaded

    @torch.no_grad()
    def estimate(self, inputs: AlignedInputs) -> Estimate | None:
        """Probabilities for ``inputs``; None when no model is loaded or no modality is present."""
        loaded = self.active
        if loaded is None or not inputs.any_present:
            return None
        imu = None if inputs.imu is None else torch.from_numpy(inputs.imu).unsqueeze(0)
        hands = None if inputs.hands is None else torch.from_numpy(inputs.hands).unsqueeze(0)
        pose = None if inputs.pose is None else torch.from_numpy(inputs.pose).unsqueeze(0)
        logits = loaded.model(imu, hands, pose)
        proba = torch.softmax(logits, dim=1)[0].numpy().astype(np.float32)
        best = int(proba.argmax())
        return Estimate(label=self.labels[best], confidence=float(proba[best]), labels=self.labels,
                        probabilities=proba, present=inputs.present, model_version=loaded.meta.version)
