"""Safety benchmark: core compute per cycle and input message -> SafetyZoneState latency through ROS.

1. Core (in process, no ROS), 75 human keypoints x 8 robot capsules (UR5e chain: 6 links + tool + mounting
   capsule), each as wall time (perf_counter) and this thread's CPU time (thread_time: excludes the time the
   scheduler gave to other processes, which on a shared machine dominates the wall-clock spread):
   - distance only: ``min_separation`` (the compiled kernel of hrc_fl/safety/kernels.py and its wrapper);
   - ``SafetyMonitor.step``, changed inputs: a new BodyPoseArray-equivalent AND a new joint state every
     cycle (ingest + watchdog + DH kinematics + distance + S_p + allowed speed + zone machine). This is the
     "core" of the JSON (the worst case per cycle);
   - ``SafetyMonitor.step``, unchanged robot: new keypoints, the same joint state (kinematics cached);
   - ``SafetyMonitor.step``, no new input (the fixed-rate heartbeat: distance cached, S_p and zones only);
   - the node's whole input callback in process (``SafetyNode._on_bodies``: message -> arrays, step,
     SafetyZoneState + speed scale published, diagnostics), CPU time, and its stages timed one by one
     (:data:`NODE_STAGES`: clock, conversion, step, publishing, diagnostics; keys ``node_<stage>_*``).
2. ROS between processes: the real safety node as a process (Fast DDS profile from config/fastdds.xml,
   evaluate_on_input, markers off, the executor config/safety.yaml names), this process publishing
   humans/bodies/tracked at 50 Hz and robot/joint_states at 50 Hz half a period later from a thread, and
   taking the states with rclpy's EventsExecutor; latency = arrival of the first SafetyZoneState computed
   from a body message - that message's stamp (same host clock), matched by ``header.stamp -
   perception_latency_s == body stamp`` (:func:`match_latencies`). Baseline in the same run: an echo
   process that answers each body message with a SafetyZoneState at once (same message types, QoS and
   executor, no safety computation), so ros - echo is what the safety node adds on this machine at this
   load. Then the same pair with every other executor of the node runner (``--no-compare``: not).

    .venv/bin/python bench/safety.py --quick     # about 70 s
    .venv/bin/python bench/safety.py             # longer runs

Last line: one JSON object: core_p50_us / core_p99_us (step with changed inputs, wall) and the other
figures (keys named after the table rows; *_cpu_* = thread CPU time), ros_p50_ms / ros_p99_ms,
echo_p50_ms / echo_p99_ms (shipped executor), ros_<executor>_* / echo_<executor>_* (the others).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
          "wrist_3_joint"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]


def _summary(out: dict[str, float], name: str, wall_us: list[float], cpu_us: list[float] | None) -> None:
    warm = len(wall_us) // 10
    out[f"{name}_p50_us"] = statistics.median(wall_us[warm:])
    out[f"{name}_p99_us"] = _pct(wall_us[warm:], 99)
    if cpu_us is not None:
        out[f"{name}_cpu_p50_us"] = statistics.median(cpu_us[warm:])
        out[f"{name}_cpu_p99_us"] = _pct(cpu_us[warm:], 99)


def bench_core(iterations: int) -> dict[str, float]:
    from hrc_fl.paths import config_file
    from hrc_fl.safety.config import load_robot_model
    from hrc_fl.safety.geometry import min_separation
    from hrc_fl.safety.monitor import (
        BodiesInput,
        BodyObservation,
        JointInput,
        SafetyConfig,
        SafetyInputs,
        SafetyMonitor,
    )
    from hrc_fl.safety.zones import ZoneConfig

    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    rng = np.random.default_rng(0)
    q0 = np.array([0.0, -1.2, 1.0, -1.4, -1.57, 0.0])
    capsules = robot.chain.capsules(q0)
    assert capsules.starts.shape[0] == 8, capsules.starts.shape
    points = rng.uniform([0.3, -0.8, 0.0], [1.5, 0.8, 1.8], (75, 3))
    clouds = [points + rng.normal(0.0, 0.005, points.shape) for _ in range(64)]  # made before timing

    out: dict[str, float] = {}
    wall, cpu = [], []
    for i in range(iterations):
        pts = clouds[i % len(clouds)]
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        min_separation(pts, capsules)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((t1 - t0) / 1e3)
        cpu.append((c1 - c0) / 1e3)
    _summary(out, "distance", wall, cpu)

    names = robot.chain.joint_names
    for name, robot_moves, new_input in (("core", True, True), ("step_same_robot", False, True),
                                         ("step_no_input", False, False)):
        mon = SafetyMonitor(SafetyConfig(robot=robot, zones=ZoneConfig(restart_interlock="auto",
                                                                       auto_reset_clear_s=0.0, min_dwell_s=0.0)))
        wall, cpu = [], []
        t = 1000.0
        for i in range(iterations):
            t += 0.02 if new_input or i < 2 else 1e-4  # heartbeat cycles stay within the inputs' max age
            q = tuple(float(v) for v in q0 + (0.001 * math.sin(i * 0.01) if robot_moves else 0.0))
            if new_input or i < 2:
                inputs = SafetyInputs(
                    bodies=[BodiesInput(t - 0.03, (BodyObservation("b1", clouds[i % len(clouds)], 0.02,
                                                                   "base_link"),))],
                    robot=[JointInput(t - 0.005, names, q)])
            else:
                inputs = SafetyInputs()
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            mon.step(t, inputs)
            t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
            wall.append((t1 - t0) / 1e3)
            cpu.append((c1 - c0) / 1e3)
        _summary(out, name, wall, cpu)

    # Reference: one tiny numpy operation, to scale the figures to another machine (the core is a few dozen
    # such operations plus Python; on an idle desktop this is about 0.5-1 us).
    x, y, z = np.ones((75, 16)), np.ones((75, 16)), np.empty((75, 16))
    ref_ns = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        np.add(x, y, out=z)
        ref_ns.append(time.perf_counter_ns() - t0)
    out["numpy_op_p50_us"] = statistics.median(ref_ns[len(ref_ns) // 10:]) / 1e3
    return out


def _body_message(node, x_m: float = 1.2):
    from hrc_fl_msgs.msg import BodyPose, BodyPoseArray

    body = BodyPose(body_id="b1", workstation_frame="base_link", position_uncertainty_m=0.02)
    body.workstation_points = [v for i in range(75) for v in (x_m, 0.0, 0.1 + 1.7 * i / 74)]
    msg = BodyPoseArray(bodies=[body])
    msg.header.frame_id = "base_link"
    return msg


def bench_node_callback(iterations: int) -> dict[str, float]:
    """The node's body-message callback in process (no subscriber on its outputs): CPU and wall time."""
    import rclpy
    from sensor_msgs.msg import JointState

    from hrc_fl.nodes.safety import SafetyNode
    from hrc_fl.paths import config_file
    from hrc_fl.safety.zones import Zone

    rclpy.init(args=["--ros-args", "--params-file", str(config_file("safety.yaml")), "-p",
                     "markers_rate_hz:=0.0", "-p", "restart_interlock:=auto", "-p", "auto_reset_clear_s:=0.0"])
    try:
        node = SafetyNode()
        msg = _body_message(node)
        joints = JointState(name=JOINTS, position=[0.0, -1.57, 0.0, -1.57, 0.0, 0.0])
        # Out of the start-up stop first: stopped for a fault, the node leaves inputs to its heartbeat (a
        # timer or guard condition the executor runs; nothing spins here), so decide by hand until it has left.
        for _ in range(100):
            stamp = node.get_clock().now().to_msg()
            joints.header.stamp = msg.header.stamp = stamp
            node._on_joints(joints)
            node._on_bodies(msg)
            if node._evaluate().zone != Zone.PROTECTIVE_STOP:
                break
        else:
            raise RuntimeError("the safety node did not leave its start-up stop")
        wall, cpu = [], []
        for _ in range(iterations):
            stamp = node.get_clock().now().to_msg()
            joints.header.stamp = stamp
            node._on_joints(joints)
            msg.header.stamp = stamp
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            node._on_bodies(msg)
            t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
            wall.append((t1 - t0) / 1e3)
            cpu.append((c1 - c0) / 1e3)
        stages = _node_stages(node, msg, joints, iterations)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    out: dict[str, float] = {}
    _summary(out, "node_callback", wall, cpu)
    for name, times in stages.items():
        _summary(out, f"node_{name}", times, None)
    return out


#: The stages of the node's body callback, in order (bench rows "node stage: ...", keys node_<stage>_*).
NODE_STAGES = {"clock": "read the node clock", "convert": "BodyPoseArray -> BodiesInput",
               "step": "SafetyMonitor.step", "publish": "state + speed scale published",
               "report": "diagnostics values, fault log"}


def _node_stages(node, msg, joints, iterations: int) -> dict[str, list[float]]:
    """The node's body callback taken apart: each stage the callback runs (the node's own methods, in
    its order), timed on its own (wall, us) with the same message and a new joint state each cycle."""
    from hrc_fl.nodes.safety import bodies_input
    from hrc_fl.safety.monitor import SafetyInputs

    times: dict[str, list[float]] = {name: [] for name in NODE_STAGES}
    clock = time.perf_counter_ns
    for _ in range(iterations):
        stamp = node.get_clock().now().to_msg()
        joints.header.stamp = msg.header.stamp = stamp
        node._on_joints(joints)
        t0 = clock()
        now_s = node._now_s()
        t1 = clock()
        inputs = SafetyInputs(bodies=[bodies_input(msg)])
        t2 = clock()
        decision = node._monitor.step(now_s, inputs)
        t3 = clock()
        node._publish_state(decision)
        t4 = clock()
        node._report(decision)
        t5 = clock()
        for name, t_a, t_b in (("clock", t0, t1), ("convert", t1, t2), ("step", t2, t3), ("publish", t3, t4),
                               ("report", t4, t5)):
            times[name].append((t_b - t_a) / 1e3)
    return times


def run_echo(namespace: str, executor: str) -> None:
    """Baseline process: answer each body message with a SafetyZoneState (no safety computation), spun by the
    node runner with ``executor`` (its ``executor`` parameter, as the safety node's)."""
    import rclpy
    from hrc_fl_msgs.msg import BodyPoseArray, SafetyZoneState

    from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, run_node, stamp_to_s
    from hrc_fl.nodes.composition import EXECUTOR_PARAMETER

    def make():
        node = rclpy.create_node("echo", namespace=namespace)
        node.declare_parameter(EXECUTOR_PARAMETER, executor)
        pub = node.create_publisher(SafetyZoneState, "safety/state", SAFETY_QOS)

        def on_bodies(msg: BodyPoseArray) -> None:
            out = SafetyZoneState()
            out.header.stamp = node.get_clock().now().to_msg()
            out.perception_latency_s = stamp_to_s(out.header.stamp) - stamp_to_s(msg.header.stamp)
            pub.publish(out)

        node.create_subscription(BodyPoseArray, "humans/bodies/tracked", on_bodies, RESULT_QOS)
        return node

    run_node(make)


def shipped_executor() -> str:
    """The executor config/safety.yaml gives the safety node (the node's default where it sets none)."""
    import yaml

    from hrc_fl.nodes.safety import PARAMETERS
    from hrc_fl.paths import config_file

    params = yaml.safe_load(config_file("safety.yaml").read_text())["/**/safety"]["ros__parameters"]
    return str(params.get("executor", PARAMETERS["executor"][0]))


def match_latencies(sent: list[float], arrivals: list[tuple[float, float, float]],
                    tolerance_s: float = 1e-5) -> list[tuple[float, float]]:
    """Per sent body stamp (s), the first state that decided on it: (arrival - stamp, perception latency), s.

    A state's body stamp is its ``header.stamp - perception_latency_s``: float seconds near 1.8e9, good to
    about 0.5 us (the node's stamp is rounded to ns, its latency computed in float). It is matched to the
    nearest sent stamp within ``tolerance_s`` (inputs are a period, 20 ms, apart); matching on the stamp
    rounded to 1 us instead missed the body's own decision in 1-2 % of inputs and took the next one
    (the joint state's, half a period later) as its latency: a spurious ~10 ms p99.
    """
    import bisect

    ordered = sorted(sent)
    first: dict[int, tuple[float, float]] = {}
    for arrival, stamp, latency in arrivals:
        key = stamp - latency
        i = bisect.bisect_left(ordered, key)
        near = [j for j in (i - 1, i) if 0 <= j < len(ordered) and abs(ordered[j] - key) <= tolerance_s]
        if near:
            j = min(near, key=lambda k: abs(ordered[k] - key))
            first.setdefault(j, (arrival - ordered[j], latency))
    return [first[j] for j in sorted(first)]


def bench_ros(duration_s: float, rate_hz: float, echo: bool, executor_kind: str,
              prefix: str) -> dict[str, float]:
    """Latency of the safety node (``echo``: the echo process) spun with ``executor_kind``; keys ``prefix_*``."""
    import rclpy
    from hrc_fl_msgs.msg import BodyPoseArray, SafetyZoneState
    from rclpy.experimental import EventsExecutor
    from sensor_msgs.msg import JointState

    from hrc_fl.graph import NodeSpec
    from hrc_fl.launcher import Launcher, node_environment
    from hrc_fl.nodes.common import RESULT_QOS, SAFETY_QOS, stamp_to_s

    ns = f"bench_{prefix}"
    if echo:
        env = {**os.environ, **node_environment()}
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--echo-node", ns,
                                 "--executor", executor_kind], env=env)

        def stop() -> None:
            proc.send_signal(signal.SIGINT)  # run_node's clean shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    else:
        launcher = Launcher([NodeSpec("safety_node", "safety", namespace=ns, param_files=("safety.yaml",),
                                      parameters={"restart_interlock": "auto", "auto_reset_clear_s": 0.0,
                                                  "markers_rate_hz": 0.0, "executor": executor_kind})],
                            stop_timeout_s=5.0)
        launcher.start()
        stop = launcher.stop
    rclpy.init()
    node = rclpy.create_node("safety_bench")
    # The measuring side: the EventsExecutor takes each state ~0.2 ms sooner than the SingleThreadedExecutor
    # and leaves the GIL to the publishing thread while it waits (the same for the echo and the node).
    executor = EventsExecutor()
    executor.add_node(node)
    arrivals: list[tuple[float, float, float]] = []  # (arrival s, state stamp s, perception latency s)

    def on_state(msg: SafetyZoneState) -> None:
        arrivals.append((time.time(), stamp_to_s(msg.header.stamp), float(msg.perception_latency_s)))

    node.create_subscription(SafetyZoneState, f"/{ns}/safety/state", on_state, SAFETY_QOS)
    bodies_pub = node.create_publisher(BodyPoseArray, f"/{ns}/humans/bodies/tracked", RESULT_QOS)
    joints_pub = node.create_publisher(JointState, f"/{ns}/robot/joint_states", 10)
    sent: list[float] = []
    msg = _body_message(node)
    joints = JointState(name=JOINTS, position=[0.0, -1.57, 0.0, -1.57, 0.0, 0.0])
    running = threading.Event()
    period_s = 1.0 / rate_hz

    def publish_loop() -> None:
        # Own thread, paced by the clock: publishing never waits for the receiving executor.
        next_s = time.monotonic()
        while running.is_set():
            next_s += period_s
            time.sleep(max(0.0, next_s - period_s / 2 - time.monotonic()))
            joints.header.stamp = node.get_clock().now().to_msg()
            joints_pub.publish(joints)
            time.sleep(max(0.0, next_s - time.monotonic()))
            msg.header.stamp = node.get_clock().now().to_msg()
            sent.append(stamp_to_s(msg.header.stamp))
            bodies_pub.publish(msg)

    publisher = threading.Thread(target=publish_loop, daemon=True)
    try:
        deadline = time.monotonic() + 30.0
        while (bodies_pub.get_subscription_count() < 1 or node.count_publishers(f"/{ns}/safety/state") < 1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{'echo' if echo else 'safety'} node did not come up")
            executor.spin_once(timeout_sec=0.1)
        running.set()
        publisher.start()
        warmup_end = time.monotonic() + 3.0
        while time.monotonic() < warmup_end:
            executor.spin_once(timeout_sec=0.05)
        sent.clear()
        arrivals.clear()
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        running.clear()
        publisher.join(timeout=2.0)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.01)
    finally:
        running.clear()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
        stop()

    matched = match_latencies(sent, arrivals)
    lat_ms = [v[0] * 1e3 for v in matched]
    # Split: message stamp -> decision in the node (the state's perception_latency_s) and decision -> arrival.
    in_ms = [v[1] * 1e3 for v in matched]
    return {f"{prefix}_p50_ms": statistics.median(lat_ms) if lat_ms else math.nan,
            f"{prefix}_p99_ms": _pct(lat_ms, 99),
            f"{prefix}_to_decision_p50_ms": statistics.median(in_ms) if in_ms else math.nan,
            f"{prefix}_to_decision_p99_ms": _pct(in_ms, 99),
            f"{prefix}_samples": len(lat_ms), f"{prefix}_sent": len(sent),
            f"{prefix}_state_rate_hz": len(arrivals) / duration_s, f"{prefix}_executor": executor_kind}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (< 1 min)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="ROS measurement duration (safety node)")
    parser.add_argument("--rate-hz", type=float, default=50.0, help="input publish rate")
    parser.add_argument("--no-compare", action="store_true",
                        help="ROS part with the shipped executor only (default: also every other executor)")
    parser.add_argument("--echo-node", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--executor", default="single_threaded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_node:
        run_echo(args.echo_node, args.executor)
        return 0
    iterations = args.iterations or (3000 if args.quick else 30000)
    duration_s = args.seconds or (12.0 if args.quick else 90.0)
    os.environ.setdefault("ROS_DOMAIN_ID", str(80 + os.getpid() % 9))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from hrc_fl.launcher import node_environment

    os.environ.update({k: v for k, v in node_environment().items() if k == "FASTDDS_DEFAULT_PROFILES_FILE"})

    core = bench_core(iterations)
    callback = bench_node_callback(max(500, iterations // 5))
    from hrc_fl.nodes.composition import EXECUTOR_KINDS

    shipped = shipped_executor()
    echo = bench_ros(duration_s / 2, args.rate_hz, echo=True, executor_kind=shipped, prefix="echo")
    ros = bench_ros(duration_s, args.rate_hz, echo=False, executor_kind=shipped, prefix="ros")
    others: dict[str, float] = {}
    for kind in () if args.no_compare else [k for k in EXECUTOR_KINDS if k != shipped]:
        others.update(bench_ros(duration_s / 2, args.rate_hz, echo=True, executor_kind=kind, prefix=f"echo_{kind}"))
        others.update(bench_ros(duration_s, args.rate_hz, echo=False, executor_kind=kind, prefix=f"ros_{kind}"))
    figures = {**core, **callback, **echo, **ros, **others}
    rows = [
        ("distance 75 keypoints x 8 capsules (us)", "distance"),
        ("step, changed human + robot = core (us)", "core"),
        ("step, changed human, unchanged robot (us)", "step_same_robot"),
        ("step, no new input (heartbeat) (us)", "step_no_input"),
    ]
    print(f"{'measure':<50}{'median':>10}{'p99':>10}{'cpu med':>10}{'cpu p99':>10}")
    for label, key in rows:
        print(f"{label:<50}{figures[key + '_p50_us']:>10.1f}{figures[key + '_p99_us']:>10.1f}"
              f"{figures[key + '_cpu_p50_us']:>10.1f}{figures[key + '_cpu_p99_us']:>10.1f}")
    print(f"{'node body callback in process (us)':<50}{figures['node_callback_p50_us']:>10.1f}"
          f"{figures['node_callback_p99_us']:>10.1f}{figures['node_callback_cpu_p50_us']:>10.1f}"
          f"{figures['node_callback_cpu_p99_us']:>10.1f}")
    for key, label in NODE_STAGES.items():
        print(f"{f'  stage: {label} (us)':<50}{figures[f'node_{key}_p50_us']:>10.1f}"
              f"{figures[f'node_{key}_p99_us']:>10.1f}")
    print(f"{'BodyPoseArray -> SafetyZoneState, processes (ms)':<50}{ros['ros_p50_ms']:>10.3f}"
          f"{ros['ros_p99_ms']:>10.3f}")
    print(f"{'  of which message stamp -> decision (ms)':<50}{ros['ros_to_decision_p50_ms']:>10.3f}"
          f"{ros['ros_to_decision_p99_ms']:>10.3f}")
    print(f"{'  baseline: echo process, same run (ms)':<50}{echo['echo_p50_ms']:>10.3f}{echo['echo_p99_ms']:>10.3f}")
    print(f"{'    of which message stamp -> echo callback (ms)':<50}{echo['echo_to_decision_p50_ms']:>10.3f}"
          f"{echo['echo_to_decision_p99_ms']:>10.3f}")
    for kind in [k for k in EXECUTOR_KINDS if f"ros_{k}_p50_ms" in others]:
        print(f"{f'  {kind} executor instead: node / echo (ms)':<50}{others[f'ros_{kind}_p50_ms']:>10.3f}"
              f"{others[f'ros_{kind}_p99_ms']:>10.3f}{others[f'echo_{kind}_p50_ms']:>10.3f}"
              f"{others[f'echo_{kind}_p99_ms']:>10.3f}")
    print(f"{'reference: one np.add on (75,16) (us)':<50}{core['numpy_op_p50_us']:>10.2f}")
    load = os.getloadavg()[0]
    print(f"matched {ros['ros_samples']} of {ros['ros_sent']} inputs (echo {echo['echo_samples']} of "
          f"{echo['echo_sent']}); state rate {ros['ros_state_rate_hz']:.1f} Hz (timer 50 Hz + one per input); "
          f"{iterations} core iterations; executor {shipped}; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps({**{k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
                      "iterations": iterations, "duration_s": duration_s, "load_average": round(load, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
