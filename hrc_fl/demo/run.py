"""Runs the plant demo: the plant graph (via the project's launcher) plus a simulated robot per
workstation, the scenario driver in this process, progress lines, and the report at the end.

Ctrl-C (or SIGTERM) ends the scenario early: every node gets SIGINT (then SIGTERM/SIGKILL after a
timeout, launcher.py), the bag is closed, and the report is written for the part that ran.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hrc_fl.demo.record import DemoRecord
from hrc_fl.graph import NodeSpec

#: Small topics worth keeping in the run's bag (images are left out: they are the replayed photos).
BAG_TOPICS = ("safety/state", "robot/speed_scale", "humans/bodies/tracked", "hands/gesture",
              "intention/estimate", "federated/status", "robot/tcp_pose")
FL_EXECUTABLES = ("fl_client_node", "aggregator_node")
#: Demo overrides in config/ applied after every node's defaults (the graph's ``config_file``).
DEMO_CONFIG = "demo.yaml"


@dataclass(frozen=True)
class DemoOptions:
    """What to run and for how long."""

    workstations: int = 3
    rounds: int = 4
    length_s: float = 300.0
    image_rate_hz: float = 5.0
    warmup_timeout_s: float = 90.0
    fl_grace_s: float = 180.0          # after the scenario, wait this long at most for the FL rounds
    fl: bool = True
    record_bag: bool = True
    worker_photo: str = "messi5.jpg"   # a real person: pose + hands
    palm_photo: str = "Back_Projection_Theory0.jpg"  # a real open palm (opencv-doc): the STOP gesture
    out_dir: Path | None = None
    #: Workstation node executables to add although the graph lacks them (developer option, until
    #: graph.py lists them), e.g. ("pose_node", "safety_node").
    extra_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.workstations <= 9:
            raise ValueError(f"workstations must be 1..9, got {self.workstations}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.length_s >= 10.0:
            raise ValueError(f"length_s must be at least 10 s, got {self.length_s}")
        if not self.image_rate_hz > 0 or not self.warmup_timeout_s > 0:
            raise ValueError("image_rate_hz and warmup_timeout_s must be positive")

    @staticmethod
    def quick(**overrides) -> DemoOptions:
        """One workstation, two FL rounds, a short scenario."""
        values = dict(workstations=1, rounds=2, length_s=60.0, image_rate_hz=8.0, warmup_timeout_s=60.0)
        values.update(overrides)
        return DemoOptions(**values)


@dataclass
class NodeUsage:
    """CPU and memory of one node process over the run."""

    label: str
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    exit_code: int | None = None


@dataclass
class DemoRun:
    """Outcome of :func:`run_demo` handed to the report."""

    options: DemoOptions
    run_dir: Path
    specs: list[NodeSpec]
    wall_s: float = 0.0
    interrupted: bool = False
    early_exit: list[str] = field(default_factory=list)
    usage: dict[str, NodeUsage] = field(default_factory=dict)
    driver_usage: NodeUsage | None = None
    topic_rates: list = field(default_factory=list)
    bag_path: Path | None = None
    bag_messages: dict[str, int] = field(default_factory=dict)
    record: DemoRecord | None = None


def demo_specs(options: DemoOptions, fl_config: Path | None = None) -> list[NodeSpec]:
    """The plant graph adapted for the demo: the camera relays the scenario's images, the pose
    node's bodies go through the scenario driver, and each workstation gets a simulated robot."""
    from hrc_fl.launcher import specs_for
    from hrc_fl.paths import config_dir

    specs = specs_for("plant_demo", {"workstations": str(options.workstations),
                                     "fl": "true" if options.fl else "false", "config_file": DEMO_CONFIG})
    out: list[NodeSpec] = []
    for spec in specs:
        params = dict(spec.parameters)
        remaps = list(spec.remappings)
        if spec.executable == "camera_node":
            params["source"] = "topic:demo/image_raw"
        elif spec.executable == "pose_node":
            remaps.append(("humans/bodies/tracked", "humans/bodies/detected"))
        elif spec.executable in FL_EXECUTABLES and fl_config is not None:
            params["federation_config"] = str(fl_config)
        out.append(dataclasses.replace(spec, parameters=params, remappings=tuple(remaps)))
    for i in range(1, options.workstations + 1):
        ws = f"ws{i}"
        for executable in options.extra_nodes:
            if any(s.executable == executable and s.namespace == ws for s in out):
                continue
            name = executable.removesuffix("_node")
            remaps = (("humans/bodies/tracked", "humans/bodies/detected"),) if executable == "pose_node" else ()
            files = ((f"{name}.yaml",) if (config_dir() / f"{name}.yaml").is_file() else ()) + (DEMO_CONFIG,)
            out.append(NodeSpec(executable=executable, name=name, namespace=ws, param_files=files,
                                parameters={"workstation_id": ws}, remappings=remaps))
        if not any(s.executable == "robot_sim_node" and s.namespace == ws for s in out):
            out.append(NodeSpec(executable="robot_sim_node", name="robot_sim", namespace=ws,
                                param_files=("robot_sim.yaml", DEMO_CONFIG)))
    return out


def _start_event(executables: set[str]) -> str:
    if "pose_node" in executables:
        return "bodies"
    return "safety" if "safety_node" in executables else "robot"


def write_fl_config(options: DemoOptions, run_dir: Path) -> Path | None:
    """A copy of config/federated.yaml with the demo's round count and short waits."""
    from hrc_fl.paths import config_dir

    source = config_dir() / "federated.yaml"
    if not source.is_file():
        return None
    config = yaml.safe_load(source.read_text()) or {}
    rounds = config.setdefault("rounds", {})
    rounds["num_rounds"] = options.rounds
    rounds["start_wait_s"] = min(float(rounds.get("start_wait_s", 10.0)), 10.0)
    rounds["quorum"] = min(int(rounds.get("quorum", 1)), options.workstations)
    target = run_dir / "federated_demo.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def _sample_usage(launcher, usage: dict[str, NodeUsage]) -> None:
    import psutil

    for node in launcher.nodes:
        label = f"/{node.spec.namespace}/{node.spec.name}".replace("//", "/")
        entry = usage.setdefault(label, NodeUsage(label))
        try:
            proc = psutil.Process(node.process.pid)
            with proc.oneshot():
                times = proc.cpu_times()
                entry.cpu_s = max(entry.cpu_s, times.user + times.system)
                entry.peak_rss_bytes = max(entry.peak_rss_bytes, proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue


def _progress_line(driver, options: DemoOptions, elapsed_s: float) -> str:
    t = driver.scenario_time_s()
    head = (f"[demo {t:5.0f}/{options.length_s:.0f} s] {driver.scenario.phase(t):<18}"
            if driver.started else f"[demo warm-up {elapsed_s:4.0f} s] waiting for the first detections")
    parts = []
    for ws in driver.record.workstations:
        latest = driver.latest.get(ws)
        if latest is not None:
            parts.append(f"{ws} {latest.zone_name or latest.zone} sep={latest.min_separation_m:.2f}m "
                         f"scale={latest.speed_scale:.2f}")
        else:
            parts.append(f"{ws} no safety state")
    rounds = [f.round for f in driver.record.federated if f.role == "aggregator"]
    fl = f" | FL round {max(rounds)}/{options.rounds}" if rounds else ""
    return head + " | " + " | ".join(parts) + fl


def run_demo(options: DemoOptions, *, progress: Callable[[str], None] = print) -> DemoRun:
    """Run the demo to the end of its scenario (or Ctrl-C); returns what the report needs."""
    import psutil
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hrc_fl.data.datasets import photo_path
    from hrc_fl.demo.driver import DemoDriver
    from hrc_fl.demo.scenario import Scenario, ScenarioConfig
    from hrc_fl.launcher import Launcher, node_environment
    from hrc_fl.paths import runtime_dir

    run_dir = options.out_dir or runtime_dir() / "demo" / time.strftime("%Y%m%d_%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    fl_config = write_fl_config(options, run_dir) if options.fl else None
    specs = demo_specs(options, fl_config)
    result = DemoRun(options=options, run_dir=run_dir, specs=specs)
    stop = {"signal": None}

    def request_stop(signum, _frame) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.update({k: v for k, v in node_environment().items() if k.startswith(("ROS_", "FASTDDS"))})
    context = rclpy.Context()
    rclpy.init(context=context)
    workstations = [f"ws{i}" for i in range(1, options.workstations + 1)]
    driver = DemoDriver(workstations, Scenario(ScenarioConfig(length_s=options.length_s)),
                        image_rate_hz=options.image_rate_hz, worker_photo=photo_path(options.worker_photo),
                        palm_photo=photo_path(options.palm_photo), warmup_timeout_s=options.warmup_timeout_s,
                        start_on=_start_event({s.executable for s in specs}),
                        context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(driver)
    recorder = None
    if options.record_bag:
        from hrc_fl.tools.bag import BagRecorder

        result.bag_path = run_dir / "bag"
        topics = [f"/{ws}/{t}" for ws in workstations for t in BAG_TOPICS] + ["/plant/federated/status"]
        recorder = BagRecorder(driver, result.bag_path, topics, log=lambda _line: None)
    launcher = Launcher(specs, log_dir=run_dir / "logs")
    progress(f"[demo] {len(specs)} node processes: "
             + ", ".join(sorted({s.executable for s in specs})) + f"; logs in {run_dir / 'logs'}")
    start = time.monotonic()
    self_proc = psutil.Process()
    try:
        launcher.start()
        next_progress = start + 1.0
        fl_in_graph = any(s.executable in FL_EXECUTABLES for s in specs)
        while stop["signal"] is None:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if driver.started and driver.scenario_time_s() >= options.length_s:
                if not fl_in_graph or driver.fl_rounds_done() >= options.rounds:
                    break
                if driver.scenario_time_s() >= options.length_s + options.fl_grace_s:
                    progress(f"[demo] FL reached round {driver.fl_rounds_done()} of {options.rounds} "
                             f"within {options.fl_grace_s:.0f} s after the scenario; stopping")
                    break
            if now >= next_progress:
                next_progress += 2.0
                _sample_usage(launcher, result.usage)
                progress(_progress_line(driver, options, now - start))
                dead = [f"/{n.spec.namespace}/{n.spec.name} (exit {n.process.returncode})"
                        for n in launcher.exited()]
                if dead and len(dead) == len(launcher.nodes):
                    result.early_exit = dead
                    progress("[demo] every node has exited; stopping")
                    break
                result.early_exit = dead
    finally:
        result.interrupted = stop["signal"] is not None
        if result.interrupted:
            progress("[demo] interrupted: stopping every node")
        _sample_usage(launcher, result.usage)
        codes = launcher.stop()
        for label, code in codes.items():
            key = "/" + label.strip("/")
            result.usage.setdefault(key, NodeUsage(key)).exit_code = code
        result.wall_s = time.monotonic() - start
        times = self_proc.cpu_times()
        result.driver_usage = NodeUsage("demo driver (this process)", times.user + times.system,
                                        self_proc.memory_info().rss)
        result.topic_rates = driver.rates.rates()
        if recorder is not None:
            result.bag_messages = dict(recorder.close().messages)
        executor.remove_node(driver)
        driver.destroy_node()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result.record = driver.record
    return result
