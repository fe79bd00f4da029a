"""Atomic writes: the target is either the old or the whole new file, never a part, and no temp file stays."""

from __future__ import annotations

import stat

import pytest

from hrc_fl.data.atomic_io import atomic_copy, atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_whole_and_sets_the_mode_before_writing(tmp_path):
    target = tmp_path / "keys" / "node.key"
    atomic_write_bytes(target, b"old")

    atomic_write_bytes(target, b"new secret", mode=0o600)

    assert target.read_bytes() == b"new secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["node.key"]


def test_a_copy_that_fails_half_way_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_text(target, "old model")
    missing = tmp_path / "no_such_source.bin"

    with pytest.raises(FileNotFoundError):
        atomic_copy(missing, target)

    assert target.read_text() == "old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_copy_streams_the_whole_source(tmp_path):
    source = tmp_path / "big.bin"
    payload = bytes(range(256)) * 20000  # 5 MB: several 1 MiB chunks
    source.write_bytes(payload)

    atomic_copy(source, tmp_path / "out" / "big.bin")

    assert (tmp_path / "out" / "big.bin").read_bytes() == payload
