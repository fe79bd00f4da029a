"""Wearable sources: serial over a pty pair, UDP on loopback, replay timing, reconnect with back-off."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from hrc_fl.wearable.protocol import ImuSample, format_line
from hrc_fl.wearable.sources import (
    STANDARD_GRAVITY_MS2,
    ReconnectingSource,
    ReplaySource,
    SerialSource,
    SourceBatch,
    SourceDisconnected,
    UdpSource,
)


def _sample(t: float) -> ImuSample:
    return ImuSample(t_device_s=t, accel_ms2=(0.1, 0.2, 9.8), gyro_rads=(0.01, 0.02, 0.03), heart_rate_bpm=80.0)


def _read_until(source, count: int, tries: int = 50) -> SourceBatch:
    total = SourceBatch()
    for _ in range(tries):
        batch = source.read(0.1)
        total.samples += batch.samples
        total.malformed += batch.malformed
        if len(total.samples) + total.malformed >= count:
            break
    return total


def test_serial_source_reads_lines_over_a_pty_and_counts_malformed():
    master, slave = os.openpty()
    source = SerialSource(os.ttyname(slave), 115200)
    source.open()
    try:
        os.write(master, (format_line(_sample(1.0)) + "garbage,line\n" + format_line(_sample(1.02))).encode())
        batch = _read_until(source, 3)
        assert [s.t_device_s for s in batch.samples] == [1.0, 1.02]
        assert batch.samples[0].heart_rate_bpm == 80.0
        assert batch.malformed == 1
        # a line split across two writes is reassembled
        line = format_line(_sample(1.04)).encode()
        os.write(master, line[:7])
        assert source.read(0.05).samples == []
        os.write(master, line[7:])
        assert [s.t_device_s for s in _read_until(source, 1).samples] == [1.04]
    finally:
        source.close()
        os.close(master)
        os.close(slave)


def test_serial_source_reports_a_closed_device_as_disconnected():
    master, slave = os.openpty()
    source = SerialSource(os.ttyname(slave))
    source.open()
    os.close(master)  # device gone
    try:
        with pytest.raises(SourceDisconnected):
            for _ in range(20):
                source.read(0.05)
    finally:
        source.close()
        os.close(slave)


def test_serial_source_open_failure_is_a_disconnect(tmp_path):
    with pytest.raises(SourceDisconnected):
        SerialSource(str(tmp_path / "no_such_tty")).open()


def test_udp_source_receives_datagrams_of_several_lines_on_loopback():
    source = UdpSource(0)  # any free port on 127.0.0.1
    source.open()
    try:
        assert source.host == "127.0.0.1"
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = "".join(format_line(_sample(2.0 + k * 0.02)) for k in range(5)) + "1,2\n"
        sender.sendto(payload.encode(), ("127.0.0.1", source.bound_port))
        sender.close()
        batch = _read_until(source, 6)
        assert [s.t_device_s for s in batch.samples] == pytest.approx([2.0, 2.02, 2.04, 2.06, 2.08])
        assert batch.malformed == 1
        assert source.read(0.01).samples == []  # timeout: empty batch, no exception
    finally:
        source.close()


class _FakeClock:
    def __init__(self) -> None:
        self.now = 10.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_replay_releases_samples_at_the_true_rate_and_converts_units():
    data = np.arange(60, dtype=np.float64).reshape(10, 6)
    clock = _FakeClock()
    src = ReplaySource(data, 50.0, loop=True, clock=clock, sleep=clock.sleep)
    src.open()
    first = src.read(0.0)
    assert len(first.samples) == 1  # sample 0 is due at open
    clock.now += 0.1  # 0.1 s later: samples 1..5 are due
    got = src.read(0.0)
    assert [s.t_device_s for s in got.samples] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.10])
    np.testing.assert_allclose(got.samples[0].accel_ms2, data[1, :3] * STANDARD_GRAVITY_MS2)
    np.testing.assert_allclose(got.samples[0].gyro_rads, data[1, 3:])
    # nothing due: read waits (through the injected sleep) for the next sample, at most the timeout
    got = src.read(1.0)
    assert clock.sleeps and clock.sleeps[-1] == pytest.approx(0.02)
    assert [s.t_device_s for s in got.samples] == pytest.approx([0.12])
    clock.now += 1.0  # past the end: loops, device time keeps increasing
    times = [s.t_device_s for s in src.read(0.0).samples]
    assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(1.12)


def test_replay_without_loop_ends_with_a_disconnect():
    clock = _FakeClock()
    src = ReplaySource(np.zeros((3, 6)), 50.0, loop=False, clock=clock, sleep=clock.sleep)
    src.open()
    clock.now += 1.0
    assert len(src.read(0.0).samples) == 3
    with pytest.raises(SourceDisconnected):
        src.read(0.0)


class _FlakySource:
    description = "flaky"

    def __init__(self, fail_opens: int) -> None:
        self.fail_opens = fail_opens
        self.opens = 0
        self.fail_next_read = False

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise SourceDisconnected("device not there")

    def close(self) -> None:
        pass

    def read(self, timeout_s: float) -> SourceBatch:
        if self.fail_next_read:
            self.fail_next_read = False
            raise SourceDisconnected("unplugged")
        return SourceBatch(samples=[_sample(0.0)])


def test_reconnecting_source_backs_off_exponentially_and_recovers():
    clock = _FakeClock()
    events = []
    flaky = _FlakySource(fail_opens=3)
    src = ReconnectingSource(flaky, backoff_initial_s=0.5, backoff_max_s=1.0, on_event=events.append,
                             clock=clock, sleep=clock.sleep)
    attempts_at = []
    for _ in range(40):
        before = flaky.opens
        batch = src.read(0.1)
        if flaky.opens > before:
            attempts_at.append(clock.now)
        if batch.samples:
            break
    assert src.connected and flaky.opens == 4
    gaps = np.diff(attempts_at)
    assert gaps == pytest.approx([0.5, 1.0, 1.0], abs=0.11)  # 0.5, then doubled, capped at 1.0
    assert [e.kind for e in events] == ["open_failed"] * 3 + ["connected"]
    flaky.fail_next_read = True
    assert src.read(0.1).samples == []
    assert not src.connected and src.disconnects == 1 and events[-1].kind == "disconnected"
    for _ in range(20):
        if src.read(0.1).samples:
            break
    assert src.connected and src.reconnects == 1
