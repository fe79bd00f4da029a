"""How fl-report runs its simulator runs: each training once, every entry filled, second runs after the choice."""

from __future__ import annotations

import dataclasses

import pytest

from hrc_fl.federated.evaluation import report
from hrc_fl.federated.evaluation.simulator import MethodResult, RoundRecord


def _fake_result(cfg: report.ReportConfig, run: report._Run) -> MethodResult:
    """A result without training: every worker scores the same; labels only scores best on validation."""
    clients = report._data(cfg, run.seed, run.regime)[0]
    ids = [c.client_id for c in (clients[:run.clients] if run.clients else clients)]
    val = 0.9 if run.spec.self_supervised is None else 0.5
    test = 0.1 * (1 + len(ids) % 7) + 0.01 * run.projector_dim
    record = RoundRecord(1, [test] * len(ids), [test] * len(ids), 0, 0.0,
                         val_accuracy=[val] * len(ids), val_macro_f1=[val] * len(ids))
    return MethodResult(run.spec.name, [record], ids, attacker=ids[0] if run.spec.attack != "none" else None)


def test_each_training_runs_once_every_entry_is_filled_and_second_runs_follow_the_choice(monkeypatch):
    cfg = report.ReportConfig.quick(seeds=(0, 1))
    executed: list[report._Run] = []

    def fake_execute(config: report.ReportConfig, run: report._Run) -> tuple[object, float | None]:
        executed.append(run)
        if run.onboard:
            return {"job": run.onboard, "methods": {}}, None
        return _fake_result(config, run), (1.5 if run.dp_noise > 0 else None)

    monkeypatch.setattr(report, "_execute", fake_execute)
    entries, choices = report._run_all(cfg, None, None)
    # validation picked labels only for both rows (the fake scores it best)
    assert all(chosen == {row: None for row in report.SELECTED} for chosen, _ in choices.values())
    expected = [r for seed in cfg.seeds for r in
                (*report._first_runs(cfg, seed), *report._second_runs(cfg, seed, seed == 0, choices[seed][0]))]
    assert set(entries) == {r.key for r in expected} and len(expected) == len(entries)
    computations = [report._computation(cfg, r) for r in executed]
    assert len(set(computations)) == len(computations)            # no training twice
    assert set(computations) == {report._computation(cfg, r) for r in expected}
    # with labels only chosen, the full-label personalised and local+SSL rows are trainings done before
    for seed in cfg.seeds:
        assert entries[(seed, "full", report.PERSONALISED)] == entries[(seed, "full", report.PERSONALISED_SUPERVISED)]
        assert entries[(seed, "full", report.LOCAL_SELF_SUPERVISED)] == entries[(seed, "full", "local")]
        # a seed's second runs start only after every run its choice reads
        order = [r.key for r in executed]
        inputs = [order.index(k) for k in report._choice_inputs(cfg, seed)]
        seconds = [order.index(r.key) for r in report._second_runs(cfg, seed, seed == 0, choices[seed][0])
                   if r.key in order]
        assert seconds and max(inputs) < min(seconds)
    # the attacker is excluded per entry although a shared training is scored once
    attacked = entries[(0, "robustness", 4, "sign_flip")]
    assert attacked["excluded"] == [attacked["attacker"]]
    assert entries[(0, "dp", cfg.dp_noise_multipliers[0])]["epsilon"] == 1.5
    # onboarding: every job for every held-out worker of the onboarding seed only, each trained once; the
    # jobs that use the chosen self-supervision wait for the choice
    onboarding = {k for k in entries if k[1] == "onboarding"}
    assert onboarding == {(0, "onboarding", job, w) for job in report.JOBS for w in cfg.subjects}
    order = [r.key for r in executed]
    first_choice = max(order.index(k) for k in report._choice_inputs(cfg, 0))
    assert all(order.index(key) > first_choice for key in onboarding if key[2] in (report.FEDERATED, "local"))
    assert {r.key for r in report._first_runs(cfg, 0) if r.onboard} == {
        k for k in onboarding if k[2] in ("fedavg", report.POOLED)}


def test_computation_key_separates_what_trains_differently_and_ignores_names_and_exclusion():
    cfg = report.ReportConfig.quick()
    spec = report.budget_specs(cfg)[report.PERSONALISED]
    base = report._Run((0, "a"), 0, "scarce", spec, 16)
    same = [dataclasses.replace(base, key=(0, "b"), spec=dataclasses.replace(spec, name="other")),
            dataclasses.replace(base, exclude_attacker=True),
            dataclasses.replace(base, clients=len(report._data(cfg, 0, "scarce")[0]))]  # all clients = 0
    different = [dataclasses.replace(base, seed=1), dataclasses.replace(base, regime="full"),
                 dataclasses.replace(base, projector_dim=0), dataclasses.replace(base, clients=3),
                 dataclasses.replace(base, dp_noise=0.3),
                 dataclasses.replace(base, spec=dataclasses.replace(spec, attack="sign_flip")),
                 dataclasses.replace(base, spec=dataclasses.replace(spec, compression="int8")),
                 dataclasses.replace(base, spec=dataclasses.replace(spec, strategy={"name": "median"}))]
    key = report._computation(cfg, base)
    assert all(report._computation(cfg, r) == key for r in same)
    assert len({key, *(report._computation(cfg, r) for r in different)}) == len(different) + 1


@pytest.mark.usefixtures("one_torch_thread")
def test_foreach_adam_trains_bit_for_bit_like_the_per_parameter_loop():
    import copy

    import torch
    from torch.nn import functional as F

    from hrc_fl.federated.core.training import train_local
    from hrc_fl.intention.model import IntentionModel, IntentionModelConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32, projector_dim=0))
        x, y = torch.randn(64, 32, 6), torch.randint(0, 3, (64,))
    batches = [({"imu": x[i:i + 16]}, y[i:i + 16]) for i in range(0, 64, 16)]
    trained = copy.deepcopy(model)
    train_local(trained, batches, epochs=3, lr=3e-3)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.Adam(reference.parameters(), lr=3e-3, foreach=False)
    reference.train()
    for _ in range(3):
        for features, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(reference(**features), labels).backward()
            optimizer.step()
    for (name, a), b in zip(trained.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
