"""docs/architecture.md's topic and service tables against what the nodes of the graph really create.

The nodes of ``hrc_fl.graph`` are constructed in this process as their executables construct them
(same classes, names, namespaces and packaged parameter files; the composed workstation through
``build_workstation``), twice: the plant demo graph with one workstation as packaged, and the
workstation graph with ``composed:=false`` and the settings that add or move endpoints. Every publisher,
subscription and service they create (name, type, reliability, durability, depth) must be a row of the
doc's tables, and every row must be created: a topic added to a node without its row, a wrong type or
QoS, or a row no node creates fails with the row named. Nodes are built, not spun: endpoints are
created in the constructors. Not brought up: the per-body topics (created when a body is first tracked).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hrc_fl.graph import NodeSpec, plant_graph, workstation_graph
from hrc_fl.paths import resolve_param_file

pytestmark = pytest.mark.timeout(300)

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"

#: Endpoints every rclpy node has; not the project's.
ROS_TOPICS = frozenset({"/parameter_events", "/rosout"})
ROS_SERVICE_SUFFIXES = ("/describe_parameters", "/get_parameters", "/get_parameter_types", "/list_parameters",
                        "/set_parameters", "/set_parameters_atomically", "/get_type_description")
#: Executable -> (module, class) of the nodes outside the composed process.
OWN_PROCESS_CLASSES = {"fl_client_node": ("hrc_fl.nodes.fl_client", "FlClientNode"),
                       "aggregator_node": ("hrc_fl.nodes.aggregator", "AggregatorNode")}

PACKAGED = "packaged"
SETTINGS = "settings"
#: The conditions a doc cell may name in parentheses, and the bring-up that meets each.
CONDITIONS = {
    "robot_source: joints": PACKAGED,
    "composed:=false": SETTINGS,
    "robot_source: tcp": SETTINGS,
    "replay_task_events: true": SETTINGS,
    "source: scenario": SETTINGS,
    "simulated_worker": SETTINGS,
    "per tracked body": None,  # created when the pose node first tracks a body: not brought up here
}
EVERY_NODE = "every node"


@dataclass(frozen=True)
class Endpoint:
    """One publisher (``pub``), subscription (``sub``) or service server (``srv``) of one node.

    ``name`` is relative to the node's namespace (``camera/image_raw``) or absolute (``/diagnostics``)."""

    node: str
    role: str
    name: str
    type: str
    qos: str


# ----- the doc's side ----------------------------------------------------------------------------------
def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables by their first header cell (lower case): a list of rows, header -> cell."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if not (line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip())):
            continue
        header = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        rows = []
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            rows.append(dict(zip(header, cells, strict=True)))
        tables[header[0]] = rows
    return tables


def _code(cell: str) -> str:
    return cell.strip().strip("`").strip()


def _nodes_of(cell: str) -> list[tuple[str, str | None]]:
    """``hands (composed:=false), pose`` -> [("hands", "composed:=false"), ("pose", None)]; ``—`` -> []."""
    cell = cell.strip()
    if cell in ("", "—", "-"):
        return []
    items = []
    for part in re.split(r",\s*(?![^()]*\))", cell):
        m = re.fullmatch(r"([\w ]+?)\s*(?:\(([^)]*)\))?", part.strip())
        if m is None:
            raise AssertionError(f"{DOC.name}: cannot read the node list {cell!r}")
        items.append((m.group(1), m.group(2)))
    return items


def _qos_of(cell: str, node: str, role: str) -> str:
    """The QoS a row states for one endpoint: ``QOS`` for all, ``pub QOS; sub QOS``, ``NODE QOS`` (wins)."""
    by_who: dict[str, str] = {}
    for part in cell.split(";"):
        m = re.fullmatch(r"(?:(\w+) )?((?:best effort|reliable).*)", part.strip())
        if m is None:
            raise AssertionError(f"{DOC.name}: cannot read the QoS {cell!r}")
        by_who[m.group(1) or ""] = m.group(2)
    text = by_who.get(node) or by_who.get(role) or by_who.get("")
    if text is None:
        raise AssertionError(f"{DOC.name}: the QoS {cell!r} says nothing for {node}'s {role}")
    return text


def doc_endpoints(nodes: set[str], met: str, text: str) -> set[Endpoint]:
    """The endpoints the doc's tables give the ``nodes`` of one bring-up whose conditions ``met`` holds."""
    tables = _tables(text)
    assert "topic" in tables and "service" in tables, f"{DOC.name} lost its topic or service table"
    out: set[Endpoint] = set()

    def add(row: dict[str, str], cell: str, role: str, name: str, qos: str | None) -> None:
        for node, condition in _nodes_of(cell):
            names = sorted(nodes) if node == EVERY_NODE else [node]
            if condition is not None and CONDITIONS.get(condition, "unknown") == "unknown":
                raise AssertionError(f"{DOC.name} row `{name}`: unknown condition ({condition}); "
                                     f"known: {', '.join(CONDITIONS)}")
            if condition is not None and CONDITIONS[condition] != met:
                continue
            for n in names:
                if n in nodes:
                    out.add(Endpoint(n, role, name, _code(row["type"]),
                                     _qos_of(qos, n, role) if qos is not None else "service"))

    for row in tables["topic"]:
        name = _code(row["topic"])
        add(row, row["publishers"], "pub", name, row["qos"])
        add(row, row["subscribers"], "sub", name, row["qos"])
    for row in tables["service"]:
        add(row, row["server"], "srv", _code(row["service"]), None)
    return out


def doc_node_names(text: str) -> set[str]:
    tables = _tables(text)
    cells = [r[k] for r in tables["topic"] for k in ("publishers", "subscribers")]
    cells += [r["server"] for r in tables["service"]]
    return {n for cell in cells for n, _ in _nodes_of(cell)} - {EVERY_NODE}


# ----- the nodes' side ---------------------------------------------------------------------------------
def _type_name(cls: type) -> str:
    """``sensor_msgs.msg._image.Image`` -> ``sensor_msgs/msg/Image``."""
    package, kind = cls.__module__.split(".")[:2]
    return f"{package}/{kind}/{cls.__name__}"


def _relative(name: str, namespace: str) -> str:
    prefix = namespace.rstrip("/") + "/"
    return name[len(prefix):] if prefix != "/" and name.startswith(prefix) else name


def node_endpoints(node) -> set[Endpoint]:
    """What one constructed rclpy node created: publishers, subscriptions and services, as created."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    def qos(profile) -> str:
        """As the doc writes it: ``reliable, transient local, depth 1``; volatile and keep-last unnamed."""
        words = [{ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best effort"}.get(
            profile.reliability, f"reliability {profile.reliability.name.lower()}")]
        if profile.durability != DurabilityPolicy.VOLATILE:
            words.append(profile.durability.name.lower().replace("_", " "))
        words.append(f"depth {profile.depth}" if profile.history == HistoryPolicy.KEEP_LAST else
                     f"history {profile.history.name.lower()}")
        return ", ".join(words)

    name, ns = node.get_name(), node.get_namespace()
    out = {Endpoint(name, "pub", _relative(p.topic_name, ns), _type_name(p.msg_type), qos(p.qos_profile))
           for p in node.publishers if p.topic_name not in ROS_TOPICS}
    out |= {Endpoint(name, "sub", _relative(s.topic_name, ns), _type_name(s.msg_type), qos(s.qos_profile))
            for s in node.subscriptions if s.topic_name not in ROS_TOPICS}
    for srv in node.services:
        full = node.resolve_service_name(srv.srv_name)
        if not full.endswith(ROS_SERVICE_SUFFIXES):
            out.add(Endpoint(name, "srv", _relative(full, ns), _type_name(srv.srv_type), "service"))
    return out


def ros_arguments(specs: list[NodeSpec], folder: Path) -> list[str]:
    """One process's ROS arguments for the nodes of ``specs``: each node's namespace, every parameter
    file, and each spec's own parameters for its nodes only (as their processes get them)."""
    from hrc_fl.nodes.workstation import node_parameter_file

    args, files, overrides = ["--ros-args"], [], []
    for spec in specs:
        for name in spec.node_names():
            args += ["-r", f"{name}:__ns:=/{spec.namespace}"]
            overrides += [(name, k, v) for k, v in {**spec.parameters, **spec.node_parameters.get(name, {})}.items()]
        files = [f for f in files if f not in spec.param_files] + list(spec.param_files)  # later ones win
    for f in files:
        args += ["--params-file", resolve_param_file(f)]
    own = node_parameter_file(overrides, folder)
    return args + (["--params-file", str(own)] if own else [])


def _build(specs: list[NodeSpec], nodes: list, closers: list) -> None:
    from hrc_fl.nodes.workstation import COMPOSABLE, build_workstation

    for spec in specs:
        if spec.composed:
            build_workstation(list(spec.composed), nodes, closers)
        else:
            module, cls = {**COMPOSABLE, **OWN_PROCESS_CLASSES}[spec.executable]
            nodes.append(getattr(importlib.import_module(module), cls)())


def _stub_server(config, initial_shared, *, on_status=None, audit_path=None, stop_event=None) -> str:
    """The aggregator's FedML server stands still here: its endpoints are made in the constructor."""
    stop_event.wait()
    return "stub"


def bring_up(specs: list[NodeSpec], folder: Path) -> dict[str, set[Endpoint]]:
    """Construct the nodes of ``specs`` in one rclpy context, read their endpoints, tear them down."""
    import rclpy

    rclpy.init(args=ros_arguments(specs, folder))
    nodes: list = []
    closers: list = []
    try:
        _build(specs, nodes, closers)
        return {n.get_name(): node_endpoints(n) for n in nodes}
    finally:
        for close in closers:
            close()
        for node in reversed(nodes):
            if hasattr(node, "close"):
                node.close()
            node.destroy_node()
        rclpy.shutdown()


def _write_yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def bring_up_specs(quiet: str, settings: str, scenario: str) -> dict[str, list[NodeSpec]]:
    """The two bring-ups as the graph describes them: the plant demo with one workstation as packaged
    (plus ``quiet``), and the workstation with ``composed:=false``, a scenario camera and ``settings``."""
    return {
        PACKAGED: plant_graph({"workstations": "1", "config_file": quiet}),
        SETTINGS: workstation_graph({"workstation_id": "ws1", "composed": "false", "fl": "false",
                                     "config_file": settings, "camera_source": f"scenario:{scenario}"}),
    }


def _differences(doc: set[Endpoint], nodes: set[Endpoint]) -> list[str]:
    """One line per endpoint the doc and the nodes disagree on, naming the doc's row."""
    def by_key(endpoints: set[Endpoint]) -> dict[tuple[str, str, str], Endpoint]:
        return {(e.node, e.role, e.name): e for e in endpoints}

    what = {"pub": "publishes", "sub": "subscribes", "srv": "serves"}
    d, n = by_key(doc), by_key(nodes)
    lines = []
    for key in sorted(n.keys() - d.keys()):
        e = n[key]
        lines.append(f"missing from {DOC.name}: {e.node} {what[e.role]} `{e.name}` ({e.type}, {e.qos})")
    for key in sorted(d.keys() - n.keys()):
        e = d[key]
        lines.append(f"{DOC.name} row `{e.name}`: {e.node} does not {what[e.role].removesuffix('s')} it")
    for key in sorted(d.keys() & n.keys()):
        if d[key] != n[key]:
            lines.append(f"{DOC.name} row `{key[2]}` for {key[0]}'s {key[1]}: the doc says {d[key].type} "
                         f"({d[key].qos}), the node creates {n[key].type} ({n[key].qos})")
    return lines


@pytest.mark.slow
def test_the_doc_tables_are_what_the_nodes_create(tmp_path, monkeypatch):
    # Prepare: test-only settings that change no endpoint (no federation threads, no writes to the
    # runtime stores), and the settings that add or move endpoints (the doc's conditions met by SETTINGS)
    from hrc_fl.sim.scenario import ScenarioConfig, write_scenario

    quiet = _write_yaml(tmp_path / "quiet.yaml", {
        "/**/fl_client": {"ros__parameters": {"run_federation": False, "sample_db": str(tmp_path / "samples.sqlite"),
                                              "model_store_dir": str(tmp_path / "models")}},
        "/**/aggregator": {"ros__parameters": {"server_nice": 0, "state_dir": str(tmp_path / "aggregator")}}})
    scenario = tmp_path / "scenario.yaml"
    write_scenario(scenario, ScenarioConfig(length_s=30.0))
    settings = _write_yaml(tmp_path / "settings.yaml", {
        "/**/pose": {"ros__parameters": {"simulated_worker": str(scenario)}},
        "/**/wearable": {"ros__parameters": {"replay_task_events": True}},
        "/**/safety": {"ros__parameters": {"robot_source": "tcp"}}})
    import hrc_fl.federated.transport.fedml_server as fedml_server

    monkeypatch.setattr(fedml_server, "run_server", _stub_server)
    text = DOC.read_text()

    # Execute: each bring-up in turn (one rclpy context at a time), nodes built, read and torn down
    created, differences = {}, []
    for name, specs in bring_up_specs(quiet, settings, str(scenario)).items():
        (tmp_path / name).mkdir()
        created[name] = bring_up(specs, tmp_path / name)
        nodes = {e for endpoints in created[name].values() for e in endpoints}
        differences += [f"[{name}] {d}" for d in _differences(doc_endpoints(set(created[name]), name, text), nodes)]

    # Assert: every node of the graph came up, and the doc's rows are exactly their endpoints
    assert {name: set(c) for name, c in created.items()} == _graph_nodes(bring_up_specs("", "", ""))
    assert not differences, "\n".join(differences)


def _graph_nodes(bring_ups: dict[str, list[NodeSpec]]) -> dict[str, set[str]]:
    return {name: {n for spec in specs for n in spec.node_names()} for name, specs in bring_ups.items()}


def test_the_doc_names_only_nodes_of_the_graph():
    # Prepare
    every = set().union(*_graph_nodes(bring_up_specs("", "", "")).values())

    # Execute
    named = doc_node_names(DOC.read_text())

    # Assert: no row names a node the graph does not start (a renamed node would leave stale rows)
    assert named == every, (sorted(named - every), sorted(every - named))


def test_a_topic_without_its_row_or_with_another_qos_fails_naming_it():
    # Prepare: the endpoints the doc states stand in for what the nodes create; then the doc without its
    # hands/gesture row, and a node whose robot/joint_states subscription is reliable
    text = DOC.read_text()
    nodes = _graph_nodes(bring_up_specs("", "", ""))[PACKAGED]
    created = doc_endpoints(nodes, PACKAGED, text)
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `hands/gesture`"))
    reliable = {Endpoint(e.node, e.role, e.name, e.type, "reliable, depth 10")
                if (e.node, e.role, e.name) == ("safety", "sub", "robot/joint_states") else e for e in created}

    # Execute
    same = _differences(doc_endpoints(nodes, PACKAGED, text), created)
    lost_row = _differences(doc_endpoints(nodes, PACKAGED, without), created)
    other_qos = _differences(doc_endpoints(nodes, PACKAGED, text), reliable)

    # Assert: nothing when they agree; the publisher and the subscriber that lost their row are named;
    # the changed QoS is named with both values
    assert same == []
    assert len(lost_row) == 2, lost_row
    assert all(d.startswith("missing from architecture.md") and "`hands/gesture`" in d for d in lost_row)
    assert {d.split()[3] for d in lost_row} == {"hands", "safety"}
    assert other_qos == ["architecture.md row `robot/joint_states` for safety's sub: the doc says "
                         "sensor_msgs/msg/JointState (best effort, depth 5), the node creates "
                         "sensor_msgs/msg/JointState (reliable, depth 10)"]
