"""launch/*.launch.py and ``hrc-fl launch`` come from one description and cannot drift."""

from __future__ import annotations

import importlib.util
import itertools
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from hrc_fl.graph import GRAPHS
from hrc_fl.launcher import node_command, node_environment, specs_for
from tests import launch_standins

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
OVERRIDES = {
    "workstation": [{}, {"workstation_id": "cell7", "fl": "false", "camera_source": "/dev/video2"},
                    {"camera_source": "/dev/video2", "composed": "false"}],
    "aggregator": [{}],
    "plant_demo": [{}, {"workstations": "2"}, {"workstations": "2", "composed": "false"},
                   {"workstations": "2", "scenario": "/run/scenario.yaml", "image_rate_hz": "12.5",
                    "fl_config": "/run/fed.yaml", "run_dir": "/run", "extra_nodes": "foxglove_bridge_node"}],
}


@pytest.fixture
def standins():
    launch_standins.install()
    try:
        yield launch_standins
    finally:
        launch_standins.uninstall()


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"launchfile_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _argv_from_launch_node(node) -> dict:
    """What the launch_ros Node would run, in the launcher's terms (its environment too: see below)."""
    files = [p for p in node.parameters if isinstance(p, str)]
    params = {k: v for p in node.parameters if isinstance(p, dict) for k, v in p.items()}
    return {"executable": node.executable, "package": node.package, "name": node.name,
            "namespace": node.namespace, "param_files": files, "parameters": params,
            "remappings": [tuple(r) for r in node.remappings],
            "arguments": list(node.extra.get("arguments") or [])}


def _executable_of(command: list[str]) -> tuple[str, int]:
    """The node executable a launcher command runs, and the index of its first argument."""
    if command[1:2] == ["-m"]:  # python -m hrc_fl.nodes.<name>: scripts installed before the node existed
        return command[2].rsplit(".", 1)[1] + "_node", 3
    return Path(command[0]).name, 1


def _argv_from_launcher(command: list[str]) -> dict:
    """Parse the launcher's argv back into the same terms."""
    exe, start = _executable_of(command)
    args = command[command.index("--ros-args") + 1:]
    out = {"executable": exe, "package": "hrc_fl", "name": None, "namespace": "", "param_files": [],
           "parameters": {}, "remappings": [], "arguments": command[start:command.index("--ros-args")]}
    i = 0
    while i < len(args):
        flag, value = args[i], args[i + 1]
        if flag == "--params-file":
            out["param_files"].append(value)
        elif flag == "-p":
            key, _, raw = value.partition(":=")
            out["parameters"][key] = yaml.safe_load(raw)
        elif flag == "-r" and value.startswith("__node:="):
            out["name"] = value.split(":=", 1)[1]
        elif flag == "-r" and value.startswith("__ns:="):
            out["namespace"] = value.split(":=", 1)[1].strip("/")
        elif flag == "-r":
            src, _, dst = value.partition(":=")
            out["remappings"].append((src, dst))
        i += 2
    return out


def test_there_is_a_launch_file_per_graph():
    assert sorted(p.name for p in LAUNCH_FILES) == sorted(f"{g}.launch.py" for g in GRAPHS)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_launch_file_yields_exactly_the_launchers_nodes(standins, graph):
    description = _load(ROOT / "launch" / f"{graph}.launch.py")
    declared = {e.name: e.default_value for e in description.entities
                if isinstance(e, standins.DeclareLaunchArgument)}
    assert declared == {a.name: a.default for a in GRAPHS[graph].arguments}
    for overrides in OVERRIDES[graph]:
        from_launch = [_argv_from_launch_node(n) for n in standins.execute(description, overrides)]
        from_launcher = [_argv_from_launcher(node_command(s)) for s in specs_for(graph, overrides)]
        assert from_launch == from_launcher, f"{graph} with {overrides}"


def test_workstation_arguments_change_the_nodes(standins):
    description = _load(ROOT / "launch" / "workstation.launch.py")
    nodes = standins.execute(description, {"workstation_id": "cell7", "fl": "false"})
    assert nodes, "the workstation graph has no nodes"
    assert {n.namespace for n in nodes} == {"cell7"}
    assert all(n.executable != "fl_client_node" for n in nodes)
    assert all(p.get("workstation_id") == "cell7" for n in nodes for p in n.parameters if isinstance(p, dict))


def test_every_parameter_file_exists_and_names_its_node():
    for graph in GRAPHS:
        for spec in specs_for(graph):
            for path in [a for a in node_command(spec) if a.endswith(".yaml")]:
                content = yaml.safe_load(Path(path).read_text())
                sections = [f"/**/{name}" for name in spec.node_names() if f"/**/{name}" in content]
                assert sections, f"{path} has no section for any node of {spec.name} ({spec.node_names()})"
                assert all("ros__parameters" in content[s] for s in sections)


def test_every_executable_is_an_installed_entry_point():
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    executables = {spec.executable for graph in GRAPHS for spec in specs_for(graph)}
    assert executables, "no nodes in any graph"
    for exe in executables:
        assert exe in scripts, f"{exe} is not a console script of hrc_fl"
        assert callable(scripts[exe].load()), exe
        assert (Path(sys.executable).parent / exe).is_file(), f"{exe} not installed next to python"


def test_unknown_launch_argument_is_refused_with_its_name():
    result = subprocess.run([str(Path(sys.executable).parent / "hrc-fl"), "launch", "workstation",
                             "worksation_id:=x", "--print"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "worksation_id" in result.stderr


def test_launch_print_shows_the_node_commands():
    result = subprocess.run([str(Path(sys.executable).parent / "hrc-fl"), "launch", "workstation",
                             "workstation_id:=ws4", "--print"], capture_output=True, text=True, check=True)
    lines = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [_executable_of(c)[0] for c in lines] == [s.executable for s in specs_for("workstation",
                                                                                  {"workstation_id": "ws4"})]
    assert all("__ns:=/ws4" in c for c in lines)


def test_a_workstation_is_one_composed_process_by_default_and_one_per_node_on_request():
    # Execute
    composed = specs_for("workstation", {"camera_source": "/dev/video2"})
    separate = specs_for("workstation", {"camera_source": "/dev/video2", "composed": "false"})

    # Assert: the composed process runs every workstation node but the FL client, with each node's own
    # parameter file and the camera's source targeted at the camera only; apart, one process per node
    assert [s.executable for s in composed] == ["workstation_node", "fl_client_node"]
    inside = composed[0]
    assert inside.composed == ("camera_node", "hands_node", "pose_node", "wearable_node", "intention_node",
                               "safety_node")
    assert inside.node_names() == ("camera", "hands", "pose", "wearable", "intention", "safety")
    assert [Path(f).name for f in inside.param_files] == [f"{n}.yaml" for n in inside.node_names()]
    assert inside.node_parameters == {"camera": {"source": "/dev/video2"}}
    assert "source" not in inside.parameters  # the wearable has a 'source' parameter of its own
    command = node_command(inside)
    assert "__node:=" not in " ".join(command)  # every node keeps its own name
    assert command[command.index("--param") + 1] == "camera:source=/dev/video2"
    assert [s.executable for s in separate] == ["camera_node", "hands_node", "pose_node", "wearable_node",
                                                "intention_node", "safety_node", "fl_client_node"]
    assert separate[0].parameters["source"] == "/dev/video2"


def test_the_plant_demo_composes_each_robot_sim_into_its_workstation():
    specs = specs_for("plant_demo", {"workstations": "2"})
    composed = [s for s in specs if s.composed]
    assert [s.namespace for s in composed] == ["ws1", "ws2"]
    assert all(s.composed[-1] == "robot_sim_node" for s in composed)
    assert sorted(s.executable for s in specs) == ["aggregator_node", "fl_client_node", "fl_client_node",
                                                  "workstation_node", "workstation_node"]


#: Environments a graph is started from: a bare one, a plant's subnet discovery, a discovery server.
ENVIRONMENTS = [
    {"PATH": "/usr/bin"},
    {"PATH": "/usr/bin", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "7"},
    {"PATH": "/usr/bin", "ROS_DISCOVERY_SERVER": "192.0.2.1:11811",
     "FASTDDS_DEFAULT_PROFILES_FILE": "/etc/plant/fastdds.xml"},
]


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=["bare", "subnet", "discovery_server"])
def test_launch_file_nodes_get_the_launchers_environment(standins, graph, environment):
    # Prepare
    description = _load(ROOT / "launch" / f"{graph}.launch.py")

    # Execute: what ExecuteProcess runs each Node with (its environment plus additional_env) ...
    from_launch = [{**environment, **n.extra["additional_env"]}
                   for n in standins.execute(description, {}, environment)]
    # ... and what `hrc-fl launch` runs each node with
    from_launcher = node_environment(environment)

    # Assert: the same for every node; the profile and range set unless the user chose, never overridden
    assert from_launch and all(env == from_launcher for env in from_launch)
    profile = from_launcher["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert profile == environment.get("FASTDDS_DEFAULT_PROFILES_FILE") or Path(profile).name == "fastdds.xml"
    for key, value in environment.items():
        assert from_launcher[key] == value, key
    if "ROS_DISCOVERY_SERVER" in environment:
        assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in from_launcher
    elif "ROS_AUTOMATIC_DISCOVERY_RANGE" not in environment:
        assert from_launcher["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


@pytest.mark.parametrize("composed", ["true", "false"])
def test_the_demo_the_launcher_and_the_launch_file_start_one_plant_demo_graph(standins, capsys, tmp_path,
                                                                            composed):
    # Prepare: a demo run's options, scenario, federation file and run folder
    from hrc_fl.cli import main
    from hrc_fl.demo.options import DemoOptions
    from hrc_fl.demo.run import demo_launch_arguments, demo_specs

    options = DemoOptions(workstations=2, image_rate_hz=7.5, extra_nodes=("foxglove_bridge_node",))
    scenario, fl_config, run_dir = tmp_path / "scenario.yaml", tmp_path / "fed.yaml", tmp_path / "run"
    arguments = {**demo_launch_arguments(options, scenario, fl_config, run_dir), "composed": composed}

    # Execute: the demo's node list, `hrc-fl launch plant_demo ... --print`, and the launch file
    demo = demo_specs(options, scenario, fl_config, run_dir) if composed == "true" else None
    assert main(["launch", "plant_demo", *(f"{k}:={v}" for k, v in arguments.items()), "--print"]) == 0
    from_cli = [_argv_from_launcher(shlex.split(line)) for line in capsys.readouterr().out.splitlines()]
    description = _load(ROOT / "launch" / "plant_demo.launch.py")
    from_launch = [_argv_from_launch_node(n) for n in standins.execute(description, arguments)]

    # Assert: one node list, node by node (executables, names, namespaces, files, parameters)
    assert from_launch == from_cli
    if demo is not None:
        assert [_argv_from_launcher(node_command(s)) for s in demo] == from_cli
    by_node = {}
    for node in from_cli:  # (namespace, node name) -> its parameters, composed ones from --param
        params = node["parameters"]
        if node["executable"] == "workstation_node":
            words = node["arguments"]
            for flag, value in itertools.pairwise(words):
                if flag == "--param":
                    target, _, assignment = value.partition(":")
                    key, _, raw = assignment.partition("=")
                    by_node.setdefault((node["namespace"], target), {})[key] = yaml.safe_load(raw)
        else:
            by_node.setdefault((node["namespace"], node["name"]), {}).update(params)
    executables = sorted(n["executable"] for n in from_cli)
    if composed == "true":
        assert executables == ["aggregator_node", "fl_client_node", "fl_client_node", "foxglove_bridge_node",
                               "foxglove_bridge_node", "workstation_node", "workstation_node"]
    else:
        assert executables.count("robot_sim_node") == 2 and executables.count("camera_node") == 2
    for i in (1, 2):
        ws = f"ws{i}"
        assert by_node[(ws, "camera")] == {"source": f"scenario:{scenario}", "rate_hz": 7.5,
                                           **({} if composed == "true" else {"workstation_id": ws})}
        assert by_node[(ws, "pose")]["simulated_worker"] == str(scenario)
        assert by_node[(ws, "wearable")]["replay_subject"] == i
        assert by_node[(ws, "wearable")]["worker_id"] == f"worker{i}"
        assert by_node[(ws, "fl_client")]["sample_db"] == str(run_dir / "samples" / f"{ws}.sqlite")
        assert by_node[(ws, "fl_client")]["federation_config"] == str(fl_config)
        assert by_node[(ws, "intention")]["model_store_dir"] == str(run_dir / "models" / ws)
    assert by_node[("plant", "aggregator")] == {"federation_config": str(fl_config),
                                                "state_dir": str(run_dir / "federated"),
                                                "audit_path": str(run_dir / "fl_audit.jsonl")}
    # every workstation node gets the demo file after its packaged defaults
    assert all(Path(n["param_files"][-1]).name == "demo.yaml" for n in from_cli if n["namespace"] != "plant")
