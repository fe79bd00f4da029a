"""Onboarding and the kept rule (issue 17): a held-out worker joins the federation of the others; each
worker keeps the better of its federated and its local model by its own validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hrc_fl.federated.evaluation import report
from hrc_fl.federated.evaluation.onboarding import choose_per_worker, first_in_time, joined_model
from hrc_fl.federated.evaluation.simulator import ClientData, MethodSpec, Simulator
from hrc_fl.intention.windows import WindowSpec, make_time_split
from tests.test_fl_eval_protocol import _clients, _factory  # three synthetic workers, their model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kept(clients: list[ClientData]) -> dict:
    sim = Simulator(clients=clients, model_factory=_factory, lr=1e-2, seed=2)
    local = sim.run(MethodSpec("local", kind="local"), rounds=3)
    pers = sim.run(MethodSpec("pers", personalisation="fedrep", head_epochs=1), rounds=3)
    return report.kept_entry({"local": report.method_entry(local), "personalised": report.method_entry(pers)})


def test_kept_row_chooses_per_worker_on_validation_and_changing_test_labels_changes_no_choice():
    kept = _kept(_clients(test_labels_permuted=False))
    kept_p = _kept(_clients(test_labels_permuted=True))
    assert kept["kept_from"] == kept_p["kept_from"]
    assert kept["per_client_val_f1"] == kept_p["per_client_val_f1"]
    assert abs(kept["mean_f1"] - kept_p["mean_f1"]) > 0.05  # the test labels mattered to the figure
    # each worker's kept model is the candidate with its best validation score, test read for it only
    assert kept["mean_f1"] == pytest.approx(np.mean(list(kept["per_client_f1"].values())))
    assert kept["worst_f1"] == min(kept["per_client_f1"].values())


def test_choose_per_worker_takes_the_best_validation_and_the_first_on_ties():
    assert choose_per_worker({"local": [0.5, 0.7, 0.6], "fed": [0.5, 0.8, float("nan")]}) == ["local", "fed", "local"]
    with pytest.raises(ValueError):
        choose_per_worker({"a": [0.1], "b": [0.1, 0.2]})


def test_first_in_time_orders_by_time_since_the_task_began_then_a_seeded_task_order():
    start = np.array([50, 0, 25, 0, 25, 0])
    recording = np.array([7, 7, 7, 9, 9, 3])
    order = first_in_time(start, recording, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(6))
    assert np.all(np.diff(start[order]) >= 0)
    tasks = [recording[i] for i in order if start[i] == 0]
    assert [recording[i] for i in order if start[i] == 25] == [t for t in tasks if t in (7, 9)]  # same task order


def test_joining_worker_labels_its_first_k_training_windows_in_time():
    from hrc_fl.federated.evaluation.watch_clients import joining_worker, load_recordings
    from hrc_fl.intention.windows import TimeSplit

    spec, split = WindowSpec(window=100, step=50), TimeSplit()
    worker = joining_worker(2, 10, seed=0, spec=spec, split=split)
    train, validation, test = make_time_split(load_recordings()[0], spec, split, subjects=[2])
    starts = {w.tobytes(): int(s) for w, s in zip(train.x, train.start, strict=True)}
    labelled = [starts[w.tobytes()] for w in worker.train_x]
    rest = [starts[w.tobytes()] for w in worker.unlabelled_x]
    assert len(labelled) == 10 and len(labelled) + len(rest) == len(train)
    assert max(labelled) <= min(rest)                   # none of the others started earlier in its task
    assert len(worker.val_y) == len(validation) and len(worker.test_y) == len(test)


def _quick() -> report.ReportConfig:
    return report.ReportConfig.quick(rounds=2, seeds=(0,), onboarding_k=(0, 5, 20))


def _perturbed(cfg: report.ReportConfig, held_out: int, *, only_test_labels: bool):
    """``report._data`` and ``report._joiner`` with the held-out worker's data changed: either only its test
    labels (shuffled), or every window and label it has."""
    real_data, real_joiner = report._data, report._joiner
    rng = np.random.default_rng(5)

    def change(c: ClientData) -> ClientData:
        test_y = rng.permutation(c.test_y)
        if only_test_labels:
            return dataclasses.replace(c, test_y=test_y)
        return dataclasses.replace(c, train_x=-3 * c.train_x, train_y=(c.train_y + 1) % 7, test_y=test_y,
                                   unlabelled_x=c.unlabelled_x[::-1] * 2, val_x=c.val_x + 4.0)

    def data(config, seed, regime):
        clients, names, _, _ = real_data(config, seed, regime)
        clients = [change(c) if report.subject_of(c) == held_out else c for c in clients]
        return (clients, names, *report.federated_normalisation(clients))

    def joiner(config, seed, subject, k):
        worker = real_joiner(config, seed, subject, k)
        return change(worker) if subject == held_out else worker

    return data, joiner


def _job(cfg: report.ReportConfig, job: str, held_out: int) -> dict:
    chosen = {row: cfg.self_supervised_grid[0] for row in report.SELECTED}
    runs = report._onboarding_runs(cfg, 0, chosen if job in (report.FEDERATED, "local") else None)
    run = next(r for r in runs if r.onboard == job and r.held_out == held_out)
    return report._execute_onboarding(cfg, run)


def _clean_and_changed(monkeypatch, job: str, held_out: int, *, only_test_labels: bool) -> tuple[dict, dict]:
    """One onboarding job's outcome on the real data, then with the held-out worker's data changed."""
    cfg = _quick()
    clean = _job(cfg, job, held_out)
    data, joiner = _perturbed(cfg, held_out, only_test_labels=only_test_labels)
    monkeypatch.setattr(report, "_data", data)
    monkeypatch.setattr(report, "_joiner", joiner)
    return clean, _job(cfg, job, held_out)


@pytest.mark.parametrize("job", [report.FEDERATED, "fedavg"])
def test_the_held_out_workers_data_never_enters_the_federation_of_its_fold(monkeypatch, job):
    clean, changed = _clean_and_changed(monkeypatch, job, 3, only_test_labels=False)
    assert "subject-3" not in clean["members"] and len(clean["members"]) == len(_quick().subjects) - 1
    # the federation of the others trained bit for bit the same: the members' own scores are equal
    assert {k: v for k, v in changed["federation"].items() if k != "wall_s"} == \
        {k: v for k, v in clean["federation"].items() if k != "wall_s"}
    row = report.JOBS[job][-1]
    assert any(changed["methods"][row][k]["val_f1"] != clean["methods"][row][k]["val_f1"] for k in ("0", "5", "20"))


@pytest.mark.parametrize("job", [report.FEDERATED, "local", report.POOLED])
def test_changing_the_held_out_workers_test_labels_changes_no_onboarding_choice(monkeypatch, job):
    clean, changed = _clean_and_changed(monkeypatch, job, 2, only_test_labels=True)
    (row,) = report.JOBS[job]
    for k in ("0", "5", "20"):
        assert changed["methods"][row][k]["choice"] == clean["methods"][row][k]["choice"], k
        assert changed["methods"][row][k]["val_f1"] == clean["methods"][row][k]["val_f1"], k
        for name, cand in clean["methods"][row][k].get("candidates", {}).items():
            assert changed["methods"][row][k]["candidates"][name]["kept_round"] == cand["kept_round"]
    assert any(changed["methods"][row][k]["f1"] != clean["methods"][row][k]["f1"] for k in ("0", "5", "20"))


def test_joined_model_keeps_the_shared_encoder_and_averages_the_heads():
    members = [_factory(seed) for seed in (0, 1, 2)]
    shared = {n: v for n, v in members[0].state_dict().items() if n.startswith("encoders.")}
    for m in members[1:]:
        m.load_state_dict({**m.state_dict(), **shared})
    states = [{n: v.numpy().copy() for n, v in m.state_dict().items()} for m in members]
    joined = joined_model(states, _factory, 7).state_dict()
    for name, value in joined.items():
        if name.startswith("encoders."):
            torch.testing.assert_close(value, shared[name])
        elif value.is_floating_point():
            torch.testing.assert_close(value, torch.stack([m.state_dict()[name] for m in members]).mean(0))


def test_a_joiner_whose_few_windows_cover_one_class_keeps_the_model_it_was_given():
    from hrc_fl.federated.evaluation.onboarding import AS_IS, join, score, starting_from

    clients = _clients(test_labels_permuted=False)
    trained = Simulator(clients=clients, model_factory=_factory, lr=1e-2, seed=0).run(
        MethodSpec("local", kind="local", local_epochs=3), rounds=4, keep_states=True)
    assert trained.final_states is not None
    given = joined_model(trained.final_states[:1], _factory, 0)
    c = clients[0]
    one_class = c.train_y == c.train_y[0]
    worker = dataclasses.replace(c, train_x=c.train_x[one_class][:3], train_y=c.train_y[one_class][:3])
    head = MethodSpec("head", kind="local", local_epochs=40, train_shared=False)
    kept = join(starting_from(given), worker, {"head": head}, rounds=2, eval_every=1, lr=5e-2, batch_size=8,
                seed=0, as_is=True)
    # a head trained on 3 windows of one class forgets the other two: validation keeps the given model
    assert kept["candidates"]["head"]["val_f1"] < kept["candidates"][AS_IS]["val_f1"]
    assert kept["choice"] == AS_IS and kept["f1"] == score(given, worker)["f1"]
    without = join(starting_from(given), worker, {"head": head}, rounds=2, eval_every=1, lr=5e-2, batch_size=8,
                   seed=0)
    assert without["choice"] == "head" and without["f1"] < kept["f1"]
