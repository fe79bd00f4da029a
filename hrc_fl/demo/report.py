"""The demo report: Markdown with PNG plots, every number taken from one run (a DemoRun).

Sections whose nodes are not in this build say "not available in this build" instead of numbers.
A ``summary.json`` next to the report holds the key figures for tests and benchmarks.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
import time
from pathlib import Path

import numpy as np

from hrc_fl.demo.options import DemoRun
from hrc_fl.demo.record import DemoRecord, FederatedSample, WorkstationRecord, rounds_completed
from hrc_fl.safety.monitor import SafetyConfig, reason_kind
from hrc_fl.sim.scenario import BODY_RADIUS_M, FALSE_STOP_MARGIN_M, false_stop_distance_m

ZONE_NAMES = ("CLEAR", "WARNING", "REDUCED_SPEED", "PROTECTIVE_STOP")
NOT_AVAILABLE = "not available in this build"
HUMAN_SPEED_MPS = 1.6  # ISO 13855 walking speed, for the separation a latency implies
#: The issue's "farther than 2 m from every robot" (scripted worker centre distance from the robot base).
FAR_WORKER_M = 2.0
FULL_SPEED_SCALE = 0.999
PROTECTIVE_STOP = 3


def _pct(values: list[float], q: float) -> float:
    """Percentile of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.percentile(finite, q)) if finite else math.nan


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def zone_visits(rec: WorkstationRecord) -> list[tuple[float, str]]:
    """(scenario time, zone name) at each zone change, in order."""
    visits: list[tuple[float, str]] = []
    for s in rec.safety:
        name = s.zone_name or (ZONE_NAMES[s.zone] if 0 <= s.zone < len(ZONE_NAMES) else str(s.zone))
        if not visits or visits[-1][1] != name:
            visits.append((s.t_s, name))
    return visits


def federated_rounds(samples: list[FederatedSample]) -> dict[str, dict[int, dict[str, float]]]:
    """node_id -> round -> last metrics reported for that round."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for s in samples:
        if s.metrics:
            out.setdefault(s.node_id, {}).setdefault(s.round, {}).update(s.metrics)
    return out


def _accuracy_key(metrics: dict[str, float]) -> str | None:
    # "accuracy", "val_acc", "acc" - not "num_accepted"
    keys = [k for k in metrics if re.search(r"(^|_)acc(uracy)?($|_)", k.lower())]
    return sorted(keys, key=len)[0] if keys else None


def _federated_section(run: DemoRun, rounds: dict[str, dict[int, dict[str, float]]], summary: dict,
                       out: Path) -> list[str]:
    """Rounds, per-worker accuracy over rounds and uplink bytes per round, all from this run."""
    lines = [f"Rounds completed (aggregator): {summary['fl_rounds_completed']} of {run.options.rounds}."]
    if run.fl_started_s is not None:
        lines.append(f"The aggregator was started at scenario time {run.fl_started_s:.0f} s, once every FL "
                     f"client had stored {run.options.fl_start_samples} replay-labelled samples or samples of "
                     "every class (or at the scenario's end).")
    lines += [f"- note: {n}" for n in run.fl_notes]
    record = run.record
    if record is not None and any(r.task_events for r in record.workstations.values()):
        lines += ["", "Replay task events (labels) per workstation: " + "; ".join(
            f"{ws} (subject {ws.removeprefix('ws')}): {sum(r.task_events.values())} events, "
            f"{len(r.task_events)} classes" for ws, r in record.workstations.items())]
    acc_series: dict[str, tuple[list[float], list[float]]] = {}
    base: dict[str, float] = {}
    for ws, results in sorted(run.fl_accuracy.items()):
        for r in results:
            if r.after_round is None:
                base[ws] = r.accuracy
        by_round = {r.after_round: r.accuracy for r in results if r.after_round is not None}
        if by_round:
            acc_series[ws] = (sorted(by_round), [by_round[k] for k in sorted(by_round)])
    # Accuracy metrics published on federated/status (none in this build's FL nodes) are shown as well.
    for node_id, by_round in rounds.items():
        for rnd, metrics in sorted(by_round.items()):
            key = _accuracy_key(metrics)
            if key:
                series = acc_series.setdefault(f"{node_id} ({key})", ([], []))
                series[0].append(rnd)
                series[1].append(metrics[key])
    if acc_series:
        _plot_lines(acc_series, "per-worker accuracy over rounds", "accuracy", out / "fl_accuracy.png")
        all_rounds = sorted({r for x, _ in acc_series.values() for r in x})
        lines += ["", "Per-worker accuracy of the personalised model (global shared encoders after round r + "
                  "the worker's own head) that the FL client stored during the run, on the held-out last 30 % "
                  "of its own subject's real watch recordings (IMU windows never replayed in the run; "
                  "round 0 = the federation's initial encoders). `base` = the seeded base model before FL.",
                  "", "![accuracy](fl_accuracy.png)", "",
                  "| worker (subject) | base | " + " | ".join(f"round {r}" for r in all_rounds) + " |",
                  "|---|---:|" + "---:|" * len(all_rounds)]
        for name, (xs, ys) in sorted(acc_series.items()):
            by = dict(zip(xs, ys, strict=True))
            subject = f" (subject {name.removeprefix('ws')})" if name in run.fl_accuracy else ""
            lines.append(f"| {name}{subject} | {_fmt(base.get(name, math.nan))} | "
                         + " | ".join(_fmt(by.get(r, math.nan)) for r in all_rounds) + " |")
        workers = {n: dict(zip(*acc_series[n], strict=True)) for n in run.fl_accuracy if n in acc_series}
        if len(workers) >= 2:
            # over all workers, or n/a where one of them has no value (a partial mean would flatter)
            columns = [base, *({n: by[r] for n, by in workers.items() if r in by} for r in all_rounds)]
            for label, reduce in (("mean of workers", statistics.fmean), ("worst worker", min)):
                cells = [_fmt(reduce(c[n] for n in workers) if set(workers) <= set(c) else math.nan)
                         for c in columns]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            summary["accuracy_mean"] = {str(r): statistics.fmean(by[r] for by in workers.values())
                                        for r in all_rounds if all(r in by for by in workers.values())}
    else:
        lines.append(f"Per-worker accuracy: {NOT_AVAILABLE} (no model version was stored by an FL client).")
    summary["accuracy"] = {n: dict(zip(x, y, strict=True)) for n, (x, y) in acc_series.items()}
    summary["accuracy_base"] = base
    bytes_series: dict[str, tuple[list[float], list[float]]] = {}
    if run.fl_uplink_bytes:
        xs = sorted(run.fl_uplink_bytes)
        bytes_series["uplink, all clients"] = (xs, [float(run.fl_uplink_bytes[r]) for r in xs])
    for node_id, by_round in rounds.items():
        for rnd, metrics in sorted(by_round.items()):
            for name, value in metrics.items():
                if "bytes" in name.lower():
                    series = bytes_series.setdefault(f"{node_id} {name}", ([], []))
                    series[0].append(rnd)
                    series[1].append(value)
    summary["uplink_bytes_per_round"] = {str(r): b for r, b in sorted(run.fl_uplink_bytes.items())}
    if bytes_series:
        _plot_lines(bytes_series, "bytes per round", "bytes", out / "fl_bytes.png")
        lines += ["", "![bytes per round](fl_bytes.png)", ""]
        if run.fl_uplink_bytes:
            lines += ["Uplink bytes per round: tensor payload of every update the aggregator received (its audit "
                      "file: tensor names and encoding per update; sizes from the run's global model; "
                      "wire framing and TLS not included).", "", "| round | uplink bytes (all clients) |",
                      "|---:|---:|"] + [f"| {r} | {b} |" for r, b in sorted(run.fl_uplink_bytes.items())]
    else:
        lines.append(f"Bytes per round: {NOT_AVAILABLE} (no update was received by the aggregator).")
    return lines


def _plot_safety(rec: WorkstationRecord, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s.t_s for s in rec.safety])
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    axes[0].plot(t, [s.min_separation_m for s in rec.safety], label="separation (min, surface) [m]")
    axes[0].plot(t, [s.protective_separation_m for s in rec.safety], label="S_p [m]")
    axes[0].plot(t, [s.worker_distance_m for s in rec.safety], "--", label="scripted worker centre distance [m]")
    axes[0].set_ylabel("m")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].step(t, [s.zone for s in rec.safety], where="post")
    axes[1].set_yticks(range(len(ZONE_NAMES)), ZONE_NAMES, fontsize=8)
    axes[1].set_ylabel("zone")
    for r_t, ok, _msg in rec.resets:
        axes[1].axvline(r_t, color="green" if ok else "red", ls=":", lw=1)
    axes[2].plot(t, [s.speed_scale for s in rec.safety], label="speed scale (safety)")
    if rec.robot:
        rt = np.array([r.t_s for r in rec.robot])
        speeds = np.array([r.tcp_speed_mps for r in rec.robot])
        axes[2].plot(rt, speeds / max(1e-9, float(speeds.max())), alpha=0.7, label="robot TCP speed (normalised)")
    axes[2].set_ylabel("0..1")
    axes[2].set_xlabel("scenario time [s]")
    axes[2].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{rec.name}: safety timeline")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_lines(series: dict[str, tuple[list[float], list[float]]], title: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in sorted(series.items()):
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_latency(rows: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [n for n, v in rows.items() if v]
    ax.boxplot([np.asarray(rows[n]) * 1000.0 for n in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title("latencies")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def ground_truth_false_stop_distance_m() -> float:
    """The demo robot's false-stop distance (worker centre from the base, m) from the packaged robot file
    and the safety node's S_p constants (hrc_fl.sim.scenario.false_stop_distance_m)."""
    from hrc_fl.paths import config_file
    from hrc_fl.safety.config import load_robot_model

    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    return false_stop_distance_m(robot, SafetyConfig(robot=robot).separation_parameters())


def _commanded(s) -> bool:
    """A stop a worker asked for (STOP gesture / ALL_STOP) or one waiting for the operator's reset."""
    return s.reset_required or "stop command" in s.reason


def _stale(s) -> bool:
    return any(reason_kind(c).endswith(": stale") for c in s.reason.split(";"))


def safety_metrics(rec: WorkstationRecord, false_stop_m: float) -> dict:
    """Per workstation, from its SafetyZoneState samples and the scenario's ground truth (the scripted
    worker distance of each state):

    - ``false_stops``: PROTECTIVE_STOP states, not commanded and not waiting for a manual reset, while
      the worker's centre is farther than ``false_stop_m`` from the robot base (``false_stop_rate``: of
      all states there); ``far_stops``: the same while the worker is farther than 2 m;
    - ``stale_stops``: PROTECTIVE_STOP states with a stale input among their reasons (anywhere);
    - ``full_speed_fraction``: share of the time (state to state) at speed scale 1;
    - camera->safety latency per camera frame: the first decision on each frame (its image stamp is the
      state's stamp minus its perception latency), p50 and p95.
    """
    states = rec.safety
    beyond = [s for s in states if s.worker_distance_m > false_stop_m]
    false = [s for s in beyond if s.zone == PROTECTIVE_STOP and not _commanded(s)]
    far = [s for s in states if s.worker_distance_m > FAR_WORKER_M]
    far_stops = [s for s in far if s.zone == PROTECTIVE_STOP and not _commanded(s)]
    total_s = full_s = 0.0
    for a, b in itertools.pairwise(states):
        dt = max(0.0, b.t_s - a.t_s)
        total_s += dt
        full_s += dt if a.speed_scale >= FULL_SPEED_SCALE else 0.0
    first: dict[float, float] = {}
    for s in states:
        if math.isfinite(s.stamp_s) and math.isfinite(s.perception_latency_s):
            image = round(s.stamp_s - s.perception_latency_s, 4)
            first[image] = min(first.get(image, math.inf), s.perception_latency_s)
    latencies = list(first.values())
    return {
        "false_stop_distance_m": false_stop_m, "false_stops": len(false),
        "false_stop_rate": len(false) / len(beyond) if beyond else math.nan,
        "far_stops": len(far_stops), "far_stop_rate": len(far_stops) / len(far) if far else math.nan,
        "stale_stops": sum(1 for s in states if s.zone == PROTECTIVE_STOP and _stale(s)),
        "full_speed_fraction": full_s / total_s if total_s > 0 else math.nan,
        "camera_to_safety_latency_p50_s": _pct(latencies, 50), "camera_to_safety_latency_p95_s": _pct(latencies, 95),
        "frames_decided": len(latencies),
    }


def write_report(run: DemoRun) -> Path:
    """Write report.md (+ PNGs, summary.json) into the run folder; returns the report path."""
    record: DemoRecord = run.record or DemoRecord()
    out = run.run_dir
    executables = {e for s in run.specs for e in s.executables()}  # a composed process runs several
    lines = ["# hrc_fl plant demo report", "",
             f"Run of {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}: "
             f"{run.options.workstations} workstation(s), scenario length {run.options.length_s:.0f} s, "
             f"{run.options.rounds} FL round(s) requested, wall time {run.wall_s:.1f} s "
             f"(warm-up {record.warmup_s:.1f} s)" + (" — **interrupted by the user**" if run.interrupted else "")
             + ". Every number below comes from this run.", ""]
    summary: dict = {"workstations": {}, "wall_s": run.wall_s, "warmup_s": record.warmup_s,
                     "interrupted": run.interrupted, "nodes": sorted(executables)}

    lines += ["## Scenario (scripted motion on real detections)", "",
              f"- The camera of each workstation relays real photos: `{run.options.worker_photo}` (a real person) "
              f"and, during the STOP-gesture window, `{run.options.palm_photo}` (a real open palm).",
              "- Photos are static, so the worker's approach is scripted: the pose node's real keypoints "
              "(workstation frame) are translated so that the body centre follows the scripted distance "
              "(dashed line in the safety plots); shape and frame-to-frame jitter of the detection are kept.",
              "- The operator reset (`safety/reset`) is pressed at scripted times; the simulated robot "
              "(robot_sim_node) follows a UR5e joint path scaled by `robot/speed_scale`.", ""]

    # Nodes and resources
    lines += ["## Nodes", "", "| node | CPU s | CPU share | peak RSS MiB | exit code |", "|---|---:|---:|---:|---:|"]
    usage = list(run.usage.values()) + ([run.driver_usage] if run.driver_usage else [])
    for u in sorted(usage, key=lambda u: u.label):
        share = u.cpu_s / run.wall_s if run.wall_s > 0 else math.nan
        lines.append(f"| {u.label} | {u.cpu_s:.1f} | {share:.0%} | {u.peak_rss_bytes / 2**20:.0f} | "
                     f"{'' if u.exit_code is None else u.exit_code} |")
    summary["cpu_share"] = {u.label: (u.cpu_s / run.wall_s if run.wall_s > 0 else None) for u in usage}
    summary["peak_rss_mib"] = {u.label: u.peak_rss_bytes / 2**20 for u in usage}
    # Whole-demo memory: the peak of the simultaneous sums over all processes. PSS splits shared pages among
    # the processes that map them (the honest total); the RSS sum counts each shared library once per process.
    summary["peak_pss_mib_total"] = run.peak_pss_bytes_total / 2**20
    summary["peak_rss_mib_total"] = run.peak_rss_bytes_total / 2**20
    if run.early_exit:
        lines += ["", "Nodes that exited before the end: " + ", ".join(run.early_exit)
                  + " (see the logs folder)."]
    lines += ["", f"Node logs: `{out / 'logs'}`", ""]

    # Topics
    lines += ["## Topics that flowed", ""]
    if run.topic_rates:
        lines += ["| topic | type | messages | rate Hz |", "|---|---|---:|---:|"]
        lines += [f"| {r.topic} | {r.type_name} | {r.count} | {r.rate_hz:.1f} |" for r in run.topic_rates]
    else:
        lines.append("No topics were discovered.")
    if run.uncounted_topic_suffixes:
        lines += ["", "Not counted (to keep the demo driver, which relays the bodies, light): topics ending in "
                  + ", ".join(f"`{s}`" for s in run.uncounted_topic_suffixes) + "."]
    summary["topic_counts"] = {r.topic: r.count for r in run.topic_rates}
    lines.append("")

    # Safety
    false_stop_m = ground_truth_false_stop_distance_m()
    lines += ["## Safety timeline", "",
              f"A stop is counted as **false** when it was neither commanded nor waiting for a manual reset while "
              f"the worker's scripted centre was farther than {false_stop_m:.2f} m from the robot base: the robot's "
              f"reach bound + a body radius of {BODY_RADIUS_M:.1f} m + the true protective separation distance "
              f"(S_p at full speed with the worker's true position: no perception latency or uncertainty) + a "
              f"margin of {FALSE_STOP_MARGIN_M:.1f} m (what healthy perception adds). Stale-input stops: stop "
              "states with a stale input among their reasons.", ""]
    for ws, rec in record.workstations.items():
        ws_sum: dict = {}
        summary["workstations"][ws] = ws_sum
        lines += [f"### {ws}", ""]
        ws_sum["images_published"] = rec.images_published
        ws_sum["bodies_relayed"] = rec.bodies_relayed
        ws_sum["task_events"] = dict(sorted(rec.task_events.items()))
        ws_sum["task_event_labels"] = len(rec.task_events)
        if not rec.safety:
            why = ("no safety_node in the graph" if "safety_node" not in executables
                   else "the safety node published no state")
            lines += [f"Safety timeline: {NOT_AVAILABLE} ({why}). Bodies relayed from the pose node: "
                      f"{rec.bodies_relayed}; robot samples: {len(rec.robot)}.", ""]
            ws_sum["zones_visited"] = []
            continue
        png = f"safety_{ws}.png"
        _plot_safety(rec, out / png)
        visits = zone_visits(rec)
        ws_sum["zones_visited"] = sorted({name for _, name in visits})
        ws_sum["zone_sequence"] = [name for _, name in visits]
        seps = [s.min_separation_m for s in rec.safety if math.isfinite(s.min_separation_m)]
        lines += [f"![safety timeline {ws}]({png})", "",
                  f"({rec.warmup_safety_states} states before the scenario started are left out.)", "",
                  "Zone sequence: " + " → ".join(f"{name} ({t:.1f} s)" for t, name in visits[:40])
                  + (f" … and {len(visits) - 40} more changes (all in summary.json)" if len(visits) > 40 else ""),
                  "",
                  f"- safety states received: {len(rec.safety)}; minimum separation "
                  f"{_fmt(min(seps) if seps else math.nan)} m; S_p median "
                  f"{_fmt(_pct([s.protective_separation_m for s in rec.safety], 50))} m",
                  f"- time with reset required (interlock held): "
                  f"{_interlock_time(rec):.1f} s; resets pressed: "
                  + (", ".join(f"{t:.1f} s {'ok' if ok else 'refused'} ({msg})" for t, ok, msg in rec.resets[:12])
                     + (f" and {len(rec.resets) - 12} more" if len(rec.resets) > 12 else "") or "none"),
                  ]
        causes = stop_causes(rec)
        ws_sum["stop_causes"] = causes
        metrics = safety_metrics(rec, false_stop_m)
        ws_sum.update(metrics)
        lines += [f"- false stops: {metrics['false_stops']} states ({_fmt(100 * metrics['false_stop_rate'], 1)} % "
                  f"of the states with the worker farther than {false_stop_m:.2f} m); stops while the worker was "
                  f"farther than {FAR_WORKER_M:.0f} m: {metrics['far_stops']}; stale-input stops: "
                  f"{metrics['stale_stops']}; time at full speed: {_fmt(100 * metrics['full_speed_fraction'], 1)} %",
                  f"- camera→safety latency (first decision on each of {metrics['frames_decided']} frames): "
                  f"p50 {_fmt(metrics['camera_to_safety_latency_p50_s'] * 1000, 1)} ms, "
                  f"p95 {_fmt(metrics['camera_to_safety_latency_p95_s'] * 1000, 1)} ms"]
        if causes:
            lines.append("- why PROTECTIVE_STOP (share of its states, a state can have several reasons): "
                         + "; ".join(f"{c} {share:.0%}" for c, share in causes.items()))
        commands = [g for g in rec.gestures if g.is_command]
        stop_cmds = [g for g in commands if g.gesture_name.upper() in ("STOP", "OPEN_PALM")]
        ws_sum["stop_commands"] = len(stop_cmds)
        lines.append(f"- gesture commands: {len(commands)} (STOP: {len(stop_cmds)}"
                     + (f", first at {stop_cmds[0].t_s:.1f} s" if stop_cmds else "") + ")"
                     if "hands_node" in executables else f"- gestures: {NOT_AVAILABLE} (no hands_node)")
        if rec.robot:
            lines.append(f"- robot TCP speed: median {_fmt(_pct([r.tcp_speed_mps for r in rec.robot], 50))} m/s, "
                         f"max {_fmt(max(r.tcp_speed_mps for r in rec.robot))} m/s")
        lines.append("")

    per_ws = [w for w in summary["workstations"].values() if "false_stops" in w]
    summary["false_stops"] = sum(w["false_stops"] for w in per_ws)
    summary["stale_stops"] = sum(w["stale_stops"] for w in per_ws)
    summary["far_stops"] = sum(w["far_stops"] for w in per_ws)
    fractions = [w["full_speed_fraction"] for w in per_ws if math.isfinite(w["full_speed_fraction"])]
    summary["full_speed_fraction"] = statistics.fmean(fractions) if fractions else math.nan
    summary["full_speed_fraction_min"] = min(fractions) if fractions else math.nan
    summary["camera_to_safety_latency_p95_s"] = max(
        (w["camera_to_safety_latency_p95_s"] for w in per_ws if math.isfinite(w["camera_to_safety_latency_p95_s"])),
        default=math.nan)

    # Latencies
    lines += ["## Latencies", ""]
    lat_rows: dict[str, list[float]] = {}
    for ws, rec in record.workstations.items():
        lat_rows[f"{ws} camera→bodies"] = rec.body_age_s
        lat_rows[f"{ws} safety perception latency"] = [s.perception_latency_s for s in rec.safety
                                                       if math.isfinite(s.perception_latency_s)]
        lat_rows[f"{ws} safety state age"] = rec.safety_age_s
    if any(lat_rows.values()):
        lines += ["| path | n | median ms | p95 ms | added separation at 1.6 m/s (median) |",
                  "|---|---:|---:|---:|---:|"]
        for name, values in lat_rows.items():
            if values:
                med = _pct(values, 50)
                lines.append(f"| {name} | {len(values)} | {med * 1000:.1f} | {_pct(values, 95) * 1000:.1f} | "
                             f"{HUMAN_SPEED_MPS * med * 1000:.0f} mm |")
        _plot_latency(lat_rows, out / "latencies.png")
        lines += ["", "![latencies](latencies.png)", "",
                  "camera→bodies: image stamp to the bodies message arriving at the demo driver; "
                  "perception latency: as the safety node computes it (feeds Z_d)."]
        summary["latency_median_s"] = {n: _pct(v, 50) for n, v in lat_rows.items() if v}
    else:
        lines.append(f"Latencies: {NOT_AVAILABLE} (no pose or safety node published).")
    lines.append("")

    # Federated learning
    lines += ["## Federated learning", ""]
    rounds = federated_rounds(record.federated)
    summary["fl_rounds_completed"] = rounds_completed(record.federated)
    if not record.federated:
        why = "no fl_client_node/aggregator_node in the graph" if not executables & {"fl_client_node",
                                                                                   "aggregator_node"} \
            else "no federated/status was published"
        lines.append(f"Federated learning: {NOT_AVAILABLE} ({why}).")
        summary["accuracy"] = {}
    else:
        lines += _federated_section(run, rounds, summary, out)
    lines.append("")

    # Intention
    lines += ["## Intention", ""]
    if any(rec.intentions for rec in record.workstations.values()):
        for ws, rec in record.workstations.items():
            lines.append(f"- {ws}: " + ", ".join(f"{k}: {v}" for k, v in sorted(rec.intentions.items())))
    else:
        lines.append(f"Intention estimates: {NOT_AVAILABLE} (no intention/estimate published).")
    lines.append("")

    if run.bag_path is not None:
        lines += ["## Recording", "", f"MCAP bag: `{run.bag_path}` (`hrc-fl play {run.bag_path}`), messages: "
                  + (", ".join(f"{t} {n}" for t, n in sorted(run.bag_messages.items()) if n) or "none"), ""]
        summary["bag_messages"] = dict(run.bag_messages)
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return report


def stop_causes(rec: WorkstationRecord, top: int = 6) -> dict[str, float]:
    """Reasons the safety node gave while in PROTECTIVE_STOP, numbers removed, as shares of those states."""
    stops = [s for s in rec.safety if s.zone == len(ZONE_NAMES) - 1]
    counts: dict[str, int] = {}
    for s in stops:
        for clause in {reason_kind(c) for c in (s.reason or "no reason given").split(";")}:
            if clause:
                counts[clause] = counts.get(clause, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {k: v / len(stops) for k, v in ranked} if stops else {}


def _interlock_time(rec: WorkstationRecord) -> float:
    total = 0.0
    for a, b in itertools.pairwise(rec.safety):
        if a.reset_required:
            total += b.t_s - a.t_s
    return total
