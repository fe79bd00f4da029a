"""Benchmark of the plant demo: wall time, peak memory and CPU share per node, and per workstation the
safety figures of the demo summary (false stops against the scenario's ground truth, stops while the
worker is farther than 2 m, stale-input stops, time at full speed, camera→safety latency per frame with
the separation it adds at 1.6 m/s, ISO 13855 walking speed).

    .venv/bin/python bench/demo.py            # 3 workstations, the default scenario length
    .venv/bin/python bench/demo.py --quick    # 1 workstation, short scenario (< 1 min)
    .venv/bin/python bench/demo.py --length-s 60 --rounds 1   # 3 workstations, about 2 minutes

Prints a table, then as its LAST line one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HUMAN_SPEED_MPS = 1.6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--length-s", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="FL rounds (default: the demo's)")
    parser.add_argument("--extra-nodes", default="", help="as `hrc-fl demo --extra-nodes`")
    args = parser.parse_args()

    from hrc_fl.demo.options import DemoOptions
    from hrc_fl.demo.record import rounds_completed
    from hrc_fl.demo.report import write_report
    from hrc_fl.demo.run import run_demo

    extra = {"extra_nodes": tuple(e for e in args.extra_nodes.split(",") if e)}
    if args.length_s:
        extra["length_s"] = args.length_s
    if args.rounds:
        extra["rounds"] = args.rounds
    options = (DemoOptions.quick(**{"length_s": 15.0, "record_bag": False, **extra}) if args.quick
               else DemoOptions(**extra))
    run = run_demo(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    report = write_report(run)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    usage = list(run.usage.values()) + ([run.driver_usage] if run.driver_usage else [])
    print(f"{'process':<34} {'CPU s':>7} {'CPU share':>9} {'peak RSS MiB':>13} {'peak PSS MiB':>13}")
    for u in sorted(usage, key=lambda u: u.label):
        print(f"{u.label:<34} {u.cpu_s:7.1f} {u.cpu_s / run.wall_s:9.0%} {u.peak_rss_bytes / 2**20:13.0f} "
              f"{u.peak_pss_bytes / 2**20:13.0f}")
    print(f"whole demo ({len(run.usage)} node processes + driver, camera {options.image_rate_hz:g} Hz): peak "
          f"PSS {run.peak_pss_bytes_total / 2**20:.0f} MiB, peak RSS sum {run.peak_rss_bytes_total / 2**20:.0f} MiB")
    # Safety per workstation (hrc_fl.demo.report.safety_metrics: ground truth = the scripted worker distance)
    print(f"\n{'workstation':<12} {'false stops':>11} {'far stops':>9} {'stale stops':>11} {'full speed':>10} "
          f"{'cam->safety p50 ms':>18} {'p95 ms':>8} {'frames':>7}")
    per_ws = {}
    for ws, w in sorted(summary["workstations"].items()):
        if "false_stops" not in w:
            continue
        per_ws[ws] = {k: w[k] for k in ("false_stops", "false_stop_rate", "far_stops", "stale_stops",
                                        "full_speed_fraction", "camera_to_safety_latency_p50_s",
                                        "camera_to_safety_latency_p95_s", "frames_decided")}
        print(f"{ws:<12} {w['false_stops']:>11} {w['far_stops']:>9} {w['stale_stops']:>11} "
              f"{100 * w['full_speed_fraction']:>9.1f}% {1000 * w['camera_to_safety_latency_p50_s']:>18.1f} "
              f"{1000 * w['camera_to_safety_latency_p95_s']:>8.1f} {w['frames_decided']:>7}")
    med = statistics.median([w["camera_to_safety_latency_p50_s"] for w in per_ws.values()]) if per_ws else math.nan
    p95 = summary.get("camera_to_safety_latency_p95_s", math.nan)
    false_stop_m = next(iter(summary["workstations"].values()), {}).get("false_stop_distance_m", math.nan)
    print(f"\nwall time {run.wall_s:.1f} s; camera→safety latency (first decision per frame) median of the "
          f"workstations {med * 1000:.1f} ms, worst p95 {p95 * 1000:.1f} ms -> added separation "
          f"{HUMAN_SPEED_MPS * med * 1000:.0f} mm at {HUMAN_SPEED_MPS} m/s; false stop = stop beyond "
          f"{false_stop_m:.2f} m (worker centre); report {report}")

    def finite(x: float) -> float | None:
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    print(json.dumps({
        "workstations": options.workstations, "scenario_length_s": options.length_s,
        "image_rate_hz": options.image_rate_hz,
        "wall_s": round(run.wall_s, 2), "warmup_s": round(run.record.warmup_s, 2),
        # Memory of the whole demo (node processes + this driver), the peak of simultaneous sums:
        # PSS (shared pages split among the processes that map them) is the honest figure; the RSS sum
        # counts every shared library once per process.
        "peak_pss_mib_total": round(run.peak_pss_bytes_total / 2**20, 1),
        "peak_rss_mib_total": round(run.peak_rss_bytes_total / 2**20, 1),
        "peak_rss_mib_sum_of_process_peaks": round(sum(u.peak_rss_bytes for u in usage) / 2**20, 1),
        "node_processes": len(run.usage),
        "cpu_share": {u.label: round(u.cpu_s / run.wall_s, 3) for u in usage},
        "stale_stops": summary.get("stale_stops"), "false_stops": summary.get("false_stops"),
        "far_stops": summary.get("far_stops"), "false_stop_distance_m": finite(false_stop_m),
        "full_speed_fraction": finite(summary.get("full_speed_fraction", math.nan)),
        "full_speed_fraction_min": finite(summary.get("full_speed_fraction_min", math.nan)),
        "camera_to_safety_latency_median_s": finite(med), "camera_to_safety_latency_p95_s": finite(p95),
        "added_separation_m_at_1_6_mps": finite(HUMAN_SPEED_MPS * med),
        "per_workstation": {ws: {k: finite(v) if isinstance(v, float) else v for k, v in w.items()}
                            for ws, w in per_ws.items()},
        "fl_rounds_completed": rounds_completed(run.record.federated),
        "fl_uplink_bytes_per_round": {str(r): b for r, b in sorted(run.fl_uplink_bytes.items())},
    }))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # without tearing down the demo driver's DDS participant (see hrc_fl.demo.run._Supervisor._teardown)
