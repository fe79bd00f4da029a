"""What the demo run observed, as plain data (filled by the driver node, read by the report)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class SafetySample:
    t_s: float                  # scenario time (s)
    zone: int
    zone_name: str
    speed_scale: float
    min_separation_m: float
    protective_separation_m: float
    perception_latency_s: float
    reset_required: bool
    reason: str
    worker_distance_m: float    # scripted distance of the worker's centre from the robot base
    stamp_s: float = math.nan   # the state's header stamp (decision time, host clock)


@dataclass
class RobotSample:
    t_s: float
    tcp_speed_mps: float


@dataclass
class GestureEvent:
    t_s: float
    gesture_name: str
    confidence: float
    is_command: bool


@dataclass
class FederatedSample:
    t_s: float
    node_id: str
    role: str
    round: int
    state: str
    model_version: str
    metrics: dict[str, float]


@dataclass
class WorkstationRecord:
    """Everything seen for one workstation."""

    name: str
    safety: list[SafetySample] = field(default_factory=list)
    robot: list[RobotSample] = field(default_factory=list)
    gestures: list[GestureEvent] = field(default_factory=list)
    body_age_s: list[float] = field(default_factory=list)    # driver receive time - image stamp (camera->pose)
    safety_age_s: list[float] = field(default_factory=list)  # receive time - state stamp
    bodies_relayed: int = 0         # BodyPoseArray messages seen on humans/bodies/tracked
    warmup_safety_states: int = 0   # states before the scenario started (not in the timeline)
    images_published: int = 0
    resets: list[tuple[float, bool, str]] = field(default_factory=list)  # (t, success, message)
    intentions: dict[str, int] = field(default_factory=dict)
    task_events: dict[str, int] = field(default_factory=dict)  # label -> replay TaskEvents seen


@dataclass
class DemoRecord:
    """The whole run."""

    workstations: dict[str, WorkstationRecord] = field(default_factory=dict)
    federated: list[FederatedSample] = field(default_factory=list)
    scenario_start_wall_s: float | None = None
    warmup_s: float = 0.0


def clients_finished(samples: list[FederatedSample]) -> set[str]:
    """FL clients (node ids) that reported state "finished": they stored the federation's final model."""
    return {f.node_id for f in samples if f.role == "client" and f.state == "finished"}


def rounds_completed(samples: list[FederatedSample]) -> int:
    """Highest round an aggregator status reported as closed ("done"), 0 before the first."""
    return max((f.round for f in samples if f.role == "aggregator" and f.state == "done"), default=0)
