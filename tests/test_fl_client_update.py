"""The one client update (snapshot, local round, delta, uplink transforms) and the arrival of a global model,
as the workstation learners and the simulator run them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrc_fl.federated.core import split
from hrc_fl.federated.core.client_update import LocalRoundPlan, client_update, local_round, receive_global
from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update
from hrc_fl.federated.core.learner import TorchLearner
from hrc_fl.federated.core.synthetic_learner import SyntheticModel
from hrc_fl.federated.core.update import global_norm
from hrc_fl.federated.evaluation.simulator import ArrayLoader, ClientData, MethodSpec, Simulator

PREFIXES = ("encoders.",)


def _data(seed: int, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(0, 1, (n, 8)) + 2.0 * np.eye(3, 8)[y]).astype(np.float32)
    return x, y


class _ImuModel(SyntheticModel):
    """The synthetic encoders + head, fed as the simulator's loaders feed models (``imu=``)."""

    def forward(self, x: torch.Tensor | None = None, imu: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x if x is not None else imu)


def _model(seed: int = 0) -> SyntheticModel:
    torch.manual_seed(seed)
    return _ImuModel(8, 16, 3)


class _PlainLoader:
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def __iter__(self):
        for i in range(0, len(self.y), 16):
            yield self.x[i:i + 16], self.y[i:i + 16]


def test_uplink_is_the_delta_of_the_shared_tensors_only_and_the_round_trains_the_head_first():
    model, (x, y) = _model(), _data(1)
    before = split.shared_state(model, PREFIXES)
    head_before = model.head.weight.detach().clone()
    plan = LocalRoundPlan(epochs=1, lr=0.05, head_epochs=1)
    uplink = client_update(lambda: split.shared_state(model, PREFIXES),
                           lambda: (local_round(model, _PlainLoader(x, y), plan, shared_prefixes=PREFIXES).num_samples,
                                    {}), ErrorFeedbackCompressor(scheme="fp32"))
    after = split.shared_state(model, PREFIXES)
    delta = dequantize_update(uplink.quantized)
    assert set(delta) == set(before) and not any(k.startswith("head") for k in delta)
    for name in before:
        np.testing.assert_allclose(delta[name], after[name] - before[name], atol=1e-6)
    assert uplink.num_samples == 48 and uplink.metrics["train_s"] >= 0
    assert not torch.equal(model.head.weight, head_before)  # FedRep's head phase ran


def test_uplink_transforms_attack_then_clip_and_a_skip_encodes_nothing():
    model, (x, y) = _model(), _data(2)
    plan = LocalRoundPlan(epochs=1, lr=0.05)
    compressor = ErrorFeedbackCompressor(scheme="int8")

    def train() -> tuple[int, dict]:
        return local_round(model, _PlainLoader(x, y), plan, shared_prefixes=PREFIXES).num_samples, {}

    clipped = client_update(lambda: split.shared_state(model, PREFIXES), train, compressor, clip_norm=1e-3,
                            delta_transform=lambda d: {k: -100.0 * v for k, v in d.items()})
    assert global_norm(dequantize_update(clipped.quantized)) == pytest.approx(1e-3, rel=0.05)
    skipped = client_update(lambda: split.shared_state(model, PREFIXES), lambda: (3, {}), compressor, min_samples=8)
    assert skipped.quantized is None and skipped.num_samples == 3


def test_a_global_model_arrives_in_place_and_refreshes_only_the_head():
    model, (x, y) = _model(), _data(3)
    global_shared = {k: v + 0.1 for k, v in split.shared_state(model, PREFIXES).items()}
    head_before = model.head.weight.detach().clone()
    receive_global(model, global_shared, LocalRoundPlan(epochs=1, lr=0.05, fine_tune_epochs=2),
                   shared_prefixes=PREFIXES, loader=_PlainLoader(x, y))
    for name, value in split.shared_state(model, PREFIXES).items():  # encoders exactly the global ones
        np.testing.assert_array_equal(value, global_shared[name])
    assert not torch.equal(model.head.weight, head_before)


def test_learner_and_simulator_run_the_same_client_round():
    # Prepare: one client, its data, the same initial model and batch order on both paths
    x, y = _data(4)
    sim = Simulator(clients=[ClientData("c0", x, y, x, y)], model_factory=_model, lr=0.05, batch_size=16, seed=0)
    spec = MethodSpec("fedrep", personalisation="fedrep", head_epochs=1, local_epochs=1, fine_tune_epochs=1)
    sim_result = sim.run(spec, rounds=1)
    loader = ArrayLoader(x, y, batch_size=16, shuffle=True, seed=0)  # the simulator's client 0 loader
    learner = TorchLearner(_model(0), lambda r: loader, epochs=1, lr=0.05, head_epochs=1, fine_tune_epochs=1)
    # Execute: the workstation's round, and the arrival of its own update as the (one-client) global model
    reference = learner.get_shared()
    learner.train_round(1, {"proximal_mu": 0.0})
    learner.set_shared(learner.get_shared())
    learner.on_global_model(1, "v1")
    # Assert: the simulated client scores what the workstation's model scores after the same round
    from hrc_fl.federated.core.training import evaluate

    scores = evaluate(learner.model, ArrayLoader(x, y, batch_size=512, shuffle=False))
    assert sim_result.final.accuracy == [pytest.approx(scores.accuracy)]
    assert sim_result.final.macro_f1 == [pytest.approx(scores.macro_f1)]
    assert any(not np.allclose(learner.get_shared()[k], reference[k]) for k in reference)
