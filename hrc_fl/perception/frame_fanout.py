"""One frame to several consumers, each taking the newest when it is free (ROS-free).

The composed workstation decodes each camera frame once and gives it to pose and hands. Each consumer
has its own thread and one-slot mailbox (:class:`LatestOnlyWorker`): when both are free they work on the
same frame at the same time (MediaPipe's calls release the GIL, FACTS.md: both on one frame in two
threads 20.6 ms vs 19.2 / 19.4 ms alone), and a slower consumer (hands with palm detection on every
frame) never holds the other (pose, the safety input) behind it: it skips to the newest frame instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from hrc_fl.perception.latest_worker import LatestOnlyWorker

T = TypeVar("T")


class LatestFrameFanOut(Generic[T]):
    """Submits every item to one :class:`LatestOnlyWorker` per consumer."""

    def __init__(self, consumers: Sequence[tuple[str, Callable[[T], None], Callable[[BaseException], None]]]) -> None:
        """``consumers``: (name, handler, on_error) each; names must be distinct."""
        names = [name for name, _, _ in consumers]
        if not names:
            raise ValueError("LatestFrameFanOut needs at least one consumer")
        if len(set(names)) != len(names):
            raise ValueError(f"consumer names must be distinct, got {names}")
        self.workers: dict[str, LatestOnlyWorker[T]] = {
            name: LatestOnlyWorker(handler, name=name, on_error=on_error) for name, handler, on_error in consumers}

    def submit(self, item: T) -> None:
        """Give ``item`` to every consumer; it replaces an item a busy consumer has not started."""
        for worker in self.workers.values():
            worker.submit(item)

    def dropped(self, name: str) -> int:
        """Items consumer ``name`` skipped because a newer one arrived first."""
        return self.workers[name].dropped

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every consumer after the item it is working on."""
        for worker in self.workers.values():
            worker.stop(timeout_s)
