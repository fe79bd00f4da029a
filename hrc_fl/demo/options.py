"""What a demo run is asked to do (:class:`DemoOptions`) and what it hands to the report (:class:`DemoRun`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrc_fl.demo.record import DemoRecord
from hrc_fl.demo.usage import NodeUsage
from hrc_fl.graph import NodeSpec
from hrc_fl.sim.scenario import WORKER_PHOTO_BLUR_BOX


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
