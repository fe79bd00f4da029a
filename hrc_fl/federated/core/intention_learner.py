"""The workstation's federated learner for the intention model (FedML-free; the fl_client node uses it).

Shared part = ``IntentionModel.encoders`` (aggregated across the plant); personal part = ``head`` (never
leaves the device). Each round trains on the worker's labelled windows from the local
:class:`~hrc_fl.federated.core.sample_store.SampleStore` with the one client round of
:mod:`hrc_fl.federated.core.client_update` (FedRep: the head ``head_epochs`` with the encoders frozen, then the
encoders ``epochs`` with the head frozen, FedProx term when the server asks for one; ``head_epochs`` = 0:
joint training); only the encoders' parameters are sent (their buffers, the IMU input normalisation, stay
on the workstation). Every new global model is combined with the local head, the head is refreshed on it
for ``fine_tune_epochs`` with the encoders frozen (:func:`~hrc_fl.federated.core.client_update.refresh_head`), and
the result is written as a new version to the local :class:`~hrc_fl.intention.model_store.ModelStore`,
after which ``on_model(version)`` lets the node tell the intention node to hot-swap. With scarce labels
this flow beat joint (FedPer) training by 3-4 points in the simulator (docs/federated_core.md).

Self-supervision (``self_supervised``, a :class:`~hrc_fl.federated.core.self_supervised.VicRegConfig`): the encoder
phase also learns from every IMU window the store holds, labelled or not (the node stores unlabelled
windows between task events), through the model's personal projector; nothing of it is sent.

As a learner module (config ``learner.module: hrc_fl.federated.core.intention_learner``) the options are:
``labels`` (label space; default :data:`hrc_fl.intention.labels.INTENTION_LABELS`), ``model``
(IntentionModelConfig fields other than num_classes), ``epochs``,
``lr``, ``batch_size``, ``head_epochs``, ``fine_tune_epochs``,
``sample_db`` and ``model_store_dir`` ('' = runtime defaults per workstation),
``max_samples_per_worker``, ``max_unlabelled_per_worker``, ``max_age_s``, ``self_supervised`` (a mapping of
:class:`~hrc_fl.federated.core.self_supervised.VicRegConfig` fields; absent or ``enabled: false`` = off).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrc_fl.federated.core.client_update import LocalRoundPlan, local_round, refresh_head
from hrc_fl.federated.core.sample_store import SampleStore
from hrc_fl.federated.core.self_supervised import VicRegConfig
from hrc_fl.federated.core.split import load_shared, shared_state
from hrc_fl.intention.labels import INTENTION_LABELS
from hrc_fl.intention.model import SHARED_PREFIXES, IntentionModel, IntentionModelConfig
from hrc_fl.intention.model_store import ModelStore, ModelStoreError
from hrc_fl.intention.training import Samples

log = logging.getLogger(__name__)

WEIGHT_DECAY = 1e-4  # as the intention area's own training (hrc_fl.intention.training.train_model)


class SamplesLoader:
    """Shuffled batches ``({"imu", "hands", "pose", "present"}, labels)`` of :class:`Samples` for the core's
    training functions; a fresh permutation from ``rng`` on every pass."""

    def __init__(self, data: Samples, batch_size: int, rng: np.random.Generator,
                 stop: threading.Event | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.rng, self.stop = data, batch_size, rng, stop
        self.labels = torch.from_numpy(data.y.astype(np.int64))

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor | None], torch.Tensor]]:
        order = self.rng.permutation(len(self.data))
        for start in range(0, len(order), self.batch_size):
            if self.stop is not None and self.stop.is_set():
                return  # the node is shutting down: end the epoch (every training loop draws from here)
            idx = order[start:start + self.batch_size]
            yield self.data.tensors(idx), self.labels[idx]


class WindowLoader:
    """Shuffled batches ``{"imu": (B, T, 6)}`` of IMU windows (no labels) for the self-supervised term."""

    def __init__(self, windows: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.windows = torch.from_numpy(np.ascontiguousarray(windows, np.float32))
        self.batch_size, self.rng = batch_size, rng

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.from_numpy(self.rng.permutation(len(self.windows)))
        for start in range(0, len(order), self.batch_size):
            yield {"imu": self.windows[order[start:start + self.batch_size]]}


class IntentionLearner:
    """A :class:`~hrc_fl.federated.core.learner.LocalLearner` over the intention model of one worker."""

    def __init__(self, *, worker_id: str, labels: Sequence[str], model_config: IntentionModelConfig,
                 model_store: ModelStore, sample_store: SampleStore, epochs: int, lr: float, batch_size: int,
                 seed: int, head_epochs: int = 2, fine_tune_epochs: int = 2,
                 on_model: Callable[[str], None] | None = None,
                 self_supervised: VicRegConfig | None = None, stop_event: threading.Event | None = None,
                 base_store: ModelStore | None = None) -> None:
        if len(labels) != model_config.num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {model_config.num_classes} classes")
        if epochs < 1 or batch_size < 1 or not lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if head_epochs < 0 or fine_tune_epochs < 0:
            raise ValueError("head_epochs and fine_tune_epochs must be >= 0")
        self.worker_id = worker_id
        self.labels = tuple(labels)
        self.store = model_store
        self.samples = sample_store
        self.batch_size, self.seed = batch_size, seed
        self.plan = LocalRoundPlan(epochs=epochs, lr=lr, head_epochs=head_epochs, fine_tune_epochs=fine_tune_epochs,
                                   weight_decay=WEIGHT_DECAY)
        self.on_model = on_model
        if self_supervised is not None and model_config.projector_dim < 1:
            raise ValueError("self_supervised needs a model with a projector (model.projector_dim > 0)")
        self.self_supervised = self_supervised
        #: set when the workstation shuts down: training ends at the next batch (a clean, quick exit)
        self.stop_event = stop_event
        #: where a workstation with an empty store takes its first model from (the base model): its buffers
        #: (IMU input normalisation) are never federated, so they must come with the model
        self.base_store = base_store
        self.model = self._initial_model(model_config)
        #: windows the last round's self-supervised term drew from (0: it did not run)
        self.last_ssl_windows = 0

    def _initial_model(self, config: IntentionModelConfig) -> IntentionModel:
        loaded = None
        for store in (self.store, self.base_store):
            if store is None or loaded is not None:
                continue
            try:
                loaded = store.load_latest(labels=self.labels, config=config)
            except ModelStoreError:
                loaded = None  # an unusable stored model: try the next, else a fresh one
        if loaded is None:
            torch.manual_seed(self.seed)
            return IntentionModel(config)
        if loaded.model.config.projector_dim == config.projector_dim:
            return loaded.model
        # a stored model from before (or without) the projector: keep its encoders and head, add a fresh one
        torch.manual_seed(self.seed)
        model = IntentionModel(dataclasses.replace(loaded.model.config, projector_dim=config.projector_dim))
        kept = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("projector.")}
        model.load_state_dict(kept, strict=False)
        return model.eval()

    def get_shared(self) -> dict[str, np.ndarray]:
        return shared_state(self.model, SHARED_PREFIXES)

    def set_shared(self, tensors: Mapping[str, np.ndarray]) -> None:
        load_shared(self.model, tensors, SHARED_PREFIXES)

    def local_samples(self) -> Samples | None:
        c = self.model.config
        stored = self.samples.load(self.worker_id, self.labels, imu_window=c.imu_window, hands_dim=c.hands_dim,
                                   pose_dim=c.pose_dim)
        if stored is None:
            return None
        return Samples(y=stored.y, imu=stored.imu, hands=stored.hands, pose=stored.pose, present=stored.present)

    def _loader(self, data: Samples, stream: int) -> SamplesLoader:
        # seeded per round and phase: a restarted workstation repeats its batch order and dropout masks
        torch.manual_seed(self.seed + stream)
        return SamplesLoader(data, self.batch_size, np.random.default_rng(self.seed + stream), self.stop_event)

    def train_round(self, server_round: int, config: Mapping[str, float]) -> tuple[int, dict[str, float]]:
        data = self.local_samples()
        if data is None:
            return 0, {}
        mu = float(config.get("proximal_mu", 0.0))
        result = local_round(self.model, self._loader(data, server_round), self.plan, shared_prefixes=SHARED_PREFIXES,
                             proximal_mu=mu, shared_reference=self.get_shared() if mu > 0 else None,
                             **self._self_supervised_inputs(data, server_round))
        self.model.eval()
        metrics = {"loss": float(result.mean_loss)}
        if self.self_supervised is not None:
            metrics["ssl_windows"] = float(self.last_ssl_windows)
        return len(data), metrics

    def _self_supervised_inputs(self, data: Samples, server_round: int) -> dict[str, Any]:
        """``ssl_windows``/``ssl``/``generator`` for the local round: the labelled IMU windows plus the stored
        unlabelled ones; none when off or when fewer than ``min_windows``."""
        self.last_ssl_windows = 0
        cfg = self.self_supervised
        if cfg is None or cfg.weight == 0:
            return {}
        window = self.model.config.imu_window
        labelled = np.zeros((0, window, 6), np.float32)
        if data.imu is not None:
            labelled = data.imu if data.present is None else data.imu[data.present[:, 0]]
        windows = np.concatenate([labelled, self.samples.load_unlabelled(self.worker_id, imu_window=window)])
        if len(windows) < cfg.min_windows:
            return {}
        self.last_ssl_windows = len(windows)
        rng = np.random.default_rng(self.seed + 2_000_000 + server_round)
        return {"ssl_windows": WindowLoader(windows, self.batch_size * cfg.unlabelled_ratio, rng), "ssl": cfg,
                "generator": torch.Generator().manual_seed(self.seed + 3_000_000 + server_round)}

    def on_global_model(self, server_round: int, version: str) -> None:
        data = self.local_samples() if self.plan.fine_tune_epochs else None
        if data is not None:  # fit the personal head to the new encoders before anyone uses them
            refresh_head(self.model, self._loader(data, 1_000_000 + server_round), self.plan,
                         shared_prefixes=SHARED_PREFIXES)
        local_version = self.store.save(self.model, self.labels, info={"federated_round": server_round,
                                                                       "global_version": version})
        if self.on_model is not None:
            self.on_model(local_version)


def _labels(options: Mapping[str, Any]) -> list[str]:
    """The federation's label space (``labels``; absent or empty: :data:`INTENTION_LABELS`)."""
    return [str(v) for v in options.get("labels") or INTENTION_LABELS]


def _model_config(options: Mapping[str, Any]) -> IntentionModelConfig:
    return IntentionModelConfig(num_classes=len(_labels(options)), **dict(options.get("model") or {}))


def initial_shared(options: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Round-0 global encoders. From the base intention model (``initial_model_store``, default the
    store ``hrc-fl train-intention`` writes) when it holds a model with this federation's label space
    and input sizes, so round 0 starts where the workstations' deployed models are; otherwise a fresh
    model from ``seed``. Every client starts from the same weights either way."""
    from hrc_fl.intention.model_store import base_store_dir

    config = _model_config(options)
    labels = _labels(options)
    store_dir = options.get("initial_model_store", str(base_store_dir()))
    if store_dir:
        try:
            loaded = ModelStore(Path(store_dir)).load_latest(labels=labels, config=config)
        except ModelStoreError as exc:
            log.warning("initial encoders: base model not usable (%s); starting from a fresh model", exc)
            loaded = None
        if loaded is not None and tuple(shared_state(loaded.model, SHARED_PREFIXES)) == tuple(
                shared_state(IntentionModel(config), SHARED_PREFIXES)):
            log.info("initial encoders from base model %s in %s", loaded.meta.version, store_dir)
            return shared_state(loaded.model, SHARED_PREFIXES)
    torch.manual_seed(seed)
    return shared_state(IntentionModel(config), SHARED_PREFIXES)


def make_learner(name: str, options: Mapping[str, Any], seed: int,
                 on_model: Callable[[str], None] | None = None) -> IntentionLearner:
    """Learner of workstation ``name`` with its default (or configured) sample and model stores."""
    from hrc_fl.intention.model_store import base_store_dir, default_store_dir
    from hrc_fl.paths import runtime_dir

    sample_db = str(options.get("sample_db") or runtime_dir() / "samples" / f"{name}.sqlite")
    store_dir = str(options.get("model_store_dir") or default_store_dir(name))
    base_dir = str(options.get("initial_model_store", base_store_dir()))
    return IntentionLearner(
        worker_id=str(options.get("worker_id") or name), labels=_labels(options),
        model_config=_model_config(options), model_store=ModelStore(Path(store_dir)),
        sample_store=SampleStore(sample_db, max_samples_per_worker=int(options.get("max_samples_per_worker", 5000)),
                                 max_age_s=float(options.get("max_age_s", 30 * 86400.0)),
                                 max_unlabelled_per_worker=int(options.get("max_unlabelled_per_worker", 2000))),
        epochs=int(options.get("epochs", 2)), lr=float(options.get("lr", 3e-3)),
        batch_size=int(options.get("batch_size", 32)), seed=seed, head_epochs=int(options.get("head_epochs", 2)),
        fine_tune_epochs=int(options.get("fine_tune_epochs", 2)), on_model=on_model,
        self_supervised=VicRegConfig.from_mapping(options.get("self_supervised")),
        base_store=ModelStore(Path(base_dir)) if base_dir else None)
