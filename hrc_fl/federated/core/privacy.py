"""Client-level differential privacy as a wrapper around a mean strategy.

DP-FedAvg (McMahan et al. 2018, "Learning differentially private recurrent language models", ICLR) with a
FIXED denominator: every client's delta is clipped to L2 norm ``clip_norm`` C, the clipped deltas are
SUMMED with equal weights and divided by ``expected_clients`` m (from the federation's configuration, not
by the number of updates accepted in the round), and Gaussian noise N(0, (z C / m)^2) is added to that
mean, z being ``noise_multiplier``. Adding or removing one client changes the sum by at most C, so the
mean's L2 sensitivity is C / m and the noise is exactly z times the sensitivity; opacus's Rényi-DP
accountant (Mironov 2017) is stepped once per round with noise multiplier z and sampling rate q = 1
(every configured client is asked every round: there is no client sampling, so ``sample_rate`` < 1 is
refused). Rounds with fewer answers than m give a smaller step (the price of a fixed denominator).

Guarantee (docs/federated_core.md): the sequence of released global models is (epsilon, delta)-DP with
respect to adding or removing all the data of one workstation, epsilon as reported after that many rounds.

The noise comes from the operating system's CSPRNG (:func:`csprng_normal`): a workstation that holds the
shared configuration cannot regenerate it, and no generator state is saved. Only the simulator passes a
``seed`` (reproducible sweeps); a deployment never does. Per-client clipped-norm statistics are not
released (they are not covered by the noise).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from opacus.accountants import RDPAccountant

from hrc_fl.federated.core import aggregation
from hrc_fl.federated.core.strategies import FedAvg, Strategy
from hrc_fl.federated.core.update import AggregationResult, ClientUpdate, copy_arrays, difference

LOG = logging.getLogger(__name__)

#: metrics of the inner rule that describe individual clients' update norms: not released under DP
UNRELEASED_METRICS = ("median_update_norm", "max_update_norm", "num_clipped")


def csprng_normal(shape: tuple[int, ...], std: float) -> np.ndarray:
    """Gaussian samples N(0, std^2) of ``shape`` (float64) from ``os.urandom`` (Box-Muller on 53-bit uniforms).

    Not reproducible by design: DP noise must not be derivable from anything a participant holds.
    """
    count = int(np.prod(shape, dtype=np.int64))
    pairs = (count + 1) // 2
    raw = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs)
    # (k + 1) / 2^53 lies in (0, 1]: log never sees 0
    u1 = ((raw[0] >> np.uint64(11)).astype(np.float64) + 1.0) / 9007199254740992.0
    u2 = (raw[1] >> np.uint64(11)).astype(np.float64) / 9007199254740992.0
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:count]
    return (std * normal).reshape(shape)


class DPStrategy(Strategy):
    """Wrap a FedAvg-type strategy (not a subclass of it) with clipping, a fixed denominator, noise and an
    accountant.

    ``expected_clients`` m: the denominator of the mean (the number of configured workstations). None only
    in the simulator, where every client answers every round: m is then the number of updates handed to
    :meth:`aggregate` (accepted or not). ``sample_rate`` must be 1.0 (no client sampling exists).
    ``seed``: simulator only (reproducible noise); None = the OS CSPRNG. ``epsilon`` is the
    (epsilon, ``delta``)-DP guarantee for the rounds aggregated so far.
    """

    def __init__(self, inner: Strategy, *, clip_norm: float, noise_multiplier: float, delta: float = 1e-5,
                 expected_clients: int | None = None, sample_rate: float = 1.0, seed: int | None = None) -> None:
        if not isinstance(inner, FedAvg) or type(inner).combine is not FedAvg.combine:
            raise ValueError("DPStrategy needs a mean rule (FedAvg or FedProx): its noise is calibrated "
                             "to the sensitivity of an average")
        if not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if sample_rate != 1.0:
            raise ValueError(f"sample_rate must be 1.0: every configured client is asked every round (no client "
                             f"sampling exists, so no amplification by sampling may be claimed), got {sample_rate}")
        if expected_clients is not None and expected_clients < 1:
            raise ValueError(f"expected_clients must be >= 1, got {expected_clients}")
        self.inner = inner
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)
        self.sample_rate = 1.0
        self.expected_clients = expected_clients
        self.accountant = RDPAccountant()
        self._rng = np.random.default_rng(seed) if seed is not None else None

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

    def _noise(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        if self._rng is not None:
            return self._rng.normal(0.0, std, size=shape)
        return csprng_normal(shape, std)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able accountant state for the aggregator's checkpoint, so epsilon survives a restart. No
        generator state: the noise is drawn from the OS CSPRNG and never saved."""
        return {"history": [[float(z), float(q), int(n)] for z, q, n in self.accountant.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; ValueError on a malformed state. A noise-generator state
        written by an older version is ignored (and never used again)."""
        try:
            history = [(float(z), float(q), int(n)) for z, q, n in state["history"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed DP accountant state: {exc}") from exc
        if "rng" in state:
            LOG.warning("checkpoint holds a DP noise-generator state from an older version: ignored")
        self.accountant.history = history

    def aggregate(self, server_round: int, updates: Sequence[ClientUpdate],
                  current: Mapping[str, np.ndarray]) -> AggregationResult:
        denominator = self.expected_clients if self.expected_clients is not None else len(updates)
        # The inner rule gets each client's clipped DELTA as its update against a zero model, so what it
        # returns is the mean delta itself: no current + mean - current round trip (twice the work, and
        # float32 rounding of the mean at the scale of the weights). Validation sees the same names/shapes.
        zero = {name: np.zeros(np.shape(value), np.float32) for name, value in current.items()}
        clipped_updates: list[ClientUpdate] = []
        for update in updates:
            if update.num_samples <= 0 or aggregation.validate_tensors(update.tensors, current) is not None:
                clipped_updates.append(update)  # the inner strategy refuses it with the reason
                continue
            delta, _ = aggregation.clip_to_norm(difference(update.tensors, current), self.clip_norm)
            # equal weights: the sensitivity of the sum must not depend on a client's claimed sample count
            clipped_updates.append(dataclasses.replace(update, tensors=delta, num_samples=1))
        result = self.inner.aggregate(server_round, clipped_updates, zero)
        metrics = {k: v for k, v in result.metrics.items() if k not in UNRELEASED_METRICS}
        if not result.accepted_ids:
            return dataclasses.replace(result, tensors=copy_arrays(current), metrics=metrics)
        accepted = len(result.accepted_ids)
        if accepted > denominator:
            raise ValueError(f"{accepted} accepted updates exceed expected_clients {denominator}: the DP "
                             f"sensitivity C/m would not hold")
        # the inner rule returned the mean delta over the accepted; rescale to sum / m (fixed denominator)
        scale = np.float32(accepted / denominator)
        step = {name: scale * value for name, value in result.tensors.items()}
        noisy = self._release(current, step, denominator, metrics)
        return AggregationResult(noisy, result.accepted_ids, result.rejected, metrics, result.rule)

    def release_sum(self, current: Mapping[str, np.ndarray], clipped_sum: Mapping[str, np.ndarray],
                    contributors: int, metrics: dict[str, float]) -> dict[str, np.ndarray]:
        """``current`` + the SUM of ``contributors`` deltas, each already clipped to ``clip_norm`` by its
        client (secure aggregation: the aggregator never sees them one by one), divided by the fixed
        denominator, plus the same noise and accounting as :meth:`aggregate`. ``metrics`` gets epsilon."""
        denominator = self.expected_clients if self.expected_clients is not None else contributors
        if contributors > denominator:
            raise ValueError(f"{contributors} contributors exceed expected_clients {denominator}: the DP "
                             f"sensitivity C/m would not hold")
        step = {name: np.asarray(value, np.float64) / denominator for name, value in clipped_sum.items()}
        return self._release(current, step, denominator, metrics)

    def _release(self, current: Mapping[str, np.ndarray], step: Mapping[str, np.ndarray], denominator: int,
                 metrics: dict[str, float]) -> dict[str, np.ndarray]:
        """``current`` + ``step`` (the sum over m) + N(0, (z C / m)^2); one accountant step."""
        std = self.noise_multiplier * self.clip_norm / denominator
        noisy = {name: (np.asarray(current[name], np.float32) + value
                        + self._noise(np.shape(value), std)).astype(np.float32)
                 for name, value in step.items()}
        if self.noise_multiplier > 0:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        else:
            self.accountant.history.append((0.0, self.sample_rate, 1))
        metrics.update(epsilon=self.epsilon, noise_std=std, dp_denominator=float(denominator))
        return noisy
