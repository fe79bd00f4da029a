"""The repository builds with colcon in a ROS 2 workspace: both packages, ros2-run layout, launch files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NODES = ["camera_node", "hands_node", "pose_node", "wearable_node", "intention_node", "safety_node",
         "fl_client_node", "aggregator_node"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_colcon_builds_the_repository_in_a_workspace(tmp_path):
    # Prepare: a workspace with this repository (its tracked content) under src/.
    src = tmp_path / "src" / "hrc_fl"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "build", "install",
                                                            "log", "__pycache__", "*.egg-info"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV_BIN.parent), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    # Execute: colcon does not descend into a package folder, so name both packages (FACTS).
    result = subprocess.run(
        [str(VENV_BIN / "colcon"), "build", "--paths", "src/hrc_fl", "src/hrc_fl/msg",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Assert: the interface package and the nodes in the layout `ros2 run hrc_fl <node>` uses.
    install = tmp_path / "install"
    for node in NODES:
        assert (install / "hrc_fl" / "lib" / "hrc_fl" / node).is_file(), node
    assert sorted(p.name for p in (install / "hrc_fl" / "share" / "hrc_fl" / "launch").iterdir()) == sorted(
        p.name for p in (ROOT / "launch").glob("*.launch.py"))
    script = "import hrc_fl_msgs.msg as m, hrc_fl.paths as p; print(m.__file__); print(p.config_dir())"
    probe = subprocess.run(
        ["bash", "-c", f"source {install}/setup.bash"
         f" && export AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH:{VENV_BIN.parent}"
         f" && cd / && {sys.executable} -c '{script}'"],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "HRC_FL_CONFIG"})
    assert probe.returncode == 0, probe.stderr
    msg_file, config = probe.stdout.split()
    assert msg_file.startswith(str(install / "hrc_fl_msgs")), "interfaces not imported from the workspace"
    assert config == str(install / "hrc_fl" / "share" / "hrc_fl" / "config")
