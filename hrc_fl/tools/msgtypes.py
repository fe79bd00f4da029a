"""Message types by name: import the rclpy class for "pkg/msg/Type", build a rosbags typestore
that knows every installed interface plus this repository's ``msg/*.msg``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from hrc_fl.paths import REPO_ROOT


def normalize_type_name(type_name: str) -> str:
    """"pkg/Type" or "pkg/msg/Type" -> "pkg/msg/Type"; ValueError for anything else."""
    parts = [p for p in type_name.strip().split("/") if p]
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"not a message type name (expected pkg/msg/Type): {type_name!r}")
    return "/".join(parts)


def import_message_type(type_name: str) -> type:
    """The rclpy message class for ``type_name`` ("pkg/msg/Type"); ValueError if not installed."""
    pkg, iface, name = normalize_type_name(type_name).split("/")
    try:
        module = importlib.import_module(f"{pkg}.{iface}")
    except ImportError as exc:
        raise ValueError(f"message package {pkg!r} is not installed ({exc})") from exc
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise ValueError(f"{pkg}.{iface} has no type {name!r}") from exc


def interface_dirs() -> list[Path]:
    """Folders holding ``<pkg>/msg/*.msg``: each ament prefix's share/ plus this interpreter's."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    seen: list[Path] = []
    for prefix in prefixes:
        share = Path(prefix) / "share"
        if share.is_dir() and share not in seen:
            seen.append(share)
    return seen


def _msg_files(extra_msg_dirs: Iterable[Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for share in interface_dirs():
        for path in sorted(share.glob("*/msg/*.msg")):
            files.setdefault(f"{path.parent.parent.name}/msg/{path.stem}", path)
    for folder in extra_msg_dirs:
        package = _package_name(folder)
        for path in sorted(Path(folder).glob("*.msg")):
            files.setdefault(f"{package}/msg/{path.stem}", path)
    return files


def _package_name(msg_dir: Path) -> str:
    # The repository's msg/ folder is the hrc_fl_msgs package (msg/package.xml names it).
    manifest = Path(msg_dir) / "package.xml"
    if manifest.is_file():
        text = manifest.read_text()
        start = text.find("<name>")
        end = text.find("</name>")
        if start >= 0 and end > start:
            return text[start + len("<name>"):end].strip()
    return Path(msg_dir).parent.name


def build_typestore(extra_msg_dirs: Iterable[Path] = (REPO_ROOT / "msg",)):
    """A rosbags typestore (ROS 2 Kilted definitions) with every installed and repository message
    type registered that the store does not already know."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    pending = {name: path for name, path in _msg_files(extra_msg_dirs).items() if name not in store.fielddefs}
    # Register in passes: a type whose dependencies are not known yet waits for the next pass.
    while pending:
        progressed = False
        for name, path in list(pending.items()):
            types = get_types_from_msg(path.read_text(), name)
            try:
                store.register(types)
            except Exception:
                continue
            del pending[name]
            progressed = True
        if not progressed:
            break
    return store
