"""``hrc-fl fl-real-check``: one configuration through the real FedML/gRPC path vs. the simulator.

Runs personalised shared-layer sync (encoders federated with FedAvg, personal heads, int8 uplink with
error feedback) on the real watch data, one workstation per subject (10), twice: in the in-process
simulator and through the real multi-process path (an ``hrc-fl aggregator`` process and the 10 clients
of ``hrc-fl fl-client`` over mutual TLS on loopback; by default as threads of one process, ``--processes``
starts one process per client). Writes ``real_vs_sim.json`` and exits 1 when the mean accuracies differ by
more than ``--tolerance`` (models use dropout, so the two runs agree within noise, not bit for bit).
"""

from __future__ import annotations

import argparse

NAME = "fl-real-check"
HELP = "Run personalised FL on the watch data through real FedML processes and compare with the simulator."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (config, certs, logs, real_vs_sim.json)")
    parser.add_argument("--rounds", type=int, default=5, help="federated rounds")
    parser.add_argument("--label-fraction", type=float, default=1.0, help="labelled share of training windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.03, help="allowed |mean accuracy difference|")
    parser.add_argument("--processes", action="store_true", help="one OS process per client (slow on 2 cores)")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="give up on the real run after this")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import numpy as np
    import torch
    import yaml

    from hrc_fl.federated.core.fl_config import free_loopback_ports
    from hrc_fl.federated.evaluation.simulator import MethodSpec, Simulator
    from hrc_fl.federated.evaluation.watch_learner import clients_and_factory

    torch.set_num_threads(1)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    options = {"label_fraction": args.label_fraction, "result_dir": str(out / "real_results")}
    clients, factory = clients_and_factory(options, args.seed)
    names = [f"ws{i}" for i in range(1, len(clients) + 1)]

    # Simulator
    tick = time.perf_counter()
    sim = Simulator(clients=clients, model_factory=factory, lr=3e-3, batch_size=32, seed=args.seed)
    result = sim.run(MethodSpec("personalised_sync", personalisation="fedper", compression="int8"),
                     rounds=args.rounds, eval_every=args.rounds)
    sim_acc = dict(zip(result.client_ids, result.final.accuracy, strict=True))
    sim_s = time.perf_counter() - tick
    print(f"simulator: mean accuracy {np.mean(list(sim_acc.values())):.4f} in {sim_s:.0f} s", flush=True)

    # Real FedML processes
    ports = free_loopback_ports(len(names) + 1)
    config = {
        "federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                 for r, n in enumerate(["aggregator", *names])],
                       "cert_dir": str(out / "certs"), "state_dir": str(out / "state")},
        "rounds": {"num_rounds": args.rounds, "quorum": len(names), "deadline_s": 600.0, "start_wait_s": 600.0},
        "strategy": {"name": "fedavg"},
        "client": {"epochs": 1, "lr": 3e-3, "batch_size": 32, "uplink_encoding": "int8", "min_samples": 1},
        "transport": {"rpc_timeout_s": 30.0, "retry_initial_s": 0.1, "retry_max_s": 2.0, "send_give_up_s": 900.0,
                      "max_message_bytes": 64_000_000, "server_workers": 8},
        "learner": {"module": "hrc_fl.federated.evaluation.watch_learner", "options": options},
        "seed": args.seed,
    }
    if (out / "state").exists():
        import shutil

        shutil.rmtree(out / "state")  # a fresh federation, not a resume
    config_path = out / "federated.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "hrc_fl.cli"]
    subprocess.run([*cli, "fl-certs", "--config", str(config_path)], check=True, env=env, capture_output=True)
    tick = time.perf_counter()
    procs = []
    with open(out / "aggregator.log", "w") as log:
        procs.append(subprocess.Popen([*cli, "aggregator", "--config", str(config_path)], stdout=log,
                                      stderr=subprocess.STDOUT, env=env))
    groups = [[n] for n in names] if args.processes else [names]
    for group in groups:
        with open(out / f"clients_{group[0]}.log", "w") as log:
            argv = [*cli, "fl-client", "--config", str(config_path), "--log-level", "WARNING"]
            for name in group:
                argv += ["--node", name]
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
    try:
        codes = [p.wait(timeout=args.timeout_s) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        print(f"real run timed out; logs in {out}", flush=True)
        return 1
    real_s = time.perf_counter() - tick
    real_acc = {}
    for name, client in zip(names, clients, strict=True):
        path = out / "real_results" / f"{name}.json"
        if path.is_file():
            entry = json.loads(path.read_text())
            if entry["round"] == args.rounds:
                real_acc[client.client_id] = float(entry["accuracy"])
    if any(codes) or len(real_acc) != len(names):
        print(f"real run failed (exit codes {codes}, {len(real_acc)} results); logs in {out}", flush=True)
        return 1
    diff = {cid: real_acc[cid] - sim_acc[cid] for cid in sim_acc}
    summary = {"rounds": args.rounds, "clients": len(names), "label_fraction": args.label_fraction,
               "sim_mean_acc": float(np.mean(list(sim_acc.values()))),
               "real_mean_acc": float(np.mean(list(real_acc.values()))),
               "mean_abs_client_diff": float(np.mean(np.abs(list(diff.values())))),
               "max_abs_client_diff": float(np.max(np.abs(list(diff.values())))),
               "sim_wall_s": sim_s, "real_wall_s": real_s, "per_client": {"sim": sim_acc, "real": real_acc}}
    summary["mean_acc_diff"] = summary["real_mean_acc"] - summary["sim_mean_acc"]
    summary["agree"] = abs(summary["mean_acc_diff"]) <= args.tolerance
    (out / "real_vs_sim.json").write_text(json.dumps(summary, indent=1))
    print(f"{'client':<14}{'simulator':>12}{'real FedML':>12}")
    for cid in sim_acc:
        print(f"{cid:<14}{sim_acc[cid]:>12.4f}{real_acc[cid]:>12.4f}")
    print(f"{'mean':<14}{summary['sim_mean_acc']:>12.4f}{summary['real_mean_acc']:>12.4f}  "
          f"(diff {summary['mean_acc_diff']:+.4f}, tolerance {args.tolerance}); real path {real_s:.0f} s")
    return 0 if summary["agree"] else 1
