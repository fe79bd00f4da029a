"""A strategy from its configuration (the ``strategy`` section of config/federated.yaml): the rule of
:mod:`hrc_fl.federated.core.strategies`, wrapped in
:class:`hrc_fl.federated.core.privacy.DPStrategy` when ``dp`` is set.

Sits above both: the rules know nothing of the DP wrapper, and the wrapper (a :class:`Strategy` around a
rule) knows nothing of configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hrc_fl.federated.core.strategies import (
    DEFAULT_MAX_NUM_SAMPLES,
    CoordinateMedian,
    FedAvg,
    FedProx,
    MedianAnchored,
    Strategy,
    TrimmedMean,
)

_RULES = {"fedavg": FedAvg, "fedprox": FedProx, "median": CoordinateMedian, "trimmed_mean": TrimmedMean,
          "median_anchored": MedianAnchored}
_RULE_KEYS = {"fedavg": set(), "fedprox": {"proximal_mu"}, "median": set(), "trimmed_mean": {"trim_fraction"},
              "median_anchored": {"max_attackers"}}
_COMMON_KEYS = {"max_update_norm", "min_accepted", "max_num_samples"}
_DP_KEYS = {"clip_norm", "noise_multiplier", "delta", "sample_rate", "expected_clients"}


def make_strategy(config: Mapping[str, Any]) -> Strategy:
    """Build a strategy from a plain mapping (e.g. a YAML section).

    Keys: ``name`` in {fedavg, fedprox, median, trimmed_mean, median_anchored} (default fedavg);
    ``max_update_norm`` (None/0 = off); ``min_accepted``; ``max_num_samples`` (cap on a client's FedAvg
    weight); ``proximal_mu`` (fedprox); ``trim_fraction`` (trimmed_mean); ``max_attackers`` (median_anchored);
    ``dp``: optional mapping with ``clip_norm``, ``noise_multiplier``, ``delta``, ``expected_clients``
    (required: the fixed denominator m, the number of configured workstations) and ``sample_rate`` (must be
    1.0); wraps the strategy in :class:`hrc_fl.federated.core.privacy.DPStrategy` (needs a mean rule). A ``seed``
    is refused: DP noise in a deployment comes from the OS CSPRNG, never from shared configuration.
    Unknown keys raise ValueError so that a typo in a config file is not silently ignored.
    """
    name = str(config.get("name", "fedavg")).lower()
    if name not in _RULES:
        raise ValueError(f"unknown strategy name {name!r}; choose one of {sorted(_RULES)}")
    allowed = {"name", "dp"} | _COMMON_KEYS | _RULE_KEYS[name]
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"unknown keys for strategy {name!r}: {unknown}")
    kwargs: dict[str, Any] = {}
    norm = config.get("max_update_norm")
    kwargs["max_update_norm"] = float(norm) if norm else None
    kwargs["min_accepted"] = int(config.get("min_accepted", 1))
    kwargs["max_num_samples"] = int(config.get("max_num_samples", DEFAULT_MAX_NUM_SAMPLES))
    if name == "fedprox":
        kwargs["proximal_mu"] = float(config.get("proximal_mu", 0.01))
    if name == "trimmed_mean":
        kwargs["trim_fraction"] = float(config.get("trim_fraction", 0.1))
    if name == "median_anchored":
        kwargs["max_attackers"] = int(config.get("max_attackers", 1))
    strategy: Strategy = _RULES[name](**kwargs)
    dp = config.get("dp")
    if dp:
        # imported only when DP is configured: privacy loads opacus, which a plain rule never needs
        from hrc_fl.federated.core.privacy import DPStrategy

        if "seed" in dp:
            raise ValueError("dp.seed is refused: every workstation holds this configuration, so seeded noise "
                             "could be regenerated and subtracted; deployment noise comes from the OS CSPRNG")
        unknown_dp = sorted(set(dp) - _DP_KEYS)
        if unknown_dp:
            raise ValueError(f"unknown keys in dp: {unknown_dp}")
        if "expected_clients" not in dp:
            raise ValueError("dp.expected_clients is required: the fixed denominator of the DP mean")
        strategy = DPStrategy(strategy, clip_norm=float(dp["clip_norm"]),
                              noise_multiplier=float(dp["noise_multiplier"]),
                              delta=float(dp.get("delta", 1e-5)), sample_rate=float(dp.get("sample_rate", 1.0)),
                              expected_clients=int(dp["expected_clients"]))
    return strategy
