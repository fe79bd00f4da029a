"""Aggregator state on disk: a versioned registry of global shared-layer models and the round checkpoint.

Layout of ``state_dir``: ``models/v<round:05d>.safetensors`` (the global shared tensors after a round, with
JSON metadata: round, version, accepted and rejected clients) and ``checkpoint.json`` (the last completed
round and its model file). Every file is written to a temporary file in the same folder, fsynced and
renamed, and the checkpoint is written only after its model file, so a crash at any point leaves either
the previous or the new completed round, never a half-written one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from hrc_fl.data.atomic_io import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.json"


@dataclass(frozen=True)
class RegistryEntry:
    """One completed round's global model."""

    round: int
    version: str
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]


def version_name(round_index: int) -> str:
    return f"v{round_index:05d}"


class ModelRegistry:
    """Versioned global models plus the checkpoint pointer (see module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.models_dir = self.state_dir / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)

    def commit_round(self, round_index: int, tensors: Mapping[str, np.ndarray],
                     meta: Mapping[str, Any]) -> str:
        """Store the global model of a completed round and move the checkpoint to it; return its version."""
        if round_index < 0:
            raise ValueError(f"round must be >= 0, got {round_index}")
        version = version_name(round_index)
        full_meta = {**meta, "round": round_index, "version": version}
        blob = save({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
                    metadata={"meta": json.dumps(full_meta)})
        model_path = self.models_dir / f"{version}.safetensors"
        atomic_write_bytes(model_path, blob)
        pointer = {"round": round_index, "version": version, "model": model_path.name}
        atomic_write_bytes(self.state_dir / CHECKPOINT_NAME, json.dumps(pointer).encode())
        return version

    def latest(self) -> RegistryEntry | None:
        """The last completed round, or None for a fresh federation."""
        pointer_path = self.state_dir / CHECKPOINT_NAME
        if not pointer_path.is_file():
            return None
        pointer = json.loads(pointer_path.read_text())
        return self.load(str(pointer["version"]))

    def load(self, version: str) -> RegistryEntry:
        path = self.models_dir / f"{version}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"model version {version} not in registry {self.models_dir}")
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        meta = json.loads(header.get("__metadata__", {}).get("meta", "{}"))
        return RegistryEntry(int(meta["round"]), version, tensors, meta)

    def versions(self) -> list[str]:
        """All stored versions, oldest first."""
        return sorted(p.stem for p in self.models_dir.glob("v*.safetensors"))
