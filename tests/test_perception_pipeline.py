"""The shared perception pipeline's core: one frame to pose and hands, each on the newest one."""

from __future__ import annotations

import threading

import pytest

from hrc_fl.perception.frame_fanout import LatestFrameFanOut


def test_both_consumers_work_on_the_same_frame_at_the_same_time():
    # Prepare: each consumer waits until the other one has started on the frame (a barrier of two):
    # one after the other would time out
    barrier = threading.Barrier(2, timeout=10.0)
    seen: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def consumer(name: str):
        def run(item: int) -> None:
            barrier.wait()
            seen.append((name, item))
        return run

    fanout = LatestFrameFanOut([("pose", consumer("pose"), errors.append), ("hands", consumer("hands"), errors.append)])
    try:
        # Execute
        fanout.submit(1)
        for worker in fanout.workers.values():
            assert worker.wait_idle(10.0)
    finally:
        fanout.stop()

    # Assert
    assert errors == [] and sorted(seen) == [("hands", 1), ("pose", 1)]


def test_a_slow_consumer_skips_to_the_newest_frame_and_never_holds_the_other():
    # Prepare: hands blocks on its first frame until released
    release = threading.Event()
    pose_seen: list[int] = []
    hands_seen: list[int] = []
    errors: list[BaseException] = []

    def hands(item: int) -> None:
        if item == 1:
            assert release.wait(10.0)
        hands_seen.append(item)

    fanout = LatestFrameFanOut([("pose", pose_seen.append, errors.append), ("hands", hands, errors.append)])
    try:
        # Execute: five frames while hands is stuck on the first; pose takes each as it comes
        for frame in range(1, 6):
            fanout.submit(frame)
            assert fanout.workers["pose"].wait_idle(10.0)
        release.set()
        assert fanout.workers["hands"].wait_idle(10.0)
    finally:
        fanout.stop()

    # Assert: pose saw every frame; hands went from frame 1 straight to the newest (no queue of old ones)
    assert pose_seen == [1, 2, 3, 4, 5]
    assert hands_seen == [1, 5]
    assert fanout.dropped("hands") == 3 and fanout.dropped("pose") == 0
    assert errors == []


def test_a_failing_consumer_reports_to_its_own_handler_and_the_other_carries_on():
    pose_seen: list[int] = []
    pose_errors: list[BaseException] = []
    hands_errors: list[BaseException] = []

    def broken(item: int) -> None:
        raise RuntimeError(f"bad frame {item}")

    fanout = LatestFrameFanOut([("pose", pose_seen.append, pose_errors.append), ("hands", broken, hands_errors.append)])
    try:
        for frame in (7, 8):
            fanout.submit(frame)
            for worker in fanout.workers.values():
                assert worker.wait_idle(10.0)
    finally:
        fanout.stop()

    assert pose_seen == [7, 8] and pose_errors == []
    assert [str(e) for e in hands_errors] == ["bad frame 7", "bad frame 8"]


def test_consumers_are_validated():
    with pytest.raises(ValueError, match="at least one"):
        LatestFrameFanOut([])
    with pytest.raises(ValueError, match="distinct"):
        LatestFrameFanOut([("pose", print, print), ("pose", print, print)])
