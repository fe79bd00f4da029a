"""The node graph of a workstation, the aggregator and the plant demo, described once.

Both ``launch/*.launch.py`` (launch_ros, for machines with ``ros2 launch``) and the project's own
launcher (``hrc-fl launch``, for machines without it) are built from these descriptions, so the two
cannot drift apart; ``hrc-fl demo`` starts the ``plant_demo`` graph too (the demo overlay,
:func:`plant_demo_graph`, with the run's scenario and folder as launch arguments). Plain data only: no
ROS import here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "hrc_fl"


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument with its default value (always a string, as in ``ros2 launch``)."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: ``ros2 run <package> <executable>`` with these ROS arguments."""

    executable: str
    name: str
    namespace: str = ""
    param_files: tuple[str, ...] = ()  # file names in config/, or absolute paths; later ones win
    parameters: Mapping[str, Any] = field(default_factory=dict)  # applied after the files
    remappings: tuple[tuple[str, str], ...] = ()  # in a composed process, "node:from" targets one node
    package: str = PACKAGE
    #: A composed process (executable ``workstation_node``): the node executables it runs, in start
    #: order. Empty for a single node. ``name`` is then the process's label (logs), not a node name.
    composed: tuple[str, ...] = ()
    #: Parameters of one node of a composed process: node name -> {parameter: value}.
    node_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def executables(self) -> tuple[str, ...]:
        """Node executables this process runs (the composed ones, or its own)."""
        return self.composed or (self.executable,)

    def node_names(self) -> tuple[str, ...]:
        """ROS names of the nodes this process runs."""
        return tuple(COMPOSED_NODE_NAMES[e] for e in self.composed) if self.composed else (self.name,)

    @property
    def label(self) -> str:
        """``/ns/name``: the node's fully qualified name; for a composed process its label (logs, usage)."""
        return fully_qualified_name(self.namespace, self.name)

    def node_labels(self) -> tuple[str, ...]:
        """Fully qualified names of the nodes this process runs (what their diagnostics are named after)."""
        return tuple(fully_qualified_name(self.namespace, n) for n in self.node_names())


def fully_qualified_name(namespace: str, name: str) -> str:
    """``("ws1", "camera")`` -> ``"/ws1/camera"``; ``"/camera"`` without a namespace."""
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


WORKSTATION_ARGUMENTS = (
    LaunchArgument("workstation_id", "ws1", "Workstation id; also the ROS namespace of its nodes."),
    LaunchArgument("config_file", "", "Extra parameter YAML applied after the packaged defaults."),
    LaunchArgument("camera_source", "", "Camera source: device index/path, video file, image folder, "
                   "'topic:<name>', or empty for the packaged replay photos."),
    LaunchArgument("fl", "true", "Run the federated-learning client on this workstation."),
    LaunchArgument("composed", "true", "Run the workstation's nodes in one process (workstation_node); "
                   "'false' = one process per node. The FL client is always its own process."),
)
AGGREGATOR_ARGUMENTS = (
    LaunchArgument("config_file", "", "Extra parameter YAML applied after the packaged defaults."),
)
PLANT_ARGUMENTS = (
    LaunchArgument("workstations", "3", "Number of workstations in the plant demo."),
    LaunchArgument("config_file", "", "Extra parameter YAML applied after the packaged defaults."),
    LaunchArgument("fl", "true", "Run federated learning across the workstations."),
    LaunchArgument("composed", "true", "One process per workstation (with its simulated robot); "
                   "'false' = one process per node."),
    # The demo overlay's arguments (plant_demo_graph); `hrc-fl demo` sets them for its run.
    LaunchArgument("scenario", "", "Scenario file (hrc_fl.sim.scenario) every workstation plays: camera "
                   "source 'scenario:<file>', pose simulated_worker; empty = the packaged replay photos."),
    LaunchArgument("image_rate_hz", "", "Camera rate of every workstation (frames/s); empty = camera.yaml's."),
    LaunchArgument("fl_config", "", "Federation YAML of the FL clients and the aggregator; "
                   "empty = config/federated.yaml."),
    LaunchArgument("run_dir", "", "Run folder for the FL sample and model stores, the aggregator's state "
                   "and audit; empty = the deployment's stores."),
    LaunchArgument("extra_nodes", "", "Developer option: comma-separated workstation node executables "
                   "to add, each as its own process, although the graph lacks them."),
)


def _truthy(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean launch argument value: {value!r}")


def _files(node_files: tuple[str, ...], extra: str) -> tuple[str, ...]:
    return (*node_files, extra) if extra else node_files


#: Nodes of one workstation, in start order. Each entry: executable, node name, defaults file.
WORKSTATION_NODES: tuple[tuple[str, str, str], ...] = (
    ("camera_node", "camera", "camera.yaml"),
    ("hands_node", "hands", "hands.yaml"),
    ("pose_node", "pose", "pose.yaml"),
    ("wearable_node", "wearable", "wearable.yaml"),
    ("intention_node", "intention", "intention.yaml"),
    ("safety_node", "safety", "safety.yaml"),
    ("fl_client_node", "fl_client", "fl_client.yaml"),
)


#: The executable that runs several of a workstation's nodes in one process (hrc_fl.nodes.workstation).
COMPOSED_EXECUTABLE = "workstation_node"
#: Nodes that never join the composed process: torch + FedML start-up and training must not take the
#: safety loop's core or share its interpreter (DESIGN.md, "One process per workstation").
OWN_PROCESS = ("fl_client_node",)
#: The simulated robot of the plant demo (composed into its workstation's process there).
ROBOT_SIM_NODE: tuple[str, str, str] = ("robot_sim_node", "robot_sim", "robot_sim.yaml")
#: Executable -> node name, for every node a composed process can run.
COMPOSED_NODE_NAMES: dict[str, str] = {e: n for e, n, _ in (*WORKSTATION_NODES, ROBOT_SIM_NODE)
                                       if e not in OWN_PROCESS}


def _composed(entries: list[tuple[str, str, str]], ws: str, files: tuple[str, ...],
              node_parameters: Mapping[str, Mapping[str, Any]]) -> NodeSpec:
    return NodeSpec(executable=COMPOSED_EXECUTABLE, name="workstation", namespace=ws, param_files=files,
                    parameters={"workstation_id": ws}, composed=tuple(e for e, _, _ in entries),
                    node_parameters={k: dict(v) for k, v in node_parameters.items()})


def workstation_graph(args: Mapping[str, str], *, with_robot_sim: bool = False,
                      overlay_files: tuple[str, ...] = ()) -> list[NodeSpec]:
    """Nodes of one workstation, namespaced by its id: by default one composed process (and the FL
    client apart), or one process per node with ``composed:=false``. ``overlay_files`` (config/ names)
    come after every node's packaged defaults and before ``config_file``, which always wins."""
    ws = args["workstation_id"]
    if not ws or not ws.replace("_", "").isalnum() or ws[0].isdigit():
        raise ValueError(f"workstation_id must be a ROS name token (letters, digits, _): {ws!r}")
    fl = _truthy(args.get("fl", "true"))
    extra = args.get("config_file", "")
    entries = [e for e in WORKSTATION_NODES if fl or e[0] != "fl_client_node"]
    if with_robot_sim:
        entries.append(ROBOT_SIM_NODE)
    camera_params = {"source": args["camera_source"]} if args.get("camera_source") else {}
    if _truthy(args.get("composed", "true")):
        inside = [e for e in entries if e[0] not in OWN_PROCESS]
        files = _files((*(d for _, _, d in inside), *overlay_files), extra)
        nodes = [_composed(inside, ws, files, {"camera": camera_params} if camera_params else {})]
        entries = [e for e in entries if e[0] in OWN_PROCESS]
    else:
        nodes = []
    for executable, name, defaults in entries:
        params: dict[str, Any] = {"workstation_id": ws}
        if executable == "camera_node":
            params.update(camera_params)
        if executable == ROBOT_SIM_NODE[0]:
            params = {}
        nodes.append(NodeSpec(executable=executable, name=name, namespace=ws,
                              param_files=_files((defaults, *overlay_files), extra), parameters=params))
    return nodes


AGGREGATOR_NODES: tuple[tuple[str, str, str], ...] = (
    ("aggregator_node", "aggregator", "aggregator.yaml"),
)


def aggregator_graph(args: Mapping[str, str]) -> list[NodeSpec]:
    """The plant-level aggregator."""
    return [NodeSpec(executable=e, name=n, namespace="plant",
                     param_files=_files((d,), args.get("config_file", "")))
            for e, n, d in AGGREGATOR_NODES]


def plant_graph(args: Mapping[str, str], *, overlay_files: tuple[str, ...] = ()) -> list[NodeSpec]:
    """Aggregator plus N workstations ws1..wsN, each with a simulated robot, on one machine
    (``overlay_files``: see :func:`workstation_graph`)."""
    count = int(args.get("workstations", "3"))
    if not 1 <= count <= 32:
        raise ValueError(f"workstations must be 1..32, got {count}")
    fl = args.get("fl", "true")
    nodes = aggregator_graph(args) if _truthy(fl) else []
    for i in range(1, count + 1):
        # No robot arm here: a simulated cobot per cell closes the loop on the speed scale.
        nodes += workstation_graph({"workstation_id": f"ws{i}", "config_file": args.get("config_file", ""),
                                    "camera_source": "", "fl": fl, "composed": args.get("composed", "true")},
                                   with_robot_sim=True, overlay_files=overlay_files)
    return nodes


#: The demo overlay's parameter file in config/: after each workstation node's packaged defaults, before
#: the user's ``config_file`` (rates and age limits for N workstations sharing one small machine).
DEMO_CONFIG = "demo.yaml"
#: The aggregator's audit of received updates, in the run folder (``audit_path``).
FL_AUDIT = "fl_audit.jsonl"
#: Subjects in the real watch data set (seglearn load_watch).
WATCH_SUBJECTS = 10
#: Executables that read the federation file (``federation_config``).
FL_EXECUTABLES = ("fl_client_node", "aggregator_node")


def replay_subject(workstation: str) -> int:
    """Real watch subject replayed on a workstation: ws1 -> 1, ws2 -> 2, ... (10 subjects, then again)."""
    return (int(workstation.removeprefix("ws")) - 1) % WATCH_SUBJECTS + 1


def demo_node_parameters(executable: str, ws: str, args: Mapping[str, str]) -> dict[str, Any]:
    """The demo overlay's parameters of one node of workstation ``ws`` (or of the aggregator, ``ws`` =
    its namespace): the scenario on the camera and pose, the run folder's stores, and per workstation
    ``wsN`` its own worker ``workerN`` replaying watch subject N (non-IID, as in a plant)."""
    scenario, rate, fl_config = args.get("scenario", ""), args.get("image_rate_hz", ""), args.get("fl_config", "")
    run_dir = Path(args["run_dir"]) if args.get("run_dir") else None
    params: dict[str, Any] = {}
    if executable == "camera_node":
        if scenario:
            params["source"] = f"scenario:{scenario}"
        if rate:
            params["rate_hz"] = float(rate)
            if not params["rate_hz"] > 0:
                raise ValueError(f"image_rate_hz must be positive, got {rate!r}")
    elif executable == "pose_node" and scenario:
        params["simulated_worker"] = scenario
    elif executable in FL_EXECUTABLES and fl_config:
        params["federation_config"] = fl_config
    is_workstation = ws.startswith("ws") and ws.removeprefix("ws").isdigit()
    if executable in ("wearable_node", "fl_client_node") and is_workstation:
        params["worker_id"] = f"worker{ws.removeprefix('ws')}"
    if executable == "wearable_node" and is_workstation:
        params["replay_subject"] = replay_subject(ws)
    if run_dir is not None:
        if executable in ("intention_node", "fl_client_node"):
            params["model_store_dir"] = str(run_dir / "models" / ws)
        if executable == "fl_client_node":
            params["sample_db"] = str(run_dir / "samples" / f"{ws}.sqlite")
        if executable == "aggregator_node":
            params["state_dir"] = str(run_dir / "federated")
            params["audit_path"] = str(run_dir / FL_AUDIT)
    return params


def _with_demo_parameters(spec: NodeSpec, args: Mapping[str, str]) -> NodeSpec:
    if spec.composed:  # per-node parameters (--param)
        node_params = {name: dict(values) for name, values in spec.node_parameters.items()}
        for executable, name in zip(spec.executables(), spec.node_names(), strict=True):
            node_params.setdefault(name, {}).update(demo_node_parameters(executable, spec.namespace, args))
        return replace(spec, node_parameters={k: v for k, v in node_params.items() if v})
    params = {**spec.parameters, **demo_node_parameters(spec.executable, spec.namespace, args)}
    return replace(spec, parameters=params)


def _extra_nodes(args: Mapping[str, str], specs: list[NodeSpec]) -> list[NodeSpec]:
    """The developer option ``extra_nodes``: each named executable as its own process per workstation
    that does not run it yet, with its config/<name>.yaml (if any), the demo file and ``config_file``."""
    from hrc_fl.paths import config_dir  # a file lookup only; no ROS import

    executables = [e.strip() for e in args.get("extra_nodes", "").split(",") if e.strip()]
    for executable in executables:
        if not executable.replace("_", "").isalnum():
            raise ValueError(f"extra_nodes: not a node executable name: {executable!r}")
    out: list[NodeSpec] = []
    for ws in dict.fromkeys(s.namespace for s in specs if s.namespace.startswith("ws")):
        for executable in executables:
            if any(executable in s.executables() and s.namespace == ws for s in specs):
                continue
            name = executable.removesuffix("_node")
            own = (f"{name}.yaml",) if (config_dir() / f"{name}.yaml").is_file() else ()
            out.append(NodeSpec(executable=executable, name=name, namespace=ws,
                                param_files=_files((*own, DEMO_CONFIG), args.get("config_file", "")),
                                parameters={"workstation_id": ws, **demo_node_parameters(executable, ws, args)}))
    return out


def plant_demo_graph(args: Mapping[str, str]) -> list[NodeSpec]:
    """The plant demo: :func:`plant_graph` with the demo overlay, the one graph ``hrc-fl demo``,
    ``hrc-fl launch plant_demo`` and ``ros2 launch hrc_fl plant_demo.launch.py`` start.

    The overlay: every workstation node also gets ``config/demo.yaml``; with ``scenario`` each workstation
    plays the scenario itself (camera ``source: scenario:<file>`` at ``image_rate_hz``, pose
    ``simulated_worker``), so nothing of the demo's driver is on the camera->safety path; workstation
    ``wsN`` replays watch subject N for worker ``workerN``; with ``run_dir`` the FL sample stores, model
    stores and the aggregator's state and audit live in the run folder; ``fl_config`` is the federation
    file of the FL clients and the aggregator; ``extra_nodes`` adds developer nodes."""
    specs = [_with_demo_parameters(s, args) for s in plant_graph(args, overlay_files=(DEMO_CONFIG,))]
    return specs + _extra_nodes(args, specs)


@dataclass(frozen=True)
class GraphDescription:
    """A named launchable graph: its arguments and the function that yields its nodes."""

    name: str
    arguments: tuple[LaunchArgument, ...]
    build: Callable[[Mapping[str, str]], list[NodeSpec]]

    def resolve(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """Argument values: defaults with ``overrides`` applied; unknown names raise ValueError."""
        values = {a.name: a.default for a in self.arguments}
        for key, value in (overrides or {}).items():
            if key not in values:
                known = ", ".join(sorted(values))
                raise ValueError(f"unknown launch argument {key!r} for {self.name} (known: {known})")
            values[key] = value
        return values

    def nodes(self, overrides: Mapping[str, str] | None = None) -> list[NodeSpec]:
        return self.build(self.resolve(overrides))


GRAPHS: dict[str, GraphDescription] = {
    "workstation": GraphDescription("workstation", WORKSTATION_ARGUMENTS, workstation_graph),
    "aggregator": GraphDescription("aggregator", AGGREGATOR_ARGUMENTS, aggregator_graph),
    "plant_demo": GraphDescription("plant_demo", PLANT_ARGUMENTS, plant_demo_graph),
}


#: The stated shutdown bound of every node of every graph: a node exits (code 0, state saved) within this
#: many seconds of SIGINT. It matches the 5 s ``ros2 launch`` waits before it sends SIGTERM, and
#: ``hrc-fl launch`` waits as long before it escalates.
SHUTDOWN_BOUND_S = 5.0

#: Discovery range nodes get when the user set neither a range nor a discovery server: one box.
DEFAULT_DISCOVERY_RANGE = "LOCALHOST"


def graph_environment(base: Mapping[str, str]) -> dict[str, str]:
    """Environment variables every node of every graph gets on top of ``base`` (the environment the
    graph is started from); part of the graph description, so ``hrc-fl launch`` and the launch files
    (``additional_env`` of each launch_ros ``Node``) set exactly the same.

    - ``FASTDDS_DEFAULT_PROFILES_FILE``: the project's Fast DDS profile (8 MB shared-memory segment for
      images, UDPv4 for discovery and other hosts).
    - ``ROS_AUTOMATIC_DISCOVERY_RANGE``: ``LOCALHOST`` (the one-box default); a plant exports ``SUBNET``
      (docs/deployment.md). Not set when ``ROS_DISCOVERY_SERVER`` is, where the server does discovery.
    - ``PYTHONUNBUFFERED``: node logs reach files and pipes line by line.
    A value already in ``base`` always wins: the user's choice is never overridden.
    """
    from hrc_fl.paths import config_dir  # a file lookup only; no ROS import

    wanted: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    profile = config_dir() / "fastdds.xml"
    if profile.is_file():
        wanted["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    if not base.get("ROS_DISCOVERY_SERVER"):
        wanted["ROS_AUTOMATIC_DISCOVERY_RANGE"] = DEFAULT_DISCOVERY_RANGE
    return {k: v for k, v in wanted.items() if k not in base}


def ros_param_value(value: object) -> str:
    """A parameter value as written on a ROS command line (``-p name:=VALUE``): ROS parses it as YAML,
    so it is dumped as YAML and strings like ``"1"`` stay strings."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def process_arguments(spec: NodeSpec) -> list[str]:
    """Arguments before ``--ros-args``: for a composed process its nodes and per-node parameters (the
    same words for ``hrc-fl launch`` and a launch_ros ``Node``'s ``arguments``)."""
    if not spec.composed:
        return []
    args = ["--nodes", ",".join(spec.composed)]
    for node, params in spec.node_parameters.items():
        for key, value in params.items():
            args += ["--param", f"{node}:{key}={ros_param_value(value)}"]
    return args
