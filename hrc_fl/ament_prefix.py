"""Registers hrc_fl in an ament prefix, so that ``ros2 run`` / ``ros2 launch`` / ``ament_index_python``
find it after the README's setup, in the layout a colcon build installs:

    <prefix>/share/ament_index/resource_index/packages/hrc_fl   (empty marker file)
    <prefix>/share/hrc_fl/package.xml, launch/, config/         (config/ holds the rviz config too)
    <prefix>/lib/hrc_fl/<executable>                            (one per node console script)
    <prefix>/setup.bash                                         (the one file a user sources)

The prefix is the virtual environment itself (the ROS 2 wheels already use it as their prefix). Files are
symbolic links into the source checkout, as ``colcon build --symlink-install`` makes them, so an edit to a
launch or config file needs no new setup. Run as ``python -m hrc_fl.ament_prefix`` (scripts/setup.sh does).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import distribution
from pathlib import Path

from hrc_fl.graph import PACKAGE
from hrc_fl.paths import REPO_ROOT

#: What ``share/<package>/`` holds, as setup.py's ``data_files`` install it: name -> path in the checkout.
SHARE_ITEMS: tuple[str, ...] = ("package.xml", "launch", "config")
#: Console scripts that are not nodes (never under lib/<package>/).
NOT_NODES: frozenset[str] = frozenset({"hrc-fl"})
#: The ROS 2 release the wheels come from (rclpy 9.x).
ROS_DISTRO = "kilted"


def node_executables() -> list[str]:
    """Names of the package's node console scripts (from its installed entry points), sorted."""
    scripts = [ep.name for ep in distribution(PACKAGE).entry_points if ep.group == "console_scripts"]
    return sorted(set(scripts) - NOT_NODES)


def _link(target: Path, link: Path) -> Path:
    """Make ``link`` a symlink to ``target``, replacing an older link or file in one step (a ``ros2 run``
    or launch resolving it meanwhile sees the old link or the new one, never none); returns the link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return link
    elif link.exists() and not link.is_file():
        raise FileExistsError(f"{link} exists and is not a link; remove it to register {PACKAGE}")
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)  # atomic: a reader sees the old link or the new one
    return link


def setup_script(prefix: Path) -> str:
    """Text of ``<prefix>/setup.bash``: activate the environment and export what ROS 2 tools expect."""
    return f"""# hrc_fl ROS 2 environment (written by scripts/setup.sh): source this file, as one sources a
# colcon workspace's install/setup.bash:   source {prefix}/setup.bash
_hrc_fl_prefix="{prefix}"
# shellcheck disable=SC1091
source "$_hrc_fl_prefix/bin/activate"
case ":${{AMENT_PREFIX_PATH:-}}:" in
  *":$_hrc_fl_prefix:"*) ;;
  *) export AMENT_PREFIX_PATH="$_hrc_fl_prefix${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}" ;;
esac
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export ROS_DISTRO="${{ROS_DISTRO:-{ROS_DISTRO}}}"
export RMW_IMPLEMENTATION="${{RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}}"
unset _hrc_fl_prefix
"""


def register(prefix: Path, *, source_root: Path = REPO_ROOT,
             executables: Sequence[str] | None = None) -> list[Path]:
    """Create (or refresh) the ament layout of hrc_fl in ``prefix``; returns the paths written.

    Idempotent. Executables are linked from ``<prefix>/bin/`` (where pip installs console scripts);
    a missing one raises FileNotFoundError naming it.
    """
    prefix = Path(prefix)
    names = node_executables() if executables is None else list(executables)
    written: list[Path] = []
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        marker.write_bytes(b"")
    written.append(marker)
    share = prefix / "share" / PACKAGE
    for item in SHARE_ITEMS:
        target = source_root / item
        if not target.exists():
            raise FileNotFoundError(f"{target} missing: cannot register {PACKAGE}")
        written.append(_link(target, share / item))
    lib = prefix / "lib" / PACKAGE
    for name in names:
        script = prefix / "bin" / name
        if not script.is_file():
            raise FileNotFoundError(f"console script {script} missing (is hrc_fl installed in {prefix}?)")
        written.append(_link(script, lib / name))
    # Executables that are no longer console scripts (a renamed node) must not linger. No lib folder yet
    # when the package has no executables.
    for stale in lib.iterdir() if lib.is_dir() else ():
        if stale.name not in names and stale.is_symlink():
            stale.unlink()
    script_path = prefix / "setup.bash"
    text = setup_script(prefix)
    if not script_path.is_file() or script_path.read_text() != text:
        tmp = script_path.with_name(".setup.bash.tmp")
        tmp.write_text(text)
        tmp.replace(script_path)
    written.append(script_path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrc_fl.ament_prefix", description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix),
                        help="the ament prefix (default: this virtual environment)")
    args = parser.parse_args(argv)
    written = register(args.prefix.absolute())
    executables = [p for p in written if p.parent.name == PACKAGE and p.parent.parent.name == "lib"]
    print(f"[setup] {PACKAGE} registered in the ament prefix {args.prefix} ({len(executables)} executables); "
          f"use it with: source {args.prefix}/setup.bash")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
