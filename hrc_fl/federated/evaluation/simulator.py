"""In-process federated simulator over the same core (split, training, compression, strategies).

For fast sweeps without processes or sockets: every client keeps its own model (so personal heads
persist between rounds), the server keeps the shared tensors, and each round runs exactly what a real
round does, through the same functions the workstations run (:mod:`hrc_fl.federated.core.client_update`):
snapshot -> local round -> delta -> compress -> strategy.aggregate -> load the new global model in place
and refresh the personal head. Seeded:
the simulator owns a ``np.random.Generator`` and every loader a ``torch.Generator``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hrc_fl.federated.core import split, training
from hrc_fl.federated.core.client_update import LocalRoundPlan, client_update, local_round, receive_global, refresh_head
from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update, payload_bytes
from hrc_fl.federated.core.self_supervised import VicRegConfig
from hrc_fl.federated.core.strategies import Strategy
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import ClientUpdate, NDArrays, add

METHOD_KINDS = ("local", "federated", "centralised")
PERSONALISATION = ("none", "fedper", "fedrep")
ATTACKS = {"none": 1.0, "scale100": 100.0, "sign_flip": -1.0}  # factor on the attacking client's delta


class ArrayLoader:
    """Mini-batches ``({key: x}, y)`` over in-memory arrays, reshuffled by its own generator each pass."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool, seed: int = 0,
                 feature_key: str = "imu") -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows, y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        self.y = torch.from_numpy(np.asarray(y, np.int64))
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.feature_key = feature_key
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield {self.feature_key: self.x[idx]}, self.y[idx]


class FeatureLoader:
    """Mini-batches ``{key: x}`` (no labels) over in-memory unlabelled windows, reshuffled each pass."""

    def __init__(self, x: np.ndarray, *, batch_size: int, seed: int = 0, feature_key: str = "imu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        self.batch_size = int(batch_size)
        self.feature_key = feature_key
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self), generator=self.generator)
        for i in range(0, len(self), self.batch_size):
            yield {self.feature_key: self.x[order[i:i + self.batch_size]]}


@dataclass(frozen=True)
class ClientData:
    """One simulated client: labelled training windows, its test windows (same subject, later),
    optionally its validation windows (``val_x``/``val_y``, between training and test in time; default
    none) and its unlabelled training windows (``unlabelled_x``, same time span as the labelled ones,
    never the validation or test span; default none). Unlabelled windows are only ever used for the
    client's own semi-supervised training (:class:`~hrc_fl.federated.core.training.PseudoLabelConfig`), never
    sent. Validation windows are only ever scored: every choice of a comparison is made on them."""

    client_id: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    unlabelled_x: np.ndarray | None = None
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.val_x is None) != (self.val_y is None):
            raise ValueError(f"{self.client_id}: val_x and val_y go together")
        if self.val_x is None:
            object.__setattr__(self, "val_x", np.zeros((0, *np.shape(self.train_x)[1:]), np.float32))
            object.__setattr__(self, "val_y", np.zeros(0, np.int64))
        if (len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y)
                or len(self.val_x) != len(self.val_y)):
            raise ValueError(f"{self.client_id}: windows and labels differ in length")
        if np.shape(self.val_x)[1:] != np.shape(self.train_x)[1:]:
            raise ValueError(f"{self.client_id}: validation windows {np.shape(self.val_x)[1:]} differ from "
                             f"training windows {np.shape(self.train_x)[1:]}")
        if len(self.train_y) == 0:
            raise ValueError(f"{self.client_id}: no labelled training windows")
        if np.shape(self.test_x)[1:] != np.shape(self.train_x)[1:]:
            raise ValueError(f"{self.client_id}: test windows {np.shape(self.test_x)[1:]} differ from "
                             f"training windows {np.shape(self.train_x)[1:]}")
        if self.unlabelled_x is None:
            object.__setattr__(self, "unlabelled_x", np.zeros((0, *np.shape(self.train_x)[1:]), np.float32))
        elif np.shape(self.unlabelled_x)[1:] != np.shape(self.train_x)[1:]:
            raise ValueError(f"{self.client_id}: unlabelled windows {np.shape(self.unlabelled_x)[1:]} differ "
                             f"from training windows {np.shape(self.train_x)[1:]}")


@dataclass(frozen=True)
class MethodSpec:
    """One training method of a comparison.

    kind: "local" (no communication), "federated" or "centralised" (pooled data, the reference).
    personalisation: "none" (the whole model is federated), "fedper" (shared encoders + personal head
    trained jointly, Arivazhagan et al. 2019) or "fedrep" (head first with the encoder frozen, then the
    encoder with the head frozen, Collins et al. 2021). attack: what the first client does to its delta
    ("none", "scale100": x100, "sign_flip": x-1), for robustness checks. fine_tune_epochs > 0 fine-tunes the personal
    head on local labels before every evaluation (FedAvg + FT). strategy: a :func:`make_strategy` config.
    pseudo_label: semi-supervised local training on each client's ``unlabelled_x`` after the warm-up rounds
    (kinds "local" and "federated"; None = labels only); it changes local training only, never the payload.
    self_supervised: the VICReg term on each client's own windows, labelled and unlabelled (kinds "local"
    and "federated"; the model needs a projector); local training only, never the payload.
    Kind "local" with personalisation "fedrep" trains a round as a FedRep client does (head, then encoders,
    then the head refresh) without communicating: a worker that fine-tunes the encoder it was given when it
    joined a federation (:mod:`hrc_fl.federated.evaluation.onboarding`). train_shared False (kind "local" only): the
    shared encoders stay as the model factory built them and only the personal head trains,
    ``local_epochs`` head epochs per round.
    """

    name: str
    kind: str = "federated"
    personalisation: str = "none"
    local_epochs: int = 1
    head_epochs: int = 2
    fine_tune_epochs: int = 0
    compression: str = "fp32"
    strategy: Mapping[str, Any] = field(default_factory=lambda: {"name": "fedavg"})
    attack: str = "none"
    pseudo_label: training.PseudoLabelConfig | None = None
    self_supervised: VicRegConfig | None = None
    train_shared: bool = True

    def __post_init__(self) -> None:
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"kind must be one of {METHOD_KINDS}, got {self.kind!r}")
        if self.personalisation not in PERSONALISATION:
            raise ValueError(f"personalisation must be one of {PERSONALISATION}, got {self.personalisation!r}")
        if self.attack not in ATTACKS:
            raise ValueError(f"attack must be one of {tuple(ATTACKS)}, got {self.attack!r}")
        if self.local_epochs < 1 or self.head_epochs < 0 or self.fine_tune_epochs < 0:
            raise ValueError("local_epochs must be >= 1, head_epochs and fine_tune_epochs >= 0")
        if self.pseudo_label is not None and self.kind == "centralised":
            raise ValueError("pseudo_label applies to local and federated clients, not the centralised reference")
        if self.self_supervised is not None and self.kind == "centralised":
            raise ValueError("self_supervised applies to local and federated clients, not the centralised reference")
        if not self.train_shared and self.kind != "local":
            raise ValueError("train_shared False (head only) applies to local clients only")


@dataclass
class RoundRecord:
    """Per-client test (``accuracy``, ``macro_f1``) and validation (``val_accuracy``, ``val_macro_f1``; NaN
    for a client without validation windows) scores after one round (empty lists: not evaluated), bytes
    sent up in it and its wall time (s)."""

    round: int
    accuracy: list[float]
    macro_f1: list[float]
    uplink_bytes: int
    wall_s: float
    epsilon: float | None = None
    server_metrics: dict[str, float] = field(default_factory=dict)
    val_accuracy: list[float] = field(default_factory=list)
    val_macro_f1: list[float] = field(default_factory=list)


@dataclass
class MethodResult:
    """Everything one method produced. ``attacker``: the id of the client that attacked (None: none).

    The model a worker keeps is chosen on its validation windows only (:meth:`kept_rounds`); the summary
    figures are the test scores of the kept models. ``final_states``: every client's state dict after the
    last round (the centralised reference: its one pooled model), kept only on request.
    """

    name: str
    rounds: list[RoundRecord]
    client_ids: list[str]
    attacker: str | None = None
    final_states: list[dict[str, np.ndarray]] | None = None  # after the last round, when run(keep_states=True)

    @property
    def final(self) -> RoundRecord:
        return self.rounds[-1]

    def _evaluated(self) -> list[RoundRecord]:
        rows = [r for r in self.rounds if r.accuracy]
        if not rows:
            raise ValueError(f"{self.name}: no evaluated round")
        return rows

    def kept_rounds(self) -> np.ndarray:
        """Per client, the evaluated round whose model the worker keeps: its best validation macro-F1
        (the latest such round on ties), or the last evaluated round for a client without validation
        windows. Test scores never enter this choice."""
        rows = self._evaluated()
        rounds = np.array([r.round for r in rows])
        out = np.empty(len(self.client_ids), np.int64)
        for k in range(len(self.client_ids)):
            val = np.array([r.val_macro_f1[k] if r.val_macro_f1 else np.nan for r in rows], np.float64)
            if np.all(np.isnan(val)):
                out[k] = rounds[-1]
                continue
            best = np.flatnonzero(val == np.nanmax(val))
            out[k] = rounds[best[-1]]
        return out

    def client_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-client test (accuracy, macro-F1) of the kept models (:meth:`kept_rounds`)."""
        return self._kept("accuracy"), self._kept("macro_f1")

    def validation_scores(self) -> np.ndarray:
        """Per-client validation macro-F1 of the kept models (NaN without validation windows)."""
        return self._kept("val_macro_f1")

    def _kept(self, key: str) -> np.ndarray:
        by_round = {r.round: r for r in self._evaluated()}
        return np.array([getattr(by_round[int(t)], key)[k] if getattr(by_round[int(t)], key) else np.nan
                         for k, t in enumerate(self.kept_rounds())], np.float64)

    def honest_ids(self) -> list[str]:
        """Client ids whose scores count in a robustness figure: every client but the attacker."""
        return [c for c in self.client_ids if c != self.attacker]

    def summary(self, exclude: Sequence[str] = ()) -> dict[str, float]:
        """mean/worst client test accuracy and F1 of the kept models over the clients not in ``exclude``,
        mean validation F1 (the selection score), uplink bytes, wall time (s)."""
        keep = np.array([c not in set(exclude) for c in self.client_ids])
        if not keep.any():
            raise ValueError(f"{self.name}: every client excluded")
        acc, f1 = (a[keep] for a in self.client_scores())
        val = self.validation_scores()[keep]
        sent = [r.uplink_bytes for r in self.rounds]
        out = {"mean_acc": float(np.mean(acc)), "worst_acc": float(np.min(acc)),
               "mean_f1": float(np.mean(f1)), "worst_f1": float(np.min(f1)),
               "mean_val_f1": float(np.nanmean(val)) if not np.all(np.isnan(val)) else float("nan"),
               "uplink_bytes_per_round": float(np.mean(sent)) if sent else 0.0,
               "wall_s": float(sum(r.wall_s for r in self.rounds)), "rounds": float(len(self.rounds))}
        if self.final.epsilon is not None:
            out["epsilon"] = float(self.final.epsilon)
        return out


@dataclass(frozen=True)
class _SemiSupervised:
    """One client's extra training inputs: unlabelled windows for pseudo-labelling and/or all of its
    windows for the self-supervised term, with the generator their augmentations draw from."""

    generator: torch.Generator
    loader: FeatureLoader | None = None
    config: training.PseudoLabelConfig | None = None
    ssl_loader: FeatureLoader | None = None
    ssl: VicRegConfig | None = None


def _semi_kwargs(semi: _SemiSupervised | None, server_round: int, *, refresh: bool = False) -> dict[str, Any]:
    """Keyword arguments for the training functions: the unlabelled loader once the warm-up is over, the
    self-supervised loader in training (a head refresh trains the head only: no self-supervision)."""
    out: dict[str, Any] = {}
    if semi is None:
        return out
    if (semi.config is not None and semi.loader is not None and semi.config.active(server_round)
            and not (refresh and not semi.config.in_head_refresh)):
        out.update(unlabelled=semi.loader, pseudo=semi.config, generator=semi.generator)
    if semi.ssl is not None and semi.ssl_loader is not None and not refresh:
        out.update(ssl_windows=semi.ssl_loader, ssl=semi.ssl, generator=semi.generator)
    return out


def _local_round_plan(method: MethodSpec, lr: float) -> LocalRoundPlan:
    """The client round of ``method``: FedRep (head, then encoders) or joint training, and the head refresh."""
    return LocalRoundPlan(epochs=method.local_epochs, lr=lr,
                          head_epochs=method.head_epochs if method.personalisation == "fedrep" else 0,
                          fine_tune_epochs=method.fine_tune_epochs)


def _train(model: nn.Module, loader: ArrayLoader, plan: LocalRoundPlan, prefixes: Sequence[str], mu: float,
           reference: NDArrays, extra: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    """A simulated client's local round (the ``train`` of :func:`client_update`)."""
    result = local_round(model, loader, plan, shared_prefixes=prefixes, proximal_mu=mu, shared_reference=reference,
                         **extra)
    return result.num_samples, {}


def _attack(name: str) -> Callable[[NDArrays], NDArrays] | None:
    """The attacking client's delta transform (None for ``none``)."""
    if name == "none":
        return None
    factor = np.float32(ATTACKS[name])
    return lambda delta: {k: v * factor for k, v in delta.items()}


class Simulator:
    """Runs :class:`MethodSpec` s over a fixed set of clients and a model factory.

    ``model_factory(seed)`` returns a fresh model whose state-dict names carry the split given by
    ``shared_prefixes`` (default: the model's ``SHARED_PREFIXES``).
    """

    def __init__(self, *, clients: Sequence[ClientData], model_factory: Callable[[int], nn.Module],
                 lr: float = 3e-3, batch_size: int = 32, seed: int = 0,
                 shared_prefixes: Sequence[str] | None = None) -> None:
        if not clients:
            raise ValueError("at least one client is needed")
        if len({c.client_id for c in clients}) != len(clients):
            raise ValueError("client ids must be unique")
        if not lr > 0 or batch_size < 1:
            raise ValueError(f"lr must be > 0 and batch_size >= 1, got {lr}, {batch_size}")
        self.clients = list(clients)
        self.model_factory = model_factory
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        probe = model_factory(seed)
        self.shared_prefixes = tuple(shared_prefixes) if shared_prefixes else split.shared_prefixes_of(probe)

    def _loaders(self) -> tuple[list[ArrayLoader], list[tuple[ArrayLoader, ArrayLoader]]]:
        """Training loaders and, per client, its (validation, test) loaders."""
        train = [ArrayLoader(c.train_x, c.train_y, batch_size=self.batch_size, shuffle=True,
                             seed=self.seed * 1000 + i) for i, c in enumerate(self.clients)]
        scored = [(ArrayLoader(c.val_x, c.val_y, batch_size=512, shuffle=False),
                   ArrayLoader(c.test_x, c.test_y, batch_size=512, shuffle=False)) for c in self.clients]
        return train, scored

    def _semi_supervised(self, method: MethodSpec) -> list[_SemiSupervised | None]:
        """Per client: its unlabelled loader (pseudo-labelling), its all-windows loader (self-supervision)
        and their augmentation generator; None when the method uses neither."""
        cfg, ssl = method.pseudo_label, method.self_supervised
        out: list[_SemiSupervised | None] = []
        for i, c in enumerate(self.clients):
            loader = ssl_loader = None
            if cfg is not None and c.unlabelled_x is not None and len(c.unlabelled_x):
                loader = FeatureLoader(c.unlabelled_x, batch_size=self.batch_size * cfg.unlabelled_ratio,
                                       seed=self.seed * 1000 + 500 + i, feature_key=cfg.feature_key)
            windows = np.concatenate([c.train_x, c.unlabelled_x]) if c.unlabelled_x is not None else c.train_x
            if ssl is not None and len(windows) >= ssl.min_windows:
                ssl_loader = FeatureLoader(windows, batch_size=self.batch_size * ssl.unlabelled_ratio,
                                           seed=self.seed * 1000 + 600 + i, feature_key=ssl.feature_key)
            if loader is None and ssl_loader is None:
                out.append(None)
                continue
            out.append(_SemiSupervised(torch.Generator().manual_seed(self.seed * 1000 + 700 + i), loader,
                                       cfg if loader is not None else None, ssl_loader, ssl))
        return out

    def run(self, method: MethodSpec, *, rounds: int, eval_every: int = 1,
            strategy: Strategy | None = None, progress: Any = None, keep_states: bool = False) -> MethodResult:
        """Run ``rounds`` rounds of ``method``; scores every ``eval_every`` rounds and at the last one.

        ``strategy`` overrides ``method.strategy`` (e.g. a DP wrapper whose accountant you keep);
        ``progress`` is an optional tqdm-like object whose ``update(1)`` is called per round;
        ``keep_states``: return the models after the last round (``MethodResult.final_states``).
        """
        if rounds < 1 or eval_every < 1:
            raise ValueError(f"rounds and eval_every must be >= 1, got {rounds}, {eval_every}")
        # every method sees the same batch order: variants (e.g. int8 vs fp32) differ only in what they change
        train_loaders, scored_loaders = self._loaders()
        records: list[RoundRecord] = []
        ids = [c.client_id for c in self.clients]
        if method.kind == "centralised":
            return self._run_centralised(method, rounds, eval_every, train_loaders, scored_loaders, progress,
                                         keep_states)
        prefixes = split.ALL_PARAMETERS if method.personalisation == "none" else self.shared_prefixes
        semi = self._semi_supervised(method)
        # all clients start from the same initial model (as after the server's first broadcast)
        models = [self.model_factory(self.seed) for _ in self.clients]
        strategy = strategy or make_strategy(method.strategy)
        compressors = [ErrorFeedbackCompressor(scheme=method.compression) for _ in self.clients]
        global_shared = split.shared_state(models[0], prefixes)
        for server_round in range(1, rounds + 1):
            start = time.perf_counter()
            sent = 0
            epsilon = None
            server_metrics: dict[str, float] = {}
            plan = _local_round_plan(method, self.lr)
            if method.kind == "local" and not method.train_shared:
                # head only on the encoders the factory built: a joining worker's linear probe
                head = LocalRoundPlan(epochs=1, lr=self.lr, fine_tune_epochs=method.local_epochs)
                for model, loader in zip(models, train_loaders, strict=True):
                    refresh_head(model, loader, head, shared_prefixes=self.shared_prefixes)
            elif method.kind == "local":
                for model, loader, extra in zip(models, train_loaders, semi, strict=True):
                    if method.personalisation == "fedrep":  # a FedRep client's round, nothing sent
                        local_round(model, loader, plan, shared_prefixes=prefixes, **_semi_kwargs(extra, server_round))
                        refresh_head(model, loader, plan, shared_prefixes=prefixes,
                                     **_semi_kwargs(extra, server_round, refresh=True))
                        continue
                    local_round(model, loader, dataclasses.replace(plan, head_epochs=0), shared_prefixes=prefixes,
                                **_semi_kwargs(extra, server_round))
            else:
                config = strategy.client_config(server_round)
                mu = float(config.get("proximal_mu", 0.0))
                updates: list[ClientUpdate] = []
                for k, (model, loader) in enumerate(zip(models, train_loaders, strict=True)):
                    uplink = client_update(
                        functools.partial(split.shared_state, model, prefixes),
                        functools.partial(_train, model, loader, plan, prefixes, mu, global_shared,
                                          _semi_kwargs(semi[k], server_round)),
                        compressors[k], delta_transform=_attack(method.attack) if k == 0 else None)
                    assert uplink.quantized is not None
                    sent += payload_bytes(uplink.quantized)
                    updates.append(ClientUpdate(ids[k], server_round, uplink.num_samples,
                                                add(global_shared, dequantize_update(uplink.quantized))))
                aggregated = strategy.aggregate(server_round, updates, global_shared)
                global_shared = aggregated.tensors
                epsilon = aggregated.metrics.get("epsilon")
                server_metrics = dict(aggregated.metrics)
                # as a workstation: load the new global model in place and refresh the personal head on it
                # (FedAvg + FT shares the whole model: its head is fine-tuned on a copy at evaluation instead)
                arrival = plan if method.personalisation != "none" else dataclasses.replace(plan, fine_tune_epochs=0)
                for model, loader, extra in zip(models, train_loaders, semi, strict=True):
                    receive_global(model, global_shared, arrival, shared_prefixes=prefixes, loader=loader,
                                   head_prefixes=self.shared_prefixes,
                                   **_semi_kwargs(extra, server_round, refresh=True))
            wall = time.perf_counter() - start
            record = RoundRecord(server_round, [], [], sent, wall, epsilon, server_metrics)
            if server_round % eval_every == 0 or server_round == rounds:
                self._evaluate_all(record, models, method, train_loaders, scored_loaders,
                                   [_semi_kwargs(x, server_round, refresh=True) for x in semi])
            records.append(record)
            if progress is not None:
                progress.update(1)
        return MethodResult(method.name, records, ids, attacker=ids[0] if method.attack != "none" else None,
                            final_states=[_state(m) for m in models] if keep_states else None)

    def _evaluate_all(self, record: RoundRecord, models: list[nn.Module], method: MethodSpec,
                      train_loaders: list[ArrayLoader], scored_loaders: list[tuple[ArrayLoader, ArrayLoader]],
                      semi: Sequence[Mapping[str, Any]]) -> None:
        """Score every client's model on its validation and test windows into ``record``."""
        for model, train_loader, loaders, extra in zip(models, train_loaders, scored_loaders, semi, strict=True):
            if method.kind == "federated" and method.personalisation == "none" and method.fine_tune_epochs:
                # FedAvg + FT: the whole model is federated, so the head is fine-tuned on a copy before each
                # evaluation (personalised methods refreshed their head in place when the model arrived)
                model = copy.deepcopy(model)
                refresh_head(model, train_loader, _local_round_plan(method, self.lr),
                             shared_prefixes=self.shared_prefixes, **extra)
            _score(record, model, loaders)

    def _run_centralised(self, method: MethodSpec, rounds: int, eval_every: int,
                         train_loaders: list[ArrayLoader], scored_loaders: list[tuple[ArrayLoader, ArrayLoader]],
                         progress: Any, keep_states: bool = False) -> MethodResult:
        model = self.model_factory(self.seed)
        pooled = ArrayLoader(np.concatenate([c.train_x for c in self.clients]),
                             np.concatenate([c.train_y for c in self.clients]), batch_size=self.batch_size,
                             shuffle=True, seed=self.seed)
        records: list[RoundRecord] = []
        for server_round in range(1, rounds + 1):
            start = time.perf_counter()
            training.train_local(model, pooled, epochs=method.local_epochs, lr=self.lr)
            wall = time.perf_counter() - start
            record = RoundRecord(server_round, [], [], 0, wall)
            if server_round % eval_every == 0 or server_round == rounds:
                for loaders in scored_loaders:
                    _score(record, model, loaders)
            records.append(record)
            if progress is not None:
                progress.update(1)
        return MethodResult(method.name, records, [c.client_id for c in self.clients],
                            final_states=[_state(model)] if keep_states else None)


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    """A model's state dict as numpy copies (picklable across the report's worker processes)."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}


def _score(record: RoundRecord, model: nn.Module, loaders: tuple[ArrayLoader, ArrayLoader]) -> None:
    """Append one client's validation (NaN without windows) and test scores to ``record``."""
    val_loader, test_loader = loaders
    val = training.evaluate(model, val_loader)
    record.val_accuracy.append(val.accuracy if val.num_samples else float("nan"))
    record.val_macro_f1.append(val.macro_f1 if val.num_samples else float("nan"))
    scores = training.evaluate(model, test_loader)
    record.accuracy.append(scores.accuracy)
    record.macro_f1.append(scores.macro_f1)
