"""Atomic file writes: temp file in the same folder, fsync, ``os.replace`` (readers never see half a file)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def _atomic_target(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without an error: written to a temp
    file in the same folder, fsynced, renamed over ``path``, and the rename made durable (folder fsync).
    On an error the temp file is removed and ``path`` is untouched. ``mode``: permissions set before any
    byte is written (e.g. 0o600 for keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself survive a power cut
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically, creating the parent folder; the rename is made durable
    (folder fsync). ``mode``: file permissions set before any byte is written (e.g. 0o600 for keys)."""
    with _atomic_target(path, mode=mode) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically (large files are streamed, not read into memory)."""
    with _atomic_target(dst) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, length=1 << 20)
