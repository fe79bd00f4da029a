"""hrc_fl as a ROS 2 user deploys it: the ament prefix the setup registers (what ``ros2 run`` /
``ros2 launch`` resolve through ament_index_python), and a whole graph that starts from it and stops
cleanly on SIGINT."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from distutils.core import run_setup
from pathlib import Path

import pytest

from hrc_fl.ament_prefix import register
from hrc_fl.discovery_check import DiscoveryWatch, expected_nodes, watch_diagnostics
from hrc_fl.graph import GRAPHS, PACKAGE, SHUTDOWN_BOUND_S, process_arguments
from hrc_fl.launcher import specs_for
from hrc_fl.paths import runtime_dir

ROOT = Path(__file__).resolve().parent.parent
PREFIX = Path(sys.prefix)
HRC_FL = str(PREFIX / "bin" / "hrc-fl")
#: The aggregator, one workstation and its simulated robot: every executable the graphs name.
SHUTDOWN_GRAPH, SHUTDOWN_ARGS = "plant_demo", {"workstations": "1"}
#: Start-up of all nine nodes on a loaded 2-core machine (FedML and MediaPipe imports): generous.
START_TIMEOUT_S = 240.0


def _sourced(script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in bash after the README's one line (``source .venv/setup.bash``), from / and
    with nothing ROS-related inherited."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AMENT_PREFIX_PATH", "VIRTUAL_ENV", "PYTHONPATH", "HRC_FL_CONFIG")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(["bash", "-c", f"source {shlex.quote(str(PREFIX / 'setup.bash'))} && cd / && {script}"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_ament_index_finds_the_package_after_sourcing_the_setup():
    # Execute: what launch_ros calls to resolve Node(package='hrc_fl', executable=...)
    probe = _sourced("python -c 'from ament_index_python.packages import get_package_prefix as p, "
                     "get_package_share_directory as s; print(p(\"hrc_fl\")); print(s(\"hrc_fl\"))'"
                     " && echo $ROS_VERSION $ROS_DISTRO $RMW_IMPLEMENTATION")

    # Assert
    assert probe.returncode == 0, probe.stderr
    prefix, share, versions = probe.stdout.splitlines()
    assert Path(prefix) == PREFIX and Path(share) == PREFIX / "share" / PACKAGE
    assert versions.split()[0] == "2" and versions.split()[2] == "rmw_fastrtps_cpp"
    assert (Path(share) / "package.xml").is_file()
    assert sorted(p.name for p in (Path(share) / "launch").iterdir()) == sorted(f"{g}.launch.py" for g in GRAPHS)
    assert (Path(share) / "config" / "hrc_fl.rviz").is_file()


def test_share_holds_what_a_colcon_build_installs(monkeypatch):
    # Prepare: setup.py's data_files are what colcon installs into share/ (test_colcon_build checks that)
    monkeypatch.chdir(ROOT)
    data_files = run_setup(str(ROOT / "setup.py"), stop_after="init").data_files

    # Assert: every one of them is at the same place under the registered prefix, with the same content
    installed = [(Path(folder), Path(f)) for folder, files in data_files for f in files]
    assert len(installed) > 10
    for folder, source in installed:
        target = PREFIX / folder / source.name
        assert target.is_file(), f"{target} missing (colcon installs {source} there)"
        assert target.read_bytes() == (ROOT / source).read_bytes(), target


def test_every_graph_executable_is_under_lib_and_is_what_the_launcher_runs():
    # Prepare
    executables = sorted({s.executable for g in GRAPHS for s in specs_for(g)})

    # Execute: `ros2 run hrc_fl <exe>` runs <prefix>/lib/hrc_fl/<exe>; `hrc-fl launch --print` shows its argv
    printed = _sourced(f"{HRC_FL} launch {SHUTDOWN_GRAPH} "
                       + " ".join(f"{k}:={v}" for k, v in SHUTDOWN_ARGS.items()) + " --print")

    # Assert
    assert printed.returncode == 0, printed.stderr
    for exe in executables:
        path = PREFIX / "lib" / PACKAGE / exe
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing: ros2 run {PACKAGE} {exe} fails"
    commands = [shlex.split(line) for line in printed.stdout.splitlines()]
    assert sorted({Path(c[0]).name for c in commands}) == executables
    # each starts with its ROS arguments (a composed process names its nodes before them: --nodes, --param)
    by_executable = {s.executable: s for s in specs_for(SHUTDOWN_GRAPH, SHUTDOWN_ARGS)}
    for c in commands:
        assert Path(c[0]).parent == PREFIX / "lib" / PACKAGE, c
        assert c[1:c.index("--ros-args")] == process_arguments(by_executable[Path(c[0]).name]), c


def test_register_is_idempotent_and_drops_executables_that_are_gone(tmp_path):
    # Prepare: a prefix with two console scripts
    (tmp_path / "bin").mkdir()
    for name in ("a_node", "b_node"):
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / name).chmod(0o755)
    first = register(tmp_path, executables=["a_node", "b_node"])

    # Execute: again, then with b_node gone from the package
    again = register(tmp_path, executables=["a_node", "b_node"])
    register(tmp_path, executables=["a_node"])

    # Assert
    assert first == again
    assert (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert sorted(p.name for p in (tmp_path / "lib" / PACKAGE).iterdir()) == ["a_node"]
    assert (tmp_path / "share" / PACKAGE / "launch").resolve() == ROOT / "launch"
    with pytest.raises(FileNotFoundError, match="c_node"):
        register(tmp_path, executables=["c_node"])


def test_register_replaces_a_link_in_one_step_and_needs_no_executables(tmp_path, monkeypatch):
    # Prepare: a prefix registered from another checkout (its share links point elsewhere), no executables
    old = tmp_path / "old_checkout"
    for item in ("package.xml", "launch", "config"):
        (old / item).parent.mkdir(parents=True, exist_ok=True)
        (old / item).write_text("old")
    prefix = tmp_path / "prefix"
    register(prefix, source_root=old, executables=[])
    present_at_replace = []
    real_replace = Path.replace

    def watched_replace(self, target):
        present_at_replace.append(Path(target).is_symlink())
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", watched_replace)

    # Execute
    register(prefix, executables=[])

    # Assert: each share link was swapped while the old one still stood, and now points at this checkout
    assert present_at_replace.count(True) == 3
    for item in ("package.xml", "launch", "config"):
        assert (prefix / "share" / PACKAGE / item).resolve() == ROOT / item
    assert not (prefix / "lib" / PACKAGE).exists()


def _runtime_for_the_graph(root: Path) -> Path:
    """A runtime folder of its own: the base intention model and the federation's certificates."""
    runtime = root / "runtime"
    base = runtime_dir() / "intention_models" / "base"
    if base.is_dir():
        shutil.copytree(base, runtime / "intention_models" / "base")
    subprocess.run([HRC_FL, "fl-certs", "--out", str(runtime / "fl_certs"), "--valid-days", "1"], check=True,
                   capture_output=True, timeout=120)
    return runtime


@pytest.mark.timeout(600)
def test_sigint_stops_every_node_of_the_graph_cleanly_within_the_bound(tmp_path, ros_probe):
    # Prepare: the graph started as a user starts it (registered executables, hrc-fl launch)
    runtime = _runtime_for_the_graph(tmp_path)
    env = dict(os.environ, HRC_FL_RUNTIME=str(runtime), AMENT_PREFIX_PATH=str(PREFIX))
    logs = tmp_path / "logs"
    specs = specs_for(SHUTDOWN_GRAPH, SHUTDOWN_ARGS)
    watch = DiscoveryWatch(expected_nodes(specs), START_TIMEOUT_S)
    watch_diagnostics(ros_probe.node, watch)
    launcher = subprocess.Popen([HRC_FL, "launch", SHUTDOWN_GRAPH, *(f"{k}:={v}" for k, v in SHUTDOWN_ARGS.items()),
                                 "--log-dir", str(logs)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        ros_probe.wait_until(lambda: watch.complete or launcher.poll() is not None, START_TIMEOUT_S,
                             "every node of the graph on /diagnostics")
        assert watch.complete, f"not heard: {watch.missing()} (launcher exited {launcher.returncode})"

        # Execute: Ctrl-C to the launcher, which sends SIGINT to every node
        t0 = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        out, _ = launcher.communicate(timeout=SHUTDOWN_BOUND_S + 30)
        elapsed_s = time.monotonic() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()

    # Assert: every node exited by itself with 0 within the bound (else the launcher names it and
    # escalates), and no node log has an RCLError or a traceback
    assert launcher.returncode == 0, out[-3000:]
    codes = dict(item.split("=") for item in re.search(r"\[launch\] stopped: (.*)", out).group(1).split(", "))
    assert sorted(codes) == sorted(f"{s.namespace}/{s.name}".strip("/") for s in specs)  # one per process
    assert set(codes.values()) == {"0"}, codes
    assert "did not exit within" not in out, out[-3000:]
    slowest_s = float(re.search(r"slowest stop: \S+ ([0-9.]+) s", out).group(1))
    assert slowest_s <= SHUTDOWN_BOUND_S, out[-2000:]
    assert elapsed_s < SHUTDOWN_BOUND_S + 10.0  # the launcher itself adds only its own teardown
    for log in sorted(logs.glob("*.log")):
        text = log.read_text(errors="replace")
        for bad in ("Traceback", "RCLError", "context is invalid", "Failed to publish"):
            assert bad not in text, f"{log.name}: {bad}\n{text[-3000:]}"
    # the fl_client's sample store was closed intact (its state saved)
    stores = list(runtime.rglob("*.sqlite*")) + list(runtime.rglob("*.db"))
    for store in [s for s in stores if s.suffix in (".sqlite", ".db", ".sqlite3")]:
        with sqlite3.connect(store) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", store
