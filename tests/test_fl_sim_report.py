"""The simulator and the fl-report command end to end (quick mode, through the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hrc_fl.federated import split
from hrc_fl.federated.simulator import ClientData, MethodSpec, Simulator
from hrc_fl.federated.strategies import CoordinateMedian, FedAvg
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny models on a shared 2-core machine: more intra-op threads only add contention
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fl_report_quick_through_cli_writes_all_methods(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "hrc_fl.cli", "fl-report", "--out", str(out), "--quick",
                           "--no-progress"], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    for regime in ("full", "scarce"):
        methods = results["regimes"][regime]["methods"]
        assert set(methods) == {"local", "fedavg", "fedavg_ft", "fedprox", "personalised", "centralised"}
        for name, entry in methods.items():
            for key in ("mean_acc", "worst_acc", "mean_f1"):
                assert 0.0 <= entry[key] <= 1.0, (regime, name, key)
            assert entry["worst_acc"] <= entry["mean_acc"]
            assert entry["uplink_bytes_per_round"] >= 0
        assert methods["local"]["uplink_bytes_per_round"] == 0
        assert methods["personalised"]["uplink_bytes_per_round"] < methods["fedavg"]["uplink_bytes_per_round"]
    scarce = results["regimes"]["scarce"]
    assert len(scarce["dp"]) == 3
    assert {"median/scale100", "fedavg/scale100", "trimmed_mean/scale100", "trimmed_mean/sign_flip"} <= \
        set(scarce["robustness"])
    eps = [p["epsilon"] for p in sorted(scarce["dp"], key=lambda p: p["noise_multiplier"])]
    assert eps[0] > eps[1] > eps[2] > 0
    assert scarce["compression"]["int8"]["uplink_bytes_per_round"] < \
        0.3 * scarce["methods"]["personalised"]["uplink_bytes_per_round"]
    assert (out / "report.md").read_text().count("|") > 20
    assert (out / "curves_scarce.png").stat().st_size > 1000
    assert set(results["targets"]) >= {"scarce_mean_acc_gain", "scarce_worst_client", "full_not_below_best",
                                       "int8_uplink", "robust_rule_under_attack"}


def _results(robust_sign_flip: float) -> dict:
    def entry(acc: float, worst: float | None = None, sent: float = 100.0) -> dict:
        return {"mean_acc": acc, "worst_acc": acc - 0.1 if worst is None else worst, "uplink_bytes_per_round": sent}

    methods = {"local": entry(0.88), "fedavg": entry(0.82), "fedavg_ft": entry(0.86), "fedprox": entry(0.82),
               "personalised": entry(0.92, 0.85), "centralised": entry(0.9)}
    return {"config": {"deployed_rule": "trimmed_mean", "robustness_max_drop": 0.02},
            "regimes": {"full": {"methods": methods},
                        "scarce": {"methods": methods,
                                   "robustness": {"trimmed_mean/scale100": {"mean_acc": 0.915},
                                                  "trimmed_mean/sign_flip": {"mean_acc": robust_sign_flip},
                                                  "median/sign_flip": {"mean_acc": 0.5}}}}}


def test_targets_judge_robustness_on_the_deployed_rule_for_both_attacks():
    from hrc_fl.federated.report import targets

    met = targets(_results(0.905))["robust_rule_under_attack"]
    assert met["met"] and met["rule"] == "trimmed_mean"
    assert met["worst_drop"] == pytest.approx(0.015)  # the median row (0.5) is not the deployed rule
    missed = targets(_results(0.895))["robust_rule_under_attack"]
    assert not missed["met"] and missed["worst_drop"] == pytest.approx(0.025)
    partial = _results(0.92)
    del partial["regimes"]["scarce"]["robustness"]["trimmed_mean/scale100"]
    assert not targets(partial)["robust_rule_under_attack"]["met"]  # one attack not run is not a pass
    t = targets(_results(0.92))
    assert t["scarce_mean_acc_gain"]["met"] and t["scarce_worst_client"]["met"] and t["full_not_below_best"]["met"]


def test_report_extra_rows_separate_self_supervision_from_federation():
    from hrc_fl.federated.report import BASELINES, ReportConfig, extra_specs, method_specs, rule_config
    from hrc_fl.federated.self_supervised import VicRegConfig
    from hrc_fl.federated.training import PseudoLabelConfig

    # labels only everywhere: no extra rows
    assert extra_specs(ReportConfig(self_supervised=None), 3) == {}
    with pytest.raises(ValueError, match="projector_dim"):
        ReportConfig(projector_dim=0)
    ssl = VicRegConfig(weight=0.05)
    cfg = ReportConfig(self_supervised=ssl)
    specs = method_specs(cfg, 3)
    assert specs["personalised"].self_supervised == ssl and specs["personalised"].personalisation == "fedrep"
    assert all(specs[b].self_supervised is None and specs[b].pseudo_label is None for b in BASELINES)
    extras = extra_specs(cfg, 3)
    assert set(extras) == {"local_self_supervised", "personalised_labels_only"}
    assert extras["local_self_supervised"].kind == "local" and extras["local_self_supervised"].self_supervised == ssl
    assert extras["personalised_labels_only"].self_supervised is None
    assert extras["personalised_labels_only"].personalisation == "fedrep"
    assert not set(extras) & set(BASELINES)
    pl = PseudoLabelConfig(threshold=0.9)
    extras = extra_specs(ReportConfig(self_supervised=None, pseudo_label=pl), 3)
    assert set(extras) == {"local_pseudo", "personalised_pseudo"}
    assert extras["local_pseudo"].pseudo_label == pl and extras["personalised_pseudo"].pseudo_label == pl
    assert rule_config(cfg, "trimmed_mean") == {"name": "trimmed_mean", "trim_fraction": 0.2}
    assert rule_config(cfg, "median") == {"name": "median"}
