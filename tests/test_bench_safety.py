"""bench/safety.py's matching of safety states to the body messages they decided on (ROS-free)."""

from __future__ import annotations

import importlib.util

import pytest
from builtin_interfaces.msg import Time

from hrc_fl.nodes.common import s_to_stamp, stamp_to_s
from hrc_fl.paths import REPO_ROOT

# A body stamp (ns) and the node's clock at its decision (s) whose body stamp, recovered as the state's
# stamp - perception latency, rounds to another microsecond than the sent stamp (float seconds near 1.8e9).
BODY_NS = 1796643394311150634
DECIDED_S = 1796643394.3119433


def _bench():
    spec = importlib.util.spec_from_file_location("bench_safety", REPO_ROOT / "bench" / "safety.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state(now_s: float, body_s: float) -> tuple[float, float]:
    """(state stamp s, perception latency s) as the node sends them for a decision at ``now_s``."""
    return stamp_to_s(s_to_stamp(now_s)), max(0.0, now_s - body_s)


def test_a_body_is_matched_to_its_own_decision_when_the_stamp_arithmetic_rounds_across_a_microsecond():
    # Prepare: the body, its neighbours a period away, its own decision and the joint state's 10 ms later
    bench = _bench()
    body_s = stamp_to_s(Time(sec=BODY_NS // 10**9, nanosec=BODY_NS % 10**9))
    own = _state(DECIDED_S, body_s)
    later = _state(DECIDED_S + 0.010, body_s)
    assert round(own[0] - own[1], 6) != round(body_s, 6)  # the case that rounding to 1 us missed
    sent = [body_s - 0.02, body_s, body_s + 0.02]
    arrivals = [(DECIDED_S + 0.0004, *own), (DECIDED_S + 0.0104, *later)]

    # Execute
    matched = bench.match_latencies(sent, arrivals)

    # Assert: one match, the body's own decision (arrival - body stamp), not the later one
    assert len(matched) == 1
    assert matched[0][0] == pytest.approx(DECIDED_S + 0.0004 - body_s, abs=1e-6)
    assert matched[0][1] == pytest.approx(own[1])


def test_a_state_of_no_sent_body_is_not_matched():
    # Prepare: a heartbeat state deciding on a body 3 ms before the only sent one
    bench = _bench()
    body_s = 1796643394.5
    stamp, latency = _state(body_s + 0.005, body_s - 0.003)

    # Execute / Assert
    assert bench.match_latencies([body_s], [(body_s + 0.006, stamp, latency)]) == []
