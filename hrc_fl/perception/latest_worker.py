"""Process only the newest item: a worker thread with a one-slot mailbox (ROS-free).

Camera frames arrive faster than they can be processed at times; queueing them would add latency
without bound. Submitting replaces an item that has not been started yet (counted as dropped).
Heavy work (MediaPipe) releases the GIL, so the worker also overlaps with message reception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestOnlyWorker(Generic[T]):
    """Runs ``handler(item)`` on a daemon thread for the most recently submitted item.

    An exception from ``handler`` goes to ``on_error`` (when given) and the worker carries on.
    """

    def __init__(self, handler: Callable[[T], None], *, name: str = "latest-worker",
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self._handler = handler
        self._on_error = on_error
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._stopping = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand over ``item``; returns True when it replaced an item that was never processed."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item = item
            self._has_item = True
            self._cond.notify()
        return replaced

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_item and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = self._item
                self._item = None
                self._has_item = False
            try:
                self._handler(item)  # type: ignore[arg-type]
            except Exception as exc:
                # A bug on one frame must not silently end all processing: report it, take the next.
                if self._on_error is None:
                    raise
                self._on_error(exc)
            with self._cond:
                self.processed += 1
                self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is pending (for tests and benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_item, timeout=timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout_s)
