"""What a federated client trains: the engine-independent interface the FedML adapter drives.

A :class:`LocalLearner` owns a model split into a SHARED part (sent to the aggregator) and a PERSONAL part
(never leaves the device). The adapter only ever moves what :meth:`LocalLearner.get_shared` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class LocalLearner(Protocol):
    """A workstation's model and data, seen by the federated client."""

    def get_shared(self) -> dict[str, np.ndarray]:
        """Current shared tensors (name -> float32 array); the only thing uploaded."""

    def set_shared(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Load global shared tensors; the personal part is kept."""

    def train_round(self, server_round: int, config: Mapping[str, float]) -> tuple[int, dict[str, float]]:
        """Train locally for one round; return (labelled samples used, metrics). 0 samples = skip."""

    def on_global_model(self, server_round: int, version: str) -> None:
        """A new global shared model was loaded (e.g. write the personalised model and hot-swap)."""


class LearnerModule(Protocol):
    """A module named by ``learner.module`` in config/federated.yaml (how a deployment plugs its model in)."""

    def make_learner(self, name: str, options: Mapping[str, object], seed: int) -> LocalLearner:
        """The learner of workstation ``name``."""

    def initial_shared(self, options: Mapping[str, object], seed: int) -> dict[str, np.ndarray]:
        """The round-0 global shared tensors (the aggregator's starting point)."""


def load_learner_module(module_name: str) -> LearnerModule:
    """Import a learner module; raises ValueError when it lacks ``make_learner``/``initial_shared``."""
    import importlib

    module = importlib.import_module(module_name)
    for attr in ("make_learner", "initial_shared"):
        if not callable(getattr(module, attr, None)):
            raise ValueError(f"learner module {module_name!r} has no function {attr}()")
    return module  # type: ignore[return-value]


class TorchLearner:
    """A :class:`LocalLearner` over a torch model with ``SHARED_PREFIXES`` and a data loader factory.

    Each round runs :func:`hrc_fl.federated.core.client_update.local_round` (FedRep when ``head_epochs`` > 0: the
    personal head with the encoders frozen, then the encoders for ``epochs`` with the head frozen; else
    joint FedPer training), with the server's ``proximal_mu`` as the FedProx term on the shared part. Each
    new global model refreshes the head for ``fine_tune_epochs``
    (:func:`~hrc_fl.federated.core.client_update.refresh_head`) before ``on_model`` sees it. Only
    :func:`hrc_fl.federated.core.split.shared_state` leaves through :meth:`get_shared`.
    """

    def __init__(self, model, loader_factory, *, epochs: int, lr: float, head_epochs: int = 0,
                 fine_tune_epochs: int = 0, on_model=None) -> None:
        from hrc_fl.federated.core.client_update import LocalRoundPlan
        from hrc_fl.federated.core.split import shared_prefixes_of

        self.plan = LocalRoundPlan(epochs=epochs, lr=lr, head_epochs=head_epochs, fine_tune_epochs=fine_tune_epochs)
        self.model = model
        self.prefixes = shared_prefixes_of(model)
        self.loader_factory = loader_factory
        self.on_model = on_model

    def get_shared(self) -> dict[str, np.ndarray]:
        from hrc_fl.federated.core.split import shared_state

        return shared_state(self.model, self.prefixes)

    def set_shared(self, tensors: Mapping[str, np.ndarray]) -> None:
        from hrc_fl.federated.core.split import load_shared

        load_shared(self.model, tensors, self.prefixes)

    def train_round(self, server_round: int, config: Mapping[str, float]) -> tuple[int, dict[str, float]]:
        from hrc_fl.federated.core.client_update import local_round

        loader = self.loader_factory(server_round)
        if loader is None:
            return 0, {}
        mu = float(config.get("proximal_mu", 0.0))
        result = local_round(self.model, loader, self.plan, shared_prefixes=self.prefixes, proximal_mu=mu,
                             shared_reference=self.get_shared() if mu > 0 else None)
        return result.num_samples, {"loss": result.mean_loss}

    def on_global_model(self, server_round: int, version: str) -> None:
        from hrc_fl.federated.core.client_update import refresh_head

        if self.plan.fine_tune_epochs:
            refresh_head(self.model, self.loader_factory(server_round), self.plan, shared_prefixes=self.prefixes)
        if self.on_model is not None:
            self.on_model(self, server_round, version)
