"""The intention label space is defined once (hrc_fl.intention.labels): the nodes and the learner default to
it, the packaged YAML files restate it, and a file that drifts is named."""

from __future__ import annotations

import pytest
import yaml

from hrc_fl.intention.labels import (
    FEDERATION_LABELS_KEY,
    INTENTION_LABEL_SETTINGS,
    INTENTION_LABELS,
    configured_label_spaces,
    labels_at,
)
from hrc_fl.paths import config_dir


@pytest.mark.parametrize(("name", "keys"), INTENTION_LABEL_SETTINGS, ids=[n for n, _ in INTENTION_LABEL_SETTINGS])
def test_each_packaged_yaml_restates_the_one_label_space(name, keys):
    # Read the raw value: labels_at would hide a dropped key behind the default.
    node = yaml.safe_load((config_dir() / name).read_text())
    for key in keys:
        node = node[key]
    assert tuple(node) == INTENTION_LABELS, (
        f"config/{name} {'.'.join(keys)} = {node} differs from hrc_fl/intention/labels.py INTENTION_LABELS "
        f"{list(INTENTION_LABELS)}; a label space change goes to that constant and to every file of "
        f"INTENTION_LABEL_SETTINGS: {[n for n, _ in INTENTION_LABEL_SETTINGS]}")


def _label_keys(node: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(node, dict):
        return []
    found = [(*path, "labels")] if "labels" in node else []
    return found + [k for key, value in node.items() for k in _label_keys(value, (*path, str(key)))]


def test_the_settings_list_every_labels_key_of_the_packaged_yaml():
    # A new file or key that carries the label space must be listed, else the test above would not check it.
    # (safety.yaml's slowdown_intentions is another key: the labels safety reacts to.)
    found = {(p.name, keys) for p in sorted(config_dir().glob("*.yaml"))
             for keys in _label_keys(yaml.safe_load(p.read_text()))}
    assert found == set(INTENTION_LABEL_SETTINGS), found ^ set(INTENTION_LABEL_SETTINGS)


def test_node_parameter_defaults_and_the_learner_default_are_the_label_space(tmp_path):
    from hrc_fl.federated.core.intention_learner import make_learner
    from hrc_fl.nodes.fl_client import PARAMETERS as FL_CLIENT
    from hrc_fl.nodes.intention import PARAMETERS as INTENTION

    assert INTENTION["labels"][0] == FL_CLIENT["labels"][0] == list(INTENTION_LABELS)
    learner = make_learner("ws1", {"sample_db": str(tmp_path / "s.sqlite"), "model_store_dir": str(tmp_path / "m"),
                                   "initial_model_store": ""}, seed=0)
    assert learner.labels == INTENTION_LABELS
    assert learner.model.config.num_classes == len(INTENTION_LABELS)


def test_labels_at_reads_a_set_list_and_defaults_where_the_key_is_dropped(tmp_path):
    path = tmp_path / "federated.yaml"
    path.write_text(yaml.safe_dump({"learner": {"options": {"labels": ["reach", "idle"]}}}))
    assert labels_at(path, FEDERATION_LABELS_KEY) == ("reach", "idle")
    path.write_text(yaml.safe_dump({"learner": {"module": "x"}}))
    assert labels_at(path, FEDERATION_LABELS_KEY) == INTENTION_LABELS
    assert labels_at(tmp_path / "missing.yaml", FEDERATION_LABELS_KEY) == INTENTION_LABELS
    path.write_text(yaml.safe_dump({"learner": {"options": {"labels": "reach"}}}))
    with pytest.raises(ValueError, match="must be a list"):
        labels_at(path, FEDERATION_LABELS_KEY)


def test_configured_label_spaces_show_the_one_file_that_differs(tmp_path):
    for name, _ in INTENTION_LABEL_SETTINGS:
        (tmp_path / name).write_text((config_dir() / name).read_text())
    raw = yaml.safe_load((tmp_path / "fl_client.yaml").read_text())
    raw["/**/fl_client"]["ros__parameters"]["labels"] = ["reach", "idle"]
    (tmp_path / "fl_client.yaml").write_text(yaml.safe_dump(raw))
    spaces = configured_label_spaces(tmp_path)
    assert spaces == {"intention.yaml": INTENTION_LABELS, "fl_client.yaml": ("reach", "idle"),
                      "federated.yaml": INTENTION_LABELS}
