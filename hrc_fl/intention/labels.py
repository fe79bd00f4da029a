"""The intention label space: the classes the cell's intention model estimates, learns and federates.

Two label spaces meet here and are kept apart by name:

- :data:`hrc_fl.data.datasets.WATCH_CLASSES` is a fact of the watch data set: its 7 shoulder exercises,
  index == a recording's label. The base model (``hrc-fl train-intention``), the wearable replay's task
  events and the watch simulations are labelled with it, whatever a deployment configures.
- :data:`INTENTION_LABELS` is a deployment setting: the label space of the intention node, the fl_client
  nodes and the federation's learner, which must all be equal (a model with another label space is
  rejected). Its default is the watch classes, because that data is the only real multi-subject wearable
  data; a plant sets its own intention classes and trains and federates a model with them.

The setting is defined here once. The node parameter defaults and the learner's default come from it, and
the packaged YAML files in :data:`INTENTION_LABEL_SETTINGS` restate it so that a plant sees it where it
configures the cell; ``tests/test_intention_labels.py`` fails, naming each file and key, when one of them
differs. A plant that changes its label set changes :data:`INTENTION_LABELS` (or its own copies of those
files) and the test lists the files that must follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from hrc_fl.data.datasets import WATCH_CLASSES

#: Default label space of a deployment (the watch exercise classes, see the module docstring).
INTENTION_LABELS: tuple[str, ...] = WATCH_CLASSES

#: Description of the ``labels`` parameter of the nodes that share the label space.
INTENTION_LABELS_DESCRIPTION = ("Intention label space of this deployment (the intention node, every fl_client "
                                "and the federation's learner use the same list); a model with other labels is "
                                "rejected.")

#: Key path of the label space in a federation YAML (``learner.options``, the learner module's options).
FEDERATION_LABELS_KEY: tuple[str, ...] = ("learner", "options", "labels")

#: Where the packaged configuration restates the label space: (file in the config folder, key path in it).
INTENTION_LABEL_SETTINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("intention.yaml", ("/**/intention", "ros__parameters", "labels")),
    ("fl_client.yaml", ("/**/fl_client", "ros__parameters", "labels")),
    ("federated.yaml", FEDERATION_LABELS_KEY),
)


def labels_at(path: Path, keys: Sequence[str]) -> tuple[str, ...]:
    """The label space a YAML file sets at the key path ``keys``; :data:`INTENTION_LABELS` where the file,
    a key on the way or the value is absent or empty (the default then applies, as in the nodes and the
    learner). Raises ValueError when the value is not a list."""
    node: object = yaml.safe_load(path.read_text()) if path.is_file() else None
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if not node:
        return INTENTION_LABELS
    if not isinstance(node, list):
        raise ValueError(f"{path}: {'.'.join(keys)} must be a list of labels, got {node!r}")
    return tuple(str(v) for v in node)


def configured_label_spaces(config_dir: Path) -> dict[str, tuple[str, ...]]:
    """File name -> label space of each file of :data:`INTENTION_LABEL_SETTINGS` in ``config_dir``."""
    return {name: labels_at(config_dir / name, keys) for name, keys in INTENTION_LABEL_SETTINGS}
