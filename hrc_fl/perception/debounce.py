"""Temporal debouncing of classified commands: a command counts only once it has held N frames."""

from __future__ import annotations

from dataclasses import dataclass

MIN_HOLD_FRAMES = 2


@dataclass(frozen=True)
class DebouncedLabel:
    """Result of one update: the current label, how many frames it has held, and whether it is a command."""

    label: int
    held_frames: int
    is_command: bool


class CommandDebouncer:
    """Tracks one stream of labels (e.g. the gesture of one hand).

    ``is_command`` is true while the same non-``none_label`` label has been seen for at least
    ``hold_frames`` consecutive updates. :meth:`reset` (hand lost) starts over. A single frame never
    makes a command (``hold_frames`` >= :data:`MIN_HOLD_FRAMES`): one misclassified frame must not
    move or release the robot.
    """

    def __init__(self, *, hold_frames: int, none_label: int = 0) -> None:
        if hold_frames < MIN_HOLD_FRAMES:
            raise ValueError(f"hold_frames must be >= {MIN_HOLD_FRAMES} (a command needs more than one frame), "
                             f"got {hold_frames}")
        self.hold_frames = hold_frames
        self.none_label = none_label
        self._label = none_label
        self._count = 0

    def reset(self) -> None:
        self._label = self.none_label
        self._count = 0

    def update(self, label: int) -> DebouncedLabel:
        if label == self._label:
            self._count += 1
        else:
            self._label = label
            self._count = 1
        is_command = label != self.none_label and self._count >= self.hold_frames
        return DebouncedLabel(label=label, held_frames=self._count, is_command=is_command)
