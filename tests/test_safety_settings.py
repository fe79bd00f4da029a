"""The safety settings are defined once (hrc_fl.safety.config / settings): the node's parameter table, the
config it builds, config/safety.yaml and the docs table follow from that definition, and drift is named."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from hrc_fl.intention.labels import INTENTION_LABELS
from hrc_fl.paths import config_dir, config_file
from hrc_fl.safety.config import SAFETY_SETTINGS, SafetyNodeSettings, load_robot_model, unknown_slowdown_intentions
from hrc_fl.safety.monitor import SafetyConfig
from hrc_fl.safety.settings import (
    GROUP,
    UNITS,
    from_settings,
    markdown_table,
    parameter_spec,
    setting,
    settings_of,
    yaml_text,
)
from hrc_fl.safety.zones import ZoneConfig

SETTINGS = {s.name: s for s in SAFETY_SETTINGS}
#: Set per workstation by the launch graph (hrc_fl/graph.py), so the shared YAML leaves it out.
LAUNCH_SET = {"workstation_id"}
#: Name endings that fix the unit (checked longest first: ``_per_s`` before ``_s``).
SUFFIX_UNITS = (("_per_s", "1/s"), ("_mps", "m/s"), ("_hz", "Hz"), ("_m", "m"), ("_s", "s"))
DOCS = config_dir().parent / "docs" / "safety.md"


def _yaml_parameters(name: str) -> dict:
    return yaml.safe_load(config_file(name).read_text())["/**/safety"]["ros__parameters"]


def _yaml_comments(name: str) -> dict[str, str]:
    """Per parameter key of the file, the comment on its line ("" when none)."""
    comments: dict[str, str] = {}
    for line in config_file(name).read_text().splitlines():
        match = re.match(r"^\s+(\w+):\s*[^#\s][^#]*(#.*)?$", line)
        if match and match.group(1) != "ros__parameters":
            comments[match.group(1)] = match.group(2) or ""
    return comments


@pytest.mark.parametrize("s", SAFETY_SETTINGS, ids=[s.name for s in SAFETY_SETTINGS])
def test_every_setting_has_a_description_and_the_unit_its_name_and_type_imply(s):
    assert s.description.strip() and s.unit in UNITS
    numeric = isinstance(s.default, (int, float)) and not isinstance(s.default, bool)
    assert (s.unit != "-") == numeric, f"{s.name}: unit {s.unit!r} for default {s.default!r}"
    implied = next((unit for suffix, unit in SUFFIX_UNITS if s.name.endswith(suffix)), None)
    assert implied is None or s.unit == implied, f"{s.name}: unit {s.unit!r}, its name says {implied!r}"


def test_the_node_declares_exactly_the_settings_with_their_default_and_unit():
    from hrc_fl.nodes.safety import PARAMETERS

    assert list(PARAMETERS) == list(SETTINGS)
    for name, (default, description) in PARAMETERS.items():
        s = SETTINGS[name]
        assert default == list(s.default) if isinstance(s.default, tuple) else default == s.default
        assert description.startswith(s.description)
        assert s.unit == "-" or description.endswith(f"[{s.unit}]"), description


def test_the_parameter_table_defaults_build_the_default_config():
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    values = {name: default for name, (default, _) in parameter_spec(SAFETY_SETTINGS).items()}
    assert from_settings(SafetyConfig, values, robot=robot) == SafetyConfig(robot=robot)
    assert from_settings(SafetyNodeSettings, values) == SafetyNodeSettings()


def test_every_parameter_value_reaches_its_field_nested_and_converted():
    # A value other than the default for every monitor setting: each must land in its own field (the zones
    # group included), lists as tuples and YAML ints as floats.
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    changed = {"restart_interlock": "auto", "robot_source": "tcp", "slowdown_intentions": ["reach"],
               "resume_gesture_enabled": False, "stop_if_robot_faster_than_allowed": False,
               "command_stop_requires_manual_reset": False, "min_body_points": 5, "arm_signal_min_frames": 4,
               "human_speed_close_mps": 3}
    for s in settings_of(SafetyConfig):
        if s.name not in changed:
            changed[s.name] = s.default / 2
    config = from_settings(SafetyConfig, changed, robot=robot)
    flat = {**dataclasses.asdict(config.zones), **{f.name: getattr(config, f.name)
                                                 for f in dataclasses.fields(config)}}
    for name, value in changed.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert flat[name] == expected and type(flat[name]) is type(SETTINGS[name].default), name


def test_shipped_yaml_restates_every_default_or_marks_the_override():
    params, comments = _yaml_parameters("safety.yaml"), _yaml_comments("safety.yaml")
    assert set(params) == set(SETTINGS) - LAUNCH_SET, (
        f"config/safety.yaml lacks {sorted(set(SETTINGS) - LAUNCH_SET - set(params))}, "
        f"has undeclared {sorted(set(params) - set(SETTINGS))}")
    for name, value in params.items():
        default = SETTINGS[name].parameter_default
        differs = not (value == default and (type(value) is type(default) or isinstance(default, float)))
        marked = "# override" in comments[name]
        assert differs == marked, (
            f"config/safety.yaml {name}: {yaml_text(value)} vs default {yaml_text(default)} "
            f"({'unmarked override' if differs else 'marked override that equals the default'})")


def test_demo_yaml_only_overrides_declared_safety_parameters():
    params = _yaml_parameters("demo.yaml")
    assert set(params) <= set(SETTINGS), set(params) - set(SETTINGS)


def test_docs_table_is_the_generated_one():
    text = DOCS.read_text()
    match = re.search(r"<!-- safety-parameters:[^>]*-->\n(.*?)<!-- /safety-parameters -->", text, re.S)
    assert match, "docs/safety.md lost its generated parameter table"
    assert match.group(1) == markdown_table(SAFETY_SETTINGS), (
        "docs/safety.md parameter table is stale: regenerate it with python -m hrc_fl.safety.config")


def test_shipped_slowdown_intentions_are_no_intention_labels():
    # The warning the node logs at start: approach/handover are not watch exercise classes.
    robot = load_robot_model(config_file("robot_ur5e.yaml"))
    config = from_settings(SafetyConfig, _yaml_parameters("safety.yaml"), robot=robot)
    assert unknown_slowdown_intentions(config, INTENTION_LABELS) == ("approach", "handover")
    assert unknown_slowdown_intentions(config, (*INTENTION_LABELS, "handover")) == ("approach",)
    known = dataclasses.replace(config, slowdown_intentions=INTENTION_LABELS[:2])
    assert unknown_slowdown_intentions(known, INTENTION_LABELS) == ()


def test_a_bad_unit_and_a_setting_defined_twice_are_refused():
    @dataclasses.dataclass(frozen=True)
    class BadUnit:
        speed: float = setting(1.0, "furlong", "A speed.")

    @dataclasses.dataclass(frozen=True)
    class Twice:
        min_dwell_s: float = setting(0.2, "s", "Also the zones' setting.")
        zones: ZoneConfig = dataclasses.field(default_factory=ZoneConfig, metadata=GROUP)

    with pytest.raises(ValueError, match="unknown unit"):
        settings_of(BadUnit)
    with pytest.raises(ValueError, match=r"defined twice.*min_dwell_s"):
        settings_of(Twice)
