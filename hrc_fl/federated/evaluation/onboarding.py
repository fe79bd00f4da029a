"""A worker who joins a trained federation, and the per-worker "kept" rule (issue 17).

Onboarding: the joining worker gets the federation's current model (the shared encoders and the mean of
the members' personal tensors: the federation's mean head), labels its first ``k`` training windows in
time (:func:`first_in_time`) and trains from there on them, the rest of its training windows being its
unlabelled stream for the same self-supervision. Which way it trains (the head alone on the frozen
encoder, or a FedRep round that also fine-tunes the encoder) and which round's model it keeps are chosen
on its own validation windows (:func:`join`); its test windows are only scored.

The kept rule (:func:`choose_per_worker`): of several candidate models, each worker keeps the one with
the best macro-F1 on ITS OWN validation windows (the first candidate on ties) - e.g. its federated model
or its local model with self-supervision, so that joining a federation is never worse than staying alone
by the worker's own measure.

ROS-free and FedML-free: runs the in-process :class:`~hrc_fl.federated.evaluation.simulator.Simulator`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from hrc_fl.federated.core import training
from hrc_fl.federated.evaluation.simulator import ArrayLoader, ClientData, MethodSpec, Simulator

T = TypeVar("T")


def first_in_time(start: np.ndarray, recording: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a worker's training windows, earliest first.

    ``start``: each window's first sample inside its recording (samples); ``recording``: its recording.
    The watch recordings carry no clock between them (one recording per task and arm), so time is the
    time since the task began: windows are ordered by ``start``, and windows with the same start by the
    order in which the worker did its tasks, a permutation of its recordings drawn from ``rng``.
    """
    start = np.asarray(start, np.int64)
    recording = np.asarray(recording, np.int64)
    if start.shape != recording.shape:
        raise ValueError(f"start {start.shape} and recording {recording.shape} differ")
    tasks = np.unique(recording)
    rank = dict(zip(tasks.tolist(), rng.permutation(len(tasks)).tolist(), strict=True))
    return np.lexsort((np.array([rank[r] for r in recording.tolist()], np.int64), start))


def first_best(scores: Sequence[tuple[T, float]]) -> T:
    """The candidate of ``scores`` ((candidate, validation macro-F1) pairs) with the best score, the first
    on ties; a NaN score never wins (all NaN: the first candidate). Only validation scores are given to it."""
    if not scores:
        raise ValueError("no candidates to choose from")
    values = [-math.inf if math.isnan(float(v)) else float(v) for _, v in scores]
    return scores[values.index(max(values))][0]


def choose_per_worker(validation: Mapping[str, Sequence[float]]) -> list[str]:
    """Per worker, the candidate with the best validation macro-F1 (:func:`first_best`: the first in
    ``validation``'s order on ties, a NaN score never wins). ``validation[name][i]``: worker i's score of
    candidate ``name``."""
    names = list(validation)
    if not names:
        raise ValueError("no candidates to choose from")
    counts = {len(v) for v in validation.values()}
    if len(counts) != 1:
        raise ValueError(f"candidates score different numbers of workers: {sorted(counts)}")
    return [first_best([(n, validation[n][i]) for n in names]) for i in range(counts.pop())]


def joined_model(states: Sequence[Mapping[str, np.ndarray]], factory: Callable[[int], nn.Module],
                 seed: int) -> nn.Module:
    """The federation's model for a worker who joins it: the mean over the members' state dicts
    (``states``, after the same round). The shared encoders and the normalisation are equal on every
    member, so the mean keeps them and averages only the personal tensors (head, projector): the
    federation's mean head. ``factory(seed)`` builds the architecture."""
    if not states:
        raise ValueError("no member states")
    model = factory(seed)
    own = model.state_dict()
    mean = {name: torch.as_tensor(np.mean([np.asarray(s[name], np.float64) for s in states], axis=0)
                                  ).to(own[name].dtype) for name in own}
    model.load_state_dict(mean)
    return model


def score(model: nn.Module, worker: ClientData) -> dict[str, float]:
    """Validation and test macro-F1 and test accuracy of ``model`` on ``worker`` (no training)."""
    val = training.evaluate(model, ArrayLoader(worker.val_x, worker.val_y, batch_size=512, shuffle=False))
    test = training.evaluate(model, ArrayLoader(worker.test_x, worker.test_y, batch_size=512, shuffle=False))
    return {"val_f1": val.macro_f1 if val.num_samples else float("nan"), "f1": test.macro_f1, "acc": test.accuracy}


def starting_from(model: nn.Module) -> Callable[[int], nn.Module]:
    """A model factory that returns copies of ``model`` (the model a joining worker starts from)."""
    return lambda _seed: copy.deepcopy(model)


AS_IS = "as_is"  # the candidate that keeps the model the worker was given, untrained


def join(factory: Callable[[int], nn.Module], worker: ClientData, candidates: Mapping[str, MethodSpec], *,
         rounds: int, eval_every: int, lr: float, batch_size: int, seed: int, as_is: bool = False) -> dict[str, Any]:
    """Train ``worker`` (its labelled windows, its unlabelled stream) from ``factory(seed)`` (e.g.
    :func:`starting_from` the joined model, or a fresh model: local from scratch) with every candidate
    (kind "local" :class:`MethodSpec` s), each keeping its best validation round, and keep the candidate
    with the best validation macro-F1 (:func:`choose_per_worker`). ``as_is``: the model as given, not
    trained, is a candidate too (the first: kept on ties) - a few windows that cover only some classes
    can make a trained head worse than the federation's. Returns ``choice``, the kept model's ``val_f1``,
    ``f1``, ``acc`` and every candidate's."""
    if not candidates:
        raise ValueError("no candidates")
    sim = Simulator(clients=[worker], model_factory=factory, lr=lr, batch_size=batch_size, seed=seed)
    scores: dict[str, dict[str, float]] = {}
    if as_is:
        scores[AS_IS] = {**score(factory(seed), worker), "kept_round": 0}
    for name, spec in candidates.items():
        if spec.kind != "local":
            raise ValueError(f"candidate {name}: a joining worker trains alone (kind local), got {spec.kind}")
        result = sim.run(spec, rounds=rounds, eval_every=eval_every)
        acc, f1 = result.client_scores()
        scores[name] = {"val_f1": float(result.validation_scores()[0]), "f1": float(f1[0]), "acc": float(acc[0]),
                        "kept_round": int(result.kept_rounds()[0])}
    choice = choose_per_worker({n: [s["val_f1"]] for n, s in scores.items()})[0]
    return {"choice": choice, **{k: scores[choice][k] for k in ("val_f1", "f1", "acc")}, "candidates": scores}


__all__ = ["AS_IS", "choose_per_worker", "first_best", "first_in_time", "join", "joined_model", "score",
           "starting_from"]
