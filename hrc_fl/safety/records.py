"""Building the safety core's frozen result records on the hot path. ROS-free.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``: for the
20-field SafetyDecision that is about ten times the cost of filling the instance dictionary at once, and
the step builds four such records per cycle. The records stay frozen (attribute assignment raises) and
keep their dataclass equality and repr; only construction takes this path.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def frozen_record(cls: type[T], **values: Any) -> T:
    """An instance of the frozen dataclass ``cls`` with exactly ``values`` as its fields (no
    ``__post_init__``: for records whose fields the caller has computed, not validated input)."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj
