"""Figures for the demo report's FL section, read from what the run's FL nodes wrote (ROS-free).

- Per-worker accuracy over rounds: every model version a workstation's FL client stored in its model
  store during the run (the global shared encoders of round r-1 + that worker's personal head, saved when
  round r's model arrived; the last one after the final round) is evaluated on the *held-out* part of that
  workstation's real subject: IMU windows of every recording starting at or after the 70 % cut of the
  subject-wise, time-ordered split (:mod:`hrc_fl.intention.windows`). The demo's wearable replay plays only
  the first part of each recording, so these windows were never replayed, trained on or labelled in the run.
  Hands and pose are left absent: in the demo they come from a photo that carries no exercise label.
- Uplink bytes per round: the aggregator's audit file (one line per received update: round, client,
  tensor names, encoding) with the tensor shapes of the run's global model: tensor data in the update's
  encoding plus one float32 scale per int8 tensor (:func:`hrc_fl.federated.core.compression.payload_bytes`'s
  accounting; wire framing and TLS not included).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Bytes per tensor element of each uplink encoding; int8 adds one float32 scale per tensor.
ENCODING_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
INT8_SCALE_BYTES = 4


@dataclass(frozen=True)
class VersionAccuracy:
    """Accuracy of one stored model version on a subject's held-out windows."""

    version: str
    after_round: int | None  # global rounds aggregated into its shared encoders (None: base model)
    accuracy: float       # fraction of windows classified correctly, 0..1
    windows: int


def heldout_windows(subject: int, labels: Sequence[str], window: int = 100,
                    train_fraction: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """(N, window, 6) SI IMU windows and (N,) indices into ``labels`` of ``subject``'s held-out part."""
    from hrc_fl.data.datasets import WATCH_CLASSES, load_watch
    from hrc_fl.intention.windows import WindowSpec, make_split

    _train, test = make_split(load_watch(), WindowSpec(window=window, step=window // 2,
                                                       train_fraction=train_fraction), subjects=[subject])
    index = {name: i for i, name in enumerate(labels)}
    known = np.array([WATCH_CLASSES[int(y)] in index for y in test.y], dtype=bool)
    y = np.array([index[WATCH_CLASSES[int(c)]] for c in test.y[known]], dtype=np.int64)
    return test.x[known], y


def global_round(info: dict) -> int | None:
    """Global round whose shared encoders a stored version holds (None: not from the federation,
    e.g. the seeded base model). The FL client notes the registry version ``vNNNNN`` = round NNNNN."""
    version = str(info.get("global_version") or "")
    if len(version) > 1 and version[0] == "v" and version[1:].isdigit():
        return int(version[1:])
    return None


def evaluate_store(store_dir: Path, subject: int, labels: Sequence[str]) -> list[VersionAccuracy]:
    """Accuracy of every version in ``store_dir``, oldest first (IMU only, held-out windows)."""
    import torch

    from hrc_fl.intention.model_store import ModelStore, ModelStoreError

    store = ModelStore(Path(store_dir))
    versions = store.versions()
    if not versions:
        return []
    out: list[VersionAccuracy] = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    torch.set_num_threads(1)
    for version in versions:
        try:
            loaded = store.load(version, labels=labels)
        except ModelStoreError:
            continue
        after = global_round(loaded.meta.info)
        window = loaded.meta.config.imu_window
        if window not in cache:
            cache[window] = heldout_windows(subject, labels, window)
        x, y = cache[window]
        if len(y) == 0:
            continue
        with torch.no_grad():
            logits = loaded.model(torch.from_numpy(x), None, None)
        accuracy = float((logits.argmax(dim=1).numpy() == y).mean())
        out.append(VersionAccuracy(version, after, accuracy, len(y)))
    return out


def accuracy_by_round(results: list[VersionAccuracy]) -> dict[int, float]:
    """global round -> accuracy of the newest version holding that round's global encoders
    (round 0 = the federation's initial encoders, before any aggregation)."""
    return {r.after_round: r.accuracy for r in results if r.after_round is not None}


def uplink_bytes_per_round(audit_path: Path, tensor_sizes: dict[str, int]) -> dict[int, int]:
    """round -> bytes of tensor payload that all clients uploaded in that round (see module docstring).

    ``tensor_sizes``: number of elements of each shared tensor (from the run's global model)."""
    out: dict[int, int] = {}
    path = Path(audit_path)
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            scheme = str(entry["scheme"])
            names = list(entry["tensors"])
            round_index = int(entry["round"])
        except (ValueError, KeyError, TypeError):
            continue
        if scheme not in ENCODING_BYTES or not names:
            continue   # a refused (malformed) update carried nothing usable
        size = sum(ENCODING_BYTES[scheme] * int(tensor_sizes.get(n, 0)) for n in names)
        if scheme == "int8":
            size += INT8_SCALE_BYTES * len(names)
        out[round_index] = out.get(round_index, 0) + size
    return out


def global_tensor_sizes(state_dir: Path) -> dict[str, int]:
    """Elements per shared tensor of the newest global model in the aggregator's registry ({} if none)."""
    from safetensors.numpy import load_file

    models = sorted((Path(state_dir) / "models").glob("v*.safetensors"))
    if not models:
        return {}
    return {name: int(np.asarray(t).size) for name, t in load_file(str(models[-1])).items()}
