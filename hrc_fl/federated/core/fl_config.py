"""The federation's configuration (config/federated.yaml), parsed once into validated dataclasses.

One file describes the whole federation and is shared by the aggregator and every workstation: the nodes
(certificate name, FedML rank, address), the round plan (rounds, quorum, deadline), the strategy, the
client's local training and uplink encoding, and the transport's limits. FedML never sees this file; the
adapter translates what it needs.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hrc_fl import paths
from hrc_fl.federated.core.secagg import SecAggConfig
from hrc_fl.federated.core.self_supervised import VicRegConfig

UPLINK_ENCODINGS = ("fp32", "fp16", "int8")
#: rules that need every individual update: impossible when the aggregator sees only the masked sum
RULES_NEEDING_INDIVIDUAL_UPDATES = ("median", "trimmed_mean", "median_anchored")



@dataclass(frozen=True)
class Peer:
    """One node of the federation: its certificate name, FedML rank and listening address."""

    name: str
    rank: int
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ValueError(f"rank must be >= 0, got {self.rank}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TransportConfig:
    """Timing and size limits of the transport (values come from config/federated.yaml)."""

    rpc_timeout_s: float
    retry_initial_s: float
    retry_max_s: float
    send_give_up_s: float
    max_message_bytes: int
    server_workers: int
    #: received network messages waiting for the receive loop; more are refused with RESOURCE_EXHAUSTED
    #: (the sender backs off and retries), so a flooding peer cannot grow the receiver's memory
    max_queued_messages: int = 64

    def __post_init__(self) -> None:
        for name in ("rpc_timeout_s", "retry_initial_s", "retry_max_s", "send_give_up_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        if self.max_message_bytes < 1024 or self.server_workers < 1:
            raise ValueError("max_message_bytes must be >= 1024 and server_workers >= 1")
        if self.max_queued_messages < 1:
            raise ValueError(f"max_queued_messages must be >= 1, got {self.max_queued_messages}")

@dataclass(frozen=True)
class RoundPlan:
    """How rounds run: ``num_rounds`` total; a round closes when every selected client answered, or at
    ``deadline_s`` after it opened if at least ``quorum`` valid updates arrived (else it waits another
    deadline). The first round starts when all clients are online, or ``start_wait_s`` after ``quorum``
    of them are."""

    num_rounds: int
    quorum: int
    deadline_s: float
    start_wait_s: float

    def __post_init__(self) -> None:
        if self.num_rounds < 1 or self.quorum < 1:
            raise ValueError(f"num_rounds and quorum must be >= 1, got {self.num_rounds}, {self.quorum}")
        if not self.deadline_s > 0 or not self.start_wait_s >= 0:
            raise ValueError("deadline_s must be > 0 and start_wait_s >= 0")


@dataclass(frozen=True)
class ClientTraining:
    """Local training per round on a workstation and how its shared-layer update is encoded.

    FedRep client flow: ``head_epochs`` on the personal head (encoders frozen), then ``epochs`` on the
    shared encoders (head frozen); after each new global model the head is refreshed ``fine_tune_epochs``
    before the model is used. ``head_epochs`` = 0 trains head and encoders jointly (FedPer).
    ``self_supervised``: the VICReg term on the worker's own IMU windows, labelled and unlabelled, in the
    encoder epochs (None = labels only; see :mod:`hrc_fl.federated.core.self_supervised`)."""

    epochs: int
    lr: float
    batch_size: int
    uplink_encoding: str
    min_samples: int
    head_epochs: int = 2
    fine_tune_epochs: int = 2
    self_supervised: VicRegConfig | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.min_samples < 1:
            raise ValueError("epochs, batch_size, min_samples must be >= 1 and lr > 0")
        if self.head_epochs < 0 or self.fine_tune_epochs < 0:
            raise ValueError("head_epochs and fine_tune_epochs must be >= 0")
        if self.uplink_encoding not in UPLINK_ENCODINGS:
            raise ValueError(f"uplink_encoding must be one of {UPLINK_ENCODINGS}, got {self.uplink_encoding!r}")


@dataclass(frozen=True)
class FederationConfig:
    """Everything a federated process needs (see config/federated.yaml for the meaning of each key)."""

    nodes: dict[int, Peer]
    cert_dir: Path
    state_dir: Path
    rounds: RoundPlan
    strategy: dict[str, Any]
    client: ClientTraining
    transport: TransportConfig
    seed: int
    learner_module: str
    learner_options: dict[str, Any]
    secure_aggregation: SecAggConfig = field(default_factory=SecAggConfig)

    def __post_init__(self) -> None:
        if 0 not in self.nodes:
            raise ValueError("the aggregator must have rank 0")
        if len(self.nodes) < 2:
            raise ValueError("a federation needs the aggregator and at least one client")
        if self.rounds.quorum > len(self.client_ranks):
            raise ValueError(f"quorum {self.rounds.quorum} exceeds the {len(self.client_ranks)} clients")
        rule = str(self.strategy.get("name", "fedavg")).lower()
        if rule == "median_anchored":
            needed = 2 * int(self.strategy.get("max_attackers", 1)) + 1
            if self.rounds.quorum < needed:
                # a round closed at quorum with fewer answers would keep the model: progress only by luck
                raise ValueError(f"quorum {self.rounds.quorum} is below the {needed} valid updates median_anchored "
                                 f"needs with max_attackers {self.strategy.get('max_attackers', 1)} (2f + 1): "
                                 f"raise rounds.quorum or lower strategy.max_attackers")
        dp = self.strategy.get("dp") or {}
        if dp and int(dp.get("expected_clients", 0)) < len(self.client_ranks):
            raise ValueError(f"strategy.dp.expected_clients must be >= the {len(self.client_ranks)} configured "
                             f"clients (the fixed denominator of the DP mean), got {dp.get('expected_clients')}")
        if self.secure_aggregation.enabled:
            if rule in RULES_NEEDING_INDIVIDUAL_UPDATES:
                raise ValueError(f"strategy {rule!r} needs every client's update, but secure_aggregation hides them "
                                 f"(the aggregator sees only their sum): use fedavg or fedprox, or disable "
                                 f"secure_aggregation")
            self.secure_aggregation.validate(len(self.client_ranks), self.client_clip_norm or 0.0)

    @property
    def client_clip_norm(self) -> float | None:
        """The L2 bound a client clips its delta to before sending, when secure aggregation is on (the
        aggregator cannot clip a masked update): ``strategy.dp.clip_norm``, else ``strategy.max_update_norm``."""
        if not self.secure_aggregation.enabled:
            return None
        dp = self.strategy.get("dp") or {}
        bound = dp.get("clip_norm") or self.strategy.get("max_update_norm")
        return float(bound) if bound else None

    @property
    def client_ranks(self) -> list[int]:
        return sorted(r for r in self.nodes if r != 0)

    def rank_of(self, name: str) -> int:
        for rank, peer in self.nodes.items():
            if peer.name == name:
                return rank
        raise ValueError(f"node {name!r} is not in the federation ({[p.name for p in self.nodes.values()]})")


def _resolve(path_text: str, default: Path, base: Path) -> Path:
    if not path_text:
        return default
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else base / path


def parse_config(data: Mapping[str, Any], base_dir: Path) -> FederationConfig:
    """Mapping (as loaded from YAML) -> FederationConfig; relative paths are relative to ``base_dir``."""
    try:
        fed = data["federation"]
        nodes: dict[int, Peer] = {}
        for entry in fed["nodes"]:
            peer = Peer(str(entry["name"]), int(entry["rank"]), str(entry["host"]), int(entry["port"]))
            if peer.rank in nodes:
                raise ValueError(f"duplicate rank {peer.rank}")
            nodes[peer.rank] = peer
        r = data["rounds"]
        c = data["client"]
        t = data["transport"]
        return FederationConfig(
            nodes=nodes,
            cert_dir=_resolve(str(fed.get("cert_dir", "")), paths.runtime_dir() / "fl_certs", base_dir),
            state_dir=_resolve(str(fed.get("state_dir", "")), paths.runtime_dir() / "federated", base_dir),
            rounds=RoundPlan(int(r["num_rounds"]), int(r["quorum"]), float(r["deadline_s"]),
                             float(r["start_wait_s"])),
            strategy=dict(data.get("strategy") or {"name": "fedavg"}),
            client=ClientTraining(int(c["epochs"]), float(c["lr"]), int(c["batch_size"]),
                                  str(c["uplink_encoding"]), int(c["min_samples"]),
                                  head_epochs=int(c.get("head_epochs", 2)),
                                  fine_tune_epochs=int(c.get("fine_tune_epochs", 2)),
                                  self_supervised=VicRegConfig.from_mapping(c.get("self_supervised"))),
            transport=TransportConfig(float(t["rpc_timeout_s"]), float(t["retry_initial_s"]),
                                      float(t["retry_max_s"]), float(t["send_give_up_s"]),
                                      int(t["max_message_bytes"]), int(t["server_workers"]),
                                      **({"max_queued_messages": int(t["max_queued_messages"])}
                                         if "max_queued_messages" in t else {})),
            seed=int(data.get("seed", 0)),
            learner_module=str(data["learner"]["module"]),
            learner_options=dict(data["learner"].get("options") or {}),
            secure_aggregation=SecAggConfig.from_mapping(data.get("secure_aggregation")),
        )
    except KeyError as exc:
        raise ValueError(f"federation config is missing key {exc}") from exc


def load_config(path: Path | str | None = None) -> FederationConfig:
    """Load a federation YAML (default: the packaged config/federated.yaml)."""
    path = Path(path) if path else paths.config_file("federated.yaml")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: not a YAML mapping")
    return parse_config(data, path.parent)


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now, for a federation on one machine (tests,
    benchmarks, ``hrc-fl fl-real-check``). All are held open until every one is chosen, so none repeats;
    they are closed again on return, so another process may still take one before the federation starts."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
