"""Aggregation rules and strategies on hand-computed examples, robust rules vs attacks, rejection."""

from __future__ import annotations

import numpy as np
import pytest

from hrc_fl.federated.core import aggregation
from hrc_fl.federated.core.strategies import CoordinateMedian, FedAvg, FedProx, TrimmedMean
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import ClientUpdate, add, difference


def _upd(cid: str, values: list[float], n: int = 1, rnd: int = 1) -> ClientUpdate:
    return ClientUpdate(cid, rnd, n, {"w": np.array(values, np.float32)})


ZERO = {"w": np.zeros(2, np.float32)}


def test_weighted_average_matches_hand_arithmetic():
    # (1*[1,2] + 3*[5,6]) / 4 = ([1,2] + [15,18]) / 4 = [4, 5]
    out = aggregation.weighted_average([({"w": np.array([1.0, 2.0])}, 1), ({"w": np.array([5.0, 6.0])}, 3)])
    np.testing.assert_allclose(out["w"], [4.0, 5.0])
    assert out["w"].dtype == np.float32


def test_weighted_average_refuses_zero_total_weight():
    with pytest.raises(ValueError, match="positive sum"):
        aggregation.weighted_average([({"w": np.ones(2)}, 0)])


def test_median_and_trimmed_mean_by_hand():
    results = [{"w": np.array([v])} for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    # sorted 1,2,3,4,100 -> median 3
    assert aggregation.coordinate_median(results)["w"][0] == pytest.approx(3.0)
    # beta 0.2 of 5 -> drop 1 each side -> mean(2,3,4) = 3
    assert aggregation.trimmed_mean(results, trim_fraction=0.2)["w"][0] == pytest.approx(3.0)
    # beta 0 -> plain mean (1+2+3+4+100)/5 = 22
    assert aggregation.trimmed_mean(results, trim_fraction=0.0)["w"][0] == pytest.approx(22.0)


def test_clip_to_norm_scales_jointly():
    # joint norm of [3] and [4] is 5; clip to 1 -> factor 0.2 -> [0.6], [0.8]
    clipped, factor = aggregation.clip_to_norm({"a": np.array([3.0]), "b": np.array([4.0])}, 1.0)
    assert factor == pytest.approx(0.2)
    np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [0.8], rtol=1e-6)
    same, factor = aggregation.clip_to_norm({"a": np.array([0.3])}, 1.0)
    assert factor == 1.0 and same["a"][0] == pytest.approx(0.3)


def test_fedavg_strategy_weights_by_samples_relative_to_current():
    current = {"w": np.array([1.0, 1.0], np.float32)}
    # deltas [1,0] (n=1) and [0,2] (n=3): mean delta = [1/4, 6/4] -> [1.25, 2.5]
    result = FedAvg().aggregate(1, [_upd("a", [2, 1], 1), _upd("b", [1, 3], 3)], current)
    np.testing.assert_allclose(result.tensors["w"], [1.25, 2.5])
    assert result.accepted_ids == ["a", "b"] and result.rejected == {}


def test_fedavg_rejects_nan_wrong_shape_missing_stale_and_duplicates_with_reasons():
    updates = [_upd("good", [1, 1]),
               _upd("nan", [np.nan, 1]),
               ClientUpdate("shape", 1, 1, {"w": np.ones(3, np.float32)}),
               ClientUpdate("names", 1, 1, {"v": np.ones(2, np.float32)}),
               _upd("stale", [5, 5], rnd=0),
               _upd("empty", [5, 5], n=0),
               _upd("good", [9, 9])]
    result = FedAvg().aggregate(1, updates, ZERO)
    np.testing.assert_allclose(result.tensors["w"], [1, 1])
    assert result.accepted_ids == ["good"]
    assert "non-finite" in result.rejected["nan"]
    assert "wrong shape" in result.rejected["shape"]
    assert "missing" in result.rejected["names"]
    assert "stale round" in result.rejected["stale"]
    assert "num_samples" in result.rejected["empty"]
    assert "duplicate" in result.rejected["good"]


def test_below_quorum_keeps_current_tensors():
    current = {"w": np.array([7.0, 7.0], np.float32)}
    result = FedAvg(min_accepted=2).aggregate(1, [_upd("a", [1, 1])], current)
    np.testing.assert_allclose(result.tensors["w"], [7, 7])
    assert result.accepted_ids == [] and result.metrics["kept_current"] == 1.0


def test_update_norm_clipping_bounds_the_attacker():
    # honest delta [0.1, 0] x 9, attacker [100, 0]; clipped to norm 1: mean = (0.9 + 1) / 10 = 0.19
    updates = [_upd(f"c{i}", [0.1, 0]) for i in range(9)] + [_upd("evil", [100, 0])]
    result = FedAvg(max_update_norm=1.0).aggregate(1, updates, ZERO)
    assert result.tensors["w"][0] == pytest.approx(0.19, rel=1e-5)
    assert result.metrics["num_clipped"] == 1.0


@pytest.mark.parametrize("attack", ["scaled", "sign_flip"])
@pytest.mark.parametrize("strategy", [CoordinateMedian(), TrimmedMean(trim_fraction=0.1)])
def test_robust_rules_stay_near_honest_mean_under_one_attacker(attack, strategy):
    rng = np.random.default_rng(0)
    honest = [rng.normal(1.0, 0.1, size=50).astype(np.float32) for _ in range(9)]
    honest_mean = np.mean(honest, axis=0)
    bad = honest[0] * (100.0 if attack == "scaled" else -1.0)
    updates = [ClientUpdate(f"c{i}", 1, 10, {"w": h}) for i, h in enumerate(honest)]
    updates.append(ClientUpdate("evil", 1, 10, {"w": bad}))
    current = {"w": np.zeros(50, np.float32)}
    robust = strategy.aggregate(1, updates, current).tensors["w"]
    plain = FedAvg().aggregate(1, updates, current).tensors["w"]
    robust_error = np.abs(robust - honest_mean).mean()
    plain_error = np.abs(plain - honest_mean).mean()
    assert robust_error < 0.15  # within the honest spread (std 0.1)
    assert robust_error < plain_error / 2


def test_fedprox_differs_from_fedavg_only_in_client_config():
    updates = [_upd("a", [1, 2], 2), _upd("b", [3, 4], 2)]
    prox = FedProx(proximal_mu=0.1)
    assert prox.client_config(3) == {"proximal_mu": 0.1}
    assert FedAvg().client_config(3)["proximal_mu"] == 0.0
    np.testing.assert_allclose(prox.aggregate(1, updates, ZERO).tensors["w"],
                               FedAvg().aggregate(1, updates, ZERO).tensors["w"])


def test_make_strategy_builds_each_rule_and_refuses_bad_config():
    assert isinstance(make_strategy({"name": "median"}), CoordinateMedian)
    assert make_strategy({"name": "trimmed_mean", "trim_fraction": 0.2}).trim_fraction == 0.2
    assert make_strategy({"name": "fedprox", "proximal_mu": 0.5}).proximal_mu == 0.5
    assert make_strategy({"max_update_norm": 2.0}).max_update_norm == 2.0
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy({"name": "krum"})
    with pytest.raises(ValueError, match="unknown keys"):
        make_strategy({"name": "fedavg", "trim_fraction": 0.1})
    with pytest.raises(ValueError):
        FedAvg(max_update_norm=-1.0)
    with pytest.raises(ValueError):
        TrimmedMean(trim_fraction=0.5)


def test_trimmed_mean_of_three_clients_runs_the_median_and_says_so():
    # Prepare: the deployed size (3 workstations, trim_fraction 0.2: floor(0.6) = 0 trimmed per side)
    strategy = make_strategy({"name": "trimmed_mean", "trim_fraction": 0.2})
    current = {"w": np.zeros(2, np.float32)}
    updates = [ClientUpdate("a", 1, 10, {"w": np.array([1.0, 1.0], np.float32)}),
               ClientUpdate("b", 1, 10, {"w": np.array([2.0, 2.0], np.float32)}),
               ClientUpdate("evil", 1, 10, {"w": np.array([1000.0, -1000.0], np.float32)})]
    # Execute
    result = strategy.aggregate(1, updates, current)
    # Assert: the outlier does not drag the result (a plain mean would give ~334), and the rule is named
    np.testing.assert_allclose(result.tensors["w"], [2.0, 1.0])
    assert result.rule == "coordinate_median" and result.metrics["median_fallback"] == 1.0
    # with 10 clients the trimmed mean trims 2 per side and runs as itself
    many = [ClientUpdate(f"c{i}", 1, 1, {"w": np.full(2, float(i), np.float32)}) for i in range(10)]
    result = strategy.aggregate(1, many, current)
    assert result.rule == "trimmed_mean" and result.metrics["median_fallback"] == 0.0
    np.testing.assert_allclose(result.tensors["w"], [4.5, 4.5])


def test_a_client_claiming_a_billion_samples_weighs_no_more_than_the_bound():
    strategy = make_strategy({"name": "fedavg", "max_num_samples": 100})
    current = {"w": np.zeros(1, np.float32)}
    updates = [ClientUpdate("honest", 1, 100, {"w": np.array([0.0], np.float32)}),
               ClientUpdate("liar", 1, 10**9, {"w": np.array([10.0], np.float32)})]
    result = strategy.aggregate(1, updates, current)
    # both weigh 100: the mean, not the liar's value (10 * 1e9 / (1e9 + 100) ~ 10)
    np.testing.assert_allclose(result.tensors["w"], [5.0])
    assert result.metrics["num_capped"] == 1.0


def test_a_broadcastable_delta_is_not_accepted_as_a_full_tensor():
    current = {"w": np.zeros((4, 3), np.float32)}
    with pytest.raises(ValueError, match="wrong shape"):
        add(current, {"w": np.ones(1, np.float32)})
    with pytest.raises(ValueError, match="wrong shape"):
        difference({"w": np.ones((1,), np.float32)}, current)
    result = FedAvg().aggregate(1, [ClientUpdate("a", 1, 1, {"w": np.ones((1,), np.float32)})], current)
    assert "wrong shape" in result.rejected["a"]
