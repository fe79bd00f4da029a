"""Perception benchmark: camera -> HandGesture and camera -> BodyPose latency through ROS.

Starts the real camera, hands (num_hands=2) and pose (lite) nodes as processes (Fast DDS profile from
config/fastdds.xml), the camera replaying real 640x480 frames at 30 Hz, and measures in this process:
latency = arrival time - image stamp (the camera stamps at capture), sustained output rate, the
per-stage times the nodes report on /diagnostics, and the RSS of the node processes over the run
(median per node: hands_rss_mib, pose_rss_mib; whether torch's library is mapped into them).

``--memory`` adds the start-up section: import time of ``hrc_fl.nodes.hands`` / ``hrc_fl.nodes.pose``
and the time to import + load + run their classifier, each the median of 5 fresh interpreters.

    .venv/bin/python bench/perception.py --quick             # about 45 s
    .venv/bin/python bench/perception.py --quick --memory    # about 75 s
    .venv/bin/python bench/perception.py                     # 5 minutes of measurement

To measure another version of the package (e.g. "before"), put a copy first on the path: copy
``hrc_fl/`` to ``/tmp/rev/hrc_fl`` with the older files in it, link ``/tmp/rev/config`` to this
checkout's ``config/``, then ``PYTHONPATH=/tmp/rev HRC_FL_CACHE=$PWD/.cache/hrc_fl .venv/bin/python
bench/perception.py --quick --memory`` (node processes and the start-up interpreters inherit it).

Last line: one JSON object (gesture_p50_ms, gesture_p95_ms, pose_p50_ms, pose_p95_ms, fps, rss_growth_pct,
hands_rss_mib, pose_rss_mib, ...; with --memory also hands_import_s, hands_startup_s, pose_import_s, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _frames(folder: Path) -> None:
    """Real photos with people and hands, fitted into 640x480."""
    import cv2

    from hrc_fl.data.datasets import OPEN_PALM_PHOTOS, photo_path
    from hrc_fl.perception.camera_sources import fit_frame

    for i, name in enumerate(("messi5.jpg", *OPEN_PALM_PHOTOS)):
        frame = fit_frame(cv2.imread(str(photo_path(name))), 640, 480)
        cv2.imwrite(str(folder / f"{i:02d}.png"), frame)


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


def _torch_mapped(proc) -> bool | None:
    """True when torch's shared library is mapped into the process (None: cannot tell)."""
    import psutil

    try:
        return any("libtorch" in m.path for m in proc.memory_maps(grouped=True))
    except (psutil.Error, OSError):  # access denied / process gone: unknown, not a failure of the bench
        return None


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 s of measurement instead of 300 s")
    parser.add_argument("--seconds", type=float, default=None, help="measurement duration override")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera rate")
    parser.add_argument("--memory", action="store_true",
                        help="also measure module import and classifier start-up times (5 fresh interpreters)")
    parser.add_argument("--startup-runs", type=int, default=5, help="fresh interpreters per node for --memory")
    args = parser.parse_args()
    startup = _startup_times(args.startup_runs) if args.memory else {}
    duration_s = args.seconds or (30.0 if args.quick else 300.0)
    warmup_s = 5.0

    os.environ.setdefault("ROS_DOMAIN_ID", str(90 + os.getpid() % 9))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import psutil
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from hrc_fl_msgs.msg import BodyPoseArray, HandGesture
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hrc_fl.graph import NodeSpec
    from hrc_fl.launcher import Launcher, node_environment
    from hrc_fl.nodes.common import RESULT_QOS

    env = node_environment()
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = env.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    tmp = Path(tempfile.mkdtemp(prefix="hrc_fl_bench_perception_"))
    _frames(tmp)
    specs = [
        NodeSpec("camera_node", "camera", "bench", ("camera.yaml",),
                 {"source": str(tmp), "rate_hz": args.rate_hz, "width_px": 640, "height_px": 480}),
        NodeSpec("hands_node", "hands", "bench", ("hands.yaml",), {"num_hands": 2}),
        NodeSpec("pose_node", "pose", "bench", ("pose.yaml",), {"model": "lite"}),
    ]
    launcher = Launcher(specs, log_dir=tmp / "logs", stop_timeout_s=8.0)
    rclpy.init()
    node = Node("perception_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    gesture_lat: list[float] = []
    pose_lat: list[float] = []
    gesture_stamps: set[int] = set()
    pose_count = [0]
    stages: dict[str, dict[str, list[float]]] = {"hands": {}, "pose": {}}
    measuring = [False]

    def lat_ms(stamp) -> float:
        return (time.time() - (stamp.sec + stamp.nanosec * 1e-9)) * 1e3

    def on_gesture(msg: HandGesture) -> None:
        if measuring[0]:
            key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if key not in gesture_stamps:  # one latency per frame, not per hand
                gesture_stamps.add(key)
                gesture_lat.append(lat_ms(msg.header.stamp))

    def on_pose(msg: BodyPoseArray) -> None:
        if measuring[0]:
            pose_lat.append(lat_ms(msg.header.stamp))
            pose_count[0] += 1

    def on_diag(msg: DiagnosticArray) -> None:
        if not measuring[0]:
            return
        for status in msg.status:
            for which in ("hands", "pose"):
                if status.name.startswith(f"/bench/{which}:"):
                    for kv in status.values:
                        if kv.key.endswith("_ms") or kv.key in ("fps", "dropped_frames"):
                            stages[which].setdefault(kv.key, []).append(float(kv.value))

    node.create_subscription(HandGesture, "/bench/hands/gesture", on_gesture, RESULT_QOS)
    node.create_subscription(BodyPoseArray, "/bench/humans/bodies/tracked", on_pose, RESULT_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    rss: dict[str, list[float]] = {s.name: [] for s in specs}
    torch_mapped: dict[str, bool | None] = {}
    try:
        launcher.start()
        procs = {rn.spec.name: psutil.Process(rn.process.pid) for rn in launcher.nodes}
        deadline = time.monotonic() + 60.0
        while node.count_publishers("/bench/humans/bodies/tracked") < 1 or pose_count[0] == 0:
            measuring[0] = node.count_publishers("/bench/humans/bodies/tracked") >= 1
            executor.spin_once(timeout_sec=0.1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"pose node produced nothing within 60 s; logs in {tmp / 'logs'}")
        warm_end = time.monotonic() + warmup_s
        while time.monotonic() < warm_end:
            executor.spin_once(timeout_sec=0.05)
        gesture_lat.clear()
        pose_lat.clear()
        gesture_stamps.clear()
        pose_count[0] = 0
        for v in stages.values():
            v.clear()
        measuring[0] = True
        t_start = time.monotonic()
        next_sample = t_start
        while (now := time.monotonic()) < t_start + duration_s:
            if now >= next_sample:
                for name, proc in procs.items():
                    rss[name].append(proc.memory_info().rss / 2**20)
                next_sample += 1.0
            executor.spin_once(timeout_sec=0.02)
        elapsed_s = time.monotonic() - t_start
        measuring[0] = False
        torch_mapped = {name: _torch_mapped(proc) for name, proc in procs.items()}
    finally:
        launcher.stop()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()

    pose_fps = pose_count[0] / elapsed_s
    gesture_fps = len(gesture_stamps) / elapsed_s
    fps = min(pose_fps, gesture_fps)

    def growth(series: list[float]) -> float:
        if len(series) < 6:
            return float("nan")
        k = max(3, len(series) // 10)
        first, last = statistics.mean(series[:k]), statistics.mean(series[-k:])
        return (last - first) / first * 100.0

    total_rss = [sum(vals) for vals in zip(*rss.values(), strict=False)]
    rows = [("camera -> HandGesture", gesture_lat), ("camera -> BodyPoseArray", pose_lat)]
    print(f"perception benchmark: {elapsed_s:.0f} s at {args.rate_hz:.0f} Hz camera, 640x480, hands(2) + pose lite")
    print("NOTE: shared 2-core machine; other jobs running at the same time make these figures pessimistic.")
    print(f"{'path':26s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for label, values in rows:
        print(f"{label:26s} {len(values):6d} {_pct(values, 50):8.1f} {_pct(values, 95):8.1f} "
              f"{max(values) if values else float('nan'):8.1f}")
    print(f"sustained: pose {pose_fps:.1f} fps, gesture frames {gesture_fps:.1f} fps (camera {args.rate_hz:.0f})")
    print("per-stage medians from the nodes' /diagnostics (wait = stamp -> processing start):")
    for which, values in stages.items():
        parts = [f"{k}={statistics.median(v):.1f}" for k, v in sorted(values.items()) if v]
        print(f"  {which:6s} " + " ".join(parts))
    print(f"{'RSS (1 Hz samples)':18s} {'median MiB':>10s} {'min-max MiB':>15s} {'growth':>8s}  torch mapped")
    for name, series in rss.items():
        if series:
            print(f"{name:18s} {statistics.median(series):10.1f} {_spread(series):>15s} "
                  f"{growth(series):+7.1f}%  {torch_mapped.get(name)}")
    if startup:
        print(f"start-up, {args.startup_runs} fresh interpreters each (median, min-max s; PYTHONPATH="
              f"{os.environ.get('PYTHONPATH', '')!r}):")
        print(f"{'node':6s} {'import module':>14s} {'spread':>12s} {'+ classifier':>13s} {'spread':>12s}  torch")
        for name, runs in startup.items():
            imp, start = [r["import_s"] for r in runs], [r["startup_s"] for r in runs]
            print(f"{name:6s} {statistics.median(imp):14.2f} {_spread(imp):>12s} {statistics.median(start):13.2f} "
                  f"{_spread(start):>12s}  {any(r['torch'] for r in runs)}")
    result = {
        "gesture_p50_ms": round(_pct(gesture_lat, 50), 2), "gesture_p95_ms": round(_pct(gesture_lat, 95), 2),
        "pose_p50_ms": round(_pct(pose_lat, 50), 2), "pose_p95_ms": round(_pct(pose_lat, 95), 2),
        "fps": round(fps, 2), "pose_fps": round(pose_fps, 2), "gesture_fps": round(gesture_fps, 2),
        "rss_growth_pct": round(growth(total_rss), 2), "rss_mib_end": round(total_rss[-1], 1) if total_rss else None,
        "duration_s": round(elapsed_s, 1), "camera_rate_hz": args.rate_hz,
        "stage_ms": {w: {k: round(statistics.median(v), 2) for k, v in s.items() if v} for w, s in stages.items()},
    }
    for name in ("hands", "pose", "camera"):
        series = rss.get(name, [])
        result[f"{name}_rss_mib"] = round(statistics.median(series), 1) if series else None
        result[f"{name}_rss_spread_mib"] = [round(min(series), 1), round(max(series), 1)] if series else None
        result[f"{name}_torch_mapped"] = torch_mapped.get(name)
    for name, runs in startup.items():
        for key in ("import_s", "startup_s"):
            values = [r[key] for r in runs]
            result[f"{name}_{key}"] = round(statistics.median(values), 3)
            result[f"{name}_{key.removesuffix('_s')}_spread_s"] = [round(min(values), 3), round(max(values), 3)]
        result[f"{name}_startup_imports_torch"] = any(r["torch"] for r in runs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
