"""Perception benchmark: camera -> BodyPose, camera -> HandGesture and camera -> SafetyZoneState
through ROS, with the safety node in the loop.

One worker in view (a real photo, 640x480, fresh sensor-like noise on every frame), the camera at 30 Hz,
hands (num_hands=2) and pose (lite), the safety node with its packaged limits and a simulated robot.
By default the workstation runs as ONE composed process (``workstation_node``, as ``hrc-fl launch
workstation`` starts it: the camera hands frames in memory to one pipeline that decodes once and runs
pose and hands in two threads); ``--mode separate`` runs one process per node (Fast DDS profile from
config/fastdds.xml), ``--mode both`` runs both, one after the other, and reports their ratio.

Measured in this process: latency = arrival time - camera stamp (the camera stamps at capture; a safety
state's source frame is its stamp minus its ``perception_latency_s``, counted once per source frame:
the state that first reacted to it), sustained output rate, the growth of the frame age over the run,
the per-stage times the nodes report on /diagnostics (where the time goes), and memory per process
(RSS and PSS, 1 Hz samples).

``--memory`` adds the start-up section: import time of ``hrc_fl.nodes.hands`` / ``hrc_fl.nodes.pose``
and the time to import + load + run their classifier, each the median of 5 fresh interpreters.

    .venv/bin/python bench/perception.py --quick             # about 50 s
    .venv/bin/python bench/perception.py --quick --mode both # about 100 s
    .venv/bin/python bench/perception.py                     # 5 minutes of measurement
    .venv/bin/python bench/perception.py --quick --rate-hz 10 --param pose:num_poses=1 \
        --param hands:search_interval_frames=3                # the demo's perception settings

To measure another version of the package (e.g. "before"), put a copy first on the path: copy
``hrc_fl/`` to ``/tmp/rev/hrc_fl`` with the older files in it, link ``/tmp/rev/config`` to this
checkout's ``config/``, then ``PYTHONPATH=/tmp/rev HRC_FL_CACHE=$PWD/.cache/hrc_fl .venv/bin/python
bench/perception.py --quick --mode separate`` (node processes and the start-up interpreters inherit it).

Last line: one JSON object (safety_p50_ms, safety_p95_ms, gesture_p50_ms, gesture_p95_ms, pose_p50_ms,
pose_p95_ms, fps, frame_age_growth_ms, cpu_ms_per_frame, rss_mib_end, pss_mib_end, ...; with --mode both the separate
graph's figures as separate_* and the ratios; with --memory also hands_import_s, hands_startup_s, ...;
``parameters``: the --param values). The hands stage also reports ``hands_tracked`` (wrist slots following
a hand on its last frame, docs/perception.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


#: Distinct noisy copies of the worker photo; the camera plays them in turn, one per frame.
NOISY_FRAMES = 8


def _frames(folder: Path) -> None:
    """A real photo of one person fitted into 640x480, with fresh noise (sigma 3 grey levels) per copy,
    so that no two consecutive frames are identical (as from a real sensor)."""
    import cv2
    import numpy as np

    from hrc_fl.data.datasets import photo_path
    from hrc_fl.perception.camera_sources import fit_frame

    frame = fit_frame(cv2.imread(str(photo_path("messi5.jpg"))), 640, 480).astype(np.float32)
    rng = np.random.default_rng(0)
    for i in range(NOISY_FRAMES):
        noisy = np.clip(frame + rng.normal(0.0, 3.0, frame.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:02d}.png"), noisy)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]


# Runs in a fresh interpreter (cwd outside the repository, so PYTHONPATH decides which tree): module
# import, then classifier load + one prediction (what the node's constructor adds on top of MediaPipe),
# and whether torch got imported.
_STARTUP_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import hrc_fl.nodes.{node}
t1 = time.perf_counter()
import numpy as np
from hrc_fl.perception.{module} import {cls}
clf = {cls}.load()
clf.predict_proba(np.random.default_rng(0).uniform(0.3, 0.7, ({points}, 2)), {arg})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "startup_s": t2 - t0, "torch": "torch" in sys.modules}}))
"""
_STARTUP_CASES = {
    "hands": {"node": "hands", "module": "gesture_classifier", "cls": "GestureClassifier", "points": 21,
              "arg": "'Right'"},
    "pose": {"node": "pose", "module": "arm_signal_classifier", "cls": "ArmSignalClassifier", "points": 33,
             "arg": "np.ones(33)"},
}


def _startup_times(runs: int) -> dict[str, list[dict]]:
    """Per node: ``runs`` fresh-interpreter measurements (interleaved, so load changes hit both alike)."""
    out: dict[str, list[dict]] = {name: [] for name in _STARTUP_CASES}
    for _ in range(runs):
        for name, case in _STARTUP_CASES.items():
            res = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT.format(**case)], cwd=tempfile.gettempdir(),
                                 capture_output=True, text=True, check=True, timeout=120)
            out[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


NODES = ("camera_node", "hands_node", "pose_node", "safety_node", "robot_sim_node")
NS = "bench"


def _specs(mode: str, frames: Path, rate_hz: float, overrides: dict[str, dict] | None = None) -> list:
    """The benchmark's workstation: one composed process, or one process per node; ``overrides``:
    node name -> parameters set on top of the benchmark's (``--param``)."""
    from hrc_fl.graph import COMPOSED_EXECUTABLE, COMPOSED_NODE_NAMES, NodeSpec

    params = {"camera": {"source": str(frames), "rate_hz": rate_hz, "width_px": 640, "height_px": 480,
                         "still_hold_s": 1.0 / rate_hz},
              "hands": {"num_hands": 2}, "pose": {"model": "lite"}}
    for node, values in (overrides or {}).items():
        params.setdefault(node, {}).update(values)
    names = [COMPOSED_NODE_NAMES[e] for e in NODES]
    if mode == "composed":
        return [NodeSpec(COMPOSED_EXECUTABLE, "workstation", NS, tuple(f"{n}.yaml" for n in names),
                         composed=NODES, node_parameters=params)]
    return [NodeSpec(e, n, NS, (f"{n}.yaml",), params.get(n, {})) for e, n in zip(NODES, names, strict=True)]


def _growth(series: list[float]) -> float:
    """Change of a series' mean from its first to its last tenth, in its own unit."""
    if len(series) < 20:
        return float("nan")
    k = max(3, len(series) // 10)
    return statistics.mean(series[-k:]) - statistics.mean(series[:k])


def _measure(mode: str, frames: Path, log_dir: Path, rate_hz: float, duration_s: float, warmup_s: float,
             overrides: dict[str, dict] | None = None) -> dict:
    """Start the workstation in ``mode``, measure for ``duration_s`` after warm-up, stop it."""
    import psutil
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from hrc_fl_msgs.msg import BodyPoseArray, HandGesture, SafetyZoneState
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hrc_fl.demo.usage import pss_bytes
    from hrc_fl.launcher import Launcher
    from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, stamp_to_s

    specs = _specs(mode, frames, rate_hz, overrides)
    launcher = Launcher(specs, log_dir=log_dir / mode, stop_timeout_s=8.0)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("perception_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    lat: dict[str, list[float]] = {"gesture": [], "pose": [], "safety": []}
    seen: dict[str, set[int]] = {k: set() for k in lat}
    stages: dict[str, dict[str, list[float]]] = {"hands": {}, "pose": {}, "safety": {}}
    measuring = [False]

    def record(kind: str, source_s: float) -> None:
        key = round(source_s * 1000)  # one latency per source frame (per hand / per repeated state: once)
        if measuring[0] and key not in seen[kind]:
            seen[kind].add(key)
            lat[kind].append((time.time() - source_s) * 1e3)

    def on_state(msg: SafetyZoneState) -> None:
        if msg.perception_latency_s > 0 and math.isfinite(msg.perception_latency_s):
            record("safety", stamp_to_s(msg.header.stamp) - msg.perception_latency_s)

    def on_diag(msg: DiagnosticArray) -> None:
        if not measuring[0]:
            return
        for status in msg.status:
            for which in stages:
                if status.name.startswith(f"/{NS}/{which}:"):
                    for kv in status.values:
                        if kv.key.endswith("_ms") or kv.key in ("fps", "dropped_frames", "hands_tracked"):
                            try:
                                stages[which].setdefault(kv.key, []).append(float(kv.value))
                            except ValueError:
                                continue

    node.create_subscription(HandGesture, f"/{NS}/hands/gesture",
                             lambda m: record("gesture", stamp_to_s(m.header.stamp)), RESULT_QOS)
    node.create_subscription(BodyPoseArray, f"/{NS}/humans/bodies/tracked",
                             lambda m: record("pose", stamp_to_s(m.header.stamp)), RESULT_QOS)
    node.create_subscription(SafetyZoneState, f"/{NS}/safety/state", on_state, SAFETY_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    memory: dict[str, dict[str, list[float]]] = {s.name: {"rss": [], "pss": []} for s in specs}
    try:
        launcher.start()
        procs = {rn.spec.name: psutil.Process(rn.process.pid) for rn in launcher.nodes}
        deadline = time.monotonic() + 90.0
        measuring[0] = True
        while not lat["safety"]:
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no safety state from a camera frame within 90 s; logs in {log_dir / mode}")
        warm_end = time.monotonic() + warmup_s
        while time.monotonic() < warm_end:
            executor.spin_once(timeout_sec=0.05)
        for kind in lat:
            lat[kind].clear()
            seen[kind].clear()
        for v in stages.values():
            v.clear()
        cpu_start = sum(_cpu_s(proc) for proc in procs.values())
        t_start = time.monotonic()
        next_sample = t_start
        while (now := time.monotonic()) < t_start + duration_s:
            if now >= next_sample:
                for name, proc in procs.items():
                    memory[name]["rss"].append(proc.memory_info().rss / 2**20)
                    memory[name]["pss"].append((pss_bytes(proc.pid) or 0) / 2**20)
                next_sample += 1.0
            executor.spin_once(timeout_sec=0.02)
        elapsed_s = time.monotonic() - t_start
        cpu_s = sum(_cpu_s(proc) for proc in procs.values()) - cpu_start
        measuring[0] = False
    finally:
        launcher.stop()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    fps = {kind: len(seen[kind]) / elapsed_s for kind in lat}
    total = {k: [sum(v) for v in zip(*(m[k] for m in memory.values()), strict=False)] for k in ("rss", "pss")}
    return {"mode": mode, "processes": len(specs), "elapsed_s": elapsed_s, "cpu_s": cpu_s, "lat": lat, "fps": fps,
            "stages": stages, "memory": memory, "total": total}


def _cpu_s(proc) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _cpu_ms_per_frame(m: dict) -> float:
    """CPU time of all node processes per frame that reached the safety node, ms: what a frame costs,
    nearly independent of how loaded the machine is (unlike the latencies)."""
    frames = len(m["lat"]["safety"])
    return m["cpu_s"] * 1e3 / frames if frames else float("nan")


def _summary(m: dict) -> dict:
    lat, fps = m["lat"], m["fps"]
    out = {f"{k}_p{q}_ms": round(_pct(lat[k], q), 2) for k in ("safety", "gesture", "pose") for q in (50, 95)}
    out.update({
        "fps": round(min(fps["pose"], fps["gesture"], fps["safety"]), 2), "pose_fps": round(fps["pose"], 2),
        "gesture_fps": round(fps["gesture"], 2), "safety_fps": round(fps["safety"], 2),
        # camera -> body pose age from the first to the last tenth of the run (ms): > 0 when frames queue
        "frame_age_growth_ms": round(_growth(lat["pose"]), 2), "processes": m["processes"],
        "cpu_ms_per_frame": round(_cpu_ms_per_frame(m), 2), "cpu_cores": round(m["cpu_s"] / m["elapsed_s"], 3),
        "rss_mib_end": round(m["total"]["rss"][-1], 1) if m["total"]["rss"] else None,
        "pss_mib_end": round(m["total"]["pss"][-1], 1) if m["total"]["pss"] else None,
        "duration_s": round(m["elapsed_s"], 1),
        "stage_ms": {w: {k: round(statistics.median(v), 2) for k, v in s.items() if v} for w, s in m["stages"].items()},
    })
    return out


def _print(m: dict, rate_hz: float) -> None:
    lat, fps = m["lat"], m["fps"]
    print(f"\n[{m['mode']}: {m['processes']} process(es)] {m['elapsed_s']:.0f} s at {rate_hz:.0f} Hz camera, "
          "640x480, one worker in view, hands(2) + pose lite + safety + simulated robot")
    print(f"{'path':28s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'fps':>6s}")
    for label, kind in (("camera -> SafetyZoneState", "safety"), ("camera -> HandGesture", "gesture"),
                        ("camera -> BodyPoseArray", "pose")):
        values = lat[kind]
        print(f"{label:28s} {len(values):6d} {_pct(values, 50):8.1f} {_pct(values, 95):8.1f} "
              f"{max(values) if values else float('nan'):8.1f} {fps[kind]:6.1f}")
    print(f"frame age growth over the run (camera -> pose, last tenth - first tenth): {_growth(lat['pose']):+.1f} ms")
    print(f"CPU of the node processes: {m['cpu_s'] / m['elapsed_s']:.2f} cores, {_cpu_ms_per_frame(m):.1f} ms per "
          "frame that reached the safety node")
    print("where the time goes (medians of the nodes' /diagnostics; wait = camera stamp -> detection start):")
    for which, values in m["stages"].items():
        parts = [f"{k}={statistics.median(v):.1f}" for k, v in sorted(values.items()) if v]
        if parts:
            print(f"  {which:7s} " + " ".join(parts))
    print(f"  pose -> safety decision (p50 difference): {_pct(lat['safety'], 50) - _pct(lat['pose'], 50):.1f} ms")
    print(f"{'memory (1 Hz samples)':22s} {'RSS MiB':>9s} {'PSS MiB':>9s} {'RSS growth':>11s}")
    for name, series in m["memory"].items():
        if series["rss"]:
            first = statistics.mean(series["rss"][:3])
            print(f"{name:22s} {statistics.median(series['rss']):9.1f} {statistics.median(series['pss']):9.1f} "
                  f"{(series['rss'][-1] - first) / first * 100:+10.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 s of measurement instead of 300 s")
    parser.add_argument("--seconds", type=float, default=None, help="measurement duration override")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera rate")
    parser.add_argument("--mode", choices=("composed", "separate", "both"), default="composed",
                        help="one composed workstation process (default), one process per node, or both")
    parser.add_argument("--memory", action="store_true",
                        help="also measure module import and classifier start-up times (5 fresh interpreters)")
    parser.add_argument("--startup-runs", type=int, default=5, help="fresh interpreters per node for --memory")
    parser.add_argument("--param", action="append", default=[], metavar="NODE:NAME=VALUE",
                        help="a node parameter on top of the benchmark's (repeatable), e.g. pose:num_poses=1")
    args = parser.parse_args()
    from hrc_fl.nodes.workstation import parse_node_parameter

    overrides: dict[str, dict] = {}
    for text in args.param:
        node, name, value = parse_node_parameter(text)
        overrides.setdefault(node, {})[name] = value
    startup = _startup_times(args.startup_runs) if args.memory else {}
    duration_s = args.seconds or (30.0 if args.quick else 300.0)
    warmup_s = 5.0

    os.environ.setdefault("ROS_DOMAIN_ID", str(90 + os.getpid() % 9))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from hrc_fl.launcher import node_environment

    env = node_environment()
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = env.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    tmp = Path(tempfile.mkdtemp(prefix="hrc_fl_bench_perception_"))
    frames = tmp / "frames"
    frames.mkdir()
    _frames(frames)
    modes = ("composed", "separate") if args.mode == "both" else (args.mode,)
    runs = {mode: _measure(mode, frames, tmp / "logs", args.rate_hz, duration_s, warmup_s, overrides)
            for mode in modes}
    print("NOTE: on a shared machine other jobs running at the same time make these figures pessimistic.")
    for m in runs.values():
        _print(m, args.rate_hz)
    if startup:
        print(f"start-up, {args.startup_runs} fresh interpreters each (median, min-max s; PYTHONPATH="
              f"{os.environ.get('PYTHONPATH', '')!r}):")
        print(f"{'node':6s} {'import module':>14s} {'spread':>12s} {'+ classifier':>13s} {'spread':>12s}  torch")
        for name, results in startup.items():
            imp, start = [r["import_s"] for r in results], [r["startup_s"] for r in results]
            print(f"{name:6s} {statistics.median(imp):14.2f} {_spread(imp):>12s} {statistics.median(start):13.2f} "
                  f"{_spread(start):>12s}  {any(r['torch'] for r in results)}")
    first = runs[modes[0]]
    result = {"mode": modes[0], "camera_rate_hz": args.rate_hz, "parameters": overrides, **_summary(first)}
    for name, series in first["memory"].items():
        result[f"{name}_rss_mib"] = round(statistics.median(series["rss"]), 1) if series["rss"] else None
        result[f"{name}_pss_mib"] = round(statistics.median(series["pss"]), 1) if series["pss"] else None
    if "separate" in runs and first["mode"] != "separate":
        separate = _summary(runs["separate"])
        result.update({f"separate_{k}": v for k, v in separate.items() if k != "stage_ms"})
        for key in ("safety_p95_ms", "gesture_p95_ms", "pose_p95_ms", "pss_mib_end", "cpu_ms_per_frame"):
            if separate.get(key) and result.get(key) is not None:
                result[f"ratio_{key}"] = round(result[key] / separate[key], 3)
    for name, results in startup.items():
        for key in ("import_s", "startup_s"):
            values = [r[key] for r in results]
            result[f"{name}_{key}"] = round(statistics.median(values), 3)
            result[f"{name}_{key.removesuffix('_s')}_spread_s"] = [round(min(values), 3), round(max(values), 3)]
        result[f"{name}_startup_imports_torch"] = any(r["torch"] for r in results)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
