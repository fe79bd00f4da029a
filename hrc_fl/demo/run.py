"""Runs the plant demo: the ``plant_demo`` graph of hrc_fl.graph (via the project's launcher; the same
nodes ``ros2 launch hrc_fl plant_demo.launch.py`` starts with the run's arguments), the scenario driver in
this process, progress lines, and the report at the end.

Ctrl-C (or SIGTERM) ends the scenario early: every node gets SIGINT (then SIGTERM/SIGKILL after a
timeout, launcher.py), the bag is closed, and the report is written for the part that ran.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hrc_fl.demo.record import DemoRecord
from hrc_fl.graph import FL_AUDIT, FL_EXECUTABLES, NodeSpec, replay_subject
from hrc_fl.intention.labels import FEDERATION_LABELS_KEY, configured_label_spaces, labels_at
from hrc_fl.sim.scenario import WORKER_PHOTO_BLUR_BOX

#: Small topics worth keeping in the run's bag (images are left out: they are the replayed photos).
#: robot/speed_scale is left out: safety/state carries the same speed_scale.
BAG_TOPICS = ("safety/state", "humans/bodies/tracked", "hands/gesture",
              "intention/estimate", "federated/status", "robot/tcp_pose")
#: The run's scenario (hrc_fl.sim.scenario), in the run folder; every workstation process plays it.
SCENARIO_FILE = "scenario.yaml"


@dataclass(frozen=True)
class DemoOptions:
    """What to run and for how long."""

    workstations: int = 3
    rounds: int = 4
    length_s: float = 300.0
    #: Camera rate of every workstation, frames/s: 10 Hz, the low end of what a speed-and-separation
    #: cell runs its people detection at (one frame per 0.1 s adds 0.16 m of travel at 1.6 m/s). Each
    #: workstation is one composed process whose shared pipeline runs pose and hands on each frame at once.
    image_rate_hz: float = 10.0
    warmup_timeout_s: float = 90.0
    #: Every workstation node must be heard on /diagnostics this long after the start, else the demo
    #: stops with NodesNotHeardError (no DDS traffic, or which node never published) and exits non-zero.
    discovery_timeout_s: float = 90.0
    fl_grace_s: float = 180.0          # after the scenario, wait this long at most for the FL rounds
    fl_deadline_s: float = 90.0        # a round closes this long after it opened (with quorum) at the latest
    #: After the last round closed, wait this long at most for every FL client to report "finished" (it
    #: has loaded and stored the final model; the report evaluates that version).
    fl_finish_wait_s: float = 30.0
    #: Wall-time budget of the run (s from the first node's start): the waits for FL rounds and for the
    #: clients' final model after the scenario end by then, so the default demo stays inside 10 minutes
    #: (node stop, model evaluation and report take well under a minute) even when a busy machine slows
    #: the rounds. The scenario itself is never cut; the report says which rounds were reached.
    #: None: warm-up timeout + scenario length + ``fl_budget_s`` (540 s for the default demo).
    wall_budget_s: float | None = None
    fl_budget_s: float = 150.0
    #: The aggregator starts once every FL client stored this many labelled samples (or, with at least
    #: client.min_samples, has seen every class or the scenario ended); FedML's start-up (10-20 s) still
    #: adds samples before round 1. A client below min_samples would skip round 1 and stall it.
    fl_start_samples: int = 24
    fl: bool = True
    #: The federation's self-supervised term (config/federated.yaml client.self_supervised) in the demo.
    #: Off by default: it makes a round's local training about 4x heavier, and here three workstations
    #: share 2 cores with perception and safety (a real workstation has its own CPU). The fl_client
    #: nodes still store unlabelled windows.
    fl_self_supervised: bool = False
    record_bag: bool = True
    worker_photo: str = "messi5.jpg"   # a real person: pose + hands
    #: Region of the worker photo that is blurred (x0, y0, x1, y1 as fractions; None = none), see
    #: hrc_fl.sim.scenario.WORKER_PHOTO_BLUR_BOX.
    worker_photo_blur_box: tuple[float, float, float, float] | None = WORKER_PHOTO_BLUR_BOX
    palm_photo: str = "Back_Projection_Theory0.jpg"  # a real open palm (opencv-doc): the STOP gesture
    out_dir: Path | None = None
    #: Workstation node executables to add, each as a process of its own, although the graph lacks them
    #: (developer option), e.g. ("foxglove_bridge_node",).
    extra_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.workstations <= 9:
            raise ValueError(f"workstations must be 1..9, got {self.workstations}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not self.length_s >= 10.0:
            raise ValueError(f"length_s must be at least 10 s, got {self.length_s}")
        if not self.image_rate_hz > 0 or not self.warmup_timeout_s > 0 or not self.discovery_timeout_s > 0:
            raise ValueError("image_rate_hz, warmup_timeout_s and discovery_timeout_s must be positive")
        if self.wall_budget_s is not None and not self.wall_budget_s >= self.warmup_timeout_s + self.length_s:
            raise ValueError(f"wall_budget_s ({self.wall_budget_s} s) must cover the warm-up timeout and the "
                             f"scenario ({self.warmup_timeout_s + self.length_s:.0f} s)")
        if not self.fl_budget_s >= 0:
            raise ValueError(f"fl_budget_s must be >= 0, got {self.fl_budget_s}")

    @property
    def budget_s(self) -> float:
        """The run's wall-time budget in s (``wall_budget_s``, or warm-up + scenario + ``fl_budget_s``)."""
        if self.wall_budget_s is not None:
            return self.wall_budget_s
        return self.warmup_timeout_s + self.length_s + self.fl_budget_s

    @staticmethod
    def quick(**overrides) -> DemoOptions:
        """One workstation, two FL rounds, a short scenario."""
        # one workstation: the whole FL budget goes to completing its two rounds, also on a busy CI machine
        values = dict(workstations=1, rounds=2, length_s=60.0, image_rate_hz=10.0, warmup_timeout_s=60.0,
                      fl_budget_s=240.0)
        values.update(overrides)
        return DemoOptions(**values)


@dataclass
class NodeUsage:
    """CPU and memory of one node process over the run."""

    label: str
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_pss_bytes: int = 0  # proportional set size: shared pages split among the processes mapping them
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
    #: Largest sum over all node processes and the driver of their PSS / RSS taken at the same moment
    #: (bytes). The PSS sum is the honest memory of the demo; summed RSS counts shared pages once per process.
    peak_pss_bytes_total: int = 0
    peak_rss_bytes_total: int = 0
    driver_usage: NodeUsage | None = None
    topic_rates: list = field(default_factory=list)
    uncounted_topic_suffixes: tuple[str, ...] = ()
    bag_path: Path | None = None
    bag_messages: dict[str, int] = field(default_factory=dict)
    record: DemoRecord | None = None
    fl_started_s: float | None = None  # scenario time the aggregator was started (None: never)
    fl_config: Path | None = None
    fl_notes: list[str] = field(default_factory=list)
    #: workstation -> accuracy of every model version its FL client stored (held-out real data).
    fl_accuracy: dict = field(default_factory=dict)
    fl_uplink_bytes: dict[int, int] = field(default_factory=dict)  # round -> bytes (all clients)


def demo_launch_arguments(options: DemoOptions, scenario_file: Path, fl_config: Path | None = None,
                          run_dir: Path | None = None) -> dict[str, str]:
    """The ``plant_demo`` launch arguments of a demo run: ``ros2 launch hrc_fl plant_demo.launch.py`` and
    ``hrc-fl launch plant_demo`` with these start the nodes the demo starts."""
    return {"workstations": str(options.workstations), "fl": "true" if options.fl else "false",
            "scenario": str(scenario_file), "image_rate_hz": str(float(options.image_rate_hz)),
            "fl_config": "" if fl_config is None else str(fl_config),
            "run_dir": "" if run_dir is None else str(run_dir), "extra_nodes": ",".join(options.extra_nodes)}


def demo_specs(options: DemoOptions, scenario_file: Path, fl_config: Path | None = None,
               run_dir: Path | None = None) -> list[NodeSpec]:
    """The demo's nodes: the ``plant_demo`` graph (hrc_fl.graph.plant_demo_graph, the demo overlay on the
    plant graph) with this run's scenario, federation file and run folder as launch arguments."""
    from hrc_fl.launcher import specs_for

    return specs_for("plant_demo", demo_launch_arguments(options, scenario_file, fl_config, run_dir))


def _start_event(executables: set[str]) -> str:
    if "pose_node" in executables:
        return "bodies"
    return "safety" if "safety_node" in executables else "robot"


def _wait_signals(executables: set[str]) -> tuple[str, ...]:
    # the torch / FedML processes take longest to come up (seconds of CPU each on import)
    return tuple(signal for signal, exe in (("intention", "intention_node"), ("fl_client", "fl_client_node"))
                 if exe in executables)


def _free_tcp_ports(count: int) -> list[int]:
    import socket

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _certs_cover(cert_dir: Path, names: list[str]) -> bool:
    return (cert_dir / "ca.crt").is_file() and all(
        (cert_dir / f"{n}.crt").is_file() and (cert_dir / f"{n}.key").is_file() for n in names)


def write_fl_config(options: DemoOptions, run_dir: Path) -> Path | None:
    """The run's federation file: config/federated.yaml with the demo's workstations (free loopback
    ports), ``--rounds``, a quorum and deadline for N workstations on one small machine, the run folder
    as state dir, and certificates that cover every node (the setup's ones for ws1..ws3, otherwise a
    CA and certificates generated for this run into ``<run>/fl_certs``)."""
    from hrc_fl.paths import config_dir, runtime_dir

    source = config_dir() / "federated.yaml"
    if not source.is_file():
        return None
    config = yaml.safe_load(source.read_text()) or {}
    fed = config.setdefault("federation", {})
    names = ["aggregator"] + [f"ws{i}" for i in range(1, options.workstations + 1)]
    ports = _free_tcp_ports(len(names))
    fed["nodes"] = [{"name": n, "rank": r, "host": "127.0.0.1", "port": p}
                    for r, (n, p) in enumerate(zip(names, ports, strict=True))]
    configured = Path(fed.get("cert_dir") or runtime_dir() / "fl_certs")
    if not _certs_cover(configured, names):
        from hrc_fl.federated.certs import generate_federation

        configured = run_dir / "fl_certs"
        generate_federation(configured, names, valid_days=7, ca_name="hrc_fl demo run CA")
    fed["cert_dir"] = str(configured)
    fed["state_dir"] = str(run_dir / "federated")
    rounds = config.setdefault("rounds", {})
    rounds["num_rounds"] = options.rounds
    # Every client is up long before the aggregator starts (it waits for labelled data), so a short
    # start wait; a round needs all but one workstation (all of one), and closes early once all answered.
    rounds["start_wait_s"] = 10.0
    rounds["quorum"] = max(1, options.workstations - 1)
    rounds["deadline_s"] = options.fl_deadline_s
    strategy = config.setdefault("strategy", {})
    if strategy.get("name") == "median_anchored":
        # the demo's small quorum tolerates fewer attackers than the plant's (2f + 1 <= quorum); say so in the file
        strategy["max_attackers"] = min(int(strategy.get("max_attackers", 1)), (rounds["quorum"] - 1) // 2)
    client = config.setdefault("client", {})
    if not options.fl_self_supervised:
        client["self_supervised"] = {"enabled": False}
    # one epoch per phase (packaged: 2): three workstations train on one 2-core machine beside perception
    client.update(epochs=1, head_epochs=1, fine_tune_epochs=1)
    target = run_dir / "federated_demo.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def fl_labels(fl_config: Path) -> list[str]:
    """Label space the federation's learner trains (the fl_client nodes' ``labels`` must match)."""
    return list(labels_at(fl_config, FEDERATION_LABELS_KEY))


def fl_min_samples(fl_config: Path) -> int:
    """Labelled samples a client needs to take part in a round (``client.min_samples``)."""
    config = yaml.safe_load(fl_config.read_text()) or {}
    return int((config.get("client") or {}).get("min_samples", 1))


def _seed_model_stores(run_dir: Path, workstations: list[str]) -> None:
    # The run's stores start from the base model (hrc-fl train-intention) when there is one, before any
    # node starts, so the FL client's starting head does not depend on which node came up first.
    from hrc_fl.intention.model_store import ModelStore, base_store_dir, seed_from

    base = ModelStore(base_store_dir())
    for ws in workstations:
        store = ModelStore(run_dir / "models" / ws)
        store.root.mkdir(parents=True, exist_ok=True)
        seed_from(store, base)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of a process (``/proc/<pid>/smaps_rollup``), bytes; None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _sample_usage(launcher, usage: dict[str, NodeUsage]) -> tuple[int, int]:
    """Update CPU and peak memory per node process; returns this moment's (RSS, PSS) sums, bytes."""
    import psutil

    rss_total = pss_total = 0
    for node in launcher.nodes:
        entry = usage.setdefault(node.label, NodeUsage(node.label))
        try:
            proc = psutil.Process(node.process.pid)
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        pss = pss_bytes(node.process.pid) or 0
        entry.cpu_s = max(entry.cpu_s, times.user + times.system)
        entry.peak_rss_bytes = max(entry.peak_rss_bytes, rss)
        entry.peak_pss_bytes = max(entry.peak_pss_bytes, pss)
        rss_total += rss
        pss_total += pss
    return rss_total, pss_total


def _sample_memory_total(result: DemoRun, launchers: list, driver_proc) -> None:
    """One simultaneous sample of every process (nodes and this driver); keeps the peak sums."""
    rss_total = driver_proc.memory_info().rss
    pss_total = pss_bytes(driver_proc.pid) or 0
    for launcher in launchers:
        rss, pss = _sample_usage(launcher, result.usage)
        rss_total += rss
        pss_total += pss
    result.peak_rss_bytes_total = max(result.peak_rss_bytes_total, rss_total)
    result.peak_pss_bytes_total = max(result.peak_pss_bytes_total, pss_total)


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
    fl = ""
    if any(f.role == "aggregator" for f in driver.record.federated):
        fl = f" | FL rounds done {driver.fl_rounds_done()}/{options.rounds}"
    elif driver.record.workstations and options.fl:
        labels = "; ".join(f"{ws} {len(r.task_events)}" for ws, r in driver.record.workstations.items())
        samples = "; ".join(f"{ws} {n}" for ws, n in sorted(driver.fl_samples.items()))
        fl = f" | FL waiting for labelled samples ({samples or 'none yet'}; classes seen: {labels})"
    return head + " | " + " | ".join(parts) + fl


def end_of_run(options: DemoOptions, *, fl_in_graph: bool, rounds_done: int, clients_waiting: set[str],
               scenario_time_s: float, fl_started_s: float | None, since_rounds_done_s: float | None,
               wall_s: float) -> str | None:
    """Whether the run ends now that the scenario is over: None to keep waiting for the federation,
    "" when everything asked for has happened, or the reason it stops short (for the progress line and
    the report). Times: scenario time and wall time since the nodes started, in s."""
    if not fl_in_graph:
        return ""
    if rounds_done >= options.rounds and not clients_waiting:
        return ""
    over_budget = wall_s >= options.budget_s
    if rounds_done >= options.rounds:
        if over_budget:
            return (f"FL clients {sorted(clients_waiting)} had not reported the final model when the run's "
                    f"wall-time budget ({options.budget_s:.0f} s) was spent")
        if since_rounds_done_s is not None and since_rounds_done_s >= options.fl_finish_wait_s:
            return (f"FL clients {sorted(clients_waiting)} did not report the final model within "
                    f"{options.fl_finish_wait_s:.0f} s after the last round")
        return None
    if over_budget:
        return (f"FL reached round {rounds_done} of {options.rounds} when the run's wall-time budget "
                f"({options.budget_s:.0f} s) was spent")
    fl_wait_from = max(options.length_s, fl_started_s or 0.0)
    if scenario_time_s >= fl_wait_from + options.fl_grace_s:
        return (f"FL reached round {rounds_done} of {options.rounds} within {options.fl_grace_s:.0f} s "
                "after the scenario / aggregator start")
    return None


def run_demo(options: DemoOptions, *, progress: Callable[[str], None] = print) -> DemoRun:
    """Run the demo to the end of its scenario (or Ctrl-C); returns what the report needs."""
    import psutil
    import rclpy
    from rclpy.experimental import EventsExecutor

    from hrc_fl.demo.driver import DemoDriver
    from hrc_fl.launcher import Launcher, node_environment
    from hrc_fl.paths import runtime_dir
    from hrc_fl.sim.scenario import Scenario, ScenarioConfig, write_scenario

    run_dir = options.out_dir or runtime_dir() / "demo" / time.strftime("%Y%m%d_%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    fl_config = write_fl_config(options, run_dir) if options.fl else None
    workstations = [f"ws{i}" for i in range(1, options.workstations + 1)]
    _seed_model_stores(run_dir, workstations)
    scenario = Scenario(ScenarioConfig(length_s=options.length_s, worker_photo=options.worker_photo,
                                       worker_photo_blur_box=options.worker_photo_blur_box,
                                       palm_photo=options.palm_photo))
    scenario_file = run_dir / SCENARIO_FILE
    write_scenario(scenario_file, scenario.config)
    graph_args = demo_launch_arguments(options, scenario_file, fl_config, run_dir)
    specs = demo_specs(options, scenario_file, fl_config, run_dir)
    result = DemoRun(options=options, run_dir=run_dir, specs=specs, fl_config=fl_config)
    labels = set(fl_labels(fl_config)) if fl_config is not None else set()
    result.fl_notes += _label_space_notes(labels)
    for note in result.fl_notes:
        progress(f"[demo] WARNING: {note}")
    if fl_config is not None and not options.fl_self_supervised:
        result.fl_notes.append("the federation's self-supervised term is off in this run (demo default: "
                               "--fl-self-supervised keeps it); the FL clients still store unlabelled windows")
    # The aggregator starts once every workstation has labelled samples of every class (a client with
    # too few samples skips a round, and a round waits for its quorum), at the latest when the scenario ends.
    agg_specs = [s for s in specs if s.executable == "aggregator_node"]
    min_samples = fl_min_samples(fl_config) if fl_config is not None else 0
    node_specs = [s for s in specs if s.executable != "aggregator_node"]
    stop = {"signal": None}

    def request_stop(signum, _frame) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    os.environ.update({k: v for k, v in node_environment().items() if k.startswith(("ROS_", "FASTDDS"))})
    context = rclpy.Context()
    rclpy.init(context=context)
    executables = {e for s in specs for e in s.executables()}
    driver = DemoDriver(workstations, scenario, tick_rate_hz=options.image_rate_hz,
                        warmup_timeout_s=options.warmup_timeout_s, start_on=_start_event(executables),
                        wait_for=_wait_signals(executables), context=context)
    # The driver takes ~400 messages/s (bag, record, topic counts), off the safety path (the workstations
    # play the scenario themselves), but on the same 2 cores as the safety loops. Under the
    # SingleThreadedExecutor, rebuilding the wait set per callback took ~40 % of its samples (py-spy) and
    # it received the safety states ~0.1 s late (0.25 s in shorter runs) on two saturated cores; with
    # rclpy's EventsExecutor 3-4 ms, at two thirds of the CPU. Experimental in rclpy: among the nodes only
    # the safety node takes it (its `executor` parameter, docs/safety.md); an earlier try with every node on
    # it spun at full CPU and stalled the demo.
    executor = EventsExecutor(context=context)
    executor.add_node(driver)
    recorder = None
    if options.record_bag:
        from hrc_fl.tools.bag import BagRecorder

        result.bag_path = run_dir / "bag"
        topics = [f"/{ws}/{t}" for ws in workstations for t in BAG_TOPICS] + ["/plant/federated/status"]
        # the bag's subscriptions also count those topics for the report (one callback per message, not two)
        driver.rates.count_elsewhere(topics)
        recorder = BagRecorder(driver, result.bag_path, topics, log=lambda _line: None, on_write=driver.rates.count)
    launcher = Launcher(node_specs, log_dir=run_dir / "logs")
    agg_launcher = Launcher(agg_specs, log_dir=run_dir / "logs")
    progress(f"[demo] {len(specs)} node processes: "
             + ", ".join(sorted(executables)) + f"; logs in {run_dir / 'logs'}")
    progress("[demo] the same graph: " + shlex.join(["hrc-fl", "launch", "plant_demo",
                                                     *(f"{k}:={v}" for k, v in graph_args.items() if v)]))
    start = time.monotonic()
    self_proc = psutil.Process()
    try:
        launcher.start()
        discovery = _discovery_watch(driver, node_specs, options.discovery_timeout_s)
        next_progress = start + 1.0
        fl_in_graph = bool(executables & set(FL_EXECUTABLES))
        rounds_done_at: float | None = None
        while stop["signal"] is None:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            discovery.check(now)  # raises NodesNotHeardError: the nodes cannot hear each other
            if agg_specs and result.fl_started_s is None and driver.started and (
                    all(driver.fl_samples.get(ws, 0) >= options.fl_start_samples for ws in workstations)
                    or (all(driver.fl_samples.get(ws, 0) >= min_samples for ws in workstations)
                        and (all(driver.labels_seen(ws) >= labels for ws in workstations)
                             or driver.scenario_time_s() >= options.length_s))):
                result.fl_started_s = driver.scenario_time_s()
                progress(f"[demo] starting the aggregator at {result.fl_started_s:.0f} s; labelled samples: "
                         + "; ".join(f"{ws} {driver.fl_samples.get(ws, 0)} of {len(driver.labels_seen(ws) & labels)}"
                                     f"/{len(labels)} classes" for ws in workstations))
                agg_launcher.start()
            if driver.started and driver.scenario_time_s() >= options.length_s:
                if fl_in_graph and driver.fl_rounds_done() >= options.rounds:
                    rounds_done_at = rounds_done_at or now
                end = end_of_run(options, fl_in_graph=fl_in_graph, rounds_done=driver.fl_rounds_done(),
                                 clients_waiting=set(workstations) - driver.fl_clients_finished(),
                                 scenario_time_s=driver.scenario_time_s(), fl_started_s=result.fl_started_s,
                                 since_rounds_done_s=None if rounds_done_at is None else now - rounds_done_at,
                                 wall_s=now - start)
                if end is not None:
                    if end:
                        progress(f"[demo] {end}; stopping")
                        result.fl_notes.append(end)
                    break
            if now >= next_progress:
                next_progress = max(next_progress + 2.0, now + 1.0)  # no burst of lines after a slow start
                _sample_memory_total(result, [launcher, agg_launcher], self_proc)
                progress(_progress_line(driver, options, now - start))
                dead = [f"{n.label} (exit {n.process.returncode})"
                        for n in launcher.exited() + agg_launcher.exited()]
                if dead and len(dead) == len(launcher.nodes) + len(agg_launcher.nodes):
                    result.early_exit = dead
                    progress("[demo] every node has exited; stopping")
                    break
                result.early_exit = dead
    finally:
        result.interrupted = stop["signal"] is not None
        if result.interrupted:
            progress("[demo] interrupted: stopping every node")
        _sample_memory_total(result, [launcher, agg_launcher], self_proc)
        codes = {**agg_launcher.stop(), **launcher.stop()}
        for label, code in codes.items():
            key = "/" + label.strip("/")
            result.usage.setdefault(key, NodeUsage(key)).exit_code = code
        result.wall_s = time.monotonic() - start
        times = self_proc.cpu_times()
        result.driver_usage = NodeUsage("demo driver (this process)", times.user + times.system,
                                        self_proc.memory_info().rss, pss_bytes(self_proc.pid) or 0)
        result.topic_rates = driver.rates.rates()
        result.uncounted_topic_suffixes = driver.rates.excluded_suffixes
        executor.shutdown(timeout_sec=1.0)  # releases the handles its callback generator may hold
        if recorder is not None:
            result.bag_messages = dict(recorder.close(destroy_subscriptions=False).messages)
        # The driver's DDS participant is not torn down here: deleting its readers deadlocked once in
        # Fast DDS 3.2 (delete_datareader against the discovery thread) after all nodes had stopped. It
        # goes with the process; `hrc-fl demo` ends with os._exit once the report is written.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result.record = driver.record
    if fl_config is not None:
        _evaluate_fl(result, workstations, sorted(labels), progress)
    return result


def _discovery_watch(driver, specs: list[NodeSpec], timeout_s: float):
    """Watch the started nodes' first /diagnostics reports (hrc_fl.discovery_check) from the driver."""
    from hrc_fl.discovery_check import DiscoveryWatch, expected_nodes, watch_diagnostics

    watch = DiscoveryWatch(expected_nodes(specs), timeout_s)
    watch_diagnostics(driver, watch)
    return watch


def _label_space_notes(fl_label_space: set[str]) -> list[str]:
    """Mismatches between the replay's classes, the federation's labels and the nodes' ``labels``."""
    from hrc_fl.data.datasets import WATCH_CLASSES
    from hrc_fl.paths import config_dir

    notes = []
    if fl_label_space and not set(WATCH_CLASSES) <= fl_label_space:
        notes.append(f"replayed classes {sorted(set(WATCH_CLASSES) - fl_label_space)} are not in the "
                     f"federation's label space; their events are dropped")
    for name, node_labels in configured_label_spaces(config_dir()).items():
        if name != "federated.yaml" and fl_label_space and set(node_labels) != fl_label_space:
            notes.append(f"config/{name} labels {list(node_labels)} differ from the federation's "
                         f"{sorted(fl_label_space)}")
    return notes


def _evaluate_fl(result: DemoRun, workstations: list[str], labels: list[str],
                 progress: Callable[[str], None]) -> None:
    """Per-worker accuracy of the stored models on held-out real data, and uplink bytes per round."""
    from hrc_fl.demo.fl_eval import evaluate_store, global_tensor_sizes, uplink_bytes_per_round

    run_dir = result.run_dir
    progress("[demo] evaluating the stored models on held-out real data")
    if result.fl_config is not None:
        labels = fl_labels(result.fl_config) or labels  # keep the learner's label order
    for ws in workstations:
        try:
            result.fl_accuracy[ws] = evaluate_store(run_dir / "models" / ws, replay_subject(ws), labels)
        except (OSError, ValueError, RuntimeError) as exc:
            result.fl_notes.append(f"{ws}: model evaluation failed: {exc}")
    try:
        result.fl_uplink_bytes = uplink_bytes_per_round(run_dir / FL_AUDIT,
                                                        global_tensor_sizes(run_dir / "federated"))
    except (OSError, ValueError) as exc:
        result.fl_notes.append(f"uplink bytes unavailable: {exc}")
