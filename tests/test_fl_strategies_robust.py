"""The median-anchored mean against one sign-flipping / scaling client at the deployed 3 workers and at 10,
what it bounds against any attacker, and the one place a rule decides which rule runs."""

from __future__ import annotations

import numpy as np
import pytest

from hrc_fl.federated.core import aggregation
from hrc_fl.federated.core.strategies import KEPT_CURRENT, MedianAnchored
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import ClientUpdate
from hrc_fl.federated.evaluation.report import rule_at_size

DIM = 200


def _honest(count: int, seed: int) -> list[np.ndarray]:
    """Heterogeneous honest deltas: a common step plus a per-client part as large as the step itself."""
    rng = np.random.default_rng(seed)
    step = rng.normal(0.0, 1.0, DIM)
    return [(step + rng.normal(0.0, 1.0, DIM)).astype(np.float32) for _ in range(count)]


def _round(honest: list[np.ndarray], attacker: np.ndarray) -> list[ClientUpdate]:
    updates = [ClientUpdate("evil", 1, 5000, {"w": attacker.astype(np.float32)})]
    return updates + [ClientUpdate(f"ws{i}", 1, 100, {"w": h}) for i, h in enumerate(honest)]


ZERO = {"w": np.zeros(DIM, np.float32)}


@pytest.mark.parametrize("scale", [1.0, 3.0])
@pytest.mark.parametrize("size", [3, 10])
def test_sign_flipped_client_is_dropped_and_the_honest_mean_remains(size, scale):
    # Prepare: size - 1 honest workers; the attacker sends its own honest step flipped (and scaled) and
    # claims the largest sample count
    honest = _honest(size, seed=size)
    attacker, honest = -scale * honest[0], honest[1:]
    updates = _round(honest, attacker)
    # Execute
    result = make_strategy({"name": "median_anchored", "max_attackers": 1}).aggregate(1, updates, ZERO)
    # Assert: exactly the honest workers' equal-weight mean, the rule named, one update filtered
    np.testing.assert_allclose(result.tensors["w"], np.mean(honest, axis=0), atol=1e-5)
    assert result.rule == "median_anchored" and result.metrics["num_filtered"] == 1.0
    assert result.metrics["median_fallback"] == 0.0 and result.accepted_ids == [u.client_id for u in updates]


def test_at_three_workers_the_coordinate_median_follows_the_flip_and_the_anchored_mean_does_not():
    honest = _honest(3, seed=7)
    updates = _round(honest[1:], -honest[0])
    honest_mean = np.mean(honest[1:], axis=0)
    anchored = MedianAnchored().aggregate(1, updates, ZERO).tensors["w"]
    median = make_strategy({"name": "trimmed_mean", "trim_fraction": 0.2}).aggregate(1, updates, ZERO).tensors["w"]
    # the median picks, per coordinate, the honest value nearest the attacker: its step is shorter
    assert np.linalg.norm(median - honest_mean) > 0.3 * np.linalg.norm(honest_mean)
    assert np.linalg.norm(anchored - honest_mean) < 1e-4


def test_a_scaled_client_is_dropped_before_norm_clipping_can_hide_it():
    # x100 in the honest direction: no sign change, so only its distance to the median gives it away
    honest = _honest(3, seed=3)
    updates = _round(honest[1:], 100.0 * honest[0])
    result = MedianAnchored(max_update_norm=1000.0).aggregate(1, updates, ZERO)
    np.testing.assert_allclose(result.tensors["w"], np.mean(honest[1:], axis=0), atol=1e-5)


def test_whatever_one_attacker_of_three_sends_the_result_stays_within_the_honest_spread():
    # The guarantee at n = 3: if the attacker is kept, it is no farther from the median than the dropped
    # honest update h', and the median lies in the honest coordinate box, so the result (a + h) / 2 is
    # within ||h1 - h2|| of the honest mean. Attackers: sign flips, scalings, hidden inside the box, just
    # outside one honest update, random far points.
    rng = np.random.default_rng(11)
    for trial in range(50):
        h1, h2 = _honest(2, seed=100 + trial)
        spread = float(np.linalg.norm(h1 - h2))
        candidates = [-h1, -10 * h2, 50 * h1, h1 + 0.01 * rng.normal(size=DIM), rng.uniform(0, 1, DIM) * (h2 - h1) + h1,
                      h1 + 0.3 * (h1 - h2), rng.normal(0, 30, DIM)]
        for attacker in candidates:
            out = MedianAnchored().aggregate(1, _round([h1, h2], attacker), ZERO).tensors["w"]
            assert np.linalg.norm(out - (h1 + h2) / 2) <= spread * (1 + 1e-5)


def test_too_few_updates_to_outvote_an_attacker_keep_the_current_model_and_say_so():
    honest = _honest(2, seed=5)
    current = {"w": np.full(DIM, 0.5, np.float32)}
    strategy = MedianAnchored(max_attackers=1, min_accepted=1)
    result = strategy.aggregate(1, _round(honest[1:], -honest[0]), current)
    np.testing.assert_array_equal(result.tensors["w"], current["w"])
    assert result.rule == KEPT_CURRENT and result.metrics["min_accepted"] == 3.0
    with pytest.raises(ValueError, match="outvote"):
        aggregation.median_anchored_mean([{"w": h} for h in honest], max_attackers=1)
    with pytest.raises(ValueError, match="unknown keys"):
        make_strategy({"name": "median_anchored", "trim_fraction": 0.2})


def test_ties_keep_the_earlier_update_and_order_does_not_change_the_mean():
    results = [{"w": np.array([v], np.float32)} for v in (1.0, 2.0, 3.0, -50.0)]  # median 1.5
    mean, kept = aggregation.median_anchored_mean(results, max_attackers=1)
    assert kept == [0, 1, 2] and mean["w"][0] == pytest.approx(2.0)
    shuffled, _ = aggregation.median_anchored_mean(results[::-1], max_attackers=1)
    assert shuffled["w"][0] == pytest.approx(2.0)


@pytest.mark.parametrize("config", [{"name": "trimmed_mean", "trim_fraction": 0.2}, {"name": "median"},
                                    {"name": "median_anchored"}, {"name": "fedavg"}])
def test_the_report_names_the_rule_the_strategy_runs_at_every_size(config):
    # one source: the report's rule_at_size and the strategy's result come from Strategy.rule_for
    strategy = make_strategy(config)
    for size in range(2, 11):
        updates = [ClientUpdate(f"c{i}", 1, 10, {"w": np.full(DIM, float(i), np.float32)}) for i in range(size)]
        ran, note = rule_at_size(config["name"], 0.2, size)
        assert strategy.aggregate(1, updates, ZERO).rule == ran
        assert (note == "") == (ran == strategy.rule)
    assert rule_at_size("trimmed_mean", 0.2, 3)[0] == "coordinate_median"
    assert rule_at_size("trimmed_mean", 0.2, 5)[0] == "trimmed_mean"
