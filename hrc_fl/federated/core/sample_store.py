"""Local store of feature windows on a workstation (SQLite, WAL), used only for local training.

One row per labelled sample: worker id, label, the time the window ends (s), and the model inputs of
:class:`hrc_fl.intention.alignment.AlignedInputs` as raw float32 bytes (IMU window (T, 6) in m/s^2 and
rad/s; hand and pose feature vectors), each modality optional. Every insert and its retention pruning
run in one transaction (atomic: a crash leaves the store before or after the insert). Retention: at most
``max_samples_per_worker`` newest samples per worker and none older than ``max_age_s``. Samples never
leave the device; only models trained on them do (their shared part).

Unlabelled IMU windows (the worker's motion between task events) go to a second table for
self-supervised training (:mod:`hrc_fl.federated.core.self_supervised`), with their own count limit
``max_unlabelled_per_worker`` and the same age limit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id TEXT NOT NULL,
    label TEXT NOT NULL,
    stamp_s REAL NOT NULL,
    imu BLOB, imu_rows INTEGER,
    hands BLOB,
    pose BLOB
);
CREATE INDEX IF NOT EXISTS samples_worker_stamp ON samples (worker_id, stamp_s);
CREATE TABLE IF NOT EXISTS unlabelled (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id TEXT NOT NULL,
    stamp_s REAL NOT NULL,
    imu BLOB NOT NULL, imu_rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unlabelled_worker_stamp ON unlabelled (worker_id, stamp_s);
"""


@dataclass(frozen=True)
class StoredSamples:
    """Samples of one worker as arrays; absent modalities are zero rows with ``present`` False."""

    y: np.ndarray        # (N,) int64 index into the label space
    imu: np.ndarray      # (N, T, 6) float32
    hands: np.ndarray    # (N, hands_dim) float32
    pose: np.ndarray     # (N, pose_dim) float32
    present: np.ndarray  # (N, 3) bool: imu, hands, pose
    stamps_s: np.ndarray  # (N,) float64


class SampleStore:
    """SQLite-backed, thread-safe store of labelled windows with a retention limit."""

    def __init__(self, path: Path | str, *, max_samples_per_worker: int, max_age_s: float,
                 max_unlabelled_per_worker: int = 2000) -> None:
        if max_samples_per_worker < 1:
            raise ValueError(f"max_samples_per_worker must be >= 1, got {max_samples_per_worker}")
        if max_unlabelled_per_worker < 0:
            raise ValueError(f"max_unlabelled_per_worker must be >= 0, got {max_unlabelled_per_worker}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_samples_per_worker = int(max_samples_per_worker)
        self.max_age_s = float(max_age_s)
        self.max_unlabelled_per_worker = int(max_unlabelled_per_worker)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed sample survives power loss
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, worker_id: str, label: str, stamp_s: float, *, imu: np.ndarray | None,
            hands: np.ndarray | None, pose: np.ndarray | None) -> int:
        """Insert one labelled sample and apply retention, atomically; return the sample id."""
        if not worker_id or not label:
            raise ValueError("worker_id and label must be non-empty")
        if not np.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be finite, got {stamp_s}")
        arrays = {"imu": imu, "hands": hands, "pose": pose}
        if all(v is None for v in arrays.values()):
            raise ValueError("a sample needs at least one modality")
        blobs = {}
        for name, value in arrays.items():
            if value is None:
                blobs[name] = None
                continue
            value = np.asarray(value, np.float32)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} holds non-finite values")
            blobs[name] = value.tobytes()
        imu_rows = None if imu is None else int(np.asarray(imu).shape[0])
        return self._insert_with_retention(
            "samples", "INSERT INTO samples (worker_id, label, stamp_s, imu, imu_rows, hands, pose) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (worker_id, label, float(stamp_s), blobs["imu"], imu_rows, blobs["hands"], blobs["pose"]),
            worker_id, float(stamp_s), self.max_samples_per_worker)

    def _insert_with_retention(self, table: str, insert_sql: str, values: tuple, worker_id: str, stamp_s: float,
                               keep: int) -> int:
        """One transaction: the insert, then ``table``'s age and count retention for ``worker_id``."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(insert_sql, values)
                row_id = int(cur.lastrowid)
                cur.execute(f"DELETE FROM {table} WHERE worker_id = ? AND stamp_s < ?",
                            (worker_id, stamp_s - self.max_age_s))
                cur.execute(f"DELETE FROM {table} WHERE worker_id = ? AND id NOT IN (SELECT id FROM {table} "
                            "WHERE worker_id = ? ORDER BY stamp_s DESC, id DESC LIMIT ?)",
                            (worker_id, worker_id, keep))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return row_id

    def add_unlabelled(self, worker_id: str, stamp_s: float, imu: np.ndarray) -> int | None:
        """Insert one unlabelled (T, 6) IMU window (m/s^2, rad/s) and apply retention, atomically; return
        its id (None when ``max_unlabelled_per_worker`` is 0: nothing is kept)."""
        if not worker_id:
            raise ValueError("worker_id must be non-empty")
        if not np.isfinite(stamp_s):
            raise ValueError(f"stamp_s must be finite, got {stamp_s}")
        window = np.asarray(imu, np.float32)
        if window.ndim != 2 or window.shape[1] != 6 or window.shape[0] < 1:
            raise ValueError(f"an IMU window must be (T, 6), got {window.shape}")
        if not np.all(np.isfinite(window)):
            raise ValueError("imu holds non-finite values")
        if self.max_unlabelled_per_worker == 0:
            return None
        return self._insert_with_retention(
            "unlabelled", "INSERT INTO unlabelled (worker_id, stamp_s, imu, imu_rows) VALUES (?, ?, ?, ?)",
            (worker_id, float(stamp_s), window.tobytes(), int(window.shape[0])),
            worker_id, float(stamp_s), self.max_unlabelled_per_worker)

    def count_unlabelled(self, worker_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM unlabelled WHERE worker_id = ?", (worker_id,)).fetchone()
        return int(row[0])

    def load_unlabelled(self, worker_id: str, *, imu_window: int) -> np.ndarray:
        """(N, imu_window, 6) float32 unlabelled windows of ``worker_id``, oldest first (other lengths skipped)."""
        with self._lock:
            rows = self._db.execute("SELECT imu, imu_rows FROM unlabelled WHERE worker_id = ? ORDER BY stamp_s, id",
                                    (worker_id,)).fetchall()
        windows = [np.frombuffer(blob, np.float32).reshape(imu_window, 6) for blob, n in rows
                   if n == imu_window and len(blob) == imu_window * 6 * 4]
        return np.stack(windows) if windows else np.zeros((0, imu_window, 6), np.float32)

    def count(self, worker_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM samples WHERE worker_id = ?", (worker_id,)).fetchone()
        return int(row[0])

    def load(self, worker_id: str, labels: Sequence[str], *, imu_window: int, hands_dim: int,
             pose_dim: int) -> StoredSamples | None:
        """All samples of ``worker_id`` whose label is in ``labels`` and whose shapes fit; None if none."""
        index = {label: i for i, label in enumerate(labels)}
        with self._lock:
            rows = self._db.execute("SELECT label, stamp_s, imu, imu_rows, hands, pose FROM samples "
                                    "WHERE worker_id = ? ORDER BY stamp_s, id", (worker_id,)).fetchall()
        ys, imus, handss, poses, present, stamps = [], [], [], [], [], []
        for label, stamp_s, imu, imu_rows, hands, pose in rows:
            if label not in index:
                continue
            imu_arr = None if imu is None else np.frombuffer(imu, np.float32)
            hands_arr = None if hands is None else np.frombuffer(hands, np.float32)
            pose_arr = None if pose is None else np.frombuffer(pose, np.float32)
            if imu_arr is not None and (imu_rows != imu_window or imu_arr.size != imu_window * 6):
                imu_arr = None  # recorded with another window length: unusable for this model
            if hands_arr is not None and hands_arr.size != hands_dim:
                hands_arr = None
            if pose_arr is not None and pose_arr.size != pose_dim:
                pose_arr = None
            if imu_arr is None and hands_arr is None and pose_arr is None:
                continue
            ys.append(index[label])
            imus.append(np.zeros((imu_window, 6), np.float32) if imu_arr is None else imu_arr.reshape(imu_window, 6))
            handss.append(np.zeros(hands_dim, np.float32) if hands_arr is None else hands_arr)
            poses.append(np.zeros(pose_dim, np.float32) if pose_arr is None else pose_arr)
            present.append((imu_arr is not None, hands_arr is not None, pose_arr is not None))
            stamps.append(stamp_s)
        if not ys:
            return None
        return StoredSamples(np.asarray(ys, np.int64), np.stack(imus), np.stack(handss), np.stack(poses),
                             np.asarray(present, bool), np.asarray(stamps, np.float64))
