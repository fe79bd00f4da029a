"""Model store: versions, atomic writes, rejection of corrupt or incompatible files."""

from __future__ import annotations

import json

import pytest
import torch

from hrc_fl.intention.model import IntentionModel, IntentionModelConfig
from hrc_fl.intention.model_store import ModelStore, ModelStoreError, seed_from

LABELS = ("a", "b", "c")


def _model(seed: int = 0, **kw) -> IntentionModel:
    torch.manual_seed(seed)
    return IntentionModel(IntentionModelConfig(num_classes=3, imu_window=32, **kw)).eval()


def test_save_load_round_trip_gives_the_same_model(tmp_path):
    store = ModelStore(tmp_path)
    model = _model()
    version = store.save(model, LABELS, info={"round": 3})
    loaded = store.load(version, labels=LABELS)
    x = torch.randn(2, 32, 6)
    assert torch.equal(loaded.model(x, None, None), model(x, None, None))
    assert loaded.meta.labels == LABELS and loaded.meta.info == {"round": 3}
    assert loaded.meta.config == model.config


def test_versions_are_ordered_and_immutable(tmp_path):
    store = ModelStore(tmp_path)
    first = store.save(_model(1), LABELS)
    second = store.save(_model(2), LABELS)
    assert store.versions() == [first, second] and store.latest() == second
    assert first != second
    with pytest.raises(ModelStoreError, match="already exists"):
        store.save(_model(3), LABELS, version=first)
    with pytest.raises(ModelStoreError, match="invalid model version"):
        store.save(_model(3), LABELS, version="../escape")


def test_writes_leave_no_temp_files_and_meta_commits_the_version(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{version}.json", f"{version}.safetensors"]
    # weights without meta (a writer that died between the two renames) is not a version
    (tmp_path / "v0009.safetensors").write_bytes(b"partial")
    assert store.versions() == [version]


def test_corrupt_weights_are_rejected(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    path = tmp_path / f"{version}.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="corrupt"):
        store.load(version)


def test_unparseable_weights_with_matching_checksum_are_rejected(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    garbage = b"not a safetensors file at all"
    (tmp_path / f"{version}.safetensors").write_bytes(garbage)
    meta_path = tmp_path / f"{version}.json"
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(garbage).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match="safetensors"):
        store.load(version)


def test_incompatible_label_space_is_rejected(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    with pytest.raises(ModelStoreError, match="label space"):
        store.load(version, labels=("a", "b", "z"))


def test_meta_that_does_not_fit_the_weights_is_rejected(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    meta_path = tmp_path / f"{version}.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["head_hidden"] = 7  # weights have 32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match="shape"):
        store.load(version)
    meta["config"]["future_option"] = True
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match="incompatible meta"):
        store.load(version)
    meta_path.write_text("{broken json")
    with pytest.raises(ModelStoreError, match="unreadable"):
        store.load(version)


def test_required_input_sizes_are_checked(tmp_path):
    store = ModelStore(tmp_path)
    version = store.save(_model(), LABELS)
    with pytest.raises(ModelStoreError, match="imu_window"):
        store.load(version, config=IntentionModelConfig(num_classes=3, imu_window=100))


def test_non_finite_weights_are_rejected(tmp_path):
    store = ModelStore(tmp_path)
    model = _model()
    with torch.no_grad():
        model.head.net[0].weight[0, 0] = float("nan")
    version = store.save(model, LABELS)
    with pytest.raises(ModelStoreError, match="non-finite"):
        store.load(version)


def test_missing_version_and_wrong_label_count(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(ModelStoreError, match="not found"):
        store.load("v0001")
    with pytest.raises(ModelStoreError, match="labels"):
        store.save(_model(), ("a", "b"))
    assert store.load_latest() is None


def test_seed_copies_newest_base_model_into_empty_store_only(tmp_path):
    base = ModelStore(tmp_path / "base")
    base.save(_model(1), LABELS, version="base1")
    newest = base.save(_model(2), LABELS, version="base2")
    ws = ModelStore(tmp_path / "ws1")
    assert seed_from(ws, base) == newest
    assert ws.versions() == [newest]
    ws.load(newest, labels=LABELS)
    assert seed_from(ws, base) is None  # not empty any more


def test_seeding_a_store_does_not_load_torch(tmp_path):
    # The demo's driver seeds every workstation's store before the nodes start; torch there would cost
    # the whole demo a few hundred MB of memory for copying two files.
    import subprocess
    import sys

    base = ModelStore(tmp_path / "base")
    base.save(IntentionModel(IntentionModelConfig(num_classes=2)), ["a", "b"], version="base-0001")
    code = ("import sys; from hrc_fl.intention.model_store import ModelStore, seed_from; "
            f"v = seed_from(ModelStore({str(tmp_path / 'ws')!r}), ModelStore({str(tmp_path / 'base')!r})); "
            "print(v, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["base-0001", "False"]
    assert ModelStore(tmp_path / "ws").load("base-0001", labels=["a", "b"]).meta.version == "base-0001"
