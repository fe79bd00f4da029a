"""Intention benchmark: model inference per estimate, model size, IMU -> estimate latency through ROS.

1. Inference (in process, one core: torch.set_num_threads(1)): one estimate as the node computes it
   (IntentionEstimator.estimate on aligned inputs: IMU window 100x6 + hand + pose features, B=1, and
   IMU-only), wall clock and thread CPU clock, median / p95.
2. Size: parameters and float32 bytes of the shared part (``encoders.*``, what federated learning moves)
   and the personal part (``head.*``).
3. ROS: the real intention node as a process (estimate_trigger=imu, imu_decimation=5, Fast DDS profile
   from config/fastdds.xml); this process publishes wearable/imu at 50 Hz; latency = arrival of the
   estimate - publish time of the IMU message whose stamp it carries (same host).

    .venv/bin/python bench/intention.py --quick     # < 1 min
    .venv/bin/python bench/intention.py

Last line: one JSON object with infer_p50_ms, infer_p95_ms, infer_cpu_p50_ms, infer_imu_only_p50_ms,
shared_params, personal_params, shared_bytes, personal_bytes, imu_to_estimate_p50_ms, imu_to_estimate_p95_ms.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))



def _labels() -> list[str]:
    """The deployment's label space (the intention node's default, config/intention.yaml)."""
    from hrc_fl.intention.labels import INTENTION_LABELS

    return list(INTENTION_LABELS)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]


def _model():
    import torch

    from hrc_fl.intention.model import IntentionModel, IntentionModelConfig

    torch.manual_seed(0)
    return IntentionModel(IntentionModelConfig(num_classes=len(_labels()))).eval()


def bench_inference(iterations: int) -> dict[str, float]:
    import torch

    from hrc_fl.intention.alignment import AlignedInputs
    from hrc_fl.intention.estimator import IntentionEstimator
    from hrc_fl.intention.model_store import ModelStore

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(tmp)
        version = store.save(_model(), _labels())
        estimator = IntentionEstimator(_labels())
        estimator.swap(store.load(version, labels=_labels()))
    rng = np.random.default_rng(0)
    full = AlignedInputs(t_s=0.0, imu=rng.normal(0, 1, (100, 6)).astype(np.float32),
                         hands=rng.normal(0, 1, 42).astype(np.float32), pose=rng.normal(0, 1, 26).astype(np.float32))
    imu_only = AlignedInputs(t_s=0.0, imu=full.imu, hands=None, pose=None)
    out: dict[str, float] = {}
    for name, inputs in (("", full), ("_imu_only", imu_only)):
        for _ in range(20):
            estimator.estimate(inputs)
        wall, cpu = [], []
        for _ in range(iterations):
            w0, c0 = time.perf_counter(), time.thread_time()
            estimator.estimate(inputs)
            cpu.append((time.thread_time() - c0) * 1e3)
            wall.append((time.perf_counter() - w0) * 1e3)
        out[f"infer{name}_p50_ms"] = _pct(wall, 50)
        out[f"infer{name}_p95_ms"] = _pct(wall, 95)
        out[f"infer{name}_cpu_p50_ms"] = _pct(cpu, 50)
        out[f"infer{name}_cpu_p95_ms"] = _pct(cpu, 95)
    return out


def model_size() -> dict[str, int]:
    from hrc_fl.intention.model import parameter_counts, personal_state_dict, shared_state_dict, state_bytes

    model = _model()
    counts = parameter_counts(model)
    return {"shared_params": counts["shared"], "personal_params": counts["personal"],
            "shared_bytes": state_bytes(shared_state_dict(model)),
            "personal_bytes": state_bytes(personal_state_dict(model))}


def bench_ros(duration_s: float) -> dict[str, float]:
    import rclpy
    from hrc_fl_msgs.msg import IntentionEstimate
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Imu

    from hrc_fl.graph import NodeSpec
    from hrc_fl.intention.model_store import ModelStore
    from hrc_fl.launcher import Launcher
    from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, s_to_stamp, stamp_to_s

    tmp = tempfile.TemporaryDirectory()
    ModelStore(tmp.name).save(_model(), _labels(), version="bench")
    spec = NodeSpec(executable="intention_node", name="intention", namespace="bench",
                    param_files=("intention.yaml",),
                    parameters={"model_store_dir": tmp.name, "seed_store_dir": "none", "estimate_trigger": "imu",
                                "imu_decimation": 5})
    launcher = Launcher([spec], stop_timeout_s=5.0)
    launcher.start()
    rclpy.init()
    node = rclpy.create_node("intention_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    sent: dict[float, float] = {}
    latencies: list[float] = []

    def on_estimate(msg: IntentionEstimate) -> None:
        t_pub = sent.get(round(stamp_to_s(msg.header.stamp), 6))
        if t_pub is not None:
            latencies.append((time.perf_counter() - t_pub) * 1e3)

    node.create_subscription(IntentionEstimate, "/bench/intention/estimate", on_estimate, RESULT_QOS)
    pub = node.create_publisher(Imu, "/bench/wearable/imu", QoSProfile(depth=50, reliability=SENSOR_QOS.reliability))
    try:
        deadline = time.monotonic() + 30.0
        while (pub.get_subscription_count() < 1 or node.count_publishers("/bench/intention/estimate") < 1) \
                and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        t0 = time.time()
        k = 0
        next_s = time.perf_counter()
        end = next_s + duration_s
        while time.perf_counter() < end:
            now = time.perf_counter()
            if now >= next_s:
                msg = Imu()
                stamp = t0 + k * 0.02
                msg.header.stamp = s_to_stamp(stamp)
                msg.header.frame_id = "wrist_imu"
                msg.linear_acceleration.x, msg.linear_acceleration.z = math.sin(k * 0.1), 9.8
                sent[round(stamp, 6)] = time.perf_counter()
                pub.publish(msg)
                k += 1
                next_s += 0.02
            executor.spin_once(timeout_sec=max(0.0, min(0.005, next_s - time.perf_counter())))
        drain = time.monotonic() + 1.0
        while time.monotonic() < drain:
            executor.spin_once(timeout_sec=0.02)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        launcher.stop()
        tmp.cleanup()
    warm = latencies[5:] if len(latencies) > 10 else latencies
    return {"imu_to_estimate_p50_ms": _pct(warm, 50), "imu_to_estimate_p95_ms": _pct(warm, 95),
            "imu_to_estimate_max_ms": max(warm) if warm else float("nan"), "estimates": len(latencies),
            "imu_sent": len(sent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 1 min)")
    args = parser.parse_args()
    iterations, duration_s = (300, 8.0) if args.quick else (2000, 30.0)
    inference = bench_inference(iterations)
    size = model_size()
    ros = bench_ros(duration_s)
    print(f"intention benchmark ({'quick' if args.quick else 'full'}; one torch thread)")
    print(f"{'measure':44s} {'median':>10s} {'p95':>10s}")
    print(f"{'inference, IMU+hands+pose, wall [ms]':44s} {inference['infer_p50_ms']:10.3f} "
          f"{inference['infer_p95_ms']:10.3f}")
    print(f"{'inference, IMU+hands+pose, thread CPU [ms]':44s} {inference['infer_cpu_p50_ms']:10.3f} "
          f"{inference['infer_cpu_p95_ms']:10.3f}")
    print(f"{'inference, IMU only, wall [ms]':44s} {inference['infer_imu_only_p50_ms']:10.3f} "
          f"{inference['infer_imu_only_p95_ms']:10.3f}")
    print(f"{'IMU -> estimate through ROS [ms]':44s} {ros['imu_to_estimate_p50_ms']:10.3f} "
          f"{ros['imu_to_estimate_p95_ms']:10.3f}   (max {ros['imu_to_estimate_max_ms']:.2f}, "
          f"{ros['estimates']} estimates from {ros['imu_sent']} IMU messages)")
    print(f"shared part:   {size['shared_params']} parameters, {size['shared_bytes']} bytes (float32, with buffers)")
    print(f"personal part: {size['personal_params']} parameters, {size['personal_bytes']} bytes")
    figures = {**{k: round(v, 4) for k, v in inference.items()}, **size,
               **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in ros.items()}}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
