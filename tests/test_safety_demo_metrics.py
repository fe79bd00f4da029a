"""The demo summary's safety figures come from the scenario's ground truth (the scripted worker distance),
not from what the safety node measured: false stops, stale-input stops, time at full speed and the
camera->safety latency per frame, through write_report's summary.json (what bench/demo.py prints)."""

from __future__ import annotations

import json
import math

import pytest

from hrc_fl.demo.options import DemoOptions, DemoRun
from hrc_fl.demo.record import DemoRecord, SafetySample, WorkstationRecord
from hrc_fl.demo.report import ground_truth_false_stop_distance_m, write_report
from hrc_fl.demo.usage import NodeUsage
from hrc_fl.graph import NodeSpec

ZONES = ("CLEAR", "WARNING", "REDUCED_SPEED", "PROTECTIVE_STOP")


def _state(t: float, zone: int, worker_m: float, *, reason: str = "", scale: float | None = None,
           reset: bool = False, measured_m: float = 2.0, latency_s: float = 0.05) -> SafetySample:
    # measured_m deliberately disagrees with worker_m: the figures must follow the ground truth
    return SafetySample(t_s=t, zone=zone, zone_name=ZONES[zone], speed_scale=(0.0 if zone == 3 else 1.0)
                        if scale is None else scale, min_separation_m=measured_m, protective_separation_m=1.2,
                        perception_latency_s=latency_s, reset_required=reset, reason=reason,
                        worker_distance_m=worker_m, stamp_s=5000.0 + t)


def _summary(tmp_path, states: list[SafetySample]) -> dict:
    ws = WorkstationRecord("ws1", safety=states)
    specs = [NodeSpec(executable=e, name=e.removesuffix("_node"), namespace="ws1") for e in ("safety_node",)]
    run = DemoRun(options=DemoOptions.quick(out_dir=tmp_path), run_dir=tmp_path, specs=specs, wall_s=10.0,
                  usage={"/ws1/safety": NodeUsage("/ws1/safety", cpu_s=1.0, peak_rss_bytes=100 * 2**20, exit_code=0),
                         "/ws1/pose": NodeUsage("/ws1/pose", cpu_s=1.0, peak_rss_bytes=300 * 2**20, exit_code=0)},
                  record=DemoRecord(workstations={"ws1": ws}),
                  peak_rss_bytes_total=350 * 2**20, peak_pss_bytes_total=250 * 2**20)  # simultaneous sums
    write_report(run)
    return json.loads((tmp_path / "summary.json").read_text())


def test_a_stop_injected_at_4_m_counts_as_false_and_the_counts_follow_the_ground_truth(tmp_path):
    # Prepare: one state every 0.1 s. The worker stands 4 m away, walks in to 1 m and back.
    threshold = ground_truth_false_stop_distance_m()
    assert 2.0 < threshold < 4.0   # 4 m is beyond the true protective distance of the demo's UR5e
    states = [_state(0.1 * i, 0, 4.0) for i in range(20)]                                 # 0.0-1.9 s CLEAR
    states.append(_state(2.0, 3, 4.0, reason="restart interlock: waiting for the area to stay clear",
                         measured_m=0.2))                                                  # injected: false
    states.append(_state(2.1, 3, 4.0, reason="bodies: stale (0.41 s > 0.30 s)"))          # false and stale
    states.append(_state(2.2, 3, 4.0, reason="stop command (STOP gesture or ALL_STOP arm signal)",
                         reset=True))                                                      # commanded: not false
    states.append(_state(2.3, 3, 4.0, reason="restart interlock: waiting for reset", reset=True))  # not false
    states.append(_state(2.4, 3, threshold + 0.05, reason="protective stop held: minimum dwell 0.60 s not elapsed",
                         measured_m=0.3))                                                  # just beyond: false
    states.append(_state(2.5, 3, threshold - 0.05, reason="separation 0.300 m < stop distance 0.460 m",
                         measured_m=5.0))                                                  # just inside: not false
    states.append(_state(2.6, 3, 1.0, reason="robot: stale (0.31 s > 0.20 s)"))           # stale, close: not false
    states.append(_state(2.7, 2, 1.0, scale=0.5, reason="separation 1.0 m < S_p at full speed 1.1 m"))
    states += [_state(2.8 + 0.1 * i, 0, 4.0) for i in range(12)]                         # 2.8-3.9 s CLEAR

    # Execute
    summary = _summary(tmp_path, states)
    ws = summary["workstations"]["ws1"]

    # Assert
    assert ws["false_stop_distance_m"] == pytest.approx(threshold)
    assert ws["false_stops"] == 3 and summary["false_stops"] == 3
    beyond = sum(1 for s in states if s.worker_distance_m > threshold)
    assert ws["false_stop_rate"] == pytest.approx(3 / beyond)
    assert ws["stale_stops"] == 2 and summary["stale_stops"] == 2
    assert ws["far_stops"] == 4       # the same stops farther than 2 m, with the one inside the threshold
    # full speed from 0.0 to 2.0 s and from 2.8 s to the last state (3.9 s): 3.1 of 3.9 s
    assert ws["full_speed_fraction"] == pytest.approx(3.1 / 3.9)
    assert summary["full_speed_fraction"] == pytest.approx(3.1 / 3.9)
    assert summary["peak_rss_mib_total"] == pytest.approx(350.0)
    assert summary["peak_pss_mib_total"] == pytest.approx(250.0)


def test_camera_to_safety_latency_is_the_first_decision_on_each_frame(tmp_path):
    # Prepare: 10 frames; each is decided on arrival (latency 0.05 + 0.01 k s) and then by two heartbeats,
    # whose perception latency has grown by the time since the frame (those are not camera->safety latency)
    states = []
    for k in range(10):
        image_s = 5000.0 + 0.1 * k
        first = 0.05 + 0.01 * k
        for extra in (0.0, 0.03, 0.06):
            stamp = image_s + first + extra
            states.append(SafetySample(t_s=stamp - 5000.0, zone=0, zone_name="CLEAR", speed_scale=1.0,
                                       min_separation_m=3.0, protective_separation_m=1.2,
                                       perception_latency_s=first + extra, reset_required=False, reason="",
                                       worker_distance_m=4.0, stamp_s=stamp))

    # Execute
    summary = _summary(tmp_path, states)
    ws = summary["workstations"]["ws1"]

    # Assert
    firsts = sorted(0.05 + 0.01 * k for k in range(10))
    assert ws["frames_decided"] == 10
    assert ws["camera_to_safety_latency_p50_s"] == pytest.approx((firsts[4] + firsts[5]) / 2)
    assert ws["camera_to_safety_latency_p95_s"] == pytest.approx(firsts[8] + 0.55 * (firsts[9] - firsts[8]))
    assert summary["camera_to_safety_latency_p95_s"] == pytest.approx(ws["camera_to_safety_latency_p95_s"])
    assert ws["false_stops"] == 0 and ws["stale_stops"] == 0 and math.isclose(ws["full_speed_fraction"], 1.0)
