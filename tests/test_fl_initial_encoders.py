"""Round-0 global encoders come from the base intention model when it fits the federation."""

from __future__ import annotations

import numpy as np
import torch

from hrc_fl.federated.core.intention_learner import initial_shared
from hrc_fl.intention.labels import INTENTION_LABELS
from hrc_fl.intention.model import SHARED_PREFIXES, IntentionModel, IntentionModelConfig
from hrc_fl.intention.model_store import ModelStore


def _base_model(seed: int) -> IntentionModel:
    torch.manual_seed(seed)
    model = IntentionModel(IntentionModelConfig(num_classes=len(INTENTION_LABELS)))
    with torch.no_grad():  # make it clearly different from any freshly initialised model
        for p in model.parameters():
            p.add_(0.5)
    return model


def test_initial_encoders_are_the_base_models_encoders(tmp_path):
    base = _base_model(3)
    ModelStore(tmp_path).save(base, list(INTENTION_LABELS), version="base-0001")

    shared = initial_shared({"initial_model_store": str(tmp_path)}, seed=0)

    # the encoders' parameters; their buffers (input normalisation) are never federated
    expected = {k: v.detach().numpy() for k, v in base.named_parameters() if k.startswith(SHARED_PREFIXES)}
    assert set(shared) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(shared[name], value, err_msg=name)


def test_a_base_model_with_another_label_space_is_not_used(tmp_path):
    base = _base_model(3)
    other_labels = [f"L{i}" for i in range(len(INTENTION_LABELS))]
    ModelStore(tmp_path).save(base, other_labels, version="base-0001")

    shared = initial_shared({"initial_model_store": str(tmp_path)}, seed=5)
    fresh = initial_shared({"initial_model_store": ""}, seed=5)

    assert set(shared) == set(fresh)
    for name in fresh:
        np.testing.assert_array_equal(shared[name], fresh[name], err_msg=name)
    weights = [n for n in fresh if n.endswith("weight")]
    base_shared = dict(base.state_dict())
    assert any(not np.array_equal(shared[n], base_shared[n].numpy()) for n in weights)


def test_a_workstation_with_an_empty_store_takes_the_base_models_input_normalisation(tmp_path):
    from hrc_fl.federated.core.intention_learner import make_learner

    # Prepare: a base model with its own IMU normalisation (buffers are never federated)
    base = _base_model(3)
    base.set_imu_normalisation(torch.full((6,), 0.25), torch.full((6,), 3.0))
    ModelStore(tmp_path / "base").save(base, list(INTENTION_LABELS), version="base-0001")
    # Execute
    learner = make_learner("ws1", {"initial_model_store": str(tmp_path / "base"),
                                   "model_store_dir": str(tmp_path / "ws1"),
                                   "sample_db": str(tmp_path / "ws1.sqlite")}, seed=0)
    # Assert
    state = learner.model.state_dict()
    assert torch.equal(state["encoders.imu.input_std"], torch.full((6,), 3.0))
    assert torch.equal(state["encoders.imu.input_mean"], torch.full((6,), 0.25))
