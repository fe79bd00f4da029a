"""Settings declared once, on dataclass fields: default, unit and description of each.

A config dataclass marks each tunable field with :func:`setting` (and a nested config with
``metadata=GROUP``). From those fields come the node's parameter table (:func:`parameter_spec`), the
config built from the parameter values (:func:`from_settings`) and the documentation table
(:func:`markdown_table`), so a default, a unit or a description has exactly one place to change.
``tests/test_safety_settings.py`` checks ``config/safety.yaml`` and ``docs/safety.md`` against them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

#: Units a setting may name: physical units, ``1`` (a dimensionless factor, fraction or confidence),
#: ``count`` (whole number of things) and ``-`` (no unit: a name, choice, switch or list of labels).
UNITS: dict[str, str] = {
    "m": "metres", "s": "seconds", "m/s": "metres per second", "Hz": "per second (rate)",
    "1/s": "scale units per second", "1": "dimensionless", "count": "whole number", "-": "no unit",
}

#: Value types a ROS parameter can carry (a tuple default is declared as a list).
_VALUE_TYPES = (bool, int, float, str, tuple)

_UNIT, _DESCRIPTION, _GROUP = "unit", "description", "settings_group"

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """One tunable value: its parameter name, default, unit (a key of :data:`UNITS`) and description."""

    name: str
    default: Any
    unit: str
    description: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"setting {self.name}: unknown unit {self.unit!r} (one of {sorted(UNITS)})")
        if not self.description.strip():
            raise ValueError(f"setting {self.name}: empty description")
        if not isinstance(self.default, _VALUE_TYPES):
            raise ValueError(f"setting {self.name}: default {self.default!r} is no parameter value")

    @property
    def parameter_default(self) -> Any:
        """The default as a ROS parameter value (a tuple becomes a list)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default

    @property
    def parameter_description(self) -> str:
        """The description a parameter descriptor carries: the text, then the unit where there is one."""
        return self.description if self.unit == "-" else f"{self.description} [{self.unit}]"


def setting(default: Any, unit: str, description: str) -> Any:
    """A dataclass field that is a setting: ``default`` (immutable), ``unit`` (:data:`UNITS`), description."""
    return dataclasses.field(default=default, metadata={_UNIT: unit, _DESCRIPTION: description})


#: Metadata of a dataclass field holding a nested config (``field(default_factory=Cls, metadata=GROUP)``)
#: whose settings are flattened into the parent's.
GROUP: Mapping[str, bool] = {_GROUP: True}


def settings_of(cls: type) -> list[Setting]:
    """The settings of config dataclass ``cls``, nested groups flattened in field order."""
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        if _GROUP in f.metadata:
            out.extend(settings_of(f.default_factory))
        elif _UNIT in f.metadata:
            out.append(Setting(f.name, f.default, f.metadata[_UNIT], f.metadata[_DESCRIPTION]))
    names = [s.name for s in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{cls.__name__}: settings defined twice: {duplicates}")
    return out


def _as_field_value(default: Any, value: Any) -> Any:
    # Parameters arrive as ROS values: lists for tuple settings, ints where a YAML float was written as 1.
    if isinstance(default, tuple):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_settings(cls: type[T], values: Mapping[str, Any], **given: Any) -> T:
    """An instance of config dataclass ``cls`` from parameter ``values`` (by setting name; a missing one
    keeps its default), nested groups built the same way; ``given`` sets the fields that are no settings."""
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        if _GROUP in f.metadata:
            kwargs[f.name] = from_settings(f.default_factory, values)
        elif _UNIT in f.metadata and f.name in values:
            kwargs[f.name] = _as_field_value(f.default, values[f.name])
    return cls(**kwargs)


def parameter_spec(settings: Iterable[Setting]) -> dict[str, tuple[Any, str]]:
    """``name -> (default, description)``, the table ``hrc_fl.nodes.common.declare_parameters`` takes."""
    spec: dict[str, tuple[Any, str]] = {}
    for s in settings:
        if s.name in spec:
            raise ValueError(f"setting {s.name} defined twice")
        spec[s.name] = (s.parameter_default, s.parameter_description)
    return spec


def yaml_text(value: Any) -> str:
    """``value`` as it is written in a parameter YAML file (flow style for lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    return str(value)


def markdown_table(settings: Iterable[Setting]) -> str:
    """The settings as a Markdown table: parameter, default, unit, description (one row each)."""
    rows = ["| parameter | default | unit | description |", "| --- | --- | --- | --- |"]
    for s in settings:
        description = s.description.replace("|", "\\|")
        rows.append(f"| `{s.name}` | `{yaml_text(s.default)}` | {s.unit} | {description} |")
    return "\n".join(rows) + "\n"
