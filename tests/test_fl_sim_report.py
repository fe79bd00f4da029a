"""The simulator and the fl-report command end to end (quick mode, through the CLI)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hrc_fl.federated.core import split
from hrc_fl.federated.core.strategies import CoordinateMedian, FedAvg
from hrc_fl.federated.evaluation.simulator import ClientData, MethodSpec, Simulator
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clients(n: int = 3) -> list[ClientData]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        y = rng.integers(0, 3, 60)
        x = rng.normal(0, 0.3, (60, 32, 6)).astype(np.float32)
        x[np.arange(60), :, y] += 2.0
        out.append(ClientData(f"c{k}", x[:40], y[:40], x[40:], y[40:]))
    return out


def _factory(seed: int) -> IntentionModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32))


def test_personalised_sync_equalises_encoders_keeps_heads_and_is_reproducible():
    sim = Simulator(clients=_clients(), model_factory=_factory, seed=4)
    spec = MethodSpec("p", personalisation="fedrep", compression="int8")
    first = sim.run(spec, rounds=2)
    second = sim.run(spec, rounds=2)
    assert first.final.accuracy == second.final.accuracy
    shared_bytes = sum(v.size for v in split.shared_state(_factory(0)).values())
    # int8 payload: one byte per shared value (+4-byte scales) per client, no head tensors
    assert 3 * shared_bytes <= first.final.uplink_bytes < 3 * shared_bytes * 1.1
    assert all(0.0 <= a <= 1.0 for a in first.final.accuracy)


class _RecordingFedAvg(FedAvg):
    """FedAvg that remembers every tensor name it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def aggregate(self, server_round, updates, current):
        for update in updates:
            self.names.update(update.tensors)
        return super().aggregate(server_round, updates, current)


def test_personalised_uplink_never_carries_head_tensors():
    sim = Simulator(clients=_clients(), model_factory=_factory)
    spy = _RecordingFedAvg()
    sim.run(MethodSpec("p", personalisation="fedper"), rounds=2, strategy=spy)
    assert spy.names and all(name.startswith("encoders.") for name in spy.names)
    full = _RecordingFedAvg()
    sim.run(MethodSpec("fedavg"), rounds=1, strategy=full)
    assert any(name.startswith("head.") for name in full.names)  # the spy would have seen a leak


def test_median_resists_a_scaled_attacker_where_fedavg_does_not():
    sim = Simulator(clients=_clients(5), model_factory=_factory, lr=1e-2)
    scores = {}
    for rule in ("median", "fedavg"):
        spec = MethodSpec(rule, local_epochs=2, strategy={"name": rule}, attack="scale100")
        strategy = CoordinateMedian() if rule == "median" else FedAvg()
        scores[rule] = float(np.mean(sim.run(spec, rounds=3, strategy=strategy).final.accuracy))
    assert scores["median"] > 0.8
    assert scores["median"] > scores["fedavg"]


def test_fedavg_beats_chance_on_toy_task():
    sim = Simulator(clients=_clients(), model_factory=_factory, lr=1e-2)
    result = sim.run(MethodSpec("fedavg", local_epochs=2), rounds=3)
    assert np.mean(result.final.accuracy) > 0.8


def test_attacker_is_named_and_excluded_from_the_honest_summary():
    sim = Simulator(clients=_clients(4), model_factory=_factory, lr=1e-2)
    result = sim.run(MethodSpec("flip", attack="sign_flip", strategy={"name": "median"}), rounds=2)
    assert result.attacker == "c0" and result.honest_ids() == ["c1", "c2", "c3"]
    _, f1 = result.client_scores()
    honest = result.summary(exclude=[result.attacker])
    assert honest["mean_f1"] == pytest.approx(float(np.mean(f1[1:])))
    assert honest["worst_f1"] == pytest.approx(float(np.min(f1[1:])))
    assert sim.run(MethodSpec("clean", strategy={"name": "median"}), rounds=1).attacker is None


def test_fl_report_reads_the_deployed_rule_and_size_as_the_aggregator_does(tmp_path):
    import yaml

    from hrc_fl.commands.fl_report import deployed
    from hrc_fl.paths import config_file

    data = yaml.safe_load(config_file("federated.yaml").read_text())
    nodes = data["federation"]["nodes"]
    data["federation"]["nodes"] = [*nodes, {**nodes[-1], "name": "ws_extra", "rank": 99, "port": 1}]
    data["strategy"] = {"name": "median"}
    path = tmp_path / "federated.yaml"
    path.write_text(yaml.safe_dump(data))
    assert deployed(str(path)) == {"deployed_rule": "median", "deployed_size": len(nodes)}  # rank 0 not counted
    data["rounds"]["quorum"] = 50  # a federation the aggregator would refuse is refused here too
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="quorum"):
        deployed(str(path))
    data["rounds"]["quorum"] = 1  # the robust rule's own setting reaches the report's runs
    data["strategy"] = {"name": "median_anchored", "max_attackers": 0}
    path.write_text(yaml.safe_dump(data))
    assert deployed(str(path)) == {"deployed_rule": "median_anchored", "max_attackers": 0,
                                   "deployed_size": len(nodes)}


def test_report_runs_the_robust_rule_with_its_configured_attacker_count():
    from hrc_fl.federated.evaluation.report import ReportConfig, rule_at_size, rule_config

    assert rule_config(ReportConfig(max_attackers=0), "median_anchored") == {"name": "median_anchored",
                                                                              "max_attackers": 0}
    assert rule_at_size("median_anchored", 0.2, 2, max_attackers=0)[0] == "median_anchored"
    assert rule_at_size("median_anchored", 0.2, 2, max_attackers=1)[0] != "median_anchored"  # 2 < 2f + 1
    with pytest.raises(ValueError, match="max_attackers"):
        ReportConfig(max_attackers=-1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fl_report_quick_through_cli_states_protocol_and_summarises_seeds(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "hrc_fl.cli", "fl-report", "--out", str(out), "--quick",
                           "--no-progress", "--seeds", "0,1,2", "--jobs", "2"],
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    methods = {"local", "fedavg", "fedavg_ft", "fedprox", "personalised", "centralised"}
    assert set(results["seeds"]) == {"0", "1", "2"}
    for regime in ("full", "scarce"):
        summary = results["summary"][regime]
        assert methods <= set(summary)
        for name in methods:
            per_seed = [results["seeds"][s]["regimes"][regime]["methods"][name] for s in ("0", "1", "2")]
            m = summary[name]
            # per method: mean and worst-worker macro-F1 over the three seeds
            assert m["mean_f1_per_seed"] == [e["mean_f1"] for e in per_seed]
            assert m["mean_f1"] == pytest.approx(np.mean([e["mean_f1"] for e in per_seed]))
            assert m["worst_f1"] == pytest.approx(np.mean([e["worst_f1"] for e in per_seed]))
            assert m["worst_f1_min"] <= m["worst_f1"] <= m["mean_f1"] <= 1.0
            for e in per_seed:
                assert e["worst_f1"] == pytest.approx(min(e["per_client_f1"].values()))
        first = results["seeds"]["0"]["regimes"][regime]["methods"]
        assert first["local"]["uplink_bytes_per_round"] == 0
        assert first["personalised"]["uplink_bytes_per_round"] < first["fedavg"]["uplink_bytes_per_round"]
        block = results["seeds"]["0"]["regimes"][regime]
        assert all(n > 0 for n in block["validation_windows"].values())
    # the deployed size from config/federated.yaml (3 workstations) and the rule that ran there
    for seed, block in results["seeds"].items():
        robust = block["robustness"]
        assert set(robust) == {"4", "3"}, seed
        assert robust["3"]["rule_ran"] == "median_anchored" and robust["3"]["note"] == ""  # runs as itself at 3
        for r in robust.values():
            attacker = block["regimes"]["scarce"]["clients"][0]
            assert r["excluded"] == [attacker] and r["clean"]["excluded"] == [attacker]
            hit = r["attacks"]["sign_flip"]
            assert hit["entry"]["attacker"] == attacker
            honest = [v for k, v in hit["entry"]["per_client_f1"].items() if k != attacker]
            assert hit["entry"]["mean_f1"] == pytest.approx(np.mean(honest))
            assert hit["loss_f1"] == pytest.approx(r["clean"]["mean_f1"] - hit["entry"]["mean_f1"])
    first = results["seeds"]["0"]
    assert len(first["dp"]) == 2 and "dp" not in results["seeds"]["1"]
    eps = [p["epsilon"] for p in sorted(first["dp"], key=lambda p: p["noise_multiplier"])]
    assert eps[0] > eps[1] > 0
    assert first["compression"]["int8"]["uplink_bytes_per_round"] < \
        0.3 * first["regimes"]["scarce"]["methods"]["personalised"]["uplink_bytes_per_round"]
    # every choice is recorded with its validation score, and the chosen one has the best
    for block in results["seeds"].values():
        for table in block["selection"].values():
            best = max(c["mean_val_f1"] for c in table)
            assert [c["chosen"] for c in table].count(True) == 1
            assert next(c for c in table if c["chosen"])["mean_val_f1"] == best
    report = (out / "report.md").read_text()
    assert "## Protocol" in report
    for text in results["protocol"].values():
        assert text in report
    assert {"split", "selection", "budget", "normalisation", "seeds", "robustness"} <= set(results["protocol"])
    assert (out / "curves_scarce.png").stat().st_size > 1000
    assert set(results["targets"]) >= {"scarce_mean_f1_gain", "scarce_worst_worker", "full_not_below_best",
                                       "int8_uplink", "robust_rule_under_attack", "sign_flip_honest_loss",
                                       "kept_vs_local_ssl_mean", "kept_vs_local_ssl_worst",
                                       "onboarding_gain_mean_k_le_20", "onboarding_gain_worst_k_le_20",
                                       "onboarding_never_below_local"}
    # issue 17: the kept row, per worker one of its two candidates, judged against local + self-supervision
    for s in ("0", "1", "2"):
        scarce = results["seeds"][s]["regimes"]["scarce"]
        kept = scarce["extras"]["kept"]
        for worker, source in kept["kept_from"].items():
            row = scarce["extras"][source] if source in scarce["extras"] else scarce["methods"][source]
            assert kept["per_client_f1"][worker] == row["per_client_f1"][worker]
    kept_target = results["targets"]["kept_vs_local_ssl_worst"]
    assert kept_target["kept"] == results["summary"]["scarce"]["kept"]["worst_f1"]
    assert "| kept (extra row" in report
    # onboarding: every held-out worker, every k of the quick form, every method, on the first seed
    onboarding = results["onboarding"]
    assert onboarding["k"] == [0, 5, 20] and onboarding["seeds"] == [0]
    assert sorted(onboarding["held_out"]) == sorted(results["seeds"]["0"]["regimes"]["scarce"]["clients"])
    for name in ("federated", "local_self_supervised", "fedavg", "fedavg_ft", "pooled"):
        for k in ("0", "5", "20"):
            row = onboarding["methods"][name][k]
            per_worker = row["per_worker_f1"]["0"]
            assert set(per_worker) == set(onboarding["held_out"])
            assert row["mean_f1"] == pytest.approx(np.mean(list(per_worker.values())))
            assert row["worst_f1"] == pytest.approx(min(per_worker.values()))
    assert set(onboarding["methods"]["federated"]["0"]["choices"]["0"].values()) == {"mean_head"}
    assert set(onboarding["methods"]["federated"]["5"]["choices"]["0"].values()) <= {"as_is", "head", "fine_tune"}
    gains = results["targets"]["onboarding_gain_mean_k_le_20"]["gains"]
    assert gains["20"] == pytest.approx(onboarding["methods"]["federated"]["20"]["mean_f1"]
                                        - onboarding["methods"]["local_self_supervised"]["20"]["mean_f1"], abs=1e-4)
    assert "## Onboarding" in report and "| k labelled windows |" in report
    assert (out / "onboarding_f1_vs_k.png").stat().st_size > 1000


def _results(flip_losses: dict[str, float]) -> dict:
    def entry(f1: float, worst: float | None = None, sent: float = 100.0) -> dict:
        return {"mean_f1": f1, "worst_f1": f1 - 0.1 if worst is None else worst, "uplink_bytes_per_round": sent}

    methods = {"local": entry(0.88), "fedavg": entry(0.82), "fedavg_ft": entry(0.86), "fedprox": entry(0.82),
               "personalised": entry(0.92, 0.85), "centralised": entry(0.9)}
    seeds = {}
    for key, loss in flip_losses.items():
        seed, size = key.split("/")
        seeds.setdefault(seed, {"robustness": {}})["robustness"][size] = {
            "attacks": {"sign_flip": {"loss_f1": loss}, "scale100": {"loss_f1": 0.0}}}
    return {"config": {"deployed_rule": "trimmed_mean", "robustness_max_drop": 0.02, "robustness_sizes": [10, 3],
                       "robustness_attacks": ["scale100", "sign_flip"]},
            "summary": {"full": methods, "scarce": methods}, "seeds": seeds}


def test_targets_judge_sign_flip_on_every_seed_and_size():
    from hrc_fl.federated.evaluation.report import targets

    good = {f"{s}/{n}": 0.015 for s in ("0", "1", "2") for n in ("10", "3")}
    met = targets(_results(good))
    assert met["sign_flip_honest_loss"]["met"] and met["robust_rule_under_attack"]["met"]
    one_bad = dict(good, **{"2/3": 0.025})
    missed = targets(_results(one_bad))["sign_flip_honest_loss"]
    assert not missed["met"] and missed["worst_loss_f1"] == pytest.approx(0.025)
    partial = {k: v for k, v in good.items() if k != "1/10"}
    assert not targets(_results(partial))["sign_flip_honest_loss"]["met"]  # a size not run is not a pass
    t = targets(_results(good))
    assert t["scarce_mean_f1_gain"]["met"] and t["scarce_worst_worker"]["met"] and t["full_not_below_best"]["met"]


def test_every_method_gets_the_same_budget_and_candidates_differ_only_in_self_supervision():
    from hrc_fl.federated.evaluation.report import (
        BASELINES,
        PERSONALISED,
        ReportConfig,
        budget_specs,
        candidates,
        rule_at_size,
        rule_config,
        with_choice,
    )

    cfg = ReportConfig(epochs_per_round=3, head_epochs=1, fine_tune_epochs=1)
    specs = budget_specs(cfg)

    def passes(spec) -> int:
        head = spec.head_epochs if spec.personalisation == "fedrep" else 0
        return head + spec.local_epochs + spec.fine_tune_epochs

    assert {name: passes(spec) for name, spec in specs.items()} == dict.fromkeys(specs, 3)
    assert specs[PERSONALISED].personalisation == "fedrep" and specs[PERSONALISED].local_epochs == 1
    assert all(specs[b].self_supervised is None for b in BASELINES)
    with pytest.raises(ValueError, match="no encoder epoch"):
        ReportConfig(epochs_per_round=2, head_epochs=1, fine_tune_epochs=1)
    assert candidates(cfg)[0] is None
    spec, width = with_choice(specs[PERSONALISED], cfg, (0.05, 32))
    assert spec.self_supervised.weight == 0.05 and width == 32
    assert dataclasses.replace(spec, self_supervised=None) == specs[PERSONALISED]
    assert with_choice(specs[PERSONALISED], cfg, None) == (specs[PERSONALISED], 0)
    assert rule_config(cfg, "trimmed_mean") == {"name": "trimmed_mean", "trim_fraction": 0.2}
    assert rule_at_size("trimmed_mean", 0.2, 3)[0] == "coordinate_median"
    assert rule_at_size("trimmed_mean", 0.2, 10) == ("trimmed_mean", "")
    assert rule_at_size("median", 0.2, 3) == ("coordinate_median", "")
