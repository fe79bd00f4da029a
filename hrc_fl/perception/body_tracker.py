"""Stable body ids across frames: greedy nearest-centroid association with a gate and a grace period."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Track:
    body_id: str
    centroid: np.ndarray
    missed_frames: int = 0


@dataclass
class TrackerUpdate:
    """Ids for the detections of one frame (same order) and the ids dropped in this update."""

    ids: list[str]
    dropped_ids: list[str] = field(default_factory=list)


class BodyTracker:
    """Assigns each detection the id of the nearest existing track within ``max_distance``.

    Centroids are in normalised image coordinates (0..1), so ``max_distance`` is a fraction of the
    image. A track not matched for more than ``max_missed_frames`` frames is dropped; unmatched
    detections start new tracks with fresh ids ``<prefix><n>`` (never reused).
    """

    def __init__(self, *, max_distance: float = 0.2, max_missed_frames: int = 5,
                 id_prefix: str = "body") -> None:
        if not max_distance > 0:
            raise ValueError(f"max_distance must be positive, got {max_distance}")
        if max_missed_frames < 0:
            raise ValueError(f"max_missed_frames must be >= 0, got {max_missed_frames}")
        if not id_prefix or not id_prefix[0].isalpha():
            raise ValueError(f"id_prefix must start with a letter (ROS name token), got {id_prefix!r}")
        self.max_distance = max_distance
        self.max_missed_frames = max_missed_frames
        self.id_prefix = id_prefix
        self._tracks: list[_Track] = []
        self._next = 1

    @property
    def active_ids(self) -> list[str]:
        return [t.body_id for t in self._tracks]

    def update(self, centroids: list[np.ndarray] | np.ndarray) -> TrackerUpdate:
        """Associate this frame's detection centroids (each (2,) or more) with tracks."""
        points = [np.asarray(c, dtype=np.float64).ravel() for c in centroids]
        pairs = []
        for di, p in enumerate(points):
            for ti, track in enumerate(self._tracks):
                d = float(np.linalg.norm(p[:2] - track.centroid[:2]))
                if np.isfinite(d) and d <= self.max_distance:
                    pairs.append((d, di, ti))
        pairs.sort()
        det_to_track: dict[int, int] = {}
        used_tracks: set[int] = set()
        for _, di, ti in pairs:  # greedy: closest pairs first
            if di in det_to_track or ti in used_tracks:
                continue
            det_to_track[di] = ti
            used_tracks.add(ti)
        ids: list[str] = []
        new_tracks: list[_Track] = []
        for di, p in enumerate(points):
            if di in det_to_track:
                track = self._tracks[det_to_track[di]]
                track.centroid = p
                track.missed_frames = 0
            else:
                track = _Track(f"{self.id_prefix}{self._next}", p)
                self._next += 1
                new_tracks.append(track)
            ids.append(track.body_id)
        dropped: list[str] = []
        kept: list[_Track] = []
        for ti, track in enumerate(self._tracks):
            if ti not in used_tracks:
                track.missed_frames += 1
                if track.missed_frames > self.max_missed_frames:
                    dropped.append(track.body_id)
                    continue
            kept.append(track)
        self._tracks = kept + new_tracks
        return TrackerUpdate(ids=ids, dropped_ids=dropped)
