"""Client-level DP wrapper: clipping, noise scale, accountant behaviour."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hrc_fl.federated.privacy import DPStrategy
from hrc_fl.federated.strategies import CoordinateMedian, FedAvg, make_strategy
from hrc_fl.federated.update import ClientUpdate

CURRENT = {"w": np.zeros(4, np.float32)}


def _updates(values: list[list[float]], rnd: int = 1) -> list[ClientUpdate]:
    return [ClientUpdate(f"c{i}", rnd, 100 * (i + 1), {"w": np.array(v, np.float32)}) for i, v in enumerate(values)]


def _epsilons(noise: float, rounds: int) -> list[float]:
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=noise, seed=1)
    out = []
    for r in range(1, rounds + 1):
        dp.aggregate(r, _updates([[1, 0, 0, 0], [0, 1, 0, 0]], rnd=r), CURRENT)
        out.append(dp.epsilon)
    return out


def test_epsilon_grows_with_rounds():
    eps = _epsilons(1.0, 5)
    assert all(b > a for a, b in itertools.pairwise(eps))
    assert eps[0] > 0


def test_more_noise_gives_smaller_epsilon():
    low, mid, high = (_epsilons(z, 3)[-1] for z in (0.5, 1.0, 2.0))
    assert low > mid > high


def test_without_noise_mean_of_clipped_deltas_with_equal_weights():
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=0.0)
    # [3,4,0,0] has norm 5 -> clipped to [0.6,0.8,0,0]; [0.5,0,0,0] unchanged; equal weights despite n
    result = dp.aggregate(1, _updates([[3, 4, 0, 0], [0.5, 0, 0, 0]]), CURRENT)
    np.testing.assert_allclose(result.tensors["w"], [0.55, 0.4, 0, 0], rtol=1e-5)
    assert dp.epsilon == float("inf")


def test_noise_std_is_z_times_clip_over_clients():
    dp = DPStrategy(FedAvg(), clip_norm=2.0, noise_multiplier=1.5, seed=3)
    current = {"w": np.zeros(20000, np.float32)}
    updates = [ClientUpdate(f"c{i}", 1, 1, {"w": np.zeros(20000, np.float32)}) for i in range(4)]
    result = dp.aggregate(1, updates, current)
    expected = 1.5 * 2.0 / 4
    assert result.metrics["noise_std"] == pytest.approx(expected)
    assert float(np.std(result.tensors["w"])) == pytest.approx(expected, rel=0.03)


def test_dp_still_rejects_nan_updates():
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0)
    result = dp.aggregate(1, _updates([[1, 0, 0, 0], [np.nan, 0, 0, 0]]), CURRENT)
    assert result.accepted_ids == ["c0"] and "non-finite" in result.rejected["c1"]


def test_dp_wrapper_refuses_non_mean_rules_and_bad_arguments():
    with pytest.raises(ValueError, match="mean rule"):
        DPStrategy(CoordinateMedian(), clip_norm=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        DPStrategy(FedAvg(), clip_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, delta=2.0)
    wrapped = make_strategy({"name": "fedprox", "proximal_mu": 0.1, "dp": {"clip_norm": 1, "noise_multiplier": 1}})
    assert isinstance(wrapped, DPStrategy) and wrapped.client_config(1) == {"proximal_mu": 0.1}


def test_accountant_state_survives_a_restart():
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0)
    for r in (1, 2, 3):
        dp.aggregate(r, _updates([[1, 0, 0, 0]], rnd=r), CURRENT)
    restarted = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0)
    restarted.load_state_dict(dp.state_dict())
    assert restarted.epsilon == pytest.approx(dp.epsilon)
    restarted.aggregate(4, _updates([[1, 0, 0, 0]], rnd=4), CURRENT)
    assert restarted.epsilon > dp.epsilon
    with pytest.raises(ValueError, match="malformed"):
        restarted.load_state_dict({"history": [["x"]]})
