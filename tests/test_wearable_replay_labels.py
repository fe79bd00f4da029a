"""Replay labels for federated learning: the replay knows which real recording (exercise class) it plays
and, when asked, publishes a TaskEvent at the end of each recording."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from hrc_fl.data.datasets import WATCH_CLASSES, load_watch
from hrc_fl.wearable.replay_data import subject_imu, subject_replay


def test_subject_replay_stretches_follow_the_real_recordings():
    # Prepare: subject 2's real recordings, in the replay's order (label, then side)
    recordings = sorted((r for r in load_watch() if r.subject == 2), key=lambda r: (r.label, r.side))

    # Execute
    full, full_stretches = subject_replay(2)
    clipped, stretches = subject_replay(2, clip_s=3.0, max_fraction=0.7)

    # Assert: stretches tile the replay, carry each recording's class, and clipping keeps the start
    assert np.array_equal(full, subject_imu(2))
    assert [s.label for s in full_stretches] == [r.label_name for r in recordings]
    assert [s.end - s.start for s in full_stretches] == [len(r.imu) for r in recordings]
    assert all(s.end - s.start == 150 for s in stretches)  # 3 s at 50 Hz, well inside 70 % of each
    assert stretches[0].start == 0 and all(a.end == b.start for a, b in pairwise(stretches))
    assert np.array_equal(clipped[150:300], recordings[1].imu[:150])
    assert {s.label for s in stretches} == set(WATCH_CLASSES)
    with pytest.raises(ValueError, match="max_fraction"):
        subject_replay(2, max_fraction=0.0)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_replay_publishes_a_task_event_at_the_end_of_each_recording(ros_probe, node_processes):
    from hrc_fl_msgs.msg import TaskEvent

    from hrc_fl.nodes.common import RESULT_QOS, stamp_to_s

    # Prepare: 1 s of each recording, events with a 0.25 s margin
    events = ros_probe.collect(TaskEvent, "/ws1/task/events", RESULT_QOS)
    node_processes.start("wearable_node", namespace="ws1", param_files=("wearable.yaml",),
                         parameters={"replay_subject": 3, "worker_id": "worker3", "replay_clip_s": 1.0,
                                     "replay_task_events": True, "replay_event_margin_s": 0.25})
    expected = [s.label for s in subject_replay(3, clip_s=1.0)[1]]

    # Execute
    ros_probe.wait_until(lambda: len(events) >= 4, 40.0, "4 replay task events")

    # Assert: labels in replay order (the first may be missed during discovery), 1 s apart
    labels = [e.label for e in events[:4]]
    looped = expected * 2
    assert any(looped[j:j + 4] == labels for j in range(len(expected)))
    assert all(e.source == "replay" and e.worker_id == "worker3" for e in events)
    assert all(e.window_s == pytest.approx(0.75) for e in events)
    gaps = np.diff([stamp_to_s(e.header.stamp) for e in events[:4]])
    assert gaps == pytest.approx(1.0, abs=0.1)
