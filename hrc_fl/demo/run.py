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
from pathlib import Path

import psutil
import rclpy
from rclpy.experimental import EventsExecutor

from hrc_fl.demo.driver import DemoDriver
from hrc_fl.demo.fl_setup import (
    evaluate_fl,
    fl_labels,
    fl_min_samples,
    label_space_notes,
    seed_model_stores,
    write_fl_config,
)
from hrc_fl.demo.options import DemoOptions, DemoRun
from hrc_fl.demo.usage import NodeUsage, pss_bytes, sample_memory_total
from hrc_fl.discovery_check import DiscoveryWatch, expected_nodes, watch_diagnostics
from hrc_fl.graph import FL_EXECUTABLES, NodeSpec
from hrc_fl.launcher import Launcher, node_environment, specs_for
from hrc_fl.paths import runtime_dir
from hrc_fl.sim.scenario import Scenario, ScenarioConfig, write_scenario
from hrc_fl.tools.bag import BagRecorder

#: Small topics worth keeping in the run's bag (images are left out: they are the replayed photos).
#: robot/speed_scale is left out: safety/state carries the same speed_scale.
BAG_TOPICS = ("safety/state", "humans/bodies/tracked", "hands/gesture",
              "intention/estimate", "federated/status", "robot/tcp_pose")
#: The run's scenario (hrc_fl.sim.scenario), in the run folder; every workstation process plays it.
SCENARIO_FILE = "scenario.yaml"


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
    return specs_for("plant_demo", demo_launch_arguments(options, scenario_file, fl_config, run_dir))


def _start_event(executables: set[str]) -> str:
    if "pose_node" in executables:
        return "bodies"
    return "safety" if "safety_node" in executables else "robot"


def _wait_signals(executables: set[str]) -> tuple[str, ...]:
    # the torch / FedML processes take longest to come up (seconds of CPU each on import)
    return tuple(signal for signal, exe in (("intention", "intention_node"), ("fl_client", "fl_client_node"))
                 if exe in executables)


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
    supervisor = _Supervisor(options, progress)
    supervisor.run()
    return supervisor.result


class _Supervisor:
    """One demo run: prepares the run folder and graph, starts the nodes, watches them from the scenario
    driver until the run ends (:meth:`_step` once per spin), and tears everything down."""

    def __init__(self, options: DemoOptions, progress: Callable[[str], None]) -> None:
        self.options, self.progress = options, progress
        run_dir = options.out_dir or runtime_dir() / "demo" / time.strftime("%Y%m%d_%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fl_config = write_fl_config(options, run_dir) if options.fl else None
        self.workstations = [f"ws{i}" for i in range(1, options.workstations + 1)]
        seed_model_stores(run_dir, self.workstations)
        self.scenario = Scenario(ScenarioConfig(length_s=options.length_s, worker_photo=options.worker_photo,
                                                worker_photo_blur_box=options.worker_photo_blur_box,
                                                palm_photo=options.palm_photo))
        scenario_file = run_dir / SCENARIO_FILE
        write_scenario(scenario_file, self.scenario.config)
        self.graph_args = demo_launch_arguments(options, scenario_file, self.fl_config, run_dir)
        specs = demo_specs(options, scenario_file, self.fl_config, run_dir)
        self.result = DemoRun(options=options, run_dir=run_dir, specs=specs, fl_config=self.fl_config)
        self.labels = set(fl_labels(self.fl_config)) if self.fl_config is not None else set()
        self.result.fl_notes += label_space_notes(self.labels)
        for note in self.result.fl_notes:
            progress(f"[demo] WARNING: {note}")
        if self.fl_config is not None and not options.fl_self_supervised:
            self.result.fl_notes.append("the federation's self-supervised term is off in this run (demo default: "
                                        "--fl-self-supervised keeps it); the FL clients still store unlabelled "
                                        "windows")
        # The aggregator starts once every workstation has labelled samples of every class (a client with
        # too few samples skips a round, and a round waits for its quorum), at the latest when the scenario
        # ends.
        self.agg_specs = [s for s in specs if s.executable == "aggregator_node"]
        self.min_samples = fl_min_samples(self.fl_config) if self.fl_config is not None else 0
        self.node_specs = [s for s in specs if s.executable != "aggregator_node"]
        self.executables = {e for s in specs for e in s.executables()}
        self.fl_in_graph = bool(self.executables & set(FL_EXECUTABLES))
        self.stop_signal: int | None = None
        self.rounds_done_at: float | None = None

    def _request_stop(self, signum, _frame) -> None:
        self.stop_signal = signum

    def run(self) -> None:
        options, result, progress = self.options, self.result, self.progress
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        os.environ.update({k: v for k, v in node_environment().items() if k.startswith(("ROS_", "FASTDDS"))})
        context = rclpy.Context()
        rclpy.init(context=context)
        self.driver = DemoDriver(self.workstations, self.scenario, tick_rate_hz=options.image_rate_hz,
                                 warmup_timeout_s=options.warmup_timeout_s,
                                 start_on=_start_event(self.executables),
                                 wait_for=_wait_signals(self.executables), context=context)
        # The driver takes ~400 messages/s (bag, record, topic counts), off the safety path (the
        # workstations play the scenario themselves), but on the same 2 cores as the safety loops. Under
        # the SingleThreadedExecutor, rebuilding the wait set per callback took ~40 % of its samples
        # (py-spy) and it received the safety states ~0.1 s late (0.25 s in shorter runs) on two saturated
        # cores; with rclpy's EventsExecutor 3-4 ms, at two thirds of the CPU. Experimental in rclpy: among
        # the nodes only the safety node takes it (its `executor` parameter, docs/safety.md); an earlier try
        # with every node on it spun at full CPU and stalled the demo.
        executor = EventsExecutor(context=context)
        executor.add_node(self.driver)
        recorder = self._recorder()
        self.launcher = Launcher(self.node_specs, log_dir=result.run_dir / "logs")
        self.agg_launcher = Launcher(self.agg_specs, log_dir=result.run_dir / "logs")
        progress(f"[demo] {len(result.specs)} node processes: "
                 + ", ".join(sorted(self.executables)) + f"; logs in {result.run_dir / 'logs'}")
        progress("[demo] the same graph: " + shlex.join(["hrc-fl", "launch", "plant_demo",
                                                         *(f"{k}:={v}" for k, v in self.graph_args.items() if v)]))
        self.start = time.monotonic()
        self.self_proc = psutil.Process()
        try:
            self.launcher.start()
            self.discovery = _discovery_watch(self.driver, self.node_specs, options.discovery_timeout_s)
            self.next_progress = self.start + 1.0
            while self.stop_signal is None:
                executor.spin_once(timeout_sec=0.05)
                if not self._step(time.monotonic()):
                    break
        finally:
            self._teardown(executor, recorder)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        result.record = self.driver.record
        if self.fl_config is not None:
            evaluate_fl(result, self.workstations, sorted(self.labels), progress)

    def _recorder(self):
        """The run's MCAP bag of :data:`BAG_TOPICS` (None when the options leave it out)."""
        if not self.options.record_bag:
            return None
        self.result.bag_path = self.result.run_dir / "bag"
        topics = [f"/{ws}/{t}" for ws in self.workstations for t in BAG_TOPICS] + ["/plant/federated/status"]
        # the bag's subscriptions also count those topics for the report (one callback per message, not two)
        self.driver.rates.count_elsewhere(topics)
        return BagRecorder(self.driver, self.result.bag_path, topics, log=lambda _line: None,
                           on_write=self.driver.rates.count)

    def _step(self, now: float) -> bool:
        """One look at the run after a spin; False when it ends. ``now``: monotonic s."""
        self.discovery.check(now)  # raises NodesNotHeardError: the nodes cannot hear each other
        self._maybe_start_aggregator()
        end = self._end_reason(now)
        if end is not None:
            if end:
                self.progress(f"[demo] {end}; stopping")
                self.result.fl_notes.append(end)
            return False
        if now >= self.next_progress:
            self.next_progress = max(self.next_progress + 2.0, now + 1.0)  # no burst of lines after a slow start
            return self._report_progress(now)
        return True

    def _maybe_start_aggregator(self) -> None:
        """Start the aggregator once every workstation has enough labelled samples (see __init__)."""
        driver, options, result, ws_all = self.driver, self.options, self.result, self.workstations
        if not self.agg_specs or result.fl_started_s is not None or not driver.started:
            return
        enough = all(driver.fl_samples.get(ws, 0) >= options.fl_start_samples for ws in ws_all)
        some = (all(driver.fl_samples.get(ws, 0) >= self.min_samples for ws in ws_all)
                and (all(driver.labels_seen(ws) >= self.labels for ws in ws_all)
                     or driver.scenario_time_s() >= options.length_s))
        if not (enough or some):
            return
        result.fl_started_s = driver.scenario_time_s()
        self.progress(f"[demo] starting the aggregator at {result.fl_started_s:.0f} s; labelled samples: "
                      + "; ".join(f"{ws} {driver.fl_samples.get(ws, 0)} of "
                                  f"{len(driver.labels_seen(ws) & self.labels)}/{len(self.labels)} classes"
                                  for ws in ws_all))
        self.agg_launcher.start()

    def _end_reason(self, now: float) -> str | None:
        """:func:`end_of_run` once the scenario is over; None while the run goes on."""
        driver = self.driver
        if not (driver.started and driver.scenario_time_s() >= self.options.length_s):
            return None
        if self.fl_in_graph and driver.fl_rounds_done() >= self.options.rounds:
            self.rounds_done_at = self.rounds_done_at or now
        return end_of_run(self.options, fl_in_graph=self.fl_in_graph, rounds_done=driver.fl_rounds_done(),
                          clients_waiting=set(self.workstations) - driver.fl_clients_finished(),
                          scenario_time_s=driver.scenario_time_s(), fl_started_s=self.result.fl_started_s,
                          since_rounds_done_s=None if self.rounds_done_at is None else now - self.rounds_done_at,
                          wall_s=now - self.start)

    def _report_progress(self, now: float) -> bool:
        """Sample memory, print the progress line, note exited nodes; False when every node has exited."""
        result = self.result
        sample_memory_total(result, [self.launcher, self.agg_launcher], self.self_proc)
        self.progress(_progress_line(self.driver, self.options, now - self.start))
        dead = [f"{n.label} (exit {n.process.returncode})"
                for n in self.launcher.exited() + self.agg_launcher.exited()]
        result.early_exit = dead
        if dead and len(dead) == len(self.launcher.nodes) + len(self.agg_launcher.nodes):
            self.progress("[demo] every node has exited; stopping")
            return False
        return True

    def _teardown(self, executor, recorder) -> None:
        """Stop every node, take the last usage figures and close the bag (also after an error)."""
        result = self.result
        result.interrupted = self.stop_signal is not None
        if result.interrupted:
            self.progress("[demo] interrupted: stopping every node")
        sample_memory_total(result, [self.launcher, self.agg_launcher], self.self_proc)
        codes = {**self.agg_launcher.stop(), **self.launcher.stop()}
        for label, code in codes.items():
            key = "/" + label.strip("/")
            result.usage.setdefault(key, NodeUsage(key)).exit_code = code
        result.wall_s = time.monotonic() - self.start
        times = self.self_proc.cpu_times()
        result.driver_usage = NodeUsage("demo driver (this process)", times.user + times.system,
                                        self.self_proc.memory_info().rss, pss_bytes(self.self_proc.pid) or 0)
        result.topic_rates = self.driver.rates.rates()
        result.uncounted_topic_suffixes = self.driver.rates.excluded_suffixes
        executor.shutdown(timeout_sec=1.0)  # releases the handles its callback generator may hold
        if recorder is not None:
            result.bag_messages = dict(recorder.close(destroy_subscriptions=False).messages)
        # The driver's DDS participant is not torn down here: deleting its readers deadlocked once in
        # Fast DDS 3.2 (delete_datareader against the discovery thread) after all nodes had stopped. It
        # goes with the process; `hrc-fl demo` ends with os._exit once the report is written.


def _discovery_watch(driver, specs: list[NodeSpec], timeout_s: float):
    """Watch the started nodes' first /diagnostics reports (hrc_fl.discovery_check) from the driver."""
    watch = DiscoveryWatch(expected_nodes(specs), timeout_s)
    watch_diagnostics(driver, watch)
    return watch


