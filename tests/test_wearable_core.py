"""Wearable protocol, validation, clock offset and stream statistics (no ROS)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from hrc_fl.wearable.clock import ClockOffsetEstimator
from hrc_fl.wearable.protocol import ImuSample, ProtocolError, format_line, parse_line
from hrc_fl.wearable.sources import SourceBatch
from hrc_fl.wearable.stream import WearableStream
from hrc_fl.wearable.validation import SampleValidator


def _s(t: float, a=(0.0, 0.0, 9.8), w=(0.0, 0.0, 0.0), hr=math.nan) -> ImuSample:
    return ImuSample(t_device_s=t, accel_ms2=a, gyro_rads=w, heart_rate_bpm=hr)


def test_parse_line_with_and_without_heart_rate_and_round_trip():
    s = parse_line("12.5,0.1,0.2,9.7,0.01,0.02,0.03\n")
    assert s is not None and s.t_device_s == 12.5 and s.accel_ms2 == (0.1, 0.2, 9.7)
    assert math.isnan(s.heart_rate_bpm)
    h = parse_line(b"1,0,0,0,0,0,0,72.5")
    assert h is not None and h.heart_rate_bpm == 72.5
    assert parse_line(format_line(h)) == h
    assert parse_line("# banner") is None and parse_line("  ") is None
    nan = parse_line("1,nan,0,0,0,0,0")  # parses; the validator drops it
    assert nan is not None and math.isnan(nan.accel_ms2[0])


@pytest.mark.parametrize("line", ["1,2,3", "1,2,3,4,5,6,7,8,9", "1,a,3,4,5,6,7", b"\xff\xfe,1"])
def test_parse_line_rejects_malformed(line):
    with pytest.raises(ProtocolError):
        parse_line(line)


def test_validator_drops_and_counts_each_bad_case():
    v = SampleValidator(rate_hz=50.0, accel_limit_ms2=20.0, gyro_limit_rads=5.0)
    assert v.check(_s(1.00)) is None
    assert v.check(_s(1.02, a=(math.nan, 0, 0))) == "non_finite"
    assert v.check(_s(math.inf)) == "non_finite"
    assert v.check(_s(1.02, a=(20.0, 0, 0))) == "saturated"
    assert v.check(_s(1.02, w=(0, -5.0, 0))) == "saturated"
    assert v.check(_s(1.00)) == "duplicate"
    assert v.check(_s(0.98)) == "out_of_order"
    assert v.check(_s(1.02)) is None
    assert v.counts == {"malformed": 0, "non_finite": 2, "saturated": 2, "duplicate": 1, "out_of_order": 1}
    assert v.dropped == 6


def test_validator_counts_gaps_and_missing_samples_but_keeps_the_sample():
    v = SampleValidator(rate_hz=50.0)
    assert v.check(_s(0.00)) is None
    assert v.check(_s(0.02)) is None
    assert v.check(_s(0.12)) is None  # 4 samples missing
    assert v.gaps == 1 and v.missing_samples == 4 and v.dropped == 0


def test_clock_offset_is_the_minimum_delay_estimate():
    rng = np.random.default_rng(0)
    est = ClockOffsetEstimator(window_s=30.0)
    true_offset = 1000.25
    delays = rng.exponential(0.01, 500) + 0.002
    for k, d in enumerate(delays):
        est.update(k * 0.02, k * 0.02 + true_offset + d)
    assert est.offset_s == pytest.approx(true_offset + delays.min(), abs=1e-9)
    assert est.to_ros_s(5.0) == pytest.approx(5.0 + true_offset + delays.min())


def test_clock_offset_follows_drift_through_the_window():
    est = ClockOffsetEstimator(window_s=2.0)
    for k in range(1000):  # device clock runs 1 % slow: offset grows 0.01 s per second
        t_rx = k * 0.02
        est.update(t_rx * 0.99, t_rx + 0.003)
    assert est.offset_s == pytest.approx(0.01 * (999 * 0.02 - 2.0) + 0.003, abs=0.002)


def test_clock_offset_restarts_after_a_device_clock_reset():
    est = ClockOffsetEstimator(window_s=30.0, jump_confirm_samples=10)
    for k in range(100):
        est.update(500.0 + k * 0.02, 1000.0 + k * 0.02 + 0.005)
    assert est.offset_s == pytest.approx(500.005)
    for k in range(20):  # device rebooted: its clock starts at 0 again
        est.update(k * 0.02, 1002.0 + k * 0.02 + 0.004)
    assert est.resets == 1
    assert est.offset_s == pytest.approx(1002.004, abs=1e-6)
    single = ClockOffsetEstimator(window_s=30.0, jump_confirm_samples=10)
    single.update(0.0, 10.0)
    single.update(0.02, 11.0)  # one very late sample is a delay, not a jump
    assert single.offset_s == pytest.approx(10.0) and single.resets == 0


def test_stream_stamps_accepted_samples_and_reports_drops_and_link_quality():
    stream = WearableStream(SampleValidator(rate_hz=50.0), ClockOffsetEstimator(), link_window_s=1.0)
    batch = SourceBatch(samples=[_s(0.00, hr=70.0), _s(0.02), _s(0.02), _s(0.04, a=(math.nan, 0, 0))],
                        malformed=1, malformed_examples=["expected 7 or 8 fields"])
    stamped, dropped = stream.process(batch, rx_ros_s=100.05)
    assert [s.sample.t_device_s for s in stamped] == [0.00, 0.02]
    assert [s.t_ros_s for s in stamped] == pytest.approx([100.03, 100.05])
    assert sorted(d.reason for d in dropped) == ["duplicate", "malformed", "non_finite"]
    assert stream.heart_rate_bpm == 70.0
    assert stream.link_quality(100.1) == pytest.approx(2 / 50)
    assert stream.link_quality(102.0) == 0.0


def test_stream_stamps_stay_increasing_when_the_offset_estimate_drops():
    stream = WearableStream(SampleValidator(rate_hz=50.0), ClockOffsetEstimator())
    first, _ = stream.process(SourceBatch(samples=[_s(0.00), _s(0.02)]), rx_ros_s=10.10)  # slow batch
    second, _ = stream.process(SourceBatch(samples=[_s(0.04)]), rx_ros_s=10.045)  # fast: offset drops
    stamps = [s.t_ros_s for s in first + second]
    assert stream.clock.offset_s == pytest.approx(10.005)
    assert all(b > a for a, b in pairwise(stamps))
    assert stream.stamps_clamped == 1
