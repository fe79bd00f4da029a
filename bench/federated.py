"""Federated benchmark: FedML round overhead (10 clients, loopback, mutual TLS), idle CPU, aggregation
time for 100 clients, and uplink bytes per compression option.

1. Round overhead: a real aggregator process (``hrc-fl aggregator``) and 10 clients over the hardened
   FedML/gRPC path: 9 clients as threads of one host process (2 cores cannot start 10 FedML processes
   quickly: ``import fedml`` alone costs ~10 CPU-s) and 1 client as its own process. Synthetic learner
   (ms of local training). Overhead per round = round wall time (open -> aggregated and committed) minus the slowest
   client's local training time; first round excluded (warm-up).
2. Idle CPU: an 11th configured client never starts, so after the 10 announce themselves the aggregator
   waits ``start_wait_s``; during that window psutil measures the CPU of the aggregator and of the
   single-client process (% of one core).
3. Aggregation of 100 simulated clients' intention-model encoders (FedAvg and trimmed mean), in process.
4. Bytes per client per round on the wire (safe codec, TLS framing excluded) of the intention model:
   shared-layer delta fp32 / fp16 / int8 vs full-model fp32 FedAvg.
5. Secure aggregation (hrc_fl.federated.core.secagg) of the intention model's shared delta for 10 and 100
   simulated clients in process (real certificates, X25519, AES-GCM, ChaCha20, Shamir), against the same
   round without it (int8 uplink, decode, FedAvg). Time = the round's critical path: per phase the
   slowest client (workstations run in parallel) plus the aggregator; the serial sum of all clients'
   work is reported beside it. Bytes = every client's uplink (adverts, shares, masked vector, unmask
   answer) over the int8 uplink of the same round; the fp32 ratio and the extra downlink (forwarded
   adverts and shares) beside it. The timed rounds use bit-packed 8-bit values (``value_bits`` 8, the
   int8 path's bits per value, ``value_clip`` VALUE_CLIP: a ring of 8 + ceil(log2 N) bits); the fixed
   32-bit ring and 4-bit values are measured once at 100 clients for bytes and precision. Precision = the
   relative L2 error of the aggregated mean delta against the exact float mean, with the int8 path's beside it.

    .venv/bin/python bench/federated.py --quick    # < 1 min on an idle 2-core machine
    .venv/bin/python bench/federated.py            # more rounds

Last line: one JSON object (round_overhead_s, idle_cpu_pct_client, idle_cpu_pct_server,
aggregate_100_clients_s, uplink_ratio_int8, secagg_overhead_s_10, secagg_overhead_s_100, secagg_bytes_ratio,
...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _federation_config(root: Path, clients: int, rounds: int, start_wait_s: float) -> Path:
    import yaml

    from hrc_fl.federated.core.fl_config import free_loopback_ports

    names = ["aggregator", *[f"ws{i}" for i in range(1, clients + 2)]]  # the last one never starts
    ports = free_loopback_ports(len(names))
    config = {
        "federation": {"nodes": [{"name": n, "rank": r, "host": "127.0.0.1", "port": ports[r]}
                                 for r, n in enumerate(names)],
                       "cert_dir": str(root / "certs"), "state_dir": str(root / "state")},
        "rounds": {"num_rounds": rounds, "quorum": clients, "deadline_s": 120.0, "start_wait_s": start_wait_s},
        "strategy": {"name": "fedavg"},
        "client": {"epochs": 1, "lr": 0.01, "batch_size": 32, "uplink_encoding": "int8", "min_samples": 1},
        "transport": {"rpc_timeout_s": 10.0, "retry_initial_s": 0.05, "retry_max_s": 0.5, "send_give_up_s": 120.0,
                      "max_message_bytes": 8_000_000, "server_workers": 8},
        "learner": {"module": "hrc_fl.federated.core.synthetic_learner", "options": {"hidden": 64}},
        "seed": 0,
    }
    path = root / "federated.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_clients_host(config_path: str, names: list[str]) -> int:
    """Hidden mode: run several clients as threads of this process."""
    import logging

    from hrc_fl.federated.core.fl_config import load_config
    from hrc_fl.federated.core.learner import load_learner_module
    from hrc_fl.federated.transport.fedml_client import run_client

    logging.basicConfig(level=logging.WARNING)
    config = load_config(config_path)
    module = load_learner_module(config.learner_module)
    threads = [threading.Thread(target=run_client, args=(config, n, module.make_learner(n, config.learner_options,
                                                                                         config.seed)))
               for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def bench_rounds(clients: int, rounds: int, idle_window_s: float) -> dict[str, float]:
    import psutil

    root = Path(tempfile.mkdtemp(prefix="hrc_fl_bench_fed_"))
    start_wait_s = idle_window_s + 4.0
    config = _federation_config(root, clients, rounds, start_wait_s)
    env = dict(os.environ, PYTHONWARNINGS="ignore", HRC_FL_RUNTIME=str(root / "runtime"))
    cli = [sys.executable, "-m", "hrc_fl.cli"]
    subprocess.run([*cli, "fl-certs", "--config", str(config)], check=True, env=env, cwd=REPO, capture_output=True)
    names = [f"ws{i}" for i in range(1, clients + 1)]
    server_log = open(root / "aggregator.log", "w")  # noqa: SIM115 - closed in finally after the processes
    server = subprocess.Popen([*cli, "aggregator", "--config", str(config), "--log-level", "WARNING"],
                              stdout=subprocess.PIPE, stderr=server_log, env=env, cwd=REPO, text=True)
    single = subprocess.Popen([*cli, "fl-client", "--config", str(config), "--node", names[-1], "--log-level",
                               "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    host = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--clients-host", str(config),
                             "--names", ",".join(names[:-1])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    statuses: list[dict] = []
    idle: dict[str, float] = {}
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if not line.startswith("{"):
                continue
            status = json.loads(line)["status"]
            statuses.append(status)
            if status["state"] == "waiting" and len(status["participants"]) == clients and not idle:
                # All 10 online, the 11th never comes: both sides now wait with nothing to do.
                procs = {"server": psutil.Process(server.pid), "client": psutil.Process(single.pid)}
                before = {k: p.cpu_times() for k, p in procs.items()}
                time.sleep(idle_window_s)
                after = {k: p.cpu_times() for k, p in procs.items()}
                idle = {f"idle_cpu_pct_{k}": 100.0 * ((after[k].user + after[k].system) -
                                                       (before[k].user + before[k].system)) / idle_window_s
                        for k in procs}
            if status["state"] == "finished":
                break
        server.wait(timeout=60)
    finally:
        for proc in (server, single, host):
            if proc.poll() is None:
                proc.kill()
        server_log.close()
    done = [s for s in statuses if s["state"] == "done"]
    overheads = [s["metrics"]["round_s"] - s["metrics"]["max_train_s"] for s in done[1:]]
    round_s = [s["metrics"]["round_s"] for s in done[1:]]
    train_s = [s["metrics"]["max_train_s"] for s in done[1:]]
    if not overheads:
        raise RuntimeError(f"no rounds completed; see {root / 'aggregator.log'}")
    return {"round_overhead_s": statistics.median(overheads), "round_overhead_max_s": max(overheads),
            "round_s": statistics.median(round_s), "max_train_s": statistics.median(train_s),
            "rounds_measured": len(overheads), **idle}


def _intention_shared() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    import torch

    from hrc_fl.federated.core.split import shared_state
    from hrc_fl.intention.model import SHARED_PREFIXES, IntentionModel, IntentionModelConfig

    torch.manual_seed(0)
    # no self-supervised projector: the full-model FedAvg baseline sends what it trains (as in fl-report);
    # the projector is personal and never in the shared delta either way
    model = IntentionModel(IntentionModelConfig(num_classes=7, projector_dim=0))
    full = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
            if torch.is_floating_point(v)}
    return shared_state(model, SHARED_PREFIXES), full


def bench_aggregation(repeats: int) -> dict[str, float]:
    from hrc_fl.federated import ClientUpdate, make_strategy

    shared, _ = _intention_shared()
    rng = np.random.default_rng(0)
    updates = [ClientUpdate(f"c{i}", 1, int(rng.integers(10, 100)),
                            {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) for k, v in shared.items()})
               for i in range(100)]
    out = {}
    for name, cfg in (("fedavg", {"name": "fedavg"}), ("trimmed_mean", {"name": "trimmed_mean", "trim_fraction": 0.1})):
        strategy = make_strategy(cfg)
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            strategy.aggregate(1, updates, shared)
            times.append(time.perf_counter() - tick)
        out[f"aggregate_100_clients_{name}_s"] = statistics.median(times)
        out[f"aggregate_100_clients_{name}_spread_s"] = max(times) - min(times)
    out["aggregate_100_clients_s"] = out["aggregate_100_clients_fedavg_s"]
    return out


def bench_bytes() -> dict[str, float]:
    from hrc_fl.federated.core import wire
    from hrc_fl.federated.core.compression import ErrorFeedbackCompressor
    from hrc_fl.federated.transport.fedml_wire import encode_uplink

    shared, full = _intention_shared()
    rng = np.random.default_rng(1)
    delta = {k: rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in shared.items()}
    out: dict[str, float] = {}
    for scheme in ("fp32", "fp16", "int8"):
        payload = encode_uplink(ErrorFeedbackCompressor(scheme=scheme).compress(delta))
        out[f"uplink_bytes_{scheme}"] = float(len(wire.encode({"msg_type": 3, "model_params": payload})))
    out["uplink_bytes_full_model_fp32"] = float(len(wire.encode({"msg_type": 3, "model_params": full})))
    out["uplink_ratio_int8"] = out["uplink_bytes_int8"] / out["uplink_bytes_full_model_fp32"]
    out["uplink_ratio_fp16"] = out["uplink_bytes_fp16"] / out["uplink_bytes_full_model_fp32"]
    return out


def _timed(work):
    tick = time.perf_counter()
    value = work()
    return value, time.perf_counter() - tick


VALUE_CLIP = 0.04  # per-coordinate bound of the packed rings: 4 x the std of the simulated deltas
#: the secure configurations measured: the timed one first
SECAGG_VARIANTS = {"v8": {"value_bits": 8, "value_clip": VALUE_CLIP}, "ring32": {},
                   "v4": {"value_bits": 4, "value_clip": VALUE_CLIP}}


def _rel_error(mean: dict[str, np.ndarray], deltas) -> float:
    """Relative L2 error of an aggregated mean delta against the exact float mean of ``deltas``."""
    from hrc_fl.federated.core import secagg

    exact = np.mean([secagg.flatten(d) for d in deltas], axis=0)
    return float(np.linalg.norm(secagg.flatten(mean) - exact) / np.linalg.norm(exact))


def _plain_round(shared, deltas) -> tuple[float, float, float]:
    """(critical path s, uplink bytes, relative error of the mean) of the round without secure
    aggregation: int8 uplink + FedAvg.

    Each client compresses and encodes its delta once (client time); the server step only dequantizes
    those same updates and aggregates (server time), so no client work is charged to the server."""
    from hrc_fl.federated import ClientUpdate, make_strategy
    from hrc_fl.federated.core import wire
    from hrc_fl.federated.core.compression import ErrorFeedbackCompressor, dequantize_update
    from hrc_fl.federated.core.update import add
    from hrc_fl.federated.transport.fedml_wire import encode_uplink

    def client(delta):
        quantized = ErrorFeedbackCompressor(scheme="int8").compress(delta)
        return quantized, wire.encode({"msg_type": 3, "model_params": encode_uplink(quantized)})

    client_s, uplinks, nbytes = [], [], 0.0
    for delta in deltas:
        (quantized, payload), seconds = _timed(lambda d=delta: client(d))
        client_s.append(seconds)
        uplinks.append(quantized)
        nbytes += len(payload)

    def server():
        updates = [ClientUpdate(f"c{i}", 1, 1, add(shared, dequantize_update(q))) for i, q in enumerate(uplinks)]
        return make_strategy({"name": "fedavg"}).aggregate(1, updates, shared)

    result, server_s = _timed(server)
    mean = {k: result.tensors[k] - shared[k] for k in shared}
    return max(client_s) + server_s, nbytes, _rel_error(mean, deltas)


def _secagg_round(shared, deltas, nodes, ca_pem, drops: int = 0, **variant) -> dict[str, float]:
    """One secure round in process; each client's time includes encoding what it sends (wire format)."""
    from hrc_fl.federated.core import secagg

    names = sorted(nodes)[:len(deltas)]
    config = secagg.SecAggConfig(enabled=True, max_dropouts=max(1, drops), **variant)
    params = secagg.RoundParams.announce(1, names, config, clip_norm=1.0)
    vectors = {n: secagg.flatten(d) for n, d in zip(names, deltas, strict=True)}
    server = secagg.SecAggServer(params, ca_certificate_pem=ca_pem, vector_size=vectors[names[0]].size)
    clients = {n: secagg.SecAggClient(params, n, signing_key_pem=nodes[n][0], certificate_pem=nodes[n][1],
                                      ca_certificate_pem=ca_pem) for n in names}
    totals = {"critical_s": 0.0, "serial_s": 0.0, "uplink_bytes": 0.0, "downlink_extra_bytes": 0.0}

    def sent(messages):
        if isinstance(messages, list):  # one payload per phase and client
            return messages, len(secagg.encode_messages(messages))
        return messages, len(secagg.encode_message(messages))

    def phase(per_client, server_work=None):
        results, times = {}, []
        for name, work in per_client.items():
            (results[name], nbytes), seconds = _timed(lambda w=work: sent(w()))
            totals["uplink_bytes"] += nbytes
            times.append(seconds)
        totals["critical_s"] += max(times)
        totals["serial_s"] += sum(times)
        if server_work is not None:
            _, seconds = _timed(lambda: server_work(results))
            totals["critical_s"] += seconds
            totals["serial_s"] += seconds
        return results

    phase({n: c.advertise for n, c in clients.items()}, lambda r: [server.receive_advert(a) for a in r.values()])
    totals["downlink_extra_bytes"] += sum(sent(server.adverts_for(n))[1] for n in names)
    shares = phase({n: (lambda c=c, n=n: c.share_keys(server.adverts_for(n))) for n, c in clients.items()},
                   lambda r: [server.receive_shares(n, s) for n, s in r.items()])
    totals["downlink_extra_bytes"] += sum(sent(v)[1] for v in shares.values())
    for name, client in clients.items():  # refusals (none here) travel back as names only
        client.receive_shares(server.shares_for(name))
    participants = server.participants()
    alive = {n: c for n, c in clients.items() if n not in names[:drops]}
    phase({n: (lambda c=c, n=n: c.masked_input(vectors[n], participants)) for n, c in alive.items()},
          lambda r: [server.receive_masked(m) for m in r.values()])
    request = server.unmask_request()
    phase({n: (lambda c=c: c.unmask(request)) for n, c in alive.items()},
          lambda r: [server.receive_unmask(a) for a in r.values()])
    result, seconds = _timed(lambda: secagg.apply_secure_sum(shared, server.finish()))
    totals["critical_s"] += seconds
    totals["serial_s"] += seconds
    if not drops:
        totals["rel_error"] = _rel_error({k: result.tensors[k] - shared[k] for k in shared}, deltas)
    totals["ring_bits"] = float(params.ring.ring_bits)
    return totals


def bench_secagg(repeats: int) -> dict[str, float]:
    from cryptography.hazmat.primitives import serialization

    from hrc_fl.federated.core.aggregation import clip_to_norm
    from hrc_fl.federated.transport import certs

    shared, _ = _intention_shared()
    ca_key, ca_cert = certs.make_ca("bench CA", 1)
    nodes = {}
    for i in range(100):
        key, cert = certs.make_node_certificate(f"ws{i:03d}", ca_key, ca_cert, 1)
        nodes[f"ws{i:03d}"] = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()),
                               cert.public_bytes(serialization.Encoding.PEM))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    rng = np.random.default_rng(2)
    out: dict[str, float] = {}
    for clients in (10, 100):
        deltas = [clip_to_norm({k: rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in shared.items()},
                               1.0)[0] for _ in range(clients)]
        timed = SECAGG_VARIANTS["v8"]
        runs = [(_plain_round(shared, deltas), _secagg_round(shared, deltas, nodes, ca_pem, **timed))
                for _ in range(repeats)]
        overheads = [sec["critical_s"] - plain[0] for plain, sec in runs]
        (_, plain_bytes, plain_error), sec = runs[-1]
        out[f"secagg_overhead_s_{clients}"] = statistics.median(overheads)
        out[f"secagg_overhead_spread_s_{clients}"] = max(overheads) - min(overheads)
        out[f"secagg_round_s_{clients}"] = statistics.median(s["critical_s"] for _, s in runs)
        out[f"plain_round_s_{clients}"] = statistics.median(plain[0] for plain, _ in runs)
        out[f"secagg_serial_s_{clients}"] = statistics.median(s["serial_s"] for _, s in runs)
        out[f"secagg_uplink_bytes_{clients}"] = sec["uplink_bytes"]
        out[f"secagg_downlink_extra_bytes_{clients}"] = sec["downlink_extra_bytes"]
        out[f"plain_uplink_bytes_{clients}"] = plain_bytes
        out[f"secagg_bytes_ratio_{clients}"] = sec["uplink_bytes"] / plain_bytes
        out[f"secagg_ring_bits_{clients}"] = sec["ring_bits"]
        out[f"secagg_rel_error_{clients}"] = sec["rel_error"]
        out[f"int8_rel_error_{clients}"] = plain_error
        if clients == 100:
            dropped = _secagg_round(shared, deltas, nodes, ca_pem, drops=1, **timed)
            out["secagg_round_s_100_one_drop"] = dropped["critical_s"]
            for name, variant in SECAGG_VARIANTS.items():
                if name != "v8":
                    other = _secagg_round(shared, deltas, nodes, ca_pem, **variant)
                    out[f"secagg_bytes_ratio_{name}"] = other["uplink_bytes"] / plain_bytes
                    out[f"secagg_rel_error_{name}"] = other["rel_error"]
                    out[f"secagg_ring_bits_{name}"] = other["ring_bits"]
    out["secagg_bytes_ratio"] = out["secagg_bytes_ratio_100"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (< 1 min on an idle machine)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--clients-host", default="", help=argparse.SUPPRESS)
    parser.add_argument("--names", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_host:
        return run_clients_host(args.clients_host, args.names.split(","))
    rounds = 4 if args.quick else 12
    sizes = bench_bytes()
    agg = bench_aggregation(3 if args.quick else 10)
    sec = bench_secagg(1 if args.quick else 5)
    fed = bench_rounds(args.clients, rounds, idle_window_s=3.0 if args.quick else 8.0)
    clients = args.clients
    print(f"{'measure':<58}{'median':>12}{'spread':>12}")
    print(f"{f'FedML round overhead, {clients} clients, loopback TLS (s)':<58}{fed['round_overhead_s']:>12.3f}"
          f"{fed['round_overhead_max_s'] - fed['round_overhead_s']:>12.3f}")
    print(f"{'  round wall time (s) / slowest local training (s)':<58}{fed['round_s']:>12.3f}"
          f"{fed['max_train_s']:>12.3f}")
    print(f"{'idle CPU, aggregator (% of a core)':<58}{fed.get('idle_cpu_pct_server', float('nan')):>12.2f}")
    print(f"{'idle CPU, one client process (% of a core)':<58}{fed.get('idle_cpu_pct_client', float('nan')):>12.2f}")
    for name in ("fedavg", "trimmed_mean"):
        print(f"{f'aggregate 100 clients, {name} (s)':<58}{agg[f'aggregate_100_clients_{name}_s']:>12.4f}"
              f"{agg[f'aggregate_100_clients_{name}_spread_s']:>12.4f}")
    for scheme in ("fp32", "fp16", "int8"):
        print(f"{f'uplink bytes per client-round, shared delta {scheme}':<58}{sizes[f'uplink_bytes_{scheme}']:>12.0f}")
    full = sizes["uplink_bytes_full_model_fp32"]
    print(f"{'uplink bytes per client-round, full model fp32 (FedAvg)':<58}{full:>12.0f}")
    print(f"per round with {clients} clients: int8 {sizes['uplink_bytes_int8'] * clients:.0f} B, "
          f"full fp32 {full * clients:.0f} B; rounds measured {fed['rounds_measured']}")
    for n in (10, 100):
        print(f"{f'secure aggregation overhead per round, {n} clients (s)':<58}{sec[f'secagg_overhead_s_{n}']:>12.3f}"
              f"{sec[f'secagg_overhead_spread_s_{n}']:>12.3f}")
        print(f"{'  critical path with / without (s); serial (s)':<58}"
              f"{sec[f'secagg_round_s_{n}']:>12.3f}{sec[f'plain_round_s_{n}']:>12.3f}{sec[f'secagg_serial_s_{n}']:>10.2f}")
        print(f"{'  uplink B per round with / without (int8); ratio':<58}{sec[f'secagg_uplink_bytes_{n}']:>12.0f}"
              f"{sec[f'plain_uplink_bytes_{n}']:>12.0f}{sec[f'secagg_bytes_ratio_{n}']:>10.2f}")
    print(f"{'  100 clients, one dropped after masking: round (s)':<58}{sec['secagg_round_s_100_one_drop']:>12.3f}")
    print(f"{'  ring bits / rel. error of the mean (int8 path beside), 100':<58}{sec['secagg_ring_bits_100']:>12.0f}"
          f"{sec['secagg_rel_error_100']:>12.2e}{sec['int8_rel_error_100']:>10.2e}")
    for name in ("ring32", "v4"):
        label = f"  {name}, 100 clients: ring bits; bytes ratio; rel. error"
        print(f"{label:<58}{sec[f'secagg_ring_bits_{name}']:>12.0f}"
              f"{sec[f'secagg_bytes_ratio_{name}']:>12.2f}{sec[f'secagg_rel_error_{name}']:>10.2e}")
    sec["secagg_bytes_ratio_fp32"] = sec["secagg_uplink_bytes_100"] / (100 * sizes["uplink_bytes_fp32"])
    print(f"{'  uplink ratio against an fp32 uplink, 100 clients':<58}{sec['secagg_bytes_ratio_fp32']:>12.2f}")
    result = {**fed, **agg, **sizes, **sec, "clients": clients}
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
