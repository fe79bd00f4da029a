"""The FL comparison behind ``hrc-fl fl-report``: methods x label regimes on the real watch data, several
seeds, under a stated evaluation protocol without test leakage (:func:`protocol`, docs/federated_evaluation.md).

Protocol: per worker (one watch subject) every recording is split in time into train / validation / test
with a gap before each later part (:class:`~hrc_fl.intention.windows.TimeSplit`); every choice (the
self-supervised weight and projector width, the round whose model a worker keeps) is made on validation
scores only and test scores are read once, for the chosen models; every method makes the same number of
passes over the labelled windows per round (``ReportConfig.epochs_per_round``, head phases and head
refreshes included) and normalises the IMU input with the same fixed statistics (the initial model's,
from the training windows' per-channel sums; never trained); ``ReportConfig.seeds`` seeds (data subsets,
initial models, batch order).

Methods: local-only, FedAvg, FedAvg + local fine-tuning of the head, FedProx, personalised shared-layer
sync (FedRep: shared encoders federated, personal head trained on local labels only, with the deployed
self-supervised term when validation picks it), and centralised pooled training as the reference. Regimes:
full local labels and scarce labels (``label_fraction`` of each client's training windows; the others are
its unlabelled windows). Extra rows: local-only with self-supervision chosen the same way, the
personalised method on labels only. Scarce regime, first seed: int8/fp16 uplink and client-level DP.
Every seed: robustness to one attacking client with the deployed rule at 10 workers and at the deployed
size, the attacker's own scores excluded and compared with the clean run of the same rule.
Writes results.json, report.md and PNGs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrc_fl.federated.core.privacy import DPStrategy
from hrc_fl.federated.core.self_supervised import VicRegConfig
from hrc_fl.federated.core.strategies import FedAvg
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.evaluation import plots
from hrc_fl.federated.evaluation.onboarding import (
    AS_IS,
    choose_per_worker,
    first_best,
    join,
    joined_model,
    score,
    starting_from,
)
from hrc_fl.federated.evaluation.simulator import ClientData, MethodResult, MethodSpec, Simulator
from hrc_fl.federated.evaluation.watch_clients import (
    federated_normalisation,
    joining_worker,
    model_factory,
    watch_clients,
)
from hrc_fl.intention.windows import TimeSplit, WindowSpec

BASELINES = ("local", "fedavg", "fedavg_ft", "fedprox")
PERSONALISED = "personalised"
REFERENCE = "centralised"
METHODS = (*BASELINES, PERSONALISED, REFERENCE)
LOCAL_SELF_SUPERVISED = "local_self_supervised"  # extra row: local-only + self-supervision chosen on validation
PERSONALISED_SUPERVISED = "personalised_labels_only"  # extra row: personalised without it
KEPT = "kept"  # extra row: per worker the better on its validation of local_self_supervised and personalised
FEDERATED = "federated"  # onboarding: the personalised federation's encoder, joined
POOLED = "pooled"
# onboarding jobs (one run per seed and held-out worker each) and the method rows each one fills
JOBS = {FEDERATED: (FEDERATED,), "local": (LOCAL_SELF_SUPERVISED,), "fedavg": ("fedavg", "fedavg_ft"),
        POOLED: (POOLED,)}
ONBOARDING_METHODS = tuple(name for rows in JOBS.values() for name in rows)
ATTACKS = ("scale100", "sign_flip")
SELECTED = (PERSONALISED, LOCAL_SELF_SUPERVISED)  # rows whose self-supervision validation chooses


@dataclass(frozen=True)
class ReportConfig:
    """Settings of one report run (defaults: the full report; :meth:`quick` for tests)."""

    rounds: int = 20                 # scarce labels; the kept round per worker is chosen on validation
    full_label_rounds: int = 10
    label_fraction: float = 0.15
    seeds: tuple[int, ...] = (0, 1, 2)
    window: int = 100
    step: int = 25
    train_fraction: float = 0.6      # per recording in time: train, gap, validation, gap, test
    validation_fraction: float = 0.2
    gap_samples: int = 50            # 1 s at 50 Hz between the parts
    subjects: tuple[int, ...] | None = None
    eval_every: int = 2              # candidate models a worker can keep: every eval_every rounds and the last
    lr: float = 3e-3
    batch_size: int = 32
    # the same budget for every method: passes over the labelled windows per round, all phases counted
    # (FedAvg+FT: epochs - fine_tune_epochs model epochs + fine_tune_epochs head epochs before use;
    # personalised: head_epochs head + the rest encoder epochs + fine_tune_epochs head refresh before use)
    epochs_per_round: int = 3
    head_epochs: int = 1
    fine_tune_epochs: int = 1
    proximal_mu: float = 0.01
    dp_noise_multipliers: tuple[float, ...] = (0.1, 0.3, 1.0)
    dp_clip_norm: float = 0.5
    dp_delta: float = 1e-5
    compressions: tuple[str, ...] = ("int8", "fp16")
    # the self-supervised term's candidates (VICReg weight, projector width), chosen per seed on the scarce
    # regime's validation scores for the personalised and the local row; labels only is always a candidate
    self_supervised_grid: tuple[tuple[float, int], ...] = ((0.02, 64), (0.05, 64), (0.02, 32))
    self_supervised: VicRegConfig = dataclasses.field(default_factory=VicRegConfig)  # the rest of the term
    # the deployed rule: config/federated.yaml's strategy (the CLI passes it), at 10 workers and the deployed size
    deployed_rule: str = "median_anchored"
    trim_fraction: float = 0.2       # used when the deployed rule is a trimmed mean
    max_attackers: int = 1           # used when the deployed rule is median_anchored
    robustness_sizes: tuple[int, ...] = (10, 3)
    robustness_attacks: tuple[str, ...] = ATTACKS
    robustness_max_drop: float = 0.02  # attacked honest mean macro-F1 at most 2 points below the clean run
    jobs: int = 1                      # worker processes for the independent simulator runs
    # onboarding (issue 17): leave one worker out, it joins the federation of the others with labels on its
    # first k training windows in time; () = not run. onboarding_seeds None = every seed
    onboarding_k: tuple[int, ...] = (0, 5, 10, 20, 50)
    onboarding_seeds: tuple[int, ...] | None = None
    kept_tolerance: float = 0.005      # kept model at most 0.5 points below local with self-supervision
    onboarding_gain: float = 0.10      # federated minus local with self-supervision at k <= onboarding_gain_k
    onboarding_gain_k: int = 20

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.full_label_rounds < 1 or self.eval_every < 1:
            raise ValueError("rounds, full_label_rounds and eval_every must be >= 1")
        if self.head_epochs < 0 or self.fine_tune_epochs < 0:
            raise ValueError("head_epochs and fine_tune_epochs must be >= 0")
        if self.epochs_per_round < self.head_epochs + self.fine_tune_epochs + 1:
            raise ValueError(f"epochs_per_round {self.epochs_per_round} leaves no encoder epoch after "
                             f"head_epochs {self.head_epochs} and fine_tune_epochs {self.fine_tune_epochs}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if len(self.dp_noise_multipliers) < 1 or min(self.dp_noise_multipliers) <= 0:
            raise ValueError("dp_noise_multipliers must be positive")
        if any(w <= 0 or d < 1 for w, d in self.self_supervised_grid):
            raise ValueError("self_supervised_grid needs weights > 0 and projector widths >= 1")
        if self.max_attackers < 0:
            raise ValueError(f"max_attackers must be >= 0, got {self.max_attackers}")
        if not 0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if any(n < 2 for n in self.robustness_sizes) or self.jobs < 1:
            raise ValueError("robustness_sizes must be >= 2 and jobs >= 1")
        if any(a not in ATTACKS for a in self.robustness_attacks):
            raise ValueError(f"robustness_attacks must be among {ATTACKS}")
        if any(k < 0 for k in self.onboarding_k) or len(set(self.onboarding_k)) != len(self.onboarding_k):
            raise ValueError(f"onboarding_k must be distinct and >= 0, got {self.onboarding_k}")
        if self.onboarding_seeds is not None and not set(self.onboarding_seeds) <= set(self.seeds):
            raise ValueError(f"onboarding_seeds {self.onboarding_seeds} must be among seeds {self.seeds}")

    @property
    def joining_seeds(self) -> tuple[int, ...]:
        """The seeds onboarding runs on (none without onboarding_k)."""
        if not self.onboarding_k:
            return ()
        return self.seeds if self.onboarding_seeds is None else self.onboarding_seeds

    @property
    def time_split(self) -> TimeSplit:
        return TimeSplit(self.train_fraction, self.validation_fraction, self.gap_samples)

    @classmethod
    def quick(cls, **overrides: Any) -> ReportConfig:
        """A small run (4 clients, 3 rounds, 3 seeds; onboarding of each of the 4 at k 0, 5, 20 on the first
        seed) that exercises every path in about a minute."""
        values: dict[str, Any] = dict(rounds=3, full_label_rounds=2, subjects=(1, 2, 3, 4), eval_every=1,
                                      step=100, seeds=(0, 1, 2), self_supervised_grid=((0.02, 16),),
                                      dp_noise_multipliers=(0.3, 1.0), compressions=("int8",),
                                      robustness_sizes=(4, 3), robustness_attacks=("sign_flip",),
                                      onboarding_k=(0, 5, 20), onboarding_seeds=(0,))
        values.update(overrides)
        return cls(**values)


def protocol(cfg: ReportConfig) -> dict[str, str]:
    """The evaluation protocol of a run, one sentence per rule (in results.json and report.md)."""
    budget = cfg.epochs_per_round
    return {
        "split": (f"Per worker, every recording is split in time: the first {_pct(cfg.train_fraction)} % train, "
                  f"then a gap of {cfg.gap_samples} samples, validation up to "
                  f"{_pct(cfg.train_fraction + cfg.validation_fraction)} %, a gap of {cfg.gap_samples} samples, "
                  f"test for the rest; windows of {cfg.window} samples every {cfg.step} lie wholly inside one "
                  "part, so none overlaps a boundary."),
        "labels": (f"Scarce regime: {_pct(cfg.label_fraction)} % of each worker's training windows keep "
                   "their labels, the rest are its unlabelled windows; validation windows are labelled."),
        "selection": ("Every choice is made on validation macro-F1 only: the self-supervised term (labels only "
                      f"or VICReg weight/projector width in {list(cfg.self_supervised_grid)}) per seed on the "
                      "scarce regime's mean validation macro-F1 over workers, separately for the personalised "
                      "and the local row, and reused in the full regime; the model each worker keeps is "
                      "the one of the evaluated round with its best validation macro-F1. Test windows are "
                      "scored, never used to choose."),
        "budget": (f"Every method makes {budget} passes over the worker's labelled windows per round: local, "
                   f"FedAvg, FedProx and centralised {budget} model epochs; FedAvg+FT "
                   f"{budget - cfg.fine_tune_epochs} model epochs and {cfg.fine_tune_epochs} head epoch(s) before "
                   f"use; personalised {cfg.head_epochs} head epoch(s), "
                   f"{budget - cfg.head_epochs - cfg.fine_tune_epochs} encoder epoch(s) and "
                   f"{cfg.fine_tune_epochs} head refresh epoch(s) before use. The self-supervised term adds "
                   "unlabelled batches to the steps that train the encoder."),
        "normalisation": ("Every method, local-only included, normalises the IMU input with the same fixed "
                          "per-channel mean and std: the initial model's, from the per-channel sums over all "
                          "workers' training windows (labelled and unlabelled; never validation or test), "
                          "never updated in training (the engine freezes them on the server)."),
        "seeds": (f"Seeds {list(cfg.seeds)}: label subsets, initial models, batch order and augmentations; "
                  "each figure is the mean over seeds of the mean (or worst) worker."),
        "robustness": (f"One attacking client (the first) in every round; rule "
                       f"{rule_config(cfg, cfg.deployed_rule)} with "
                       f"{list(cfg.robustness_sizes)} workers; where it "
                       "falls back (a trimmed mean that trims nothing runs the coordinate median), the report "
                       "names the rule that ran. The attacker's "
                       "own scores are excluded, and the honest workers' mean is compared with the clean run of "
                       "the same rule on the same workers, on every seed."),
        "kept": ("Kept row: each worker keeps, by its own validation macro-F1 at the kept rounds, the better of "
                 "its personalised (federated) model and its local model with the self-supervision chosen for "
                 "the local row (the local one on ties); test scores are read for the kept model only."),
        **({"onboarding": onboarding_protocol(cfg)} if cfg.joining_seeds else {}),
    }


def onboarding_protocol(cfg: ReportConfig) -> str:
    """The onboarding rules of a run, one paragraph (in results.json and report.md)."""
    budget, h, f = cfg.epochs_per_round, cfg.head_epochs, cfg.fine_tune_epochs
    return (f"Leave one worker out, for every worker and seeds {list(cfg.joining_seeds)}: the federation of the "
            f"other workers (scarce labels, {cfg.rounds} rounds, their data only, normalisation from their "
            "training windows only) is trained once per fold and seed and reused for every k. The held-out "
            f"worker labels its first k in {list(cfg.onboarding_k)} training windows in time (time since each "
            "task began, ties in a task order drawn from the seed); the rest of its training windows are its "
            "unlabelled stream. federated: the personalised federation's shared encoder with the mean of the "
            f"members' heads; for k > 0 the worker keeps it as given, or trains {cfg.rounds} rounds of "
            f"{budget} passes over its k windows either the head alone on the frozen encoder or a FedRep round "
            f"({h} head, {budget - h - f} encoder epoch(s) with the personalised row's chosen self-supervision "
            f"on its unlabelled stream, {f} head refresh), chosen with the round on its validation. "
            "local_self_supervised: from scratch, the local row's chosen self-supervision, same rounds and "
            "passes. fedavg: the FedAvg global model of the others as is; fedavg_ft: as is or its head trained "
            "on the k windows, chosen on validation. pooled: centralised training on the others' labelled "
            "windows plus the k windows "
            f"({budget} epochs per round). At k = 0 nothing is trained or chosen: federated is the mean head, "
            "fedavg(_ft) the global model, pooled the centralised model of the others after the last round, "
            "local the untrained model (chance). Test windows are only scored; figures are the mean over "
            "seeds of the mean and of the worst held-out worker.")


def budget_specs(cfg: ReportConfig) -> dict[str, MethodSpec]:
    """The compared methods under the common per-round budget (:func:`protocol` ``budget``)."""
    e, h, f = cfg.epochs_per_round, cfg.head_epochs, cfg.fine_tune_epochs
    return {
        "local": MethodSpec("local", kind="local", local_epochs=e),
        "fedavg": MethodSpec("fedavg", local_epochs=e),
        "fedavg_ft": MethodSpec("fedavg_ft", local_epochs=e - f, fine_tune_epochs=f),
        "fedprox": MethodSpec("fedprox", strategy={"name": "fedprox", "proximal_mu": cfg.proximal_mu},
                              local_epochs=e),
        PERSONALISED: MethodSpec(PERSONALISED, personalisation="fedrep", head_epochs=h, local_epochs=e - h - f,
                                 fine_tune_epochs=f),
        REFERENCE: MethodSpec(REFERENCE, kind="centralised", local_epochs=e),
    }


Choice = tuple[float, int] | None  # a self-supervision candidate: (VICReg weight, projector width) or labels only


def candidates(cfg: ReportConfig) -> list[Choice]:
    """The self-supervision candidates validation chooses from: labels only first (kept on ties)."""
    return [None, *cfg.self_supervised_grid]


def with_choice(spec: MethodSpec, cfg: ReportConfig, choice: Choice, name: str | None = None
                ) -> tuple[MethodSpec, int]:
    """``spec`` with a self-supervision candidate, and the projector width its model needs (0: none)."""
    if choice is None:
        return dataclasses.replace(spec, name=name or spec.name, self_supervised=None), 0
    weight, width = choice
    return (dataclasses.replace(spec, name=name or spec.name,
                                self_supervised=dataclasses.replace(cfg.self_supervised, weight=weight)), width)


def choose_on_validation(scores: Sequence[tuple[Choice, float]]) -> Choice:
    """The candidate with the best mean validation macro-F1 (the first on ties: labels only, then the
    grid's order; a NaN score never wins: :func:`~hrc_fl.federated.evaluation.onboarding.first_best`). Only
    validation scores are given to it."""
    return first_best(scores)


def rule_config(cfg: ReportConfig, rule: str) -> dict[str, Any]:
    """:func:`make_strategy` config of an aggregation rule as the report runs it."""
    return _strategy_config(rule, cfg.trim_fraction, cfg.max_attackers)


def _strategy_config(rule: str, trim_fraction: float, max_attackers: int) -> dict[str, Any]:
    if rule == "trimmed_mean":
        return {"name": rule, "trim_fraction": trim_fraction}
    if rule == "median_anchored":
        return {"name": rule, "max_attackers": max_attackers}
    return {"name": rule}


def rule_at_size(rule: str, trim_fraction: float, clients: int, max_attackers: int = 1) -> tuple[str, str]:
    """(``AggregationResult.rule`` that runs, note) for ``clients`` workers, as the strategy itself decides
    (:meth:`~hrc_fl.federated.core.strategies.FedAvg.rule_for`): e.g. a trimmed mean that would trim no value
    (0.2 x 3) runs the coordinate median; the note is empty when the rule runs as itself."""
    config = _strategy_config(rule, trim_fraction, max_attackers)
    strategy = make_strategy(config)
    assert isinstance(strategy, FedAvg)  # a config without dp builds a FedAvg-type rule
    ran = strategy.rule_for(clients)
    if ran == strategy.rule:
        return ran, ""
    return ran, f"{config} at {clients} workers runs as {ran}"


def curve(result: MethodResult) -> dict[str, list[float]]:
    """Evaluated rounds of a result as lists (round, mean/worst test accuracy and macro-F1, mean
    validation macro-F1)."""
    rows = [r for r in result.rounds if r.accuracy]
    return {"round": [r.round for r in rows],
            "mean_acc": [float(np.mean(r.accuracy)) for r in rows],
            "worst_acc": [float(np.min(r.accuracy)) for r in rows],
            "mean_f1": [float(np.mean(r.macro_f1)) for r in rows],
            "worst_f1": [float(np.min(r.macro_f1)) for r in rows],
            "mean_val_f1": [float(np.nanmean(r.val_macro_f1)) if not np.all(np.isnan(r.val_macro_f1))
                            else float("nan") for r in rows]}


def method_entry(result: MethodResult, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """results.json entry of one method: summary of the kept models (over the clients not in ``exclude``),
    per client scores and kept round, curves."""
    entry: dict[str, Any] = dict(result.summary(exclude))
    acc, f1 = result.client_scores()
    entry["per_client_acc"] = dict(zip(result.client_ids, acc.tolist(), strict=True))
    entry["per_client_f1"] = dict(zip(result.client_ids, f1.tolist(), strict=True))
    entry["per_client_val_f1"] = dict(zip(result.client_ids, result.validation_scores().tolist(), strict=True))
    entry["kept_round"] = dict(zip(result.client_ids, result.kept_rounds().tolist(), strict=True))
    if result.attacker is not None:
        entry["attacker"] = result.attacker
    entry["excluded"] = list(exclude)
    norms = [r.server_metrics["median_update_norm"] for r in result.rounds if "median_update_norm" in r.server_metrics]
    if norms:
        entry["median_update_norm_last_round"] = norms[-1]
    entry["curve"] = curve(result)
    return entry


@dataclass(frozen=True)
class _Run:
    """One independent simulator run of the report (what a worker process executes)."""

    key: tuple[Any, ...]      # where its entry goes: (seed, block, name[, ...])
    seed: int
    regime: str
    spec: MethodSpec
    projector_dim: int = 0
    clients: int = 0          # the first n clients (0 = all)
    dp_noise: float = 0.0     # > 0: DP-FedAvg with this noise multiplier
    exclude_attacker: bool = False  # robustness: score without the first client (the attacker's id)
    onboard: str = ""         # an onboarding job (JOBS) for the held-out worker ``held_out`` ("" = none)
    held_out: int = 0         # the subject left out of the federation and onboarded


def _regime(cfg: ReportConfig, regime: str) -> tuple[float, int]:
    return (1.0, cfg.full_label_rounds) if regime == "full" else (cfg.label_fraction, cfg.rounds)


@lru_cache(maxsize=8)
def _data(cfg: ReportConfig, seed: int, regime: str
          ) -> tuple[list[ClientData], tuple[str, ...], np.ndarray, np.ndarray]:
    """The clients of a seed and regime, class names, and the common normalisation (cached per process)."""
    fraction, _ = _regime(cfg, regime)
    clients, names = watch_clients(label_fraction=fraction, seed=seed, subjects=cfg.subjects, split=cfg.time_split,
                                   spec=WindowSpec(window=cfg.window, step=cfg.step))
    mean, std = federated_normalisation(clients)
    return clients, names, mean, std


def _computation(cfg: ReportConfig, run: _Run) -> str:
    """What a run trains, as a key: runs with the same key train the same models on the same data (their
    names and whether the attacker is excluded from the scores do not enter training), so it runs once."""
    n_all = len(_data(cfg, run.seed, run.regime)[0])
    clients = run.clients if 0 < run.clients < n_all else 0
    return repr((run.seed, run.regime, dataclasses.replace(run.spec, name=""), run.projector_dim, clients,
                 run.dp_noise, run.onboard, run.held_out))


def _cost(cfg: ReportConfig, run: _Run) -> float:
    """Relative cost of a run, to start the longest first: labelled window passes over its rounds, a pass
    with the self-supervised term counted 3 times (it adds 2 views of unlabelled_ratio x the batch through
    the encoder; about 1.9x a labelled step measured). For ordering only."""
    clients = _data(cfg, run.seed, run.regime)[0]
    labelled = sum(len(c.train_y) for c in (clients[:run.clients] if run.clients else clients))
    ssl_epochs = run.spec.local_epochs if run.spec.self_supervised is not None else 0
    if run.onboard == "local":  # k windows only: small
        labelled = sum(cfg.onboarding_k)
    elif run.onboard == POOLED:  # one pooled training per k
        labelled *= len(cfg.onboarding_k)
    return float(_regime(cfg, run.regime)[1] * labelled * (cfg.epochs_per_round + 2 * ssl_epochs))


def _execute(cfg: ReportConfig, run: _Run) -> tuple[Any, float | None]:
    """Run one :class:`_Run`'s training; returns its result and, for DP, the final epsilon."""
    if run.onboard:
        return _execute_onboarding(cfg, run), None
    clients, names, mean, std = _data(cfg, run.seed, run.regime)
    chosen = clients[:run.clients] if run.clients else clients
    sim = Simulator(clients=chosen, model_factory=model_factory(len(names), cfg.window, mean, std, run.projector_dim),
                    lr=cfg.lr, batch_size=cfg.batch_size, seed=run.seed)
    strategy = None
    if run.dp_noise > 0:
        strategy = DPStrategy(make_strategy({"name": "fedavg"}), clip_norm=cfg.dp_clip_norm,
                              noise_multiplier=run.dp_noise, delta=cfg.dp_delta, sample_rate=1.0,
                              expected_clients=len(chosen), seed=run.seed)  # fixed denominator: sensitivity C/m
    result = sim.run(run.spec, rounds=_regime(cfg, run.regime)[1], eval_every=cfg.eval_every, strategy=strategy)
    return result, strategy.epsilon if strategy is not None else None


def subject_of(client: ClientData) -> int:
    """The watch subject of a client (ids ``subject-<n>``, :func:`watch_clients`)."""
    return int(client.client_id.rsplit("-", 1)[1])


def fold(cfg: ReportConfig, seed: int, held_out: int
         ) -> tuple[list[ClientData], ClientData, tuple[str, ...], np.ndarray, np.ndarray]:
    """Leave-one-worker-out fold: the federation's members (every scarce-regime client but ``held_out``),
    the held-out worker's scarce client (its validation and test windows), the class names and the
    members' normalisation (their training windows only: nothing of the held-out worker)."""
    clients, names, _, _ = _data(cfg, seed, "scarce")
    members = [c for c in clients if subject_of(c) != held_out]
    held = [c for c in clients if subject_of(c) == held_out]
    if len(held) != 1 or not members:
        raise ValueError(f"subject {held_out} is not one of {len(clients)} clients, or it is the only one")
    mean, std = federated_normalisation(members)
    return members, held[0], names, mean, std


@lru_cache(maxsize=16)
def _joiner(cfg: ReportConfig, seed: int, held_out: int, k: int) -> ClientData:
    """The held-out worker with labels on its first k training windows in time (cached per process)."""
    return joining_worker(held_out, k, seed=seed, spec=WindowSpec(window=cfg.window, step=cfg.step),
                          split=cfg.time_split)


def joining_specs(cfg: ReportConfig, self_supervised: VicRegConfig | None) -> dict[str, MethodSpec]:
    """How a worker that joined the federation may train on its k windows, under the common budget: the
    head alone on the frozen encoder, or a FedRep round (head, encoder with ``self_supervised``, head
    refresh) without communication. Validation chooses between them per worker."""
    e, h, f = cfg.epochs_per_round, cfg.head_epochs, cfg.fine_tune_epochs
    return {"head": MethodSpec("join_head", kind="local", local_epochs=e, train_shared=False),
            "fine_tune": MethodSpec("join_fine_tune", kind="local", personalisation="fedrep", head_epochs=h,
                                    local_epochs=e - h - f, fine_tune_epochs=f, self_supervised=self_supervised)}


def _execute_onboarding(cfg: ReportConfig, run: _Run) -> dict[str, Any]:
    """One onboarding job for one seed and held-out worker (:data:`JOBS`): per method row and k, the kept
    model's ``val_f1``, ``f1``, ``acc`` (and ``choice``); ``federation``: the members' own figures of the
    federation it joined (none for local and pooled); ``wall_s`` and ``cpu_s`` (this process's CPU time:
    with one torch thread a process, the job's cost on a quiet core even when the machine is loaded)."""
    tick, cpu = time.perf_counter(), time.process_time()
    members, held, names, mean, std = fold(cfg, run.seed, run.held_out)
    factory = model_factory(len(names), cfg.window, mean, std, run.projector_dim)
    rounds = _regime(cfg, "scarce")[1]
    common = dict(rounds=rounds, eval_every=cfg.eval_every, lr=cfg.lr, batch_size=cfg.batch_size, seed=run.seed)
    rows: dict[str, dict[str, Any]] = {name: {} for name in JOBS[run.onboard]}
    out: dict[str, Any] = {"held_out": held.client_id, "members": [c.client_id for c in members]}
    if run.onboard in (FEDERATED, "fedavg"):
        # the federation of the others, once for every k
        federation = Simulator(clients=members, model_factory=factory, lr=cfg.lr, batch_size=cfg.batch_size,
                               seed=run.seed).run(run.spec, rounds=rounds, eval_every=cfg.eval_every, keep_states=True)
        assert federation.final_states is not None
        out["federation"] = federation.summary()
        model = joined_model(federation.final_states, factory, run.seed)
        at_zero = score(model, held)
        for k in cfg.onboarding_k:
            if run.onboard == FEDERATED:
                rows[FEDERATED][str(k)] = ({**at_zero, "choice": "mean_head"} if k == 0 else
                                           join(starting_from(model), _joiner(cfg, run.seed, run.held_out, k),
                                                joining_specs(cfg, run.spec.self_supervised), as_is=True, **common))
            else:
                rows["fedavg"][str(k)] = {**at_zero, "choice": AS_IS}
                rows["fedavg_ft"][str(k)] = ({**at_zero, "choice": AS_IS} if k == 0 else
                                             join(starting_from(model), _joiner(cfg, run.seed, run.held_out, k),
                                                  {"head": joining_specs(cfg, None)["head"]}, as_is=True, **common))
    elif run.onboard == "local":
        for k in cfg.onboarding_k:
            rows[LOCAL_SELF_SUPERVISED][str(k)] = (
                {**score(factory(run.seed), held), "choice": "untrained"} if k == 0 else
                join(factory, _joiner(cfg, run.seed, run.held_out, k), {"local": run.spec}, **common))
    else:
        for k in cfg.onboarding_k:
            pool = members if k == 0 else [*members, _joiner(cfg, run.seed, run.held_out, k)]
            result = Simulator(clients=pool, model_factory=factory, lr=cfg.lr, batch_size=cfg.batch_size,
                               seed=run.seed).run(run.spec, rounds=rounds, eval_every=cfg.eval_every,
                                                  keep_states=k == 0)
            if k == 0:
                assert result.final_states is not None
                rows[POOLED]["0"] = {**score(joined_model(result.final_states, factory, run.seed), held),
                                     "choice": "last_round"}
            else:
                acc, f1 = result.client_scores()
                rows[POOLED][str(k)] = {"val_f1": float(result.validation_scores()[-1]), "f1": float(f1[-1]),
                                        "acc": float(acc[-1]), "choice": f"round {int(result.kept_rounds()[-1])}"}
    out["methods"] = rows
    out["wall_s"], out["cpu_s"] = time.perf_counter() - tick, time.process_time() - cpu
    return out


def _onboarding_runs(cfg: ReportConfig, seed: int, chosen: dict[str, Choice] | None) -> list[_Run]:
    """The onboarding jobs of a seed: before the choice (``chosen`` None) those that need none (FedAvg,
    pooled), after it those that use the chosen self-supervision (federated, local)."""
    if seed not in cfg.joining_seeds:
        return []
    specs = budget_specs(cfg)
    subjects = [subject_of(c) for c in _data(cfg, seed, "scarce")[0]]
    if chosen is None:
        jobs = [("fedavg", specs["fedavg"], 0), (POOLED, specs[REFERENCE], 0)]
    else:
        pers, width = with_choice(specs[PERSONALISED], cfg, chosen[PERSONALISED], name=f"{FEDERATED}_fold")
        local, local_width = with_choice(specs["local"], cfg, chosen[LOCAL_SELF_SUPERVISED], name="local_join")
        jobs = [(FEDERATED, pers, width), ("local", local, local_width)]
    return [_Run((seed, "onboarding", job, subject), seed, "scarce", spec, width, onboard=job, held_out=subject)
            for job, spec, width in jobs for subject in subjects]


def onboarding_summary(cfg: ReportConfig, entries: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> dict[str, Any]:
    """results.json ``onboarding``: per method row and k the mean over seeds of the mean and of the worst
    held-out worker's test macro-F1, per-seed values, per-worker scores and choices."""
    seeds = cfg.joining_seeds
    subjects = [subject_of(c) for c in _data(cfg, seeds[0], "scarce")[0]]
    methods: dict[str, dict[str, Any]] = {}
    for job, names in JOBS.items():
        for name in names:
            methods[name] = {}
            for k in cfg.onboarding_k:
                per = {str(s): {f"subject-{w}": entries[(s, "onboarding", job, w)]["methods"][name][str(k)]
                                for w in subjects} for s in seeds}
                means = [float(np.mean([v["f1"] for v in per[str(s)].values()])) for s in seeds]
                worsts = [float(np.min([v["f1"] for v in per[str(s)].values()])) for s in seeds]
                methods[name][str(k)] = {
                    "mean_f1": float(np.mean(means)), "worst_f1": float(np.mean(worsts)),
                    "mean_f1_per_seed": means, "worst_f1_per_seed": worsts,
                    "mean_acc": float(np.mean([np.mean([v["acc"] for v in p.values()]) for p in per.values()])),
                    "per_worker_f1": {s: {w: v["f1"] for w, v in p.items()} for s, p in per.items()},
                    "choices": {s: {w: v.get("choice") for w, v in p.items()} for s, p in per.items()}}
    jobs = [e for key, e in entries.items() if len(key) == 4 and key[1] == "onboarding"]
    jobs_s = [float(e["wall_s"]) for e in jobs]
    cpu_s = {job: float(np.sum([e.get("cpu_s", np.nan) for key, e in entries.items()
                                if len(key) == 4 and key[1] == "onboarding" and key[2] == job])) for job in JOBS}
    federations = {str(s): {f"subject-{w}": entries[(s, "onboarding", FEDERATED, w)]["federation"]["mean_f1"]
                            for w in subjects} for s in seeds}
    return {"k": list(cfg.onboarding_k), "seeds": list(seeds), "held_out": [f"subject-{w}" for w in subjects],
            "methods": methods, "federation_members_mean_f1": federations,
            "runs": len(jobs_s), "run_wall_s_total": float(np.sum(jobs_s)),
            "run_wall_s_median": float(np.median(jobs_s)), "run_cpu_s_by_job": cpu_s,
            "run_cpu_s_total": float(sum(cpu_s.values()))}


def _entry(cfg: ReportConfig, run: _Run, result: Any, epsilon: float | None) -> dict[str, Any]:
    """results.json entry of a run from its training result (the attacker excluded where the run says)."""
    if run.onboard:
        return dict(result)  # an onboarding job's outcome is its entry
    entry = method_entry(result, [result.client_ids[0]] if run.exclude_attacker else ())
    if run.dp_noise > 0:
        entry.update(noise_multiplier=run.dp_noise, clip_norm=cfg.dp_clip_norm, delta=cfg.dp_delta, epsilon=epsilon)
    return entry


def kept_entry(candidates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The kept row: per worker the candidate entry (:func:`method_entry`) with its best validation macro-F1
    (:func:`~hrc_fl.federated.evaluation.onboarding.choose_per_worker`, the first candidate on ties), and the test
    figures of the kept models. Reads ``per_client_val_f1`` to choose; test scores only for the figures."""
    names = list(candidates)
    if not names:
        raise ValueError("no candidates")
    ids = list(candidates[names[0]]["per_client_f1"])
    choice = choose_per_worker({n: [candidates[n]["per_client_val_f1"][c] for c in ids] for n in names})
    picked = {key: {c: candidates[n][f"per_client_{key}"][c] for n, c in zip(choice, ids, strict=True)}
              for key in ("f1", "acc", "val_f1")}
    f1, acc, val = (np.array(list(picked[k].values()), np.float64) for k in ("f1", "acc", "val_f1"))
    return {"mean_f1": float(np.mean(f1)), "worst_f1": float(np.min(f1)), "mean_acc": float(np.mean(acc)),
            "worst_acc": float(np.min(acc)),
            "mean_val_f1": float(np.nanmean(val)) if not np.all(np.isnan(val)) else float("nan"),
            **{f"per_client_{k}": v for k, v in picked.items()}, "kept_from": dict(zip(ids, choice, strict=True)),
            # the federated candidate needs the federation to run: its uplink is the row's
            "uplink_bytes_per_round": max(float(candidates[n]["uplink_bytes_per_round"]) for n in names),
            "wall_s": sum(float(candidates[n]["wall_s"]) for n in names)}


def _init_worker() -> None:
    # tiny models: one intra-op thread per worker process, the processes use the cores
    torch.set_num_threads(1)


def _choice_inputs(cfg: ReportConfig, seed: int) -> list[tuple[Any, ...]]:
    """Keys of the entries a seed's self-supervision choice reads (:func:`_chosen`)."""
    return [(seed, "scarce", "local"), *(r.key for r in _selection_runs(cfg, seed))]


def _run_all(cfg: ReportConfig, pool: ProcessPoolExecutor | None, bar: Any
             ) -> tuple[dict[tuple[Any, ...], dict[str, Any]], dict[int, Any]]:
    """Every run of every seed: the entries by key and each seed's choice (:func:`_chosen`).

    A seed's second runs (:func:`_second_runs`) are queued as soon as the entries its choice reads are
    in, not after every first run. Of the queued runs the pool always starts next a run some choice still
    waits for, else the most costly one (:func:`_cost`), so the last runs to finish are short ones and no
    process idles at a barrier. A run whose training another run already did (:func:`_computation`) gets
    its entry from that result."""
    entries: dict[tuple[Any, ...], dict[str, Any]] = {}
    choices: dict[int, Any] = {}
    done: dict[str, tuple[Any, float | None]] = {}
    waiting: dict[str, list[_Run]] = {}   # computation -> runs that take their entry from it
    queue: list[tuple[str, _Run]] = []
    blocking = {key for seed in cfg.seeds for key in _choice_inputs(cfg, seed)}
    in_flight: dict[Any, str] = {}

    def add(runs: Sequence[_Run]) -> None:
        for run in runs:
            comp = _computation(cfg, run)
            if comp in done:
                entries[run.key] = _entry(cfg, run, *done[comp])
                if bar is not None:
                    bar.update(1)
            elif comp in waiting:
                waiting[comp].append(run)
            else:
                waiting[comp] = [run]
                queue.append((comp, run))

    def finish(comp: str, outcome: tuple[Any, float | None]) -> None:
        done[comp] = outcome
        for run in waiting.pop(comp):
            entries[run.key] = _entry(cfg, run, *outcome)
            if bar is not None:
                bar.update(1)
        for seed in cfg.seeds:
            if seed not in choices and all(k in entries for k in _choice_inputs(cfg, seed)):
                choices[seed] = _chosen(cfg, seed, entries)
                add(_second_runs(cfg, seed, seed == cfg.seeds[0], choices[seed][0]))

    def next_run() -> tuple[str, _Run]:
        best = max(range(len(queue)), key=lambda i: (any(r.key in blocking for r in waiting[queue[i][0]]),
                                                     _cost(cfg, queue[i][1])))
        return queue.pop(best)

    for seed in cfg.seeds:
        add(_first_runs(cfg, seed))
    while queue or in_flight:
        if pool is None:
            comp, run = next_run()
            finish(comp, _execute(cfg, run))
            continue
        while queue and len(in_flight) < cfg.jobs:
            comp, run = next_run()
            in_flight[pool.submit(_execute, cfg, run)] = comp
        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in finished:
            finish(in_flight.pop(future), future.result())
    return entries, choices


def _selection_runs(cfg: ReportConfig, seed: int) -> list[_Run]:
    specs = budget_specs(cfg)
    runs = []
    for row, base in ((PERSONALISED, specs[PERSONALISED]), (LOCAL_SELF_SUPERVISED, specs["local"])):
        for i, choice in enumerate(candidates(cfg)):
            if row == LOCAL_SELF_SUPERVISED and choice is None:
                continue  # = the local baseline, run anyway
            spec, width = with_choice(base, cfg, choice, name=f"{row}_candidate{i}")
            runs.append(_Run((seed, "selection", row, i), seed, "scarce", spec, width))
    return runs


def _first_runs(cfg: ReportConfig, seed: int) -> list[_Run]:
    """Runs that need no choice: the baselines and the reference in both regimes, the candidates."""
    specs = budget_specs(cfg)
    runs = [_Run((seed, regime, name), seed, regime, specs[name]) for regime in ("full", "scarce")
            for name in (*BASELINES, REFERENCE)]
    runs.append(_Run((seed, "full", PERSONALISED_SUPERVISED), seed, "full",
                     with_choice(specs[PERSONALISED], cfg, None, PERSONALISED_SUPERVISED)[0]))
    return runs + _selection_runs(cfg, seed) + _onboarding_runs(cfg, seed, None)


def _chosen(cfg: ReportConfig, seed: int, entries: dict[tuple[Any, ...], dict[str, Any]]
            ) -> tuple[dict[str, Choice], dict[str, list[dict[str, Any]]]]:
    """Per selected row, the candidate validation chose, and the candidates' validation scores."""
    chosen: dict[str, Choice] = {}
    table: dict[str, list[dict[str, Any]]] = {}
    for row in SELECTED:
        scores: list[tuple[Choice, float]] = []
        for i, choice in enumerate(candidates(cfg)):
            entry = entries[(seed, "scarce", "local")] if (row, choice) == (LOCAL_SELF_SUPERVISED, None) \
                else entries[(seed, "selection", row, i)]
            scores.append((choice, entry["mean_val_f1"]))
        chosen[row] = choose_on_validation(scores)
        table[row] = [{"candidate": "labels only" if c is None else {"vicreg_weight": c[0], "projector_dim": c[1]},
                       "mean_val_f1": v, "chosen": c == chosen[row]} for c, v in scores]
    return chosen, table


def _second_runs(cfg: ReportConfig, seed: int, first_seed: bool, chosen: dict[str, Choice]) -> list[_Run]:
    """Runs that use the chosen self-supervision: full-regime rows, robustness, onboarding's federated and
    local jobs, and (first seed) uplink compression and DP."""
    specs = budget_specs(cfg)
    pers, width = with_choice(specs[PERSONALISED], cfg, chosen[PERSONALISED])
    local_ssl, local_width = with_choice(specs["local"], cfg, chosen[LOCAL_SELF_SUPERVISED], LOCAL_SELF_SUPERVISED)
    runs = [_Run((seed, "full", PERSONALISED), seed, "full", pers, width),
            _Run((seed, "full", LOCAL_SELF_SUPERVISED), seed, "full", local_ssl, local_width)]
    n_all = len(_data(cfg, seed, "scarce")[0])
    for size in cfg.robustness_sizes:
        if size > n_all:
            continue
        rule, _ = rule_at_size(cfg.deployed_rule, cfg.trim_fraction, size, cfg.max_attackers)
        for attack in ("none", *cfg.robustness_attacks):  # the deployed config: its strategy falls back itself
            spec = dataclasses.replace(pers, name=f"{PERSONALISED}_{rule}_{attack}_n{size}",
                                       strategy=rule_config(cfg, cfg.deployed_rule), attack=attack)
            runs.append(_Run((seed, "robustness", size, attack), seed, "scarce", spec, width, size,
                             exclude_attacker=True))
    if first_seed:
        for scheme in cfg.compressions:
            runs.append(_Run((seed, "compression", scheme), seed, "scarce",
                             dataclasses.replace(pers, name=f"{PERSONALISED}_{scheme}", compression=scheme), width))
        for z in cfg.dp_noise_multipliers:
            runs.append(_Run((seed, "dp", z), seed, "scarce", dataclasses.replace(pers, name=f"{PERSONALISED}_dp_z{z}"),
                             width, dp_noise=z))
    return runs + _onboarding_runs(cfg, seed, chosen)


def _robustness_block(cfg: ReportConfig, seed: int, entries: dict[tuple[Any, ...], dict[str, Any]]
                      ) -> dict[str, Any]:
    """Per size: the rule that ran, the clean and attacked honest scores and the loss in points."""
    out: dict[str, Any] = {}
    for size in cfg.robustness_sizes:
        if (seed, "robustness", size, "none") not in entries:
            continue
        rule, note = rule_at_size(cfg.deployed_rule, cfg.trim_fraction, size, cfg.max_attackers)
        clean = entries[(seed, "robustness", size, "none")]
        block: dict[str, Any] = {"rule": cfg.deployed_rule, "rule_ran": rule, "note": note, "clients": size,
                                 "excluded": clean["excluded"], "clean": clean, "attacks": {}}
        for attack in cfg.robustness_attacks:
            hit = entries[(seed, "robustness", size, attack)]
            block["attacks"][attack] = {"entry": hit, "loss_f1": clean["mean_f1"] - hit["mean_f1"],
                                        "loss_acc": clean["mean_acc"] - hit["mean_acc"]}
        out[str(size)] = block
    return out


def seed_summary(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures over seeds from per-seed method entries: mean over seeds of the mean and of the worst
    worker (macro-F1 and accuracy), their per-seed values and the lowest worst worker of any seed."""
    out: dict[str, Any] = {"seeds": len(per_seed)}
    for key in ("f1", "acc"):
        means = [e[f"mean_{key}"] for e in per_seed]
        worsts = [e[f"worst_{key}"] for e in per_seed]
        out.update({f"mean_{key}": float(np.mean(means)), f"worst_{key}": float(np.mean(worsts)),
                    f"mean_{key}_per_seed": means, f"worst_{key}_per_seed": worsts,
                    f"mean_{key}_spread": float(np.max(means) - np.min(means)),
                    f"worst_{key}_min": float(np.min(worsts))})
    out["uplink_bytes_per_round"] = float(np.mean([e["uplink_bytes_per_round"] for e in per_seed]))
    out["wall_s"] = float(np.mean([e["wall_s"] for e in per_seed]))
    return out


def run_report(cfg: ReportConfig, out_dir: Path, *, progress_factory: Callable[..., Any] | None = None
               ) -> dict[str, Any]:
    """Run every comparison for every seed, write results.json, report.md and PNGs into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    first = [r for seed in cfg.seeds for r in _first_runs(cfg, seed)]
    second_count = sum(len(_second_runs(cfg, seed, seed == cfg.seeds[0], dict.fromkeys(SELECTED)))
                       for seed in cfg.seeds)
    bar = progress_factory(total=len(first) + second_count, desc="fl-report", unit="run") if progress_factory \
        else None
    pool = (ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=get_context("spawn"), initializer=_init_worker)
            if cfg.jobs > 1 else None)
    try:
        entries, choices = _run_all(cfg, pool, bar)
    finally:
        if pool is not None:
            pool.shutdown()
        if bar is not None:
            bar.close()
    results: dict[str, Any] = {"protocol": protocol(cfg), "config": asdict(cfg), "host": platform.node(),
                               "torch_threads": 1 if pool is not None else torch.get_num_threads(), "seeds": {}}
    for seed in cfg.seeds:
        chosen, table = choices[seed]
        seed_block: dict[str, Any] = {"regimes": {}, "selection": table,
                                      "chosen": {row: list(c) if c else None for row, c in chosen.items()}}
        for regime in ("full", "scarce"):
            clients = _data(cfg, seed, regime)[0]
            rows = {name: entries[(seed, regime, name)] for name in (*BASELINES, REFERENCE)}
            if regime == "scarce":
                index = {row: candidates(cfg).index(chosen[row]) for row in SELECTED}
                rows[PERSONALISED] = entries[(seed, "selection", PERSONALISED, index[PERSONALISED])]
                local_key = ((seed, "scarce", "local") if chosen[LOCAL_SELF_SUPERVISED] is None
                             else (seed, "selection", LOCAL_SELF_SUPERVISED, index[LOCAL_SELF_SUPERVISED]))
                extras = {PERSONALISED_SUPERVISED: entries[(seed, "selection", PERSONALISED, 0)],
                          LOCAL_SELF_SUPERVISED: entries[local_key]}
            else:
                rows[PERSONALISED] = entries[(seed, "full", PERSONALISED)]
                extras = {name: entries[(seed, "full", name)]
                          for name in (PERSONALISED_SUPERVISED, LOCAL_SELF_SUPERVISED)}
            # local first: on a tie the worker stays with the model that needs no federation
            extras[KEPT] = kept_entry({LOCAL_SELF_SUPERVISED: extras[LOCAL_SELF_SUPERVISED],
                                       PERSONALISED: rows[PERSONALISED]})
            seed_block["regimes"][regime] = {
                "clients": [c.client_id for c in clients],
                "labelled_windows": {c.client_id: len(c.train_y) for c in clients},
                "unlabelled_windows": {c.client_id: len(c.unlabelled_x) for c in clients},
                "validation_windows": {c.client_id: len(c.val_y) for c in clients},
                "test_windows": {c.client_id: len(c.test_y) for c in clients},
                "methods": {name: rows[name] for name in METHODS}, "extras": extras}
        seed_block["robustness"] = _robustness_block(cfg, seed, entries)
        if seed == cfg.seeds[0]:
            seed_block["compression"] = {s: entries[(seed, "compression", s)] for s in cfg.compressions}
            seed_block["dp"] = [entries[(seed, "dp", z)] for z in cfg.dp_noise_multipliers]
        results["seeds"][str(seed)] = seed_block
    results["summary"] = {regime: {name: seed_summary([results["seeds"][str(s)]["regimes"][regime][group][name]
                                                       for s in cfg.seeds])
                                   for group in ("methods", "extras")
                                   for name in results["seeds"][str(cfg.seeds[0])]["regimes"][regime][group]}
                          for regime in ("full", "scarce")}
    if cfg.joining_seeds:
        results["onboarding"] = onboarding_summary(cfg, entries)
    results["class_names"] = list(_data(cfg, cfg.seeds[0], "scarce")[1])
    results["targets"] = targets(results)
    results["wall_s"] = time.perf_counter() - started
    results["wall_s_per_seed"] = results["wall_s"] / len(cfg.seeds)
    _write_json(out_dir / "results.json", results)
    write_markdown(results, out_dir)
    return results


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The acceptance targets, each with the numbers it was judged on and met true/false. Method figures
    are the means over seeds (``results["summary"]``); robustness is judged on every seed and size."""
    out: dict[str, Any] = {}
    scarce, full = results["summary"]["scarce"], results["summary"]["full"]
    best_mean = max(scarce[b]["mean_f1"] for b in BASELINES)
    best_worst = max(scarce[b]["worst_f1"] for b in BASELINES)
    pers = scarce[PERSONALISED]
    out["scarce_mean_f1_gain"] = {"personalised": pers["mean_f1"], "best_baseline": best_mean,
                                  "required_gain": 0.03, "met": pers["mean_f1"] >= best_mean + 0.03}
    out["scarce_worst_worker"] = {"personalised": pers["worst_f1"], "best_baseline_worst": best_worst,
                                  "met": pers["worst_f1"] > best_worst}
    if LOCAL_SELF_SUPERVISED in scarce:
        local_ssl = scarce[LOCAL_SELF_SUPERVISED]
        out["scarce_vs_local_with_self_supervision"] = {
            "personalised": pers["mean_f1"], "local_self_supervised": local_ssl["mean_f1"],
            "personalised_worst": pers["worst_f1"], "local_self_supervised_worst": local_ssl["worst_f1"],
            "note": "extra check, not an issue target",
            "met": pers["mean_f1"] >= local_ssl["mean_f1"] and pers["worst_f1"] >= local_ssl["worst_f1"]}
    cfg = results["config"]
    if KEPT in scarce and LOCAL_SELF_SUPERVISED in scarce:
        tolerance = float(cfg.get("kept_tolerance", 0.005))
        for key in ("mean", "worst"):
            kept, alone = scarce[KEPT][f"{key}_f1"], scarce[LOCAL_SELF_SUPERVISED][f"{key}_f1"]
            out[f"kept_vs_local_ssl_{key}"] = {"kept": kept, "local_self_supervised": alone,
                                               "difference": kept - alone, "tolerance": tolerance,
                                               "met": kept - alone >= -tolerance}
    if results.get("onboarding"):
        out.update(onboarding_targets(results["onboarding"], float(cfg.get("onboarding_gain", 0.10)),
                                      int(cfg.get("onboarding_gain_k", 20))))
    best_full = max(full[b]["mean_f1"] for b in BASELINES)
    out["full_not_below_best"] = {"personalised": full[PERSONALISED]["mean_f1"], "best_baseline": best_full,
                                  "met": full[PERSONALISED]["mean_f1"] >= best_full}
    seeds = results["seeds"]
    first = next(iter(seeds.values()))
    comp = first.get("compression", {})
    if "int8" in comp:
        base = first["regimes"]["scarce"]["methods"]
        ratio = comp["int8"]["uplink_bytes_per_round"] / base["fedavg"]["uplink_bytes_per_round"]
        loss = base[PERSONALISED]["mean_f1"] - comp["int8"]["mean_f1"]
        out["int8_uplink"] = {"bytes_ratio_vs_fedavg_fp32": ratio, "f1_loss_first_seed": loss,
                              "met": ratio <= 0.25 and loss <= 0.01}
    max_drop = cfg.get("robustness_max_drop", 0.02)
    losses = {f"seed{seed}/n{size}/{attack}": a["loss_f1"] for seed, block in seeds.items()
              for size, r in block.get("robustness", {}).items() for attack, a in r["attacks"].items()}
    if losses:
        expected = len(seeds) * len(cfg["robustness_sizes"]) * len(cfg["robustness_attacks"])
        flips = {k: v for k, v in losses.items() if k.endswith("/sign_flip")}
        out["robust_rule_under_attack"] = {
            "rule": cfg["deployed_rule"], "losses_f1": losses, "worst_loss_f1": max(losses.values()),
            "max_drop": max_drop, "met": len(losses) == expected and max(losses.values()) <= max_drop}
        if flips:
            out["sign_flip_honest_loss"] = {
                "losses_f1": flips, "worst_loss_f1": max(flips.values()), "max_drop": max_drop,
                "note": "attacker excluded; against the clean run of the same rule on the same workers",
                "met": len(flips) == len(seeds) * len(cfg["robustness_sizes"]) and max(flips.values()) <= max_drop}
    return out


def onboarding_targets(onboarding: Mapping[str, Any], required_gain: float, gain_k: int) -> dict[str, Any]:
    """Onboarding targets: federated minus local with self-supervision (mean over seeds of the mean, and
    of the worst held-out worker), its minimum over k <= ``gain_k`` at least ``required_gain``, and over
    every k never below 0 (on mean and worst)."""
    methods, ks = onboarding["methods"], onboarding["k"]
    gains = {key: {str(k): methods[FEDERATED][str(k)][f"{key}_f1"] - methods[LOCAL_SELF_SUPERVISED][str(k)][f"{key}_f1"]
                   for k in ks} for key in ("mean", "worst")}
    out: dict[str, Any] = {}
    for key, by_k in gains.items():
        low = {k: g for k, g in by_k.items() if int(k) <= gain_k}
        if low:
            worst_gain = min(low.values())
            out[f"onboarding_gain_{key}_k_le_{gain_k}"] = {"gains": {k: round(g, 4) for k, g in low.items()},
                                                           "min_gain": worst_gain, "required_gain": required_gain,
                                                           "met": worst_gain >= required_gain}
    lowest = min(min(by_k.values()) for by_k in gains.values())
    out["onboarding_never_below_local"] = {"min_difference_mean_or_worst": lowest, "met": lowest >= 0}
    return out


def _write_json(path: Path, data: Any) -> None:
    """Atomic write: temp file in the same folder, fsync, replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _choice_text(choice: list[Any] | None) -> str:
    return "labels only" if not choice else f"VICReg weight {choice[0]}, projector {choice[1]}"


def _method_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | mean F1 | worst F1 | lowest worst F1 of a seed | mean F1 per seed | mean acc | worst acc "
             "| uplink B/round |", "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        per_seed = " / ".join(_pct(v) for v in m["mean_f1_per_seed"])
        lines.append(f"| {name} | {_pct(m['mean_f1'])} | {_pct(m['worst_f1'])} | {_pct(m['worst_f1_min'])} | "
                     f"{per_seed} | {_pct(m['mean_acc'])} | {_pct(m['worst_acc'])} | "
                     f"{m['uplink_bytes_per_round']:.0f} |")
    return lines


def _onboarding_section(onboarding: Mapping[str, Any], out_dir: Path) -> list[str]:
    """report.md's onboarding table (macro-F1 in %, mean / worst held-out worker, mean over seeds), the
    federated joiner's choices, the cost, and the PNG beside it."""
    methods, ks = onboarding["methods"], onboarding["k"]
    lines = [f"## Onboarding: a worker joins the federation of the others (leave one out, "
             f"{len(onboarding['held_out'])} workers, seeds {onboarding['seeds']})", "",
             "Macro-F1 in % on the held-out worker's test windows, mean / worst held-out worker, mean over seeds.",
             "", "| k labelled windows | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for k in ks:
        cells = [f"{_pct(methods[m][str(k)]['mean_f1'])} / {_pct(methods[m][str(k)]['worst_f1'])}" for m in methods]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "The federated joiner's choice on its validation (workers x seeds):", ""]
    for k in ks:
        counts: dict[str, int] = {}
        for per_seed in methods[FEDERATED][str(k)]["choices"].values():
            for choice in per_seed.values():
                counts[str(choice)] = counts.get(str(choice), 0) + 1
        lines.append(f"- k = {k}: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))
    cpu = ", ".join(f"{job} {s:.0f} s" for job, s in onboarding.get("run_cpu_s_by_job", {}).items())
    lines += ["", f"Cost: {onboarding['runs']} onboarding runs, {onboarding['run_wall_s_total']:.0f} s of run time "
              f"in all (median {onboarding['run_wall_s_median']:.1f} s a run); CPU time by job, all seeds: {cpu}.", ""]
    png = plots.plot_onboarding({m: {"k": ks, "mean_f1": [methods[m][str(k)]["mean_f1"] for k in ks],
                                     "worst_f1": [methods[m][str(k)]["worst_f1"] for k in ks]} for m in methods},
                                path=out_dir / "onboarding_f1_vs_k.png")
    return [*lines, f"![onboarding]({png.name})", ""]


def write_markdown(results: dict[str, Any], out_dir: Path) -> Path:
    """report.md (protocol first, then the tables) and the PNGs it references (written beside it)."""
    cfg = results["config"]
    seeds = results["seeds"]
    first_seed = next(iter(seeds))
    lines = ["# Federated learning report (real watch IMU data, one worker per subject)", "",
             "## Protocol", ""]
    lines += [f"- **{name}**: {text}" for name, text in results["protocol"].items()]
    lines += ["", f"Figures: macro-F1 (and accuracy) in % of the model each worker keeps, on its test windows; "
              f"mean or worst worker, then the mean over the {len(seeds)} seeds. Total wall time "
              f"{results['wall_s']:.0f} s ({results['wall_s_per_seed']:.0f} s per seed), {cfg['jobs']} worker "
              "process(es).", ""]
    for regime in ("full", "scarce"):
        block = seeds[first_seed]["regimes"][regime]
        summary = results["summary"][regime]
        rows = {name: summary[name] for name in METHODS}
        rows.update({f"{name} (extra row, not a baseline)": summary[name] for name in block["extras"]})
        rounds = cfg["full_label_rounds"] if regime == "full" else cfg["rounds"]
        lines += [f"## Regime: {regime} labels ({rounds} rounds)", "", *_method_table(rows), ""]
        png = plots.plot_curves({n: m["curve"] for n, m in block["methods"].items()},
                                title=f"{regime} labels, seed {first_seed}: test accuracy and macro-F1 per round",
                                path=out_dir / f"curves_{regime}.png")
        lines += [f"![{regime}]({png.name})", ""]
    lines += ["## Self-supervision chosen on validation (scarce regime, mean validation macro-F1 in %)", "",
              "| seed | row | candidate | mean validation F1 | chosen |", "|---|---|---|---|---|"]
    for seed, block in seeds.items():
        for row, table in block["selection"].items():
            for c in table:
                cand = c["candidate"] if isinstance(c["candidate"], str) else \
                    _choice_text([c["candidate"]["vicreg_weight"], c["candidate"]["projector_dim"]])
                lines.append(f"| {seed} | {row} | {cand} | {_pct(c['mean_val_f1'])} | {'yes' if c['chosen'] else ''} |")
    lines += ["", "## Robustness (scarce labels, personalised sync, the first worker attacks every round)", "",
              "Honest workers only: the attacker's own scores are excluded from both runs. Loss = clean mean F1 "
              "minus attacked mean F1 of the same rule on the same workers (points).", "",
              "| seed | workers | rule that ran | attack | clean mean F1 | attacked mean F1 | loss (points) |",
              "|---|---|---|---|---|---|---|"]
    notes = set()
    for seed, block in seeds.items():
        for size, r in block.get("robustness", {}).items():
            if r["note"]:
                notes.add(r["note"])
            for attack, a in r["attacks"].items():
                lines.append(f"| {seed} | {size} | {r['rule_ran']} | {attack} | {_pct(r['clean']['mean_f1'])} | "
                             f"{_pct(a['entry']['mean_f1'])} | {100 * a['loss_f1']:+.1f} |")
    lines += ["", *[f"Note: {n}." for n in sorted(notes)], ""]
    first = seeds[first_seed]
    if first.get("dp"):
        lines += [f"## Client-level DP (scarce, personalised, DP-FedAvg on the shared encoder, seed {first_seed})", "",
                  "| noise multiplier z | clip norm | epsilon (delta 1e-5) | mean F1 | worst F1 |",
                  "|---|---|---|---|---|"]
        for p in first["dp"]:
            lines.append(f"| {p['noise_multiplier']} | {p['clip_norm']} | {p['epsilon']:.2f} | "
                         f"{_pct(p['mean_f1'])} | {_pct(p['worst_f1'])} |")
        png = plots.plot_dp(first["dp"], baseline_acc=first["regimes"]["scarce"]["methods"][PERSONALISED]["mean_acc"],
                            path=out_dir / "dp_accuracy_vs_epsilon.png")
        lines += ["", f"![dp]({png.name})", ""]
    if results.get("onboarding"):
        lines += _onboarding_section(results["onboarding"], out_dir)
    scarce = first["regimes"]["scarce"]
    sent = {n: m["uplink_bytes_per_round"] for n, m in scarce["methods"].items()}
    sent.update({f"{PERSONALISED}_{s}": e["uplink_bytes_per_round"] for s, e in first.get("compression", {}).items()})
    png = plots.plot_bars(sent, ylabel="bytes per round (all clients)", title="uplink per round",
                          path=out_dir / "uplink_bytes.png")
    lines += ["## Uplink bytes", "", f"![uplink]({png.name})", "", "## Targets", ""]
    for name, t in results["targets"].items():
        detail = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in t.items()
                           if k not in ("met", "losses_f1"))
        lines.append(f"- {name}: **{'met' if t['met'] else 'MISSED'}** ({detail})")
    lines.append("")
    path = out_dir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


__all__ = ["METHODS", "ReportConfig", "protocol", "run_report", "targets"]
