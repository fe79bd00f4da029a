"""The demo report from a prepared run record: sections with numbers, and honest absences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrc_fl.demo.fl_eval import VersionAccuracy
from hrc_fl.demo.options import DemoOptions, DemoRun
from hrc_fl.demo.record import DemoRecord, FederatedSample, GestureEvent, SafetySample, WorkstationRecord
from hrc_fl.demo.report import NOT_AVAILABLE, stop_causes, write_report, zone_visits
from hrc_fl.demo.usage import NodeUsage
from hrc_fl.graph import NodeSpec

ZONES = ("CLEAR", "WARNING", "REDUCED_SPEED", "PROTECTIVE_STOP")


def _sample(t: float, zone: int, reason: str = "", reset: bool = False) -> SafetySample:
    return SafetySample(t_s=t, zone=zone, zone_name=ZONES[zone], speed_scale=1.0 - zone / 3,
                        min_separation_m=4.0 - t / 10, protective_separation_m=1.5, perception_latency_s=0.2,
                        reset_required=reset, reason=reason, worker_distance_m=4.0 - t / 10)


def _run(tmp_path: Path, executables: list[str], record: DemoRecord) -> DemoRun:
    specs = [NodeSpec(executable=e, name=e.removesuffix("_node"), namespace="ws1") for e in executables]
    return DemoRun(options=DemoOptions.quick(out_dir=tmp_path), run_dir=tmp_path, specs=specs, wall_s=50.0,
                   usage={"/ws1/safety": NodeUsage("/ws1/safety", cpu_s=5.0, peak_rss_bytes=2**27, exit_code=0)},
                   record=record)


def test_report_with_safety_and_federated_data(tmp_path):
    # Prepare: zones walk up and back, one STOP command, two FL rounds from two workers
    ws = WorkstationRecord("ws1")
    for t, zone in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (5, 0)]:
        ws.safety.append(_sample(t, zone, "separation 0.2 m < stop distance 0.3 m" if zone == 3 else "",
                                 reset=zone == 3))
    ws.gestures.append(GestureEvent(3.5, "STOP", 0.99, True))
    ws.resets.append((4.5, True, "reset accepted"))
    record = DemoRecord(workstations={"ws1": ws})
    accs = [(0.5, 0.4), (0.7, 0.6)]
    for rnd in (1, 2):
        record.federated.append(FederatedSample(rnd * 10.0, "ws1", "client", rnd, "sent", f"v{rnd}",
                                                {"loss": 1.0 / rnd, "train_s": 0.5}))
        record.federated.append(FederatedSample(rnd * 10.0, "aggregator", "aggregator", rnd, "done", "",
                                                {"num_accepted": 1.0}))
    # round 3 opened but never closed: not completed; num_accepted is no accuracy
    record.federated.append(FederatedSample(30.0, "aggregator", "aggregator", 3, "training", "", {}))
    run = _run(tmp_path, ["safety_node", "hands_node", "pose_node", "fl_client_node", "aggregator_node"], record)
    run.fl_accuracy = {"ws1": [VersionAccuracy("base-0001", None, 0.8, 40), VersionAccuracy("v0001", 0, 0.2, 40)]
                       + [VersionAccuracy(f"v000{r + 1}", r, a, 40) for r, (a, _) in enumerate(accs, start=1)],
                       "ws2": [VersionAccuracy(f"v000{r}", r, b, 40) for r, (_, b) in enumerate(accs, start=1)]}
    run.fl_uplink_bytes = {1: 3000, 2: 3100}

    # Execute
    report = write_report(run).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())

    # Assert
    assert [name for _, name in zone_visits(ws)] == ["CLEAR", "WARNING", "REDUCED_SPEED", "PROTECTIVE_STOP", "CLEAR"]
    assert summary["workstations"]["ws1"]["zones_visited"] == sorted(ZONES)
    assert summary["workstations"]["ws1"]["stop_commands"] == 1
    assert stop_causes(ws) == {"separation < stop distance": 1.0}
    assert summary["fl_rounds_completed"] == 2
    assert summary["accuracy"] == {"ws1": {"0": 0.2, "1": 0.5, "2": 0.7}, "ws2": {"1": 0.4, "2": 0.6}}
    assert summary["accuracy_base"] == {"ws1": 0.8}
    assert "| ws1 (subject 1) | 0.800 | 0.200 | 0.500 | 0.700 |" in report
    assert "| ws2 (subject 2) | n/a | n/a | 0.400 | 0.600 |" in report
    # mean and worst over both workers, n/a where one has no value (base, round 0)
    assert "| mean of workers | n/a | n/a | 0.450 | 0.650 |" in report
    assert "| worst worker | n/a | n/a | 0.400 | 0.600 |" in report
    assert summary["accuracy_mean"] == pytest.approx({"1": 0.45, "2": 0.65})
    assert summary["uplink_bytes_per_round"] == {"1": 3000, "2": 3100} and "| 2 | 3100 |" in report
    assert "interlock held): 2.0 s" in report
    assert "| /ws1/safety | 5.0 | 10% | 128 | 0 |" in report
    for png in ("safety_ws1.png", "fl_accuracy.png", "fl_bytes.png", "latencies.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    assert NOT_AVAILABLE not in report.split("## Intention")[0]


def test_report_says_not_available_for_missing_nodes(tmp_path):
    # Prepare: a build with only a camera and the robot
    record = DemoRecord(workstations={"ws1": WorkstationRecord("ws1", images_published=10)})
    run = _run(tmp_path, ["camera_node", "robot_sim_node"], record)

    # Execute
    report = write_report(run).read_text()

    # Assert
    safety = report.split("## Safety timeline")[1].split("## Latencies")[0]
    assert f"{NOT_AVAILABLE} (no safety_node in the graph)" in safety
    assert f"Federated learning: {NOT_AVAILABLE}" in report
    assert f"Latencies: {NOT_AVAILABLE}" in report
    assert not list(tmp_path.glob("*.png"))


def test_uplink_bytes_per_round_from_the_audit(tmp_path):
    # Prepare: two clients in round 1 (int8, fp32), one refused update, one garbage line
    from hrc_fl.demo.fl_eval import uplink_bytes_per_round

    audit = tmp_path / "audit.jsonl"
    audit.write_text("\n".join([
        json.dumps({"round": 1, "client": "ws1", "tensors": ["a", "b"], "scheme": "int8", "delta_norm": 1.0}),
        json.dumps({"round": 1, "client": "ws2", "tensors": ["a", "b"], "scheme": "fp32", "delta_norm": 1.0}),
        json.dumps({"round": 2, "client": "ws1", "tensors": [], "scheme": "malformed", "delta_norm": None}),
        "not json"]) + "\n")

    # Execute
    sizes = uplink_bytes_per_round(audit, {"a": 10, "b": 5})

    # Assert: int8 = 15 bytes + 2 scales x 4 bytes; fp32 = 15 x 4 bytes; nothing for the refused update
    assert sizes == {1: (15 + 8) + 60}


def test_evaluate_store_scores_stored_versions_on_held_out_windows(tmp_path):
    # Prepare: a store with a fresh model noted as holding global round 3
    from hrc_fl.data.datasets import WATCH_CLASSES, load_watch
    from hrc_fl.demo.fl_eval import evaluate_store, heldout_windows
    from hrc_fl.intention.model import IntentionModel, IntentionModelConfig
    from hrc_fl.intention.model_store import ModelStore

    store = ModelStore(tmp_path / "store")
    model = IntentionModel(IntentionModelConfig(num_classes=len(WATCH_CLASSES)))
    store.save(model, WATCH_CLASSES, info={"federated_round": 4, "global_version": "v00003"})

    # Execute
    results = evaluate_store(tmp_path / "store", 4, WATCH_CLASSES)
    _x, y = heldout_windows(4, WATCH_CLASSES)

    # Assert: one result, round parsed, every held-out window scored; windows lie after the 70 % cut
    assert len(results) == 1 and results[0].after_round == 3
    assert 0.0 <= results[0].accuracy <= 1.0 and results[0].windows == len(y) > 0
    recordings = [r for r in load_watch() if r.subject == 4]
    held_out = sum(len(r.imu) - int(len(r.imu) * 0.7) for r in recordings)
    assert len(y) <= held_out / 50 and set(y.tolist()) == set(range(len(WATCH_CLASSES)))


def test_a_long_zone_sequence_says_how_many_changes_it_leaves_out(tmp_path):
    # Prepare: 45 zone changes (a flickering border), and a run whose FL wait the wall-time budget ended
    ws = WorkstationRecord("ws1")
    for t in range(45):
        ws.safety.append(_sample(float(t), t % 2, "separation within the warning band" if t % 2 else ""))
    record = DemoRecord(workstations={"ws1": ws}, federated=[
        FederatedSample(30.0, "aggregator", "aggregator", 1, "done", "", {"num_accepted": 1.0})])
    run = _run(tmp_path, ["safety_node", "pose_node", "fl_client_node", "aggregator_node"], record)
    run.fl_notes.append("FL reached round 1 of 2 when the run's wall-time budget (250 s) was spent")

    # Execute
    report = write_report(run).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())

    # Assert: 40 shown, the 5 others counted, all 45 in summary.json; the budget note is in the FL section
    line = next(x for x in report.splitlines() if x.startswith("Zone sequence: "))
    assert line.count(" → ") == 39 and line.endswith("… and 5 more changes (all in summary.json)")
    assert len(summary["workstations"]["ws1"]["zone_sequence"]) == 45
    fl = report.split("## Federated learning")[1].split("## ")[0]
    assert "- note: FL reached round 1 of 2 when the run's wall-time budget (250 s) was spent" in fl
