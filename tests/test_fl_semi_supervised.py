"""Semi-supervised (pseudo-label) local training in the FL core and the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hrc_fl.federated.core import split, training
from hrc_fl.federated.core.strategies import FedAvg
from hrc_fl.federated.core.training import PseudoLabelConfig
from hrc_fl.federated.evaluation.simulator import ArrayLoader, ClientData, FeatureLoader, MethodSpec, Simulator
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _FixedLogits(nn.Module):
    """Logits = the first time step's first 3 channels times a learnable scalar (so tests set them)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        return self.gain * imu[:, 0, :3]


def _windows(logits: list[list[float]]) -> torch.Tensor:
    x = torch.zeros(len(logits), 4, 6)
    x[:, 0, :3] = torch.tensor(logits)
    return x


def test_pseudo_labels_only_count_above_the_threshold():
    x = _windows([[5.0, 0.0, 0.0], [0.2, 0.1, 0.0], [0.0, 0.0, 6.0], [1.0, 1.0, 1.0]])
    model = _FixedLogits()
    probs = torch.softmax(x[:, 0, :3], dim=1)
    classes, mask = training.pseudo_labels(model, {"imu": x}, threshold=0.9)
    assert classes.tolist() == [0, 0, 2, 0]
    assert mask.tolist() == (probs.max(dim=1).values >= 0.9).tolist() == [True, False, True, False]
    # the loss is the mean over the whole batch of CE on the passing windows only (identity views here)
    cfg = PseudoLabelConfig(threshold=0.9, jitter_std=0.0, scale_std=0.0)
    loss, passed = training.pseudo_label_loss(model, {"imu": x}, cfg)
    ce = F.cross_entropy(x[:, 0, :3], torch.tensor([0, 0, 2, 0]), reduction="none")
    assert passed == 2
    assert float(loss.detach()) == pytest.approx(float((ce[0] + ce[2]) / 4), rel=1e-6)
    none_loss, none_passed = training.pseudo_label_loss(model, {"imu": x}, PseudoLabelConfig(threshold=1.0))
    assert none_passed == 0 and float(none_loss.detach()) == 0.0


def test_pseudo_labelling_restores_train_mode_and_strong_view_keeps_other_inputs():
    model = _FixedLogits().train()
    training.pseudo_labels(model, {"imu": _windows([[1.0, 0.0, 0.0]])}, threshold=0.5)
    assert model.training
    features = {"imu": torch.randn(8, 10, 6), "present": torch.ones(8, 3)}
    view = training.strong_view(features, PseudoLabelConfig(jitter_std=0.1, scale_std=0.1),
                                torch.Generator().manual_seed(0))
    assert view["present"] is features["present"]
    assert view["imu"].shape == features["imu"].shape and not torch.equal(view["imu"], features["imu"])
    same = training.strong_view(features, PseudoLabelConfig(jitter_std=0.0, scale_std=0.0))
    assert torch.equal(same["imu"], features["imu"])
    with pytest.raises(ValueError):
        training.strong_view({"hands": torch.zeros(2, 3)}, PseudoLabelConfig())


def _loader(x: np.ndarray, y: np.ndarray):
    return ArrayLoader(x, y, batch_size=8, shuffle=True, seed=1)


def _factory(seed: int) -> IntentionModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32))


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 32, 6)).astype(np.float32)
    x[np.arange(n), :, y] += 2.0
    return x, y


def _train(threshold: float | None) -> tuple[dict[str, np.ndarray], training.TrainResult]:
    x, y = _toy(24, 0)
    unlabelled, _ = _toy(48, 1)
    model = _factory(0)
    torch.manual_seed(3)
    extra = {} if threshold is None else {
        "unlabelled": FeatureLoader(unlabelled, batch_size=16, seed=2),
        "pseudo": PseudoLabelConfig(threshold=threshold), "generator": torch.Generator().manual_seed(4)}
    result = training.train_local(model, _loader(x, y), epochs=2, lr=1e-2, **extra)
    if threshold is not None:
        assert result.unlabelled_seen == result.steps * 16
        assert 0 <= result.pseudo_labelled <= result.unlabelled_seen
    assert result.num_samples == 24  # the FedAvg weight counts labelled windows only
    return {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}, result


def test_threshold_above_every_confidence_is_plain_supervised_training_and_zero_uses_all():
    plain, _ = _train(None)
    unreachable, none_passed = _train(1.0)  # no float32 softmax of this small model reaches exactly 1
    everything, all_passed = _train(0.0)
    assert none_passed.pseudo_labelled == 0
    assert all_passed.pseudo_labelled == all_passed.unlabelled_seen > 0
    assert all(np.array_equal(plain[k], unreachable[k]) for k in plain)
    assert any(not np.allclose(plain[k], everything[k]) for k in plain)


def test_train_local_needs_loader_and_config_together():
    x, y = _toy(8, 0)
    with pytest.raises(ValueError, match="together"):
        training.train_local(_factory(0), _loader(x, y), epochs=1, lr=1e-2, pseudo=PseudoLabelConfig())


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"threshold": -0.1}, {"weight": -1.0},
                                    {"warmup_rounds": -1}, {"unlabelled_ratio": 0}, {"jitter_std": -0.1},
                                    {"scale_std": -0.1}, {"feature_key": ""}])
def test_pseudo_label_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        PseudoLabelConfig(**kwargs)


def test_warm_up_rounds_are_labels_only():
    cfg = PseudoLabelConfig(warmup_rounds=2)
    assert [cfg.active(r) for r in (1, 2, 3, 10)] == [False, False, True, True]
    assert PseudoLabelConfig(warmup_rounds=0).active(1)


def test_client_data_validation_and_default_unlabelled():
    x, y = _toy(10, 0)
    client = ClientData("c", x, y, x[:4], y[:4])
    assert client.unlabelled_x is not None and client.unlabelled_x.shape == (0, 32, 6)
    with pytest.raises(ValueError, match="length"):
        ClientData("c", x, y[:5], x, y)
    with pytest.raises(ValueError, match="length"):
        ClientData("c", x, y, x, y[:3])
    with pytest.raises(ValueError, match="no labelled"):
        ClientData("c", x[:0], y[:0], x, y)
    with pytest.raises(ValueError, match="unlabelled"):
        ClientData("c", x, y, x, y, unlabelled_x=np.zeros((5, 16, 6), np.float32))
    with pytest.raises(ValueError, match="test windows"):
        ClientData("c", x, y, x[:, :16], y)
    with pytest.raises(ValueError, match="centralised"):
        MethodSpec("c", kind="centralised", pseudo_label=PseudoLabelConfig())


class _RecordingFedAvg(FedAvg):
    def __init__(self) -> None:
        super().__init__()
        self.updates = []

    def aggregate(self, server_round, updates, current):
        self.updates.extend(updates)
        return super().aggregate(server_round, updates, current)


def _semi_clients() -> list[ClientData]:
    out = []
    for k in range(3):
        x, y = _toy(70, k)
        out.append(ClientData(f"c{k}", x[:10], y[:10], x[50:], y[50:], unlabelled_x=x[10:50]))
    return out


def test_unlabelled_windows_change_training_but_never_the_uplink_contents_or_weights():
    clients = _semi_clients()
    sim = Simulator(clients=clients, model_factory=_factory, lr=1e-2, seed=1)
    spec = MethodSpec("p", personalisation="fedrep", pseudo_label=PseudoLabelConfig(threshold=0.5, warmup_rounds=1))
    spy = _RecordingFedAvg()
    semi = sim.run(spec, rounds=3, strategy=spy)
    names = {name for u in spy.updates for name in u.tensors}
    assert names and all(name.startswith("encoders.") for name in names)
    reference = split.shared_state(_factory(0))
    for update in spy.updates:
        assert update.num_samples == 10  # labelled windows only
        assert {k: v.shape for k, v in update.tensors.items()} == {k: v.shape for k, v in reference.items()}
    # same number of bytes as the labels-only method: the payload does not grow with unlabelled data
    plain_spy = _RecordingFedAvg()
    plain = sim.run(MethodSpec("p", personalisation="fedrep"), rounds=3, strategy=plain_spy)
    assert [r.uplink_bytes for r in semi.rounds] == [r.uplink_bytes for r in plain.rounds]
    # round 1 is the warm-up (labels only): identical updates; later rounds used the unlabelled windows
    first = [u for u in spy.updates if u.round == 1]
    first_plain = [u for u in plain_spy.updates if u.round == 1]
    for a, b in zip(first, first_plain, strict=True):
        assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    last = [u for u in spy.updates if u.round == 3]
    last_plain = [u for u in plain_spy.updates if u.round == 3]
    assert any(not np.allclose(a.tensors[k], b.tensors[k]) for a, b in zip(last, last_plain, strict=True)
               for k in a.tensors)


def test_local_with_pseudo_labels_is_reproducible_and_sends_nothing():
    sim = Simulator(clients=_semi_clients(), model_factory=_factory, lr=1e-2, seed=2)
    spec = MethodSpec("lp", kind="local", pseudo_label=PseudoLabelConfig(threshold=0.6, warmup_rounds=0))
    first, second = sim.run(spec, rounds=2), sim.run(spec, rounds=2)
    assert first.final.accuracy == second.final.accuracy
    assert all(r.uplink_bytes == 0 for r in first.rounds)


@pytest.mark.parametrize("in_head", [False, True])
def test_fedrep_head_phase_uses_pseudo_labels_only_when_asked(in_head):
    x, y = _toy(24, 0)
    unlabelled, _ = _toy(48, 1)
    prefixes = ("encoders.",)

    def head_after(pseudo: PseudoLabelConfig | None) -> dict[str, np.ndarray]:
        model = _factory(0)
        torch.manual_seed(3)
        extra = {} if pseudo is None else {"unlabelled": FeatureLoader(unlabelled, batch_size=16, seed=2),
                                           "pseudo": pseudo, "generator": torch.Generator().manual_seed(4)}
        # epochs=0: only the head phase runs
        training.train_fedrep(model, _loader(x, y), head_epochs=2, epochs=0, lr=1e-2, shared_prefixes=prefixes,
                              **extra)
        return {k: v.detach().clone().numpy() for k, v in model.state_dict().items() if k.startswith("head.")}

    plain = head_after(None)
    semi = head_after(PseudoLabelConfig(threshold=0.0, in_head_training=in_head))
    same = all(np.array_equal(plain[k], semi[k]) for k in plain)
    assert same is (not in_head)
