"""Learner module for the real watch data through the real FedML path: workstation ``ws<k>`` = the k-th
subject of :func:`hrc_fl.federated.evaluation.watch_clients.watch_clients` (10 subjects -> 10 workstations).

Everything mirrors the simulator's personalised shared-layer sync (``personalisation="fedper"``) so the
two can be compared: same clients and label subsets, same model factory and seed, same batch order
(``ArrayLoader`` seeded ``seed * 1000 + index``), same local training call, same int8 error-feedback
uplink and FedAvg of the encoders. After every new global model the workstation evaluates its model
(global encoders + own head) on its later, held-out windows and writes ``<result_dir>/<name>.json``.

Options: ``label_fraction`` (default 1.0), ``result_dir`` (required for results), ``window``, ``step``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hrc_fl.federated.core.learner import TorchLearner


def clients_and_factory(options: Mapping[str, Any], seed: int):
    """The watch-data clients of ``options`` (one per subject, ``ws<k>`` = the k-th) and the model factory
    (``seed -> model``) with the federation's input normalisation: what the simulator and every
    workstation of this learner train."""
    from hrc_fl.federated.evaluation.watch_clients import federated_normalisation, model_factory, watch_clients
    from hrc_fl.intention.windows import WindowSpec

    window, step = int(options.get("window", 100)), int(options.get("step", 25))
    clients, class_names = watch_clients(label_fraction=float(options.get("label_fraction", 1.0)), seed=seed,
                                         spec=WindowSpec(window=window, step=step))
    mean, std = federated_normalisation(clients)
    return clients, model_factory(len(class_names), window, mean, std)


def initial_shared(options: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    from hrc_fl.federated.core.split import shared_state

    _, factory = clients_and_factory(options, seed)
    return shared_state(factory(seed))


def make_learner(name: str, options: Mapping[str, Any], seed: int) -> TorchLearner:
    from hrc_fl.federated.core.training import evaluate
    from hrc_fl.federated.evaluation.simulator import ArrayLoader

    clients, factory = clients_and_factory(options, seed)
    index = int(name.removeprefix("ws")) - 1
    if not name.startswith("ws") or not 0 <= index < len(clients):
        raise ValueError(f"watch learner serves ws1..ws{len(clients)}, not {name!r}")
    client = clients[index]
    batch_size = int(options.get("batch_size", 32))
    train = ArrayLoader(client.train_x, client.train_y, batch_size=batch_size, shuffle=True, seed=seed * 1000 + index)
    test = ArrayLoader(client.test_x, client.test_y, batch_size=512, shuffle=False)
    result_dir = str(options.get("result_dir", ""))

    def report(learner: TorchLearner, server_round: int, version: str) -> None:
        if not result_dir:
            return
        scores = evaluate(learner.model, test)
        Path(result_dir).mkdir(parents=True, exist_ok=True)
        out = {"client_id": client.client_id, "round": server_round, "version": version,
               "accuracy": scores.accuracy, "macro_f1": scores.macro_f1}
        tmp = Path(result_dir) / f".{name}.tmp"
        tmp.write_text(json.dumps(out))
        tmp.replace(Path(result_dir) / f"{name}.json")

    return TorchLearner(factory(seed), lambda server_round: train, epochs=int(options.get("epochs", 1)),
                        lr=float(options.get("lr", 3e-3)), on_model=report)
