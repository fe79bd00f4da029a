"""Client-level differential privacy as a wrapper around a mean strategy.

DP-FedAvg (McMahan et al. 2018, "Learning differentially private recurrent language models", ICLR):
every client's delta is clipped to L2 norm ``clip_norm`` C, the clipped deltas are averaged with equal
weights over the m accepted clients, and Gaussian noise N(0, (z C / m)^2) is added to the mean, z being
``noise_multiplier``. The privacy loss is tracked by opacus's Rényi-DP accountant (Mironov 2017) with
one Gaussian-mechanism step per round at the client sampling rate q.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from opacus.accountants import RDPAccountant

from hrc_fl.federated import aggregation
from hrc_fl.federated.strategies import FedAvg, Strategy
from hrc_fl.federated.update import AggregationResult, ClientUpdate, difference


class DPStrategy(Strategy):
    """Wrap a FedAvg-type strategy (not a subclass of it) with clipping, noise and an accountant.

    ``sample_rate`` q is the fraction of clients taking part in a round (1.0 when all do). ``epsilon``
    is the (epsilon, ``delta``)-DP guarantee for the rounds aggregated so far.
    """

    def __init__(self, inner: Strategy, *, clip_norm: float, noise_multiplier: float, delta: float = 1e-5,
                 sample_rate: float = 1.0, seed: int = 0) -> None:
        if not isinstance(inner, FedAvg) or type(inner).combine is not FedAvg.combine:
            raise ValueError("DPStrategy needs a mean rule (FedAvg or FedProx): its noise is calibrated "
                             "to the sensitivity of an average")
        if not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.inner = inner
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.sample_rate = float(sample_rate)
        self.accountant = RDPAccountant()
        self.rng = np.random.default_rng(seed)

    def client_config(self, server_round: int) -> dict[str, float]:
        return self.inner.client_config(server_round)

    @property
    def epsilon(self) -> float:
        """epsilon spent so far at ``delta`` (0.0 before the first round, inf without noise)."""
        if not self.accountant.history:
            return 0.0
        if self.noise_multiplier == 0:
            return float("inf")
        return float(self.accountant.get_epsilon(self.delta))

    def state_dict(self) -> dict[str, Any]:
        """JSON-able accountant and noise-generator state, for the aggregator's checkpoint: epsilon survives a
        restart, and a restarted aggregator does not replay the noise it already added."""
        return {"history": [[float(z), float(q), int(n)] for z, q, n in self.accountant.history],
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; ValueError on a malformed state."""
        try:
            history = [(float(z), float(q), int(n)) for z, q, n in state["history"]]
            rng = np.random.default_rng()
            if "rng" in state:
                rng.bit_generator.state = dict(state["rng"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed DP accountant state: {exc}") from exc
        self.accountant.history = history
        if "rng" in state:
            self.rng = rng

    def aggregate(self, server_round: int, updates: Sequence[ClientUpdate],
                  current: Mapping[str, np.ndarray]) -> AggregationResult:
        clipped_updates: list[ClientUpdate] = []
        for update in updates:
            if aggregation.validate_tensors(update.tensors, current) is not None:
                clipped_updates.append(update)  # the inner strategy refuses it with the reason
                continue
            delta, _ = aggregation.clip_to_norm(difference(update.tensors, current), self.clip_norm)
            tensors = {name: np.asarray(current[name], np.float32) + delta[name] for name in current}
            # equal weights: the sensitivity of the mean must not depend on a client's claimed sample count
            clipped_updates.append(dataclasses.replace(update, tensors=tensors, num_samples=1))
        result = self.inner.aggregate(server_round, clipped_updates, current)
        if not result.accepted_ids:
            return result
        std = self.noise_multiplier * self.clip_norm / len(result.accepted_ids)
        noisy = {name: (value + self.rng.normal(0.0, std, size=np.shape(value))).astype(np.float32)
                 for name, value in result.tensors.items()}
        if self.noise_multiplier > 0:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        else:
            self.accountant.history.append((0.0, self.sample_rate, 1))
        metrics = dict(result.metrics, epsilon=self.epsilon, noise_std=std)
        return AggregationResult(noisy, result.accepted_ids, result.rejected, metrics)
