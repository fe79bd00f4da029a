"""Helpers for tests that run real federated processes (aggregator + clients) on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hrc_fl.federated.core.fl_config import free_loopback_ports as free_ports  # the FL tests import it from here

REPO = Path(__file__).resolve().parent.parent
GUARD_DIR = Path(__file__).resolve().parent / "fl_guard"


class FederationRun:
    """A federation in a temp folder: config, certificates, and processes with logs."""

    def __init__(self, root: Path, clients: list[str], *, rounds: dict[str, Any], strategy: dict[str, Any],
                 learner_options: dict[str, Any], encoding: str = "int8",
                 sections: dict[str, Any] | None = None) -> None:
        """``sections``: further top-level config sections (e.g. ``secure_aggregation``)."""
        self.root = root
        self.clients = clients
        ports = free_ports(len(clients) + 1)
        names = ["aggregator", *clients]
        self.config = {
            "federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                     for r, n in enumerate(names)],
                           "cert_dir": str(root / "certs"), "state_dir": str(root / "state")},
            "rounds": rounds, "strategy": strategy,
            "client": {"epochs": 1, "lr": 0.01, "batch_size": 32, "uplink_encoding": encoding, "min_samples": 1},
            "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.1, "retry_max_s": 1.0,
                          "send_give_up_s": 120.0, "max_message_bytes": 8_000_000, "server_workers": 4},
            "learner": {"module": "hrc_fl.federated.core.synthetic_learner",
                        "options": {"snapshot_dir": str(root / "snapshots"), **learner_options}},
            "seed": 3,
            **(sections or {}),
        }
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "federated.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.guard_log = root / "net_guard.log"
        self.audit_path = root / "audit.jsonl"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.run_cli(["fl-certs", "--config", str(self.config_path)])

    def summary(self, **extra: Any) -> dict:
        """JSON-able facts about this run for tests (paths as strings)."""
        return {"root": str(self.root), "audit": str(self.audit_path), "guard_log": str(self.guard_log),
                "config": self.config, "logs": {k: str(v) for k, v in self.logs.items()}, **extra}

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), str(REPO), env.get("PYTHONPATH", "")])
        env["HRC_FL_NET_GUARD_LOG"] = str(self.guard_log)
        env["PYTHONWARNINGS"] = "ignore"
        env["HRC_FL_RUNTIME"] = str(self.root / "runtime")
        return env

    def run_cli(self, argv: list[str]) -> None:
        subprocess.run([sys.executable, "-m", "hrc_fl.cli", *argv], check=True, env=self.env, cwd=REPO,
                       capture_output=True, timeout=120)

    def start(self, key: str, argv: list[str]) -> subprocess.Popen:
        log = self.root / f"{key}.log"
        self.logs[key] = log
        with open(log, "ab") as handle:  # the child keeps its own descriptor
            proc = subprocess.Popen([sys.executable, "-m", "hrc_fl.cli", *argv], stdout=handle,
                                    stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        self.procs[key] = proc
        return proc

    def start_aggregator(self, key: str = "aggregator") -> subprocess.Popen:
        return self.start(key, ["aggregator", "--config", str(self.config_path), "--audit", str(self.audit_path)])

    def start_client(self, name: str, **options: Any) -> subprocess.Popen:
        return self.start_clients(name, [name], **options)

    def start_clients(self, key: str, names: list[str], **options: Any) -> subprocess.Popen:
        """One process running the clients ``names`` (threads when several: fewer FedML imports)."""
        argv = ["fl-client", "--config", str(self.config_path)]
        for name in names:
            argv += ["--node", name]
        for k, v in options.items():
            argv += ["--option", f"{k}={v}"]
        return self.start(key, argv)

    def log_text(self, key: str) -> str:
        path = self.logs.get(key)
        return path.read_text(errors="replace") if path and path.is_file() else ""

    def wait_for_log(self, key: str, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_text(key))
            if match:
                return match
            proc = self.procs.get(key)
            if proc is not None and proc.poll() is not None:
                match = re.search(pattern, self.log_text(key))
                if match:
                    return match
                raise AssertionError(f"{key} exited ({proc.returncode}) before {pattern!r}:\n"
                                     f"{self.log_text(key)[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"timeout waiting for {pattern!r} in {key}:\n{self.log_text(key)[-3000:]}")

    def wait_exit(self, key: str, timeout_s: float) -> int:
        try:
            return self.procs[key].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{key} did not exit:\n{self.log_text(key)[-3000:]}") from exc

    def kill(self, key: str) -> None:
        proc = self.procs[key]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


def run_once(tmp_path_factory, name: str, produce) -> dict:
    """Run ``produce(root)`` once per test session even when several xdist workers ask for it.

    The first worker runs it under a file lock in the session's shared temp folder and stores the
    JSON-able result; the others wait for the lock and read it (the pattern pytest-xdist documents).
    """
    import fcntl
    import json

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    result_path = shared / f"{name}.result.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result_path.is_file():
            return json.loads(result_path.read_text())
        root = shared / f"{name}_run"
        result = produce(root)
        result_path.write_text(json.dumps(result))
        return result


def read_log(result: dict, key: str) -> str:
    path = Path(result["logs"][key])
    return path.read_text(errors="replace") if path.is_file() else ""
