"""The evaluation protocol of fl-report: the split in time with gaps, choices on validation only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hrc_fl.federated.evaluation.report import choose_on_validation
from hrc_fl.federated.evaluation.simulator import ClientData, MethodSpec, Simulator
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig
from hrc_fl.intention.windows import TimeSplit, WindowSpec, make_time_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclasses.dataclass
class _Rec:
    subject: int
    label: int
    imu: np.ndarray


def _indexed(n: int, subject: int = 1, label: int = 0) -> _Rec:
    """A recording whose gyro x channel holds the sample index (gyro is not rescaled by imu_to_si)."""
    imu = np.zeros((n, 6), np.float32)
    imu[:, 3] = np.arange(n)
    return _Rec(subject, label, imu)


@pytest.mark.parametrize("n", [260, 947, 1000, 1769, 2618])
def test_time_split_windows_stay_inside_their_part_and_the_gaps_hold(n):
    spec = WindowSpec(window=100, step=25)
    split = TimeSplit(train_fraction=0.6, validation_fraction=0.2, gap_samples=50)
    train, val, test = make_time_split([_indexed(n)], spec, split)
    samples = {name: part.x[:, :, 3].astype(np.int64) for name, part in
               (("train", train), ("val", val), ("test", test))}
    (b0, e0), (b1, e1), (b2, e2) = split.parts(n)
    assert len(train) > 0
    for name, (begin, end) in zip(samples, ((b0, e0), (b1, e1), (b2, e2)), strict=True):
        idx = samples[name]
        if idx.size:
            # every window is contiguous and wholly inside its part: none overlaps a boundary
            assert np.all(np.diff(idx, axis=1) == 1)
            assert idx.min() >= begin and idx.max() < end, name
    # the gaps: at least 50 samples between the last sample of one part and the first of the next
    if len(val):
        assert samples["val"].min() - samples["train"].max() > split.gap_samples
    if len(test):
        later = samples["val"] if len(val) else samples["train"]
        assert samples["test"].min() - later.max() > split.gap_samples
    # no sample is in two parts
    sets = [set(v.ravel().tolist()) for v in samples.values()]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])


def test_time_split_rejects_a_split_without_test_part():
    with pytest.raises(ValueError, match="test part"):
        TimeSplit(train_fraction=0.7, validation_fraction=0.3)
    with pytest.raises(ValueError, match="gap_samples"):
        TimeSplit(gap_samples=-1)


def test_watch_clients_have_validation_between_training_and_test():
    from hrc_fl.federated.evaluation.watch_clients import watch_clients

    clients, _ = watch_clients(label_fraction=0.15, seed=0, spec=WindowSpec(window=100, step=50), subjects=(1, 2))
    for c in clients:
        assert len(c.val_y) > 0 and len(c.test_y) > 0
        # validation windows are never training, unlabelled or test windows
        val = {w.tobytes() for w in c.val_x}
        assert not val & {w.tobytes() for w in np.concatenate([c.train_x, c.unlabelled_x, c.test_x])}


def _clients(test_labels_permuted: bool) -> list[ClientData]:
    rng = np.random.default_rng(0)
    perm = np.random.default_rng(1)
    out = []
    for k in range(3):
        y = rng.integers(0, 3, 90)
        x = rng.normal(0, 1.0, (90, 32, 6)).astype(np.float32)
        x[np.arange(90), :, y] += 0.8
        test_y = perm.permutation(y[60:]) if test_labels_permuted else y[60:]
        out.append(ClientData(f"c{k}", x[:30], y[:30], x[60:], test_y, val_x=x[30:60], val_y=y[30:60]))
    return out


def _factory(seed: int) -> IntentionModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32))


def _select(clients: list[ClientData]) -> tuple[int, dict[int, np.ndarray], dict[int, float]]:
    """Choose the local epochs per round on validation; the kept rounds and the test F1 per candidate."""
    sim = Simulator(clients=clients, model_factory=_factory, lr=1e-2, seed=3)
    results = {e: sim.run(MethodSpec(f"local{e}", kind="local", local_epochs=e), rounds=4) for e in (1, 3)}
    chosen = choose_on_validation([(e, r.summary()["mean_val_f1"]) for e, r in results.items()])
    return (chosen, {e: r.kept_rounds() for e, r in results.items()},
            {e: r.summary()["mean_f1"] for e, r in results.items()})


def test_choices_use_validation_only_changing_test_labels_changes_no_choice():
    chosen, kept, test_f1 = _select(_clients(test_labels_permuted=False))
    chosen_p, kept_p, test_f1_p = _select(_clients(test_labels_permuted=True))
    assert chosen == chosen_p
    for e in kept:
        np.testing.assert_array_equal(kept[e], kept_p[e])
    # the test labels did matter to the test scores, so the test could see a leak
    assert any(abs(test_f1[e] - test_f1_p[e]) > 0.05 for e in test_f1)


def test_kept_model_is_the_best_validation_round_per_worker():
    sim = Simulator(clients=_clients(False), model_factory=_factory, lr=1e-2)
    result = sim.run(MethodSpec("local", kind="local"), rounds=4)
    kept = result.kept_rounds()
    for k in range(3):
        val = [r.val_macro_f1[k] for r in result.rounds]
        best = max(val)
        assert val[kept[k] - 1] == best and all(v < best for v in val[kept[k]:])  # latest best on ties
        assert result.client_scores()[1][k] == result.rounds[kept[k] - 1].macro_f1[k]


def test_choice_prefers_the_first_candidate_on_ties():
    assert choose_on_validation([(None, 0.5), ((0.02, 64), 0.5), ((0.05, 64), 0.4)]) is None
    assert choose_on_validation([(None, 0.5), ((0.02, 64), 0.6)]) == (0.02, 64)
    with pytest.raises(ValueError):
        choose_on_validation([])
