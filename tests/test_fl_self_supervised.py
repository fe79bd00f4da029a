"""Self-supervised training on a worker's own IMU windows: the VICReg term, where it trains, what it sends,
the unlabelled-window store and the workstation learner that uses both."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hrc_fl.federated.core import training
from hrc_fl.federated.core.self_supervised import (
    VicRegConfig,
    imu_view,
    projected_embedding,
    vicreg_loss,
    vicreg_terms,
)
from hrc_fl.federated.evaluation.simulator import ClientData, MethodSpec, Simulator
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig


def _model(projector_dim: int = 16, seed: int = 0) -> IntentionModel:
    torch.manual_seed(seed)
    return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32, projector_dim=projector_dim))


def _windows(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (n, 32, 6)).astype(np.float32))


# ----------------------------------------------------------------------------------------- config, views, loss
def test_config_from_mapping_off_unknown_and_bad_values():
    assert VicRegConfig.from_mapping(None) is None
    assert VicRegConfig.from_mapping({"enabled": False, "weight": 0.5}) is None
    assert VicRegConfig.from_mapping({"enabled": True, "weight": 0.5}) == VicRegConfig(weight=0.5)
    with pytest.raises(ValueError, match="unknown"):
        VicRegConfig.from_mapping({"wieght": 0.5})
    for bad in ({"weight": -1.0}, {"unlabelled_ratio": 0}, {"min_windows": 1}, {"max_shift": -1},
                {"variance": -1.0}, {"feature_key": ""}):
        with pytest.raises(ValueError):
            VicRegConfig(**bad)


def test_views_without_augmentation_are_the_input_and_a_shift_is_a_circular_time_shift():
    x = _windows(4)
    assert torch.equal(imu_view(x, VicRegConfig(scale_std=0, jitter_std=0, max_shift=0)), x)
    shifted = imu_view(x, VicRegConfig(scale_std=0, jitter_std=0, max_shift=3), torch.Generator().manual_seed(1))
    assert any(torch.equal(shifted, torch.roll(x, s, dims=1)) for s in range(-3, 4))
    noisy = imu_view(x, VicRegConfig(), torch.Generator().manual_seed(1))
    assert noisy.shape == x.shape and not torch.equal(noisy, x)
    with pytest.raises(ValueError, match="B, T, C"):
        imu_view(x[0], VicRegConfig())


def test_vicreg_terms_follow_their_definitions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 8, generator=g) * 2.0      # independent dimensions, std 2 > 1
    invariance, variance, covariance = vicreg_terms(z, z)
    assert invariance.item() == 0.0 and variance.item() == 0.0
    assert covariance.item() < 0.1                    # off-diagonal covariance ~0 for independent dims
    collapsed = torch.ones(512, 8)
    _, variance, _ = vicreg_terms(collapsed, collapsed)
    assert variance.item() == pytest.approx(2 * (1 - 1e-2), abs=1e-4)  # hinge 1 - sqrt(0 + 1e-4), both batches
    copies = torch.randn(512, 1, generator=g).repeat(1, 8)  # every dimension the same: fully correlated
    _, _, covariance = vicreg_terms(copies, copies)
    assert covariance.item() > 5.0
    shifted = z + 1.0
    assert vicreg_terms(z, shifted)[0].item() == pytest.approx(1.0, abs=1e-6)  # mean squared difference
    with pytest.raises(ValueError):
        vicreg_terms(z[:1], z[:1])


def test_loss_needs_a_projector_and_is_zero_for_a_single_window():
    with pytest.raises(ValueError, match="projector"):
        projected_embedding(_model(projector_dim=0), _windows(4))
    with pytest.raises(ValueError, match="projector"):
        vicreg_loss(_model(projector_dim=0), {"imu": _windows(4)}, VicRegConfig())
    assert vicreg_loss(_model(), {"imu": _windows(1)}, VicRegConfig()).item() == 0.0
    assert vicreg_loss(_model(), _windows(8), VicRegConfig()).item() > 0.0


# ------------------------------------------------------------------------------------- where the term trains
def _labelled_loader(n: int = 12):
    x = _windows(n, seed=3)
    y = torch.arange(n) % 3
    return [({"imu": x[i:i + 4]}, y[i:i + 4]) for i in range(0, n, 4)]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_fedrep_trains_the_projector_with_the_encoders_only_with_the_term_and_the_term_lowers_its_loss():
    ssl = VicRegConfig(weight=1.0, min_windows=2)
    windows = [{"imu": _windows(16, seed=s)} for s in range(4)]
    shared = ("encoders.",)
    # without the term the projector never changes (nothing reaches it)
    plain = _model()
    before = _state(plain.projector)
    training.train_fedrep(plain, _labelled_loader(), head_epochs=1, epochs=2, lr=0.01, shared_prefixes=shared)
    assert all(torch.equal(before[k], v) for k, v in plain.projector.state_dict().items())
    # with it, the encoder phase trains encoders and projector; the head only changes in its own phase
    model = _model()
    cfg_eval = dataclasses.replace(ssl, scale_std=0.0, jitter_std=0.0, max_shift=0)
    probe = {"imu": _windows(64, seed=9)}
    loss_before = vicreg_loss(model, probe, cfg_eval).item()
    projector, encoders = _state(model.projector), _state(model.encoders)
    head = _state(model.head)
    training.train_fedrep(model, _labelled_loader(), head_epochs=0, epochs=30, lr=0.01, shared_prefixes=shared,
                          ssl_windows=windows, ssl=ssl, generator=torch.Generator().manual_seed(0))
    assert any(not torch.equal(projector[k], v) for k, v in model.projector.state_dict().items())
    assert any(not torch.equal(encoders[k], v) for k, v in model.encoders.state_dict().items())
    assert all(torch.equal(head[k], v) for k, v in model.head.state_dict().items())
    assert vicreg_loss(model, probe, cfg_eval).item() < loss_before
    with pytest.raises(ValueError, match="together"):
        training.train_local(model, _labelled_loader(), epochs=1, lr=0.01, ssl=ssl)


def _clients(n: int = 3) -> list[ClientData]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.normal(0, 1, (30, 32, 6)).astype(np.float32)
        y = np.arange(30) % 3
        out.append(ClientData(f"c{i}", x[:12], y[:12], x[12:24], y[12:24], unlabelled_x=x[24:]))
    return out


def _factory(projector_dim: int):
    def build(seed: int) -> IntentionModel:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32, projector_dim=projector_dim))
    return build


def test_simulated_personalised_round_with_the_term_sends_only_the_encoders_and_is_reproducible(monkeypatch):
    ssl = VicRegConfig(min_windows=2)
    spec = MethodSpec("p", personalisation="fedrep", head_epochs=1, self_supervised=ssl)
    sent_names: list[set[str]] = []
    from hrc_fl.federated.evaluation import simulator as simulator_module

    real_compress = simulator_module.ErrorFeedbackCompressor.compress

    def spy(self, delta):
        sent_names.append(set(delta))
        return real_compress(self, delta)

    monkeypatch.setattr(simulator_module.ErrorFeedbackCompressor, "compress", spy)
    sim = Simulator(clients=_clients(), model_factory=_factory(16), lr=0.01, batch_size=4, seed=0)
    first = sim.run(spec, rounds=2)
    second = sim.run(spec, rounds=2)
    assert first.final.accuracy == second.final.accuracy
    assert sent_names and all(names and all(n.startswith("encoders.") for n in names) for names in sent_names)
    # the same bytes as without the term: the projector is personal
    labels_only = sim.run(dataclasses.replace(spec, self_supervised=None), rounds=2)
    assert labels_only.final.uplink_bytes == first.final.uplink_bytes
    assert labels_only.final.accuracy != first.final.accuracy  # the term did change training
    with pytest.raises(ValueError, match="centralised"):
        MethodSpec("c", kind="centralised", self_supervised=ssl)


# ------------------------------------------------------------------------------------- unlabelled store
def test_unlabelled_windows_are_stored_retained_and_loaded_apart_from_labelled_ones(tmp_path):
    from hrc_fl.federated.core.sample_store import SampleStore

    store = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=10, max_age_s=100.0,
                        max_unlabelled_per_worker=3)
    for i in range(5):
        store.add_unlabelled("w1", 1000.0 + i, np.full((10, 6), i, np.float32))
    store.add_unlabelled("w2", 10.0, np.zeros((10, 6), np.float32))
    store.add_unlabelled("w2", 500.0, np.ones((20, 6), np.float32))  # w2's first is now too old; other length
    loaded = store.load_unlabelled("w1", imu_window=10)
    assert store.count_unlabelled("w1") == 3 and store.count_unlabelled("w2") == 1
    assert loaded.shape == (3, 10, 6) and [float(w[0, 0]) for w in loaded] == [2.0, 3.0, 4.0]
    assert store.load_unlabelled("w2", imu_window=10).shape == (0, 10, 6)  # only a 20-sample window left
    assert store.count("w1") == 0  # labelled table untouched
    with pytest.raises(ValueError, match="non-finite"):
        store.add_unlabelled("w1", 1010.0, np.full((10, 6), np.inf, np.float32))
    with pytest.raises(ValueError, match="T, 6"):
        store.add_unlabelled("w1", 1010.0, np.zeros((10, 3), np.float32))
    assert store.count_unlabelled("w1") == 3
    store.close()
    none_kept = SampleStore(tmp_path / "n.sqlite", max_samples_per_worker=10, max_age_s=100.0,
                            max_unlabelled_per_worker=0)
    assert none_kept.add_unlabelled("w1", 1.0, np.zeros((10, 6), np.float32)) is None
    assert none_kept.count_unlabelled("w1") == 0


# ------------------------------------------------------------------------------------- workstation learner
def _learner(tmp_path, ssl: VicRegConfig | None, unlabelled: int, projector_dim: int = 16):
    from hrc_fl.federated.core.intention_learner import IntentionLearner
    from hrc_fl.federated.core.sample_store import SampleStore
    from hrc_fl.intention.model_store import ModelStore

    samples = SampleStore(tmp_path / "s.sqlite", max_samples_per_worker=100, max_age_s=1e6)
    rng = np.random.default_rng(0)
    for i in range(6):
        samples.add("w1", ["A", "B"][i % 2], float(i), imu=rng.normal(0, 1, (32, 6)).astype(np.float32),
                    hands=None, pose=None)
    samples.add("w1", "A", 6.5, imu=None, hands=np.ones(42, np.float32), pose=None)  # no IMU: not a window
    for i in range(unlabelled):
        samples.add_unlabelled("w1", 10.0 + i, rng.normal(0, 1, (32, 6)).astype(np.float32))
    return IntentionLearner(worker_id="w1", labels=["A", "B"],
                            model_config=IntentionModelConfig(num_classes=2, imu_window=32,
                                                              projector_dim=projector_dim),
                            model_store=ModelStore(tmp_path / "models"), sample_store=samples, epochs=1, lr=0.01,
                            batch_size=4, seed=0, head_epochs=1, fine_tune_epochs=1, self_supervised=ssl)


def test_learner_trains_on_labelled_and_unlabelled_windows_and_sends_no_projector(tmp_path):
    learner = _learner(tmp_path, VicRegConfig(min_windows=8), unlabelled=10)
    projector = _state(learner.model.projector)
    num, metrics = learner.train_round(1, {})
    assert num == 7 and metrics["ssl_windows"] == 6 + 10  # the 6 labelled IMU windows + 10 unlabelled
    assert any(not torch.equal(projector[k], v) for k, v in learner.model.projector.state_dict().items())
    assert learner.get_shared() and all(k.startswith("encoders.") for k in learner.get_shared())


def test_learner_with_too_few_windows_or_no_projector(tmp_path):
    learner = _learner(tmp_path, VicRegConfig(min_windows=50), unlabelled=10)
    projector = _state(learner.model.projector)
    _, metrics = learner.train_round(1, {})
    assert metrics["ssl_windows"] == 0
    assert all(torch.equal(projector[k], v) for k, v in learner.model.projector.state_dict().items())
    with pytest.raises(ValueError, match="projector"):
        _learner(tmp_path / "other", VicRegConfig(), unlabelled=0, projector_dim=0)


def test_federation_config_reads_the_client_self_supervised_section(tmp_path):
    import yaml

    from hrc_fl.federated.core.fl_config import load_config
    from hrc_fl.paths import config_file

    packaged = load_config()
    assert packaged.client.self_supervised is not None and packaged.client.self_supervised.weight > 0
    data = yaml.safe_load(config_file("federated.yaml").read_text())
    data["client"]["self_supervised"] = {"enabled": False}
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).client.self_supervised is None
    data["client"]["self_supervised"] = {"weight": 0.1, "typo": 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="typo"):
        load_config(path)


def test_a_model_stored_before_the_projector_still_loads_and_the_learner_keeps_its_encoders_and_head(tmp_path):
    import json

    from hrc_fl.intention.model_store import ModelStore

    # a model file written before projector_dim existed: its meta has no such key
    store = ModelStore(tmp_path / "models")
    old = _model(projector_dim=0)
    old_head = _state(old.head)
    version = store.save(old, ["A", "B", "C"])
    meta_path = tmp_path / "models" / f"{version}.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["projector_dim"]
    meta_path.write_text(json.dumps(meta))
    loaded = store.load(version)
    assert loaded.model.config.projector_dim == 0 and loaded.model.projector is None
    assert all(torch.equal(old_head[k], v) for k, v in loaded.model.head.state_dict().items())

    from hrc_fl.federated.core.intention_learner import IntentionLearner
    from hrc_fl.federated.core.sample_store import SampleStore

    learner = IntentionLearner(worker_id="w1", labels=["A", "B", "C"],
                               model_config=IntentionModelConfig(num_classes=3, imu_window=32, projector_dim=8),
                               model_store=store, sample_store=SampleStore(tmp_path / "s.sqlite",
                                                                           max_samples_per_worker=10, max_age_s=1e6),
                               epochs=1, lr=0.01, batch_size=4, seed=0, self_supervised=VicRegConfig())
    assert learner.model.projector is not None and learner.model.config.projector_dim == 8
    assert all(torch.equal(old_head[k], v) for k, v in learner.model.head.state_dict().items())
    assert all(np.array_equal(v, old.state_dict()[k].numpy()) for k, v in learner.get_shared().items())


def test_a_set_stop_event_ends_local_training_at_the_next_batch(tmp_path):
    # the fl_client node sets it on shutdown: a round in progress must not keep the process alive
    import threading

    learner = _learner(tmp_path, VicRegConfig(min_windows=8), unlabelled=10)
    learner.stop_event = threading.Event()
    shared, projector = learner.get_shared(), _state(learner.model.projector)
    learner.stop_event.set()
    learner.train_round(1, {})
    assert all(np.array_equal(v, learner.get_shared()[k]) for k, v in shared.items())  # no step was taken
    assert all(torch.equal(projector[k], v) for k, v in learner.model.projector.state_dict().items())
    learner.stop_event.clear()
    learner.train_round(2, {})
    assert any(not np.array_equal(v, learner.get_shared()[k]) for k, v in shared.items())
