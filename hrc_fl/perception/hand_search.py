"""Hands searched near the pose's wrists instead of palm detection over every whole frame (ROS-free).

MediaPipe's HandLandmarker (VIDEO mode) runs its palm detector on a frame whenever it tracks fewer
hands than ``num_hands``: with ``num_hands=2`` and one hand in view, or no hand at all, that is every
frame (FACTS.md: about 19 ms of the 20 ms a frame costs). When the pose of the same frame is known,
each hand can only be at one of the body's wrists. :class:`NearWristHandSearch` therefore gives each
visible wrist a slot with its own landmarker (``num_hands=1``) that sees a square crop around that
wrist: MediaPipe tracks the hand in it (landmark model only, about 9 ms) and runs palm detection only
when that track is lost. A slot without a tracked hand is searched on every
``search_interval_frames``-th frame only; a tracked one runs on every frame. With no body in the
frame (a hand held close to the camera) the whole frame is searched, under the same rule.

Frames: crop boxes in pixels of the full frame; the hands returned carry normalised image points of
the full frame (x, y in 0..1 of its width / height, z scaled like x), as a full-frame detection gives
them, so the gesture classifier sees the same numbers; world points are MediaPipe's (metres,
hand-centred) and do not depend on the crop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hrc_fl.perception.mediapipe_hands import DetectedHand
from hrc_fl.perception.mediapipe_pose import DetectedPose

#: MediaPipe pose landmarks of each hand: wrist, pinky knuckle, index knuckle, thumb knuckle.
POSE_HAND_POINTS: dict[str, tuple[int, int, int, int]] = {"left": (15, 17, 19, 21), "right": (16, 18, 20, 22)}
#: Side of the square crop around a wrist, in wrist-to-knuckles distances: the hand (wrist to fingertips
#: about 2 of them) fills about a third of it, as MediaPipe's palm detector likes, with room to move.
CROP_SCALE = 6.0
#: Smallest crop side, pixels (a far or foreshortened hand); smaller crops (mostly off the image) are skipped.
MIN_CROP_PX = 48
#: Two slots' hands closer than this fraction of the smaller one's size are the same hand (crops overlap
#: when the hands are together): the one with the higher score is kept.
SAME_HAND_FRACTION = 0.5


class HandLandmarks(Protocol):
    """What a slot needs of a hand detector (:class:`hrc_fl.perception.mediapipe_hands.HandDetector`)."""

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False) -> list[DetectedHand]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CropBox:
    """A region of the full frame, pixels: columns x0..x1, rows y0..y1 (end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def to_frame(self, hand: DetectedHand, width_px: int, height_px: int) -> DetectedHand:
        """``hand`` found in this crop with normalised points of the full frame (world points unchanged)."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        pts = np.asarray(hand.image_points, dtype=np.float32).copy()
        pts[:, 0] = (self.x0 + pts[:, 0] * w) / width_px
        pts[:, 1] = (self.y0 + pts[:, 1] * h) / height_px
        pts[:, 2] = pts[:, 2] * w / width_px  # MediaPipe's z is in units of the image width
        return dataclasses.replace(hand, image_points=pts)


def wrist_crop(pose: DetectedPose, side: str, width_px: int, height_px: int, *,
               min_visibility: float) -> CropBox | None:
    """Square crop (pixels) around the hand of ``side`` ("left"/"right", the body's) of ``pose``, or None
    when its wrist is less visible than ``min_visibility`` or the crop lies mostly off the frame."""
    idx = list(POSE_HAND_POINTS[side])
    if not float(pose.visibility[idx[0]]) >= min_visibility:
        return None
    pts = np.asarray(pose.image_points, dtype=np.float64)[idx, :2] * (width_px, height_px)
    if not np.all(np.isfinite(pts)):
        return None
    wrist, knuckles = pts[0], pts[1:].mean(axis=0)
    half = max(MIN_CROP_PX, CROP_SCALE * float(np.linalg.norm(knuckles - wrist))) / 2.0
    cx, cy = knuckles
    x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
    x1, y1 = min(width_px, round(cx + half)), min(height_px, round(cy + half))
    if x1 - x0 < MIN_CROP_PX or y1 - y0 < MIN_CROP_PX:
        return None
    return CropBox(x0, y0, x1, y1)


@dataclass
class _Slot:
    detector: HandLandmarks
    tracked: bool = False        # the last run found a hand (MediaPipe keeps tracking it)
    idle_frames: int = 0         # frames since the last run while nothing was tracked
    new_scene: bool = False      # a scene cut happened since this slot's last run


@dataclass(frozen=True)
class SearchStats:
    """What the last frame cost: slots run with a tracked hand, slots searched, slots skipped."""

    tracked_runs: int = 0
    searches: int = 0
    skipped: int = 0


class NearWristHandSearch:
    """Hands of one frame: per visible wrist a tracked crop, the whole frame when no body is seen.

    ``make_detector(num_hands)`` opens a VIDEO-mode hand detector; it is called once per slot (at most
    ``num_hands`` wrist slots, keyed by body rank and side, plus one whole-frame slot with ``num_hands``).
    """

    def __init__(self, make_detector: Callable[[int], HandLandmarks], *, num_hands: int,
                 search_interval_frames: int = 1, min_wrist_visibility: float = 0.5,
                 frame_detector: HandLandmarks | None = None) -> None:
        """``frame_detector``: an open whole-frame detector with ``num_hands`` to use for the whole-frame
        slot (instead of opening another); it is closed with this search."""
        if num_hands < 1:
            raise ValueError(f"num_hands must be >= 1, got {num_hands}")
        if search_interval_frames < 1:
            raise ValueError(f"search_interval_frames must be >= 1, got {search_interval_frames}")
        if not 0.0 <= min_wrist_visibility <= 1.0:
            raise ValueError(f"min_wrist_visibility must be in [0, 1], got {min_wrist_visibility}")
        self._make = make_detector
        self.num_hands = num_hands
        self.search_interval_frames = search_interval_frames
        self.min_wrist_visibility = min_wrist_visibility
        self._slots: dict[tuple[int, str], _Slot] = {}
        if frame_detector is not None:
            self._slots[(0, "frame")] = _Slot(frame_detector)
        self.last = SearchStats()

    def _slot(self, key: tuple[int, str]) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            count = self.num_hands if key[1] == "frame" else 1
            slot = self._slots[key] = _Slot(self._make(count))
        return slot

    def _regions(self, poses: Sequence[DetectedPose], width_px: int,
                 height_px: int) -> list[tuple[tuple[int, str], CropBox | None]]:
        """(slot key, crop) for this frame: the visible wrists (body rank order), else the whole frame."""
        regions: list[tuple[tuple[int, str], CropBox | None]] = []
        for rank, pose in enumerate(poses):
            for side in POSE_HAND_POINTS:
                box = wrist_crop(pose, side, width_px, height_px, min_visibility=self.min_wrist_visibility)
                if box is not None and len(regions) < self.num_hands:
                    regions.append(((rank, side), box))
        return regions or [((0, "frame"), None)]

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False,
               poses: Sequence[DetectedPose] = ()) -> list[DetectedHand]:
        """Hands in one RGB frame (``timestamp_ms`` strictly increasing, as VIDEO mode needs), given the
        bodies ``poses`` MediaPipe found in the same frame. ``new_scene``: drop every track first."""
        height_px, width_px = image_rgb.shape[:2]
        if new_scene:
            for slot in self._slots.values():
                slot.new_scene, slot.tracked = True, False
        regions = self._regions(poses, width_px, height_px)
        active = {key for key, _ in regions}
        for key, slot in self._slots.items():
            if key not in active:  # its wrist is out of view: the hand has to be found again
                slot.tracked = False
        found: list[DetectedHand] = []
        tracked_runs = searches = skipped = 0
        for key, box in regions:
            slot = self._slot(key)
            if not slot.tracked and slot.idle_frames % self.search_interval_frames != 0:
                slot.idle_frames += 1
                skipped += 1
                continue
            tracked_runs += slot.tracked
            searches += not slot.tracked
            crop = image_rgb if box is None else np.ascontiguousarray(image_rgb[box.y0:box.y1, box.x0:box.x1])
            hands = slot.detector.detect(crop, timestamp_ms, new_scene=slot.new_scene)
            slot.new_scene = False
            slot.tracked = bool(hands)
            slot.idle_frames = 0 if hands else 1
            found += hands if box is None else [box.to_frame(h, width_px, height_px) for h in hands]
        self.last = SearchStats(tracked_runs, searches, skipped)
        return distinct_hands(found, width_px, height_px)

    def close(self) -> None:
        for slot in self._slots.values():
            slot.detector.close()
        self._slots.clear()


def distinct_hands(hands: list[DetectedHand], width_px: int, height_px: int) -> list[DetectedHand]:
    """``hands`` without duplicates (one hand seen from two overlapping crops), highest score first kept."""
    kept: list[DetectedHand] = []
    scale = np.array([width_px, height_px], dtype=np.float64)
    for hand in sorted(hands, key=lambda h: -h.score):
        pts = np.asarray(hand.image_points, dtype=np.float64)[:, :2] * scale
        centre, size = pts.mean(axis=0), float(np.ptp(pts, axis=0).max())
        same = False
        for other in kept:
            o = np.asarray(other.image_points, dtype=np.float64)[:, :2] * scale
            limit = SAME_HAND_FRACTION * min(size, float(np.ptp(o, axis=0).max()))
            same = same or float(np.linalg.norm(o.mean(axis=0) - centre)) < limit
        if not same:
            kept.append(hand)
    return kept
