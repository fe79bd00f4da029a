"""Intention model: shared/personal split, shapes, missing modalities, windows split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from hrc_fl.intention.model import (
    IntentionModel,
    IntentionModelConfig,
    _drop_modalities,
    load_shared_state_dict,
    parameter_counts,
    personal_state_dict,
    shared_state_dict,
)
from hrc_fl.intention.training import Samples, evaluate, fit_imu_normalisation, train_model
from hrc_fl.intention.windows import STANDARD_GRAVITY_MS2, WindowSpec, imu_to_si, make_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int = 0, **kw) -> IntentionModel:
    torch.manual_seed(seed)
    return IntentionModel(IntentionModelConfig(num_classes=4, imu_window=32, **kw)).eval()


def _inputs(b: int = 3):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 32, 6, generator=g), torch.randn(b, 42, generator=g), torch.randn(b, 26, generator=g))


def test_state_dict_split_is_by_role_and_complete():
    model = _model()
    keys = set(model.state_dict())
    shared, personal = set(shared_state_dict(model)), set(personal_state_dict(model))
    assert shared | personal == keys and not shared & personal
    assert all(k.startswith("encoders.") for k in shared)
    assert all(k.startswith(("head.", "projector.")) for k in personal)
    assert any(k.startswith("projector.") for k in personal)  # the projector never leaves the device
    assert {k.split(".")[1] for k in shared} == {"imu", "hands", "pose"}
    counts = parameter_counts(model)
    assert counts["shared"] == sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoders."))
    assert counts["personal"] == (sum(p.numel() for p in model.head.parameters())
                                  + sum(p.numel() for p in model.projector.parameters()))


def test_projector_does_not_change_the_initial_encoders_or_head_or_the_logits():
    # methods with and without self-supervision start from the same weights; inference ignores the projector
    torch.manual_seed(3)
    plain = _model(projector_dim=0)
    torch.manual_seed(3)
    with_projector = _model(projector_dim=16)
    assert plain.projector is None and with_projector.projector is not None
    own = plain.state_dict()
    assert all(torch.equal(own[k], v) for k, v in with_projector.state_dict().items() if k in own)
    imu, hands, pose = _inputs()
    assert torch.equal(plain(imu, hands, pose), with_projector(imu, hands, pose))
    with pytest.raises(ValueError, match="projector_dim"):
        IntentionModelConfig(num_classes=3, projector_dim=-1)


def test_forward_shapes_with_any_subset_of_modalities():
    model = _model()
    imu, hands, pose = _inputs()
    for args in [(imu, hands, pose), (imu, None, None), (None, hands, None), (None, None, pose), (imu, None, pose)]:
        logits = model(*args)
        assert logits.shape == (3, 4)
        assert torch.isfinite(logits).all()


def test_absent_modality_input_values_do_not_matter():
    model = _model()
    imu, hands, pose = _inputs()
    present = torch.tensor([[1.0, 0.0, 1.0]] * 3)
    a = model(imu, hands, pose, present=present)
    b = model(imu, hands * 100.0 + 5.0, pose, present=present)
    c = model(imu, None, pose)
    assert torch.allclose(a, b) and torch.allclose(a, c, atol=1e-6)


def test_forward_rejects_no_modality_and_wrong_shapes():
    model = _model()
    imu, hands, _ = _inputs()
    with pytest.raises(ValueError, match="at least one"):
        model(None, None, None)
    with pytest.raises(ValueError, match="imu input"):
        model(imu[:, :10], None, None)
    with pytest.raises(ValueError, match="hands input"):
        model(None, hands[:, :5], None)


def test_config_validation_and_round_trip():
    config = IntentionModelConfig(num_classes=7, embed_dim=16)
    assert IntentionModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        IntentionModelConfig(num_classes=1)
    with pytest.raises(ValueError):
        IntentionModelConfig(num_classes=3, modality_dropout_p=1.0)
    with pytest.raises(ValueError, match="unknown"):
        IntentionModelConfig.from_dict({**config.to_dict(), "extra": 1})


def test_load_shared_moves_encoders_only():
    a, b = _model(seed=1), _model(seed=2)
    head_before = {k: v.clone() for k, v in personal_state_dict(b).items()}
    load_shared_state_dict(b, shared_state_dict(a))
    for key, value in shared_state_dict(a).items():
        assert torch.equal(b.state_dict()[key], value)
    for key, value in head_before.items():
        assert torch.equal(b.state_dict()[key], value)
    assert not torch.equal(a.state_dict()["head.net.0.weight"], b.state_dict()["head.net.0.weight"])


def test_load_shared_rejects_incompatible_state():
    model = _model()
    state = shared_state_dict(model)
    wrong_shape = dict(state)
    wrong_shape["encoders.hands.net.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape"):
        load_shared_state_dict(model, wrong_shape)
    missing = dict(state)
    missing.pop("encoders.imu.proj.bias")
    with pytest.raises(ValueError, match="missing"):
        load_shared_state_dict(model, missing)
    with pytest.raises(ValueError, match="unexpected"):
        load_shared_state_dict(model, {**state, "head.net.0.bias": torch.zeros(32)})


def test_modality_dropout_never_drops_every_present_modality():
    torch.manual_seed(0)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]).repeat(200, 1)
    dropped = _drop_modalities(mask, 0.9)
    assert torch.all(dropped.sum(dim=1) >= 1)
    assert torch.all(dropped <= mask)  # never adds a modality
    assert dropped.sum() < mask.sum()  # and does drop


def test_training_with_modality_dropout_learns_from_each_modality():
    # class is encoded in every modality; after training with dropout each one alone must work
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    imu = rng.normal(0, 1, (400, 32, 6)).astype(np.float32)
    imu[:, :, 0] += 3.0 * y[:, None]
    hands = rng.normal(0, 0.3, (400, 42)).astype(np.float32)
    hands[np.arange(400), y] += 3.0
    pose = rng.normal(0, 0.3, (400, 26)).astype(np.float32)
    pose[np.arange(400), 10 + y] += 3.0
    model = _model(modality_dropout_p=0.5)
    fit_imu_normalisation(model, imu)
    train_model(model, Samples(y=y, imu=imu, hands=hands, pose=pose), epochs=15, batch_size=32, seed=0)
    for present in ([1, 0, 0], [0, 1, 0], [0, 0, 1]):
        mask = np.tile(np.asarray(present, np.float32), (400, 1))
        scores = evaluate(model, Samples(y=y, imu=imu, hands=hands, pose=pose, present=mask))
        assert scores.accuracy > 0.9, present


@dataclass
class _Rec:
    subject: int
    label: int
    imu: np.ndarray


def _recordings() -> list[_Rec]:
    rng = np.random.default_rng(3)
    return [_Rec(subject=s, label=k, imu=rng.normal(0, 1, (n, 6)).astype(np.float32))
            for s in (1, 2) for k, n in ((0, 407), (1, 333), (2, 95))]


def test_split_has_no_window_overlap_and_is_time_ordered():
    recs = _recordings()
    spec = WindowSpec(window=40, step=7, train_fraction=0.7)
    train, test = make_split(recs, spec)
    assert len(train) > 0 and len(test) > 0
    for index, rec in enumerate(recs):
        tr_starts = train.start[train.recording == index]
        te_starts = test.start[test.recording == index]
        if len(tr_starts) and len(te_starts):
            assert tr_starts.max() + spec.window <= te_starts.min()  # last train window ends before first test
        assert np.all(te_starts + spec.window <= len(rec.imu))
        for st, x in zip(train.start[train.recording == index], train.x[train.recording == index], strict=True):
            np.testing.assert_allclose(x, imu_to_si(rec.imu)[st:st + spec.window])
    assert set(train.subject.tolist()) == {1, 2}
    only1, _ = make_split(recs, spec, subjects=[1])
    assert set(only1.subject.tolist()) == {1}


def test_imu_to_si_scales_only_acceleration():
    raw = np.array([[1.0, -0.5, 0.0, 0.1, 0.2, 0.3]], np.float32)
    si = imu_to_si(raw)
    np.testing.assert_allclose(si[0, :3], raw[0, :3] * STANDARD_GRAVITY_MS2, rtol=1e-6)
    np.testing.assert_allclose(si[0, 3:], raw[0, 3:])
    with pytest.raises(ValueError):
        imu_to_si(np.zeros((3, 5)))
