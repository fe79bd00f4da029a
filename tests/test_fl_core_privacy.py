"""Client-level DP wrapper: clipping, noise scale, accountant behaviour."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from hrc_fl import paths
from hrc_fl.federated.core.privacy import DPStrategy
from hrc_fl.federated.core.strategies import CoordinateMedian, FedAvg
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import ClientUpdate

CURRENT = {"w": np.zeros(4, np.float32)}


def _updates(values: list[list[float]], rnd: int = 1) -> list[ClientUpdate]:
    return [ClientUpdate(f"c{i}", rnd, 100 * (i + 1), {"w": np.array(v, np.float32)}) for i, v in enumerate(values)]


def _epsilons(noise: float, rounds: int) -> list[float]:
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=noise, expected_clients=2)
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
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=0.0, expected_clients=2)
    # [3,4,0,0] has norm 5 -> clipped to [0.6,0.8,0,0]; [0.5,0,0,0] unchanged; equal weights despite n
    result = dp.aggregate(1, _updates([[3, 4, 0, 0], [0.5, 0, 0, 0]]), CURRENT)
    np.testing.assert_allclose(result.tensors["w"], [0.55, 0.4, 0, 0], rtol=1e-5)
    assert dp.epsilon == float("inf")


def test_dp_mean_divides_by_the_configured_clients_not_by_those_accepted():
    # 3 workstations configured, one sends NaN: the sum of the 2 clipped deltas is divided by 3, not 2
    dp = DPStrategy(FedAvg(), clip_norm=10.0, noise_multiplier=0.0, expected_clients=3)
    result = dp.aggregate(1, _updates([[3, 0, 0, 0], [0, 3, 0, 0], [np.nan, 0, 0, 0]]), CURRENT)
    assert result.accepted_ids == ["c0", "c1"] and "non-finite" in result.rejected["c2"]
    np.testing.assert_allclose(result.tensors["w"], [1.0, 1.0, 0, 0], rtol=1e-6)
    assert result.metrics["dp_denominator"] == 3.0


def test_noise_std_is_z_times_clip_over_clients():
    dp = DPStrategy(FedAvg(), clip_norm=2.0, noise_multiplier=1.5, expected_clients=4)
    current = {"w": np.zeros(20000, np.float32)}
    updates = [ClientUpdate(f"c{i}", 1, 1, {"w": np.zeros(20000, np.float32)}) for i in range(3)]
    result = dp.aggregate(1, updates, current)
    expected = 1.5 * 2.0 / 4  # z C / m with m the configured clients even though only 3 answered
    assert result.metrics["noise_std"] == pytest.approx(expected)
    assert float(np.std(result.tensors["w"])) == pytest.approx(expected, rel=0.03)


def test_dp_still_rejects_nan_updates():
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, expected_clients=2)
    result = dp.aggregate(1, _updates([[1, 0, 0, 0], [np.nan, 0, 0, 0]]), CURRENT)
    assert result.accepted_ids == ["c0"] and "non-finite" in result.rejected["c1"]


def test_dp_still_rejects_an_update_without_samples_like_the_inner_rule():
    # equal weights under DP must not turn a claimed 0 (or negative) sample count into a valid update
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=0.0, expected_clients=3)
    updates = [*_updates([[1, 0, 0, 0]]), ClientUpdate("none", 1, 0, {"w": np.ones(4, np.float32)}),
               ClientUpdate("neg", 1, -5, {"w": np.ones(4, np.float32)})]
    result = dp.aggregate(1, updates, CURRENT)
    plain = FedAvg().aggregate(1, updates, CURRENT)
    assert result.accepted_ids == plain.accepted_ids == ["c0"]
    assert result.rejected == plain.rejected and "num_samples" in result.rejected["none"]


def test_dp_wrapper_refuses_non_mean_rules_and_bad_arguments():
    with pytest.raises(ValueError, match="mean rule"):
        DPStrategy(CoordinateMedian(), clip_norm=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        DPStrategy(FedAvg(), clip_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ValueError):
        DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, delta=2.0)
    with pytest.raises(ValueError, match="no client sampling"):
        DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, sample_rate=0.5)
    dp = {"clip_norm": 1, "noise_multiplier": 1, "expected_clients": 3}
    wrapped = make_strategy({"name": "fedprox", "proximal_mu": 0.1, "dp": dp})
    assert isinstance(wrapped, DPStrategy) and wrapped.client_config(1) == {"proximal_mu": 0.1}
    with pytest.raises(ValueError, match="seed"):
        make_strategy({"name": "fedavg", "dp": {**dp, "seed": 0}})
    with pytest.raises(ValueError, match="expected_clients"):
        make_strategy({"name": "fedavg", "dp": {"clip_norm": 1, "noise_multiplier": 1}})
    with pytest.raises(ValueError, match="sample_rate"):
        make_strategy({"name": "fedavg", "dp": {**dp, "sample_rate": 0.1}})


def test_accountant_state_survives_a_restart():
    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, expected_clients=1)
    for r in (1, 2, 3):
        dp.aggregate(r, _updates([[1, 0, 0, 0]], rnd=r), CURRENT)
    assert set(dp.state_dict()) == {"history"}  # no noise-generator state in the checkpoint
    restarted = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, expected_clients=1)
    restarted.load_state_dict(dp.state_dict())
    assert restarted.epsilon == pytest.approx(dp.epsilon)
    restarted.aggregate(4, _updates([[1, 0, 0, 0]], rnd=4), CURRENT)
    assert restarted.epsilon > dp.epsilon
    with pytest.raises(ValueError, match="malformed"):
        restarted.load_state_dict({"history": [["x"]]})


def _shipped_dp_strategy() -> tuple[DPStrategy, dict]:
    """The strategy every aggregator builds from the shared config, with a DP section added."""
    config = yaml.safe_load(paths.config_file("federated.yaml").read_text())
    section = {"name": "fedavg", "dp": {"clip_norm": 1.0, "noise_multiplier": 1.0, "expected_clients": 3}}
    strategy = make_strategy(section)
    assert isinstance(strategy, DPStrategy)
    return strategy, config


def test_a_client_holding_the_shared_config_cannot_reproduce_the_dp_noise():
    # Prepare: two aggregators built from the same shared configuration, the same round, the same updates
    current = {"w": np.zeros(4096, np.float32)}
    updates = [ClientUpdate(f"c{i}", 1, 10, {"w": np.zeros(4096, np.float32)}) for i in range(3)]
    first, config = _shipped_dp_strategy()
    second, _ = _shipped_dp_strategy()
    # Execute: the released models are exactly the noise (every delta is zero)
    noise_a = first.aggregate(1, updates, current).tensors["w"]
    noise_b = second.aggregate(1, updates, current).tensors["w"]
    # Assert: the noise has the calibrated scale but differs between identical aggregators ...
    std = first.noise_multiplier * first.clip_norm / 3
    assert float(np.std(noise_a)) == pytest.approx(std, rel=0.1)
    assert not np.allclose(noise_a, noise_b)
    # ... and no generator seeded from what a workstation holds (the config's seed, small integers) regenerates it
    for seed in {int(config.get("seed", 0)), *range(16)}:
        guess = np.random.default_rng(seed).normal(0.0, std, size=4096).astype(np.float32)
        residual = noise_a - guess
        assert float(np.std(residual)) > 0.5 * std  # subtracting the guess removes nothing
    assert "rng" not in first.state_dict()


def test_epsilon_matches_the_rdp_formula_of_a_gaussian_mechanism_with_sensitivity_c_over_m():
    # Hand-worked case: z = 1, C = 2, m = 3, T = 30 rounds, delta = 1e-5. The DP mean sum/m has L2
    # sensitivity C/m under adding/removing one workstation; noise std sigma = z C / m. Per round the
    # Gaussian mechanism is (alpha, alpha Delta^2 / (2 sigma^2)) = (alpha, alpha / (2 z^2))-RDP; T rounds
    # compose to T alpha / (2 z^2); to (eps, delta) by Balle et al. 2020 (what opacus uses):
    # eps = min_alpha T alpha/(2 z^2) - (log delta + log alpha)/(alpha - 1) + log((alpha - 1)/alpha).
    z, clip, m, rounds, delta = 1.0, 2.0, 3, 30, 1e-5
    dp = DPStrategy(FedAvg(), clip_norm=clip, noise_multiplier=z, delta=delta, expected_clients=m)
    current = {"w": np.zeros(20000, np.float32)}
    for r in range(1, rounds + 1):
        result = dp.aggregate(r, [ClientUpdate(f"c{i}", r, 1, current) for i in range(m)], current)
    sensitivity = clip / m
    measured_sigma = float(np.std(result.tensors["w"]))
    assert measured_sigma / sensitivity == pytest.approx(z, rel=0.03)  # the noise the accountant assumes
    alphas = np.linspace(1.01, 200.0, 400_000)
    rdp = rounds * alphas * sensitivity**2 / (2 * (z * sensitivity) ** 2)
    eps = rdp - (np.log(delta) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)
    assert dp.epsilon == pytest.approx(float(eps.min()), rel=0.005)  # about 39.8
    assert 39.0 < dp.epsilon < 41.0


def test_norm_statistics_of_individual_clients_are_not_released_under_dp():
    dp = DPStrategy(FedAvg(max_update_norm=0.5), clip_norm=1.0, noise_multiplier=1.0, expected_clients=2)
    result = dp.aggregate(1, _updates([[3, 4, 0, 0], [0.1, 0, 0, 0]]), CURRENT)
    assert not {"median_update_norm", "max_update_norm", "num_clipped"} & set(result.metrics)
    assert {"epsilon", "noise_std", "num_accepted"} <= set(result.metrics)


def test_dp_step_is_the_sum_of_clipped_deltas_over_m_within_float32_rounding():
    # Prepare: weights at the scale of 100 and of 1, small client steps, one client clipped, one refused
    rng = np.random.default_rng(3)
    current = {"w": rng.normal(0, 100, 64).astype(np.float32), "b": rng.normal(0, 1, (4, 3)).astype(np.float32)}
    steps = [{k: rng.normal(0, 1e-3, v.shape).astype(np.float32) for k, v in current.items()} for _ in range(3)]
    steps[1] = {k: 50 * v for k, v in steps[1].items()}  # norm above clip_norm: scaled down to it
    updates = [ClientUpdate(f"c{i}", 1, 10 * (i + 1), {k: current[k] + s[k] for k in current})
               for i, s in enumerate(steps)]
    updates.append(ClientUpdate("bad", 1, 5, {"w": np.full(64, np.nan, np.float32), "b": current["b"]}))
    clip, m = 0.02, 5
    dp = DPStrategy(FedAvg(), clip_norm=clip, noise_multiplier=0.0, expected_clients=m)
    # Execute
    result = dp.aggregate(1, updates, current)
    # Assert: current + (sum of the clipped deltas) / m, computed here in float64
    deltas = [{k: np.float64(u.tensors[k]) - np.float64(current[k]) for k in current} for u in updates[:3]]
    norms = [np.sqrt(sum(float(np.sum(v * v)) for v in d.values())) for d in deltas]
    assert norms[1] > clip > max(norms[0], norms[2])
    expected = {k: current[k] + sum(d[k] * min(1.0, clip / n) for d, n in zip(deltas, norms, strict=True)) / m
                for k in current}
    assert result.accepted_ids == ["c0", "c1", "c2"] and "non-finite" in result.rejected["bad"]
    for k in current:
        assert result.tensors[k].dtype == np.float32
        np.testing.assert_array_max_ulp(result.tensors[k], expected[k].astype(np.float32), maxulp=2)
    # nobody accepted: the current model comes back unchanged (not the zero model the inner rule saw)
    kept = dp.aggregate(1, updates[3:], current)
    assert kept.accepted_ids == [] and all(np.array_equal(kept.tensors[k], current[k]) for k in current)
