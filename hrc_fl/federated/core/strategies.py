"""Server-side strategies (Flower-like): validate client updates, combine them, return new tensors.

Transport-independent: a strategy never sees gRPC, FedML or torch. A strategy aggregates only what it is
given; which tensors are shared (personalisation by layer split, FedPer/FedRep) is decided on the client
by :mod:`hrc_fl.federated.core.split`. A strategy from configuration (DP included):
:func:`hrc_fl.federated.core.strategy_config.make_strategy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hrc_fl.federated.core import aggregation
from hrc_fl.federated.core.update import (
    AggregationResult,
    ClientUpdate,
    NDArrays,
    add,
    copy_arrays,
    difference,
    global_norm,
)

#: default cap on the self-reported sample count used as a FedAvg weight (config: strategy.max_num_samples);
#: as large as a workstation's sample store keeps (intention_learner's max_samples_per_worker)
DEFAULT_MAX_NUM_SAMPLES = 5000
#: ``AggregationResult.rule`` of a round that kept the current tensors (too few valid updates)
KEPT_CURRENT = "kept_current"


class Strategy(ABC):
    """Interface every strategy implements (also the DP wrapper)."""

    def client_config(self, server_round: int) -> dict[str, float]:
        """Settings sent to clients with a round (e.g. ``proximal_mu``)."""
        return {"proximal_mu": 0.0}

    @abstractmethod
    def aggregate(self, server_round: int, updates: Sequence[ClientUpdate],
                  current: Mapping[str, np.ndarray]) -> AggregationResult:
        """New shared tensors from the round's updates; ``current`` is what clients started from."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state that must survive an aggregator restart (checkpointed every round); none here."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError when ``state`` holds anything this strategy cannot use."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}")


class FedAvg(Strategy):
    """Sample-weighted federated averaging (McMahan et al. 2017, "Communication-efficient learning of
    deep networks from decentralized data", AISTATS).

    Every update is checked first and refused with a reason when it answers another round, has no
    samples, different names or shapes, or non-finite values. ``num_samples`` is self-reported, so its
    weight is capped at ``max_num_samples`` (a client claiming 10^9 samples weighs as much as one at the
    bound; ``num_capped`` counts them). With ``max_update_norm`` the delta of each client is clipped to
    that L2 norm before combining. With fewer than ``min_accepted`` valid updates the current tensors are
    kept.
    """

    rule = "fedavg"

    def __init__(self, *, max_update_norm: float | None = None, min_accepted: int = 1,
                 max_num_samples: int = DEFAULT_MAX_NUM_SAMPLES) -> None:
        if max_update_norm is not None and not max_update_norm > 0:
            raise ValueError(f"max_update_norm must be > 0 or None, got {max_update_norm}")
        if min_accepted < 1:
            raise ValueError(f"min_accepted must be >= 1, got {min_accepted}")
        if max_num_samples < 1:
            raise ValueError(f"max_num_samples must be >= 1, got {max_num_samples}")
        self.max_update_norm = max_update_norm
        self.min_accepted = int(min_accepted)
        self.max_num_samples = int(max_num_samples)

    def rule_for(self, count: int) -> str:
        """Name of the rule that combines ``count`` accepted updates (``AggregationResult.rule``;
        ``kept_current`` below ``min_accepted``): the one place a rule decides to fall back or refuse (the
        report names the rule that ran from it too)."""
        return KEPT_CURRENT if count < self.min_accepted else self.rule

    def combine(self, deltas: list[NDArrays], weights: list[int]) -> tuple[NDArrays, dict[str, float]]:
        """Combine accepted client deltas (the one step robust rules override) with the rule
        :meth:`rule_for` names; returns the combined delta and the rule's own metrics."""
        return aggregation.weighted_average(list(zip(deltas, weights, strict=True))), {}

    def aggregate(self, server_round: int, updates: Sequence[ClientUpdate],
                  current: Mapping[str, np.ndarray]) -> AggregationResult:
        rejected: dict[str, str] = {}
        accepted: list[ClientUpdate] = []
        seen: set[str] = set()
        for update in updates:
            reason = self._reason_to_reject(server_round, update, current, seen)
            if reason is None:
                accepted.append(update)
                seen.add(update.client_id)
            else:
                rejected[update.client_id] = reason
        rule = self.rule_for(len(accepted))
        if rule == KEPT_CURRENT:
            return AggregationResult(copy_arrays(current), [], rejected,
                                     {"num_accepted": float(len(accepted)), "kept_current": 1.0,
                                      "min_accepted": float(self.min_accepted)}, rule)
        deltas = [difference(u.tensors, current) for u in accepted]
        norms = [global_norm(d) for d in deltas]
        clipped = 0
        if self.max_update_norm is not None:
            for i, delta in enumerate(deltas):
                deltas[i], factor = aggregation.clip_to_norm(delta, self.max_update_norm)
                clipped += int(factor < 1.0)
        weights = [min(int(u.num_samples), self.max_num_samples) for u in accepted]
        capped = sum(int(u.num_samples) > self.max_num_samples for u in accepted)
        combined, rule_metrics = self.combine(deltas, weights)
        return AggregationResult(add(current, combined), [u.client_id for u in accepted], rejected,
                                 {"num_accepted": float(len(accepted)), "num_clipped": float(clipped),
                                  "num_capped": float(capped), "kept_current": 0.0,
                                  "median_fallback": float(rule == CoordinateMedian.rule != self.rule),
                                  "median_update_norm": float(np.median(norms)),
                                  "max_update_norm": float(np.max(norms)), **rule_metrics}, rule)

    @staticmethod
    def _reason_to_reject(server_round: int, update: ClientUpdate, current: Mapping[str, np.ndarray],
                          seen: set[str]) -> str | None:
        if update.client_id in seen:
            return "duplicate update from the same client in this round"
        if update.round != server_round:
            return f"stale round: update for round {update.round}, server is in round {server_round}"
        if update.num_samples <= 0:
            return f"num_samples must be > 0, got {update.num_samples}"
        return aggregation.validate_tensors(update.tensors, current)


class FedProx(FedAvg):
    """FedAvg whose clients add the proximal term (mu/2)||w - w_global||^2 to their local loss
    (Li et al. 2020, "Federated optimization in heterogeneous networks", MLSys). Server side is FedAvg.
    """

    rule = "fedprox"

    def __init__(self, *, proximal_mu: float, max_update_norm: float | None = None,
                 min_accepted: int = 1, max_num_samples: int = DEFAULT_MAX_NUM_SAMPLES) -> None:
        super().__init__(max_update_norm=max_update_norm, min_accepted=min_accepted, max_num_samples=max_num_samples)
        if not proximal_mu >= 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
        self.proximal_mu = float(proximal_mu)

    def client_config(self, server_round: int) -> dict[str, float]:
        return {"proximal_mu": self.proximal_mu}


class CoordinateMedian(FedAvg):
    """Coordinate-wise median of client deltas (Yin et al. 2018, ICML); ignores sample counts."""

    rule = "coordinate_median"

    def combine(self, deltas: list[NDArrays], weights: list[int]) -> tuple[NDArrays, dict[str, float]]:
        return aggregation.coordinate_median(deltas), {}


class TrimmedMean(FedAvg):
    """Coordinate-wise trimmed mean of client deltas (Yin et al. 2018, ICML); ignores sample counts.

    With n accepted updates it trims ``floor(trim_fraction * n)`` per side. When that is 0 (e.g. 3
    workstations at 0.2) a trimmed mean would be a plain mean that one client can move anywhere, so the
    round runs the coordinate median instead and says so: the result's ``rule`` is ``coordinate_median``
    and its metric ``median_fallback`` is 1. A median of 3 keeps each coordinate between honest values but
    follows a sign-flipping client (per coordinate the honest value nearest it); :class:`MedianAnchored`
    holds that one out.
    """

    rule = "trimmed_mean"

    def __init__(self, *, trim_fraction: float = 0.1, max_update_norm: float | None = None,
                 min_accepted: int = 1, max_num_samples: int = DEFAULT_MAX_NUM_SAMPLES) -> None:
        super().__init__(max_update_norm=max_update_norm, min_accepted=min_accepted, max_num_samples=max_num_samples)
        if not 0.0 <= trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
        self.trim_fraction = float(trim_fraction)

    def rule_for(self, count: int) -> str:
        rule = super().rule_for(count)
        if rule == self.rule and aggregation.trim_count(count, self.trim_fraction) == 0:
            return CoordinateMedian.rule
        return rule

    def combine(self, deltas: list[NDArrays], weights: list[int]) -> tuple[NDArrays, dict[str, float]]:
        if self.rule_for(len(deltas)) == CoordinateMedian.rule:
            return aggregation.coordinate_median(deltas), {}
        return aggregation.trimmed_mean(deltas, trim_fraction=self.trim_fraction), {}


class MedianAnchored(FedAvg):
    """Median-anchored mean (:func:`aggregation.median_anchored_mean`): per round, drop the ``max_attackers``
    f client deltas farthest (L2) from their coordinate median and average the rest with equal weights
    (sample counts are self-reported, so an attacker's claim would buy it weight). ``metrics["num_filtered"]``
    counts the dropped deltas.

    Holds f attacking clients only when at least 2f + 1 valid updates arrived (3 for one attacker): with
    fewer, the median has no honest majority and no rule can tell the attacker from an honest client, so
    the round keeps the current tensors (``min_accepted`` is raised to 2f + 1; rule ``kept_current``,
    ``metrics["min_accepted"]``). What it bounds and what not: docs/federated_core.md.
    """

    rule = "median_anchored"

    def __init__(self, *, max_attackers: int = 1, max_update_norm: float | None = None, min_accepted: int = 1,
                 max_num_samples: int = DEFAULT_MAX_NUM_SAMPLES) -> None:
        if max_attackers < 0:
            raise ValueError(f"max_attackers must be >= 0, got {max_attackers}")
        super().__init__(max_update_norm=max_update_norm, min_accepted=max(min_accepted, 2 * max_attackers + 1),
                         max_num_samples=max_num_samples)
        self.max_attackers = int(max_attackers)

    def combine(self, deltas: list[NDArrays], weights: list[int]) -> tuple[NDArrays, dict[str, float]]:
        combined, kept = aggregation.median_anchored_mean(deltas, max_attackers=self.max_attackers)
        return combined, {"num_filtered": float(len(deltas) - len(kept))}
