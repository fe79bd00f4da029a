"""A plant across hosts: the aggregator and two workstations each on a "host" of its own (a network
namespace this test creates, joined by a bridge; addresses only from the documentation range
192.0.2.0/24, assigned here), with the discovery range a plant uses (SUBNET).

- DDS topics cross: each workstation's node is heard from the plant server, and the workstation
  discovers the server's publisher.
- FL rounds complete over mutual TLS between the hosts with per-host certificates (``hrc-fl fl-certs``
  from a configuration that names each node's host).
- A wrong certificate is refused: one from another CA, and one of another host (ws1's, used from ws2).

Real processes: ``hrc-fl aggregator`` and ``hrc-fl fl-client`` (FedML cross-silo over gRPC), the
registered ``lib/hrc_fl/robot_sim_node``. Runs once per session; each test asserts one aspect.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from hrc_fl.launcher import executable_path, node_environment

REPO = Path(__file__).resolve().parent.parent
#: host -> (address on the plant network, node name in the federation, FedML rank)
HOSTS = {"agg": ("192.0.2.1", "aggregator", 0), "ws1": ("192.0.2.11", "ws1", 1), "ws2": ("192.0.2.12", "ws2", 2)}
FL_PORT = 47100  # each host listens on its own address; the namespaces keep these ports private
ROUNDS = 2
pytestmark = pytest.mark.xdist_group(name="multi_host_plant")


def _netns_usable() -> bool:
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False
    name = f"hrcprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return made


needs_netns = pytest.mark.skipif(not _netns_usable(),
                                 reason="network namespaces unavailable (needs root and `ip netns`; CI runs as root)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Plant:
    """Three network namespaces on one bridge (in the plant server's namespace), loopback up in each."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = {host: f"hrc{tag}{host}" for host in HOSTS}
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> Plant:
        try:
            for ns in self.ns.values():
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            server = self.ns["agg"]
            _ip("-n", server, "link", "add", "br0", "type", "bridge")
            _ip("-n", server, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            for host, (address, _, _) in HOSTS.items():
                if host == "agg":
                    continue
                _ip("-n", self.ns[host], "link", "add", "eth0", "type", "veth", "peer", "name", f"p{host}",
                    "netns", server)
                _ip("-n", server, "link", "set", f"p{host}", "master", "br0")
                _ip("-n", server, "link", "set", f"p{host}", "up")
                _ip("-n", self.ns[host], "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", self.ns[host], "link", "set", "eth0", "up")
                _ip("-n", self.ns[host], "route", "add", "224.0.0.0/4", "dev", "eth0")  # DDS discovery multicast
            _ip("-n", server, "addr", "add", f"{HOSTS['agg'][0]}/24", "dev", "br0")
            _ip("-n", server, "link", "set", "br0", "up")
            _ip("-n", server, "route", "add", "224.0.0.0/4", "dev", "br0")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def start(self, key: str, host: str, argv: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen:
        with open(log_dir / f"{key}.log", "wb") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs[key] = proc
        return proc

    def run(self, host: str, argv: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns[host], *argv], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=timeout_s)


def _federation_config(root: Path) -> Path:
    config = {
        "federation": {"nodes": [{"name": name, "rank": rank, "host": address, "port": FL_PORT}
                                 for address, name, rank in HOSTS.values()],
                       "cert_dir": str(root / "certs"), "state_dir": str(root / "state")},
        "rounds": {"num_rounds": ROUNDS, "quorum": 2, "deadline_s": 60.0, "start_wait_s": 60.0},
        "strategy": {"name": "fedavg"},
        "client": {"epochs": 1, "lr": 0.01, "batch_size": 32, "uplink_encoding": "int8", "min_samples": 1},
        "transport": {"rpc_timeout_s": 5.0, "retry_initial_s": 0.1, "retry_max_s": 1.0, "send_give_up_s": 120.0,
                      "max_message_bytes": 8_000_000, "server_workers": 4},
        "learner": {"module": "hrc_fl.federated.core.synthetic_learner",
                    "options": {"snapshot_dir": str(root / "snapshots")}},
        "seed": 5,
    }
    path = root / "plant_federation.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# From the plant server: hear each workstation's robot state and diagnostics; publish a speed scale the
# workstations subscribe to and see them match it (discovery in both directions).
_SERVER_PROBE = textwrap.dedent('''
    import json, sys, time
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64
    from hrc_fl.nodes.common import SAFETY_QOS, SENSOR_QOS
    rclpy.init()
    node = rclpy.create_node("plant_probe")
    heard, diag = {}, set()
    pubs = {}
    for ws in sys.argv[1:]:
        node.create_subscription(JointState, f"/{ws}/robot/joint_states",
                                 lambda m, ws=ws: heard.setdefault(ws, m.header.frame_id or "joint_states"),
                                 SENSOR_QOS)
        pubs[ws] = node.create_publisher(Float64, f"/{ws}/robot/speed_scale", SAFETY_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diag.update(s.name.split(": ")[0] for s in m.status), 50)
    end = time.monotonic() + float(__import__("os").environ["PROBE_TIMEOUT_S"])
    matched = {}
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        matched = {ws: p.get_subscription_count() for ws, p in pubs.items()}
        if len(heard) == len(pubs) and all(matched.values()) and all(f"/{ws}/robot_sim" in diag for ws in pubs):
            break
    print(json.dumps({"heard": sorted(heard), "matched": matched, "diagnostics": sorted(diag)}), flush=True)
''')

# From ws2's host, at the aggregator's address: a certificate of another CA, then ws1's (right CA, wrong host).
_WRONG_CERTS = textwrap.dedent('''
    import json, sys
    import grpc
    from pathlib import Path
    from hrc_fl.federated.core import wire
    from hrc_fl.federated.transport.grpc_transport import METHOD
    target, ca, rogue, certs = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    hello = wire.encode({"msg_type": 5, "sender": 2, "receiver": 0, "client_status": "ONLINE"})
    def call(key_dir, name):
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes(),
                                             private_key=(key_dir / f"{name}.key").read_bytes(),
                                             certificate_chain=(key_dir / f"{name}.crt").read_bytes())
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", "aggregator")])
        try:
            channel.unary_unary(METHOD)(hello, timeout=10.0)
        except grpc.RpcError as exc:
            return exc.code().name
        return "ACCEPTED"
    print(json.dumps({"rogue_ca": call(rogue, "ws2"), "other_hosts_cert": call(certs, "ws1")}), flush=True)
''')


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    content = path.read_text(errors="replace") if path.is_file() else ""
    raise AssertionError(f"{text!r} not in {path.name} (exit {proc.poll()}):\n{content[-3000:]}")


def _run_plant(root: Path) -> dict:
    from cryptography import x509

    from hrc_fl.federated.transport.certs import certificate_hosts, generate_federation

    logs = root / "logs"
    logs.mkdir(parents=True)
    config = _federation_config(root)
    cli = [sys.executable, "-m", "hrc_fl.cli"]
    base = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "HRC_FL_NET_GUARD_LOG")}
    # What a plant exports on every host (docs/deployment.md); the rest comes from graph.py's environment.
    env = node_environment(dict(base, ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET", PYTHONPATH=str(REPO),
                                HRC_FL_RUNTIME=str(root / "runtime"), PYTHONWARNINGS="ignore"))
    # Per-host certificates from the plant's configuration; a rogue CA's certificate with a member's name
    subprocess.run([*cli, "fl-certs", "--config", str(config)], check=True, env=env, capture_output=True, timeout=120)
    generate_federation(root / "rogue", ["ws2"], valid_days=1)
    cert_hosts = {name: sorted(certificate_hosts(x509.load_pem_x509_certificate(
        (root / "certs" / f"{name}.crt").read_bytes()))) for _, name, _ in HOSTS.values()}
    robot_sim = executable_path("robot_sim_node")
    with Plant() as plant:
        plant.start("aggregator", "agg", [*cli, "aggregator", "--config", str(config)], env, logs)
        for ws in ("ws1", "ws2"):
            plant.start(f"{ws}_robot_sim", ws, [robot_sim, "--ros-args", "-r", "__node:=robot_sim",
                                                "-r", f"__ns:=/{ws}"], env, logs)
        probe = subprocess.Popen(["ip", "netns", "exec", plant.ns["agg"], sys.executable, "-c", _SERVER_PROBE,
                                  "ws1", "ws2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(env, PROBE_TIMEOUT_S="180"), cwd=REPO)
        plant.procs["probe"] = probe
        _wait_for(logs / "aggregator.log", "listening with mutual TLS", plant.procs["aggregator"], 240)
        wrong = plant.run("ws2", [sys.executable, "-c", _WRONG_CERTS, f"{HOSTS['agg'][0]}:{FL_PORT}",
                                  str(root / "certs" / "ca.crt"), str(root / "rogue"), str(root / "certs")],
                          env, 120)
        for ws in ("ws1", "ws2"):
            plant.start(f"{ws}_fl", ws, [*cli, "fl-client", "--config", str(config), "--node", ws], env, logs)
        codes = {}
        for key in ("aggregator", "ws1_fl", "ws2_fl"):
            try:
                codes[key] = plant.procs[key].wait(timeout=300)
            except subprocess.TimeoutExpired:
                codes[key] = None
        probe_out, probe_err = probe.communicate(timeout=240)
    return {"root": str(root), "codes": codes, "cert_hosts": cert_hosts,
            "wrong": wrong.stdout.strip(), "wrong_err": wrong.stderr[-2000:],
            "probe": probe_out.strip().splitlines()[-1] if probe_out.strip() else "", "probe_err": probe_err[-2000:],
            "logs": {p.stem: p.read_text(errors="replace") for p in logs.glob("*.log")},
            "namespaces": sorted(plant.ns.values())}


@pytest.fixture(scope="module")
def plant_run(tmp_path_factory):
    return _run_plant(tmp_path_factory.mktemp("plant"))


@needs_netns
@pytest.mark.timeout(900)
def test_dds_topics_cross_between_the_hosts(plant_run):
    assert plant_run["probe"], plant_run["probe_err"]
    seen = json.loads(plant_run["probe"])
    assert seen["heard"] == ["ws1", "ws2"], seen  # robot state of each workstation heard at the plant server
    assert all(count >= 1 for count in seen["matched"].values()), seen  # and the server's publisher discovered
    assert {"/ws1/robot_sim", "/ws2/robot_sim"} <= set(seen["diagnostics"])


@needs_netns
@pytest.mark.timeout(900)
def test_fl_rounds_complete_over_mtls_between_the_hosts(plant_run):
    root = Path(plant_run["root"])
    assert plant_run["codes"] == {"aggregator": 0, "ws1_fl": 0, "ws2_fl": 0}, plant_run["logs"].get("aggregator")
    checkpoint = json.loads((root / "state" / "checkpoint.json").read_text())
    assert checkpoint["round"] == ROUNDS
    assert "listening with mutual TLS on 192.0.2.1" in plant_run["logs"]["aggregator"]
    # per-host certificates: each names its own host's address and no other host's
    addresses = {name: address for address, name, _ in HOSTS.values()}
    for name, hosts in plant_run["cert_hosts"].items():
        assert addresses[name] in hosts
        assert not {a for n, a in addresses.items() if n != name} & set(hosts), (name, hosts)


@needs_netns
@pytest.mark.timeout(900)
def test_a_wrong_certificate_is_refused_across_the_hosts(plant_run):
    assert plant_run["wrong"], plant_run["wrong_err"]
    codes = json.loads(plant_run["wrong"])
    assert codes["rogue_ca"] == "UNAVAILABLE"  # the TLS handshake fails: not signed by the plant's CA
    assert codes["other_hosts_cert"] == "PERMISSION_DENIED"  # ws1's certificate cannot speak for rank 2
    assert "refused message from ws1 claiming rank 2" in plant_run["logs"]["aggregator"]


@needs_netns
def test_the_namespaces_are_gone_afterwards(plant_run):
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(ns in listed for ns in plant_run["namespaces"])
