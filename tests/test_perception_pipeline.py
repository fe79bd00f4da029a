"""The shared perception pipeline's core: stages on one frame at the same time, errors kept apart."""

from __future__ import annotations

import threading

import pytest

from hrc_fl.perception.parallel_stages import ParallelStages


def test_stages_run_on_the_same_item_at_the_same_time():
    # Prepare: each stage waits until the other one has started (a barrier of two): sequential
    # execution would time out
    barrier = threading.Barrier(2, timeout=10.0)
    seen: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def stage(name: str):
        def run(item: int) -> None:
            barrier.wait()
            seen.append((name, item))
        return run

    stages = ParallelStages([(stage("pose"), errors.append), (stage("hands"), errors.append)])
    try:
        # Execute
        failed = [stages.run(i) for i in range(3)]
    finally:
        stages.close()

    # Assert: both stages saw every item, run() returned only after both were done, nothing failed
    assert failed == [0, 0, 0] and errors == []
    assert sorted(seen) == sorted([(n, i) for n in ("pose", "hands") for i in range(3)])


def test_a_failing_stage_is_reported_to_its_own_handler_and_the_other_still_runs():
    # Prepare
    pose_errors: list[BaseException] = []
    hands_errors: list[BaseException] = []
    done: list[int] = []

    def broken(item: int) -> None:
        raise RuntimeError(f"bad frame {item}")

    stages = ParallelStages([(done.append, pose_errors.append), (broken, hands_errors.append)])
    try:
        # Execute
        failed = stages.run(7)
        again = stages.run(8)
    finally:
        stages.close()

    # Assert
    assert failed == 1 and again == 1
    assert done == [7, 8] and pose_errors == []
    assert [str(e) for e in hands_errors] == ["bad frame 7", "bad frame 8"]


def test_no_stages_is_refused():
    with pytest.raises(ValueError, match="at least one stage"):
        ParallelStages([])
