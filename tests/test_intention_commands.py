"""The hrc-fl intention commands on the real data (smoke-sized): files, table structure, stored model."""

from __future__ import annotations

import json

import pytest

from hrc_fl.cli import main as cli_main
from hrc_fl.data.datasets import WATCH_CLASSES
from hrc_fl.intention.labels import INTENTION_LABELS
from hrc_fl.intention.model_store import ModelStore

pytestmark = [pytest.mark.timeout(240)]


def test_evaluate_intention_writes_per_subject_table_and_composed_section(tmp_path):
    rc = cli_main(["evaluate-intention", "--out", str(tmp_path), "--subjects", "3,6", "--quick"])
    assert rc == 0
    result = json.loads((tmp_path / "intention_eval.json").read_text())
    assert [row["subject"] for row in result["per_subject"]] == [3, 6]
    for row in result["per_subject"]:
        assert row["test_windows"] > 0
        for part in ("a_others", "b_own", "c_finetuned"):
            assert 0.0 <= row[part]["accuracy"] <= 1.0 and 0.0 <= row[part]["macro_f1"] <= 1.0
    assert "COMPOSED" in result["composed"]["note"]
    assert set(result["composed"]["by_modalities"]) >= {"imu", "hands", "pose", "imu+hands+pose"}
    md = (tmp_path / "intention_eval.md").read_text()
    assert "| 3 |" in md and "| 6 |" in md and "COMPOSED" in md


def test_train_intention_stores_a_loadable_model_with_the_watch_labels(tmp_path):
    rc = cli_main(["train-intention", "--store", str(tmp_path), "--epochs", "1", "--imu-only", "--version", "base1"])
    assert rc == 0
    store = ModelStore(tmp_path)
    assert store.versions() == ["base1"]
    loaded = store.load("base1", labels=INTENTION_LABELS)  # the default deployment accepts the base model
    assert loaded.meta.labels == WATCH_CLASSES
    assert 0.0 <= loaded.meta.info["test"]["imu"]["accuracy"] <= 1.0
