"""The demo's federation: its run-local federation file, the seeded model stores, the label-space checks
before the run, and the evaluation of the stored models after it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from hrc_fl.data.datasets import WATCH_CLASSES
from hrc_fl.demo.fl_eval import evaluate_store, global_tensor_sizes, uplink_bytes_per_round
from hrc_fl.demo.options import DemoOptions, DemoRun
from hrc_fl.federated.core.fl_config import free_loopback_ports
from hrc_fl.federated.transport.certs import generate_federation
from hrc_fl.graph import FL_AUDIT, replay_subject
from hrc_fl.intention.labels import FEDERATION_LABELS_KEY, configured_label_spaces, labels_at
from hrc_fl.intention.model_store import ModelStore, base_store_dir, seed_from
from hrc_fl.paths import config_dir, runtime_dir


def _certs_cover(cert_dir: Path, names: list[str]) -> bool:
    return (cert_dir / "ca.crt").is_file() and all(
        (cert_dir / f"{n}.crt").is_file() and (cert_dir / f"{n}.key").is_file() for n in names)


def write_fl_config(options: DemoOptions, run_dir: Path) -> Path | None:
    """The run's federation file: config/federated.yaml with the demo's workstations (free loopback
    ports), ``--rounds``, a quorum and deadline for N workstations on one small machine, the run folder
    as state dir, and certificates that cover every node (the setup's ones for ws1..ws3, otherwise a
    CA and certificates generated for this run into ``<run>/fl_certs``)."""
    source = config_dir() / "federated.yaml"
    if not source.is_file():
        return None
    config = yaml.safe_load(source.read_text()) or {}
    fed = config.setdefault("federation", {})
    names = ["aggregator"] + [f"ws{i}" for i in range(1, options.workstations + 1)]
    ports = free_loopback_ports(len(names))
    fed["nodes"] = [{"name": n, "rank": r, "host": "127.0.0.1", "port": p}
                    for r, (n, p) in enumerate(zip(names, ports, strict=True))]
    configured = Path(fed.get("cert_dir") or runtime_dir() / "fl_certs")
    if not _certs_cover(configured, names):
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


def seed_model_stores(run_dir: Path, workstations: list[str]) -> None:
    # The run's stores start from the base model (hrc-fl train-intention) when there is one, before any
    # node starts, so the FL client's starting head does not depend on which node came up first.
    base = ModelStore(base_store_dir())
    for ws in workstations:
        store = ModelStore(run_dir / "models" / ws)
        store.root.mkdir(parents=True, exist_ok=True)
        seed_from(store, base)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)


def label_space_notes(fl_label_space: set[str]) -> list[str]:
    """Mismatches between the replay's classes, the federation's labels and the nodes' ``labels``."""
    notes = []
    if fl_label_space and not set(WATCH_CLASSES) <= fl_label_space:
        notes.append(f"replayed classes {sorted(set(WATCH_CLASSES) - fl_label_space)} are not in the "
                     f"federation's label space; their events are dropped")
    for name, node_labels in configured_label_spaces(config_dir()).items():
        if name != "federated.yaml" and fl_label_space and set(node_labels) != fl_label_space:
            notes.append(f"config/{name} labels {list(node_labels)} differ from the federation's "
                         f"{sorted(fl_label_space)}")
    return notes


def evaluate_fl(result: DemoRun, workstations: list[str], labels: list[str],
                 progress: Callable[[str], None]) -> None:
    """Per-worker accuracy of the stored models on held-out real data, and uplink bytes per round."""
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
