"""Shared/personal split never leaks the head; local training, FedProx term and evaluation helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrc_fl.federated.core import split, training
from hrc_fl.federated.core.compression import ErrorFeedbackCompressor
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import ClientUpdate, difference
from hrc_fl.federated.evaluation.simulator import ArrayLoader
from hrc_fl.federated.transport.fedml_wire import encode_uplink, uplink_update
from hrc_fl.intention.model import SHARED_PREFIXES, IntentionModel, IntentionModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int = 0) -> IntentionModel:
    torch.manual_seed(seed)
    return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32))


def _loader(n: int = 48, seed: int = 0) -> ArrayLoader:
    # separable toy task: class = which axis carries a constant offset
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 32, 6)).astype(np.float32)
    x[np.arange(n), :, y] += 2.0
    return ArrayLoader(x, y, batch_size=16, shuffle=True, seed=seed)


def test_shared_state_holds_only_encoder_tensors_and_all_of_them():
    model = _model()
    shared = split.shared_state(model)
    assert shared and all(name.startswith("encoders.") for name in shared)
    expected = {n for n, _ in model.named_parameters() if n.startswith("encoders.")}
    assert set(shared) == expected
    assert not any(name.endswith(("input_mean", "input_std")) for name in shared)  # buffers stay local
    assert not any(name.startswith("head.") for name in shared)


def test_assert_only_shared_and_load_shared_refuse_head_tensors():
    model = _model()
    payload = split.shared_state(model)
    payload["head.net.0.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(split.PersonalTensorLeak, match=r"head\.net\.0\.weight"):
        split.assert_only_shared(payload, split.shared_prefixes_of(model))
    with pytest.raises(split.PersonalTensorLeak):
        split.load_shared(model, payload)


def test_load_shared_changes_encoders_but_never_the_head():
    a, b = _model(0), _model(1)
    head_before = {k: v.clone() for k, v in b.state_dict().items() if k.startswith("head.")}
    split.load_shared(b, split.shared_state(a))
    for name, value in split.shared_state(a).items():
        np.testing.assert_array_equal(b.state_dict()[name].numpy(), value)
    for name, value in head_before.items():
        assert torch.equal(b.state_dict()[name], value)


def test_load_shared_rejects_wrong_shape_and_missing_names():
    model = _model()
    shared = split.shared_state(model)
    name = next(iter(shared))
    bad = dict(shared, **{name: np.zeros((1, 2, 3), np.float32)})
    with pytest.raises(ValueError, match="wrong shape"):
        split.load_shared(model, bad)
    shared.pop(name)
    with pytest.raises(ValueError, match="names differ"):
        split.load_shared(model, shared)


def test_train_local_learns_toy_task_and_evaluate_reports_it():
    model = _model()
    loader = _loader()
    before = training.evaluate(model, _loader(seed=5))
    result = training.train_local(model, loader, epochs=15, lr=1e-2)
    after = training.evaluate(model, _loader(seed=5))
    assert result.num_samples == 48 and result.steps == 15 * 3
    assert after.accuracy > 0.9 and after.accuracy > before.accuracy
    assert 0.0 <= after.macro_f1 <= 1.0


def test_proximal_term_keeps_shared_weights_closer_to_reference():
    reference = split.shared_state(_model())
    distances = {}
    for mu in (0.0, 10.0):
        model = _model()
        training.train_local(model, _loader(), epochs=5, lr=1e-2, proximal_mu=mu, shared_reference=reference,
                             shared_prefixes=("encoders.",))
        new = split.shared_state(model)
        distances[mu] = sum(float(np.sum((new[k] - reference[k]) ** 2)) for k in reference)
    assert distances[10.0] < distances[0.0] * 0.5


def test_fine_tune_personal_moves_only_the_head():
    model = _model()
    encoders_before = split.shared_state(model)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    training.fine_tune_personal(model, _loader(), epochs=2, lr=1e-2, shared_prefixes=("encoders.",))
    for name, value in split.shared_state(model).items():
        np.testing.assert_array_equal(value, encoders_before[name])
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in head_before.items())


def _heads(model: IntentionModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoders.")}


def test_fedrep_head_phase_freezes_encoders_and_encoder_phase_freezes_head():
    head_only, encoders_only = _model(), _model()
    encoders_before, head_before = split.shared_state(head_only), _heads(head_only)
    # Execute: only the head phase (no encoder epochs), then only the encoder phase (no head epochs)
    training.train_fedrep(head_only, _loader(), head_epochs=2, epochs=0, lr=1e-2, shared_prefixes=("encoders.",))
    result = training.train_fedrep(encoders_only, _loader(), head_epochs=0, epochs=2, lr=1e-2,
                                   shared_prefixes=("encoders.",))
    # Assert
    for name, value in split.shared_state(head_only).items():
        np.testing.assert_array_equal(value, encoders_before[name])
    assert any(not torch.equal(head_only.state_dict()[k], v) for k, v in head_before.items())
    for name, value in _heads(encoders_only).items():
        assert torch.equal(value, head_before[name]), name
    moved = split.shared_state(encoders_only)
    assert any(not np.array_equal(moved[k], encoders_before[k]) for k in moved)
    assert result.num_samples == 48 and result.steps == 2 * 3


def test_fedrep_proximal_term_applies_to_the_encoder_phase():
    reference = split.shared_state(_model())
    distances = {}
    for mu in (0.0, 10.0):
        model = _model()
        training.train_fedrep(model, _loader(), head_epochs=1, epochs=5, lr=1e-2, shared_prefixes=("encoders.",),
                              proximal_mu=mu, shared_reference=reference)
        new = split.shared_state(model)
        distances[mu] = sum(float(np.sum((new[k] - reference[k]) ** 2)) for k in reference)
    assert distances[10.0] < distances[0.0] * 0.5
    with pytest.raises(ValueError, match="head_epochs"):
        training.train_fedrep(_model(), _loader(), head_epochs=-1, epochs=1, lr=1e-2, shared_prefixes=("encoders.",))


def test_macro_f1_by_hand():
    truth = np.array([0, 0, 1, 1])
    guess = np.array([0, 1, 1, 1])
    # class 0: tp1 fp0 fn1 -> 2/3; class 1: tp2 fp1 fn0 -> 4/5; mean = 11/15
    assert training.macro_f1(truth, guess) == pytest.approx(11 / 15)


def test_train_local_validates_arguments():
    with pytest.raises(ValueError, match="shared_reference"):
        training.train_local(_model(), _loader(), epochs=1, lr=1e-3, proximal_mu=0.1)
    with pytest.raises(ValueError, match="lr"):
        training.train_local(_model(), _loader(), epochs=1, lr=0.0)


def test_an_update_that_tries_to_move_input_std_changes_nothing_on_any_workstation():
    # Prepare: two workstations with their own IMU normalisation, and the aggregator's global encoders
    stations = [_model(), _model()]
    for i, model in enumerate(stations):
        model.set_imu_normalisation(torch.full((6,), float(i)), torch.full((6,), 2.0 + i))
    before = [model.state_dict()["encoders.imu.input_std"].clone() for model in stations]
    global_shared = split.shared_state(stations[0], SHARED_PREFIXES)
    assert "encoders.imu.input_std" not in global_shared
    # Execute: an attacker uploads a delta that would drive input_std to 0 (alongside a plausible update)
    attack = {**{k: np.zeros_like(v) for k, v in global_shared.items()},
              "encoders.imu.input_std": np.full(6, -2.0, np.float32)}
    wire = encode_uplink(ErrorFeedbackCompressor(scheme="fp32").compress(attack))
    with pytest.raises(ValueError, match="input_std"):
        uplink_update("evil", 1, 10, wire, global_shared, {})  # the aggregator refuses the payload
    strategy = make_strategy({"name": "fedavg"})
    sneaked = ClientUpdate("evil", 1, 10, {**global_shared, "encoders.imu.input_std": np.zeros(6, np.float32)})
    honest = ClientUpdate("ws", 1, 10, {k: v + 0.01 for k, v in global_shared.items()})
    result = strategy.aggregate(1, [sneaked, honest], global_shared)
    for model in stations:  # every workstation loads the new global encoders
        split.load_shared(model, result.tensors, SHARED_PREFIXES)
        with pytest.raises(ValueError, match="names differ"):  # and could not load a buffer if one came
            split.load_shared(model, {**result.tensors, "encoders.imu.input_std": np.zeros(6, np.float32)},
                              SHARED_PREFIXES)
    # Assert: the attacker was refused, the honest step arrived, and no workstation's input_std moved
    assert result.accepted_ids == ["ws"] and "unexpected tensors" in result.rejected["evil"]
    delta = difference(split.shared_state(stations[1], SHARED_PREFIXES), global_shared)
    assert all(np.allclose(v, 0.01, atol=1e-6) for v in delta.values())
    for model, std in zip(stations, before, strict=True):
        assert torch.equal(model.state_dict()["encoders.imu.input_std"], std)
