"""Why the automatic restart waited while the worker stood far away, reproduced through SafetyMonitor
with a camera whose frames arrive late and between heartbeats (docs/safety.md, "Why the restart
waited"): the age sawtooth between frames no longer makes zones and resets flicker, a one-cycle stale
fault costs the interlock's clear time (not dwell + clear time), and at a real cell's camera rate and
latency nobody far away is stopped. Also the input checks a flood relies on: the newest good message
of a cycle wins, every message is checked, keypoints beyond the camera's range are a fault."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from hrc_fl.paths import config_file
from hrc_fl.safety.config import load_robot_model
from hrc_fl.safety.latency import ObservationAgePeaks
from hrc_fl.safety.monitor import (
    BodiesInput,
    BodyObservation,
    JointInput,
    SafetyConfig,
    SafetyDecision,
    SafetyInputs,
    SafetyMonitor,
    zone_for_separation,
)
from hrc_fl.safety.zones import Zone, ZoneConfig

ROBOT = load_robot_model(config_file("robot_ur5e.yaml"))
UPRIGHT = (0.0, -math.pi / 2, 0.0, -math.pi / 2, 0.0, 0.0)
T0 = 1000.0
HEARTBEAT_HZ = 50.0
SIGMA_M = 0.02


def _column(x_m: float) -> np.ndarray:
    return np.stack([np.full(33, x_m), np.zeros(33), np.linspace(0.1, 1.8, 33)], axis=1)


def _body(x_m: float) -> BodyObservation:
    return BodyObservation("p1", _column(x_m), SIGMA_M, "base_link")


def _run(mon: SafetyMonitor, *, seconds: float, frame_hz: float, pipeline_s: Callable[[int], float],
         x_m: Callable[[float], float], t0: float = T0,
         reset_at: tuple[float, ...] = ()) -> list[tuple[float, SafetyDecision]]:
    """A cell in time order: camera frames k at t0 + k / frame_hz reach the monitor pipeline_s(k) later
    (in order, as from one pose pipeline), the robot and the heartbeat at 50 Hz; every arrival and every
    heartbeat is a step, as in the node. Returns (time since t0, decision) of every step."""
    events: list[tuple[float, int, object]] = []
    arrival = -math.inf
    k = 0
    while k / frame_hz < seconds:
        stamp = t0 + k / frame_hz
        arrival = max(arrival, stamp + pipeline_s(k))
        events.append((arrival, 1, stamp))
        k += 1
    events += [(t0 + j / HEARTBEAT_HZ, 0, None) for j in range(int(seconds * HEARTBEAT_HZ))]
    events += [(t0 + r, 2, None) for r in reset_at]
    events.sort(key=lambda e: (e[0], e[1]))
    out = []
    for now, kind, stamp in events:
        if kind == 1:
            inputs = SafetyInputs(bodies=[BodiesInput(stamp, (_body(x_m(stamp - t0)),))])
        elif kind == 2:
            inputs = SafetyInputs(reset_requested=True)
        else:
            inputs = SafetyInputs(robot=[JointInput(now - 0.005, ROBOT.chain.joint_names, UPRIGHT)])
        out.append((now - t0, mon.step(now, inputs)))
    return out


def _monitor(**zones) -> SafetyMonitor:
    return SafetyMonitor(SafetyConfig(robot=ROBOT, zones=ZoneConfig(**zones), bodies_max_age_s=1.0))


def _separation_offset_m() -> float:
    """Human column x minus its separation from the upright arm (the upper-arm capsule's radius)."""
    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0)
    d = mon.step(T0, SafetyInputs(bodies=[BodiesInput(T0 - 0.01, (_body(3.0),))],
                                  robot=[JointInput(T0 - 0.01, ROBOT.chain.joint_names, UPRIGHT)]))
    return 3.0 - d.min_separation_m


def _thresholds(latency_s: float) -> tuple[float, float, float]:
    """(stop, reduced-speed, warning) distance at a separation of 1 m and this observation age."""
    mon = _monitor()
    v_max = ROBOT.max_speed_mps
    _, stop, reduced, warning = zone_for_separation(
        1.0, sigma_m=SIGMA_M, latency_s=latency_s, params=mon.params, min_speed_mps=0.1 * v_max,
        max_speed_mps=v_max, warning_band_m=mon.config.warning_band_m)
    return stop, reduced, warning


def _changes(decisions: list[tuple[float, SafetyDecision]]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for t, d in decisions:
        if not out or out[-1][1] != d.zone.name:
            out.append((t, d.zone.name))
    return out


def test_zone_does_not_flicker_with_the_age_sawtooth_between_frames():
    # Prepare: 3 Hz frames 0.3 s late: the observation age runs 0.3 .. 0.63 s between frames, so the
    # reduced-speed distance moves by 1.6 m/s x 0.33 s = 0.53 m with every frame. The worker stands
    # where the trough says WARNING and the peak says REDUCED_SPEED; no dwell holds a zone.
    _, reduced_trough, _ = _thresholds(0.3)
    _, reduced_peak, _ = _thresholds(0.3 + 1 / 3)
    d = (reduced_trough + reduced_peak) / 2
    x = d + _separation_offset_m()
    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0)

    # Execute
    decisions = _run(mon, seconds=12.0, frame_hz=3.0, pipeline_s=lambda k: 0.3, x_m=lambda t: x)

    # Assert: after the first seconds one zone holds (it flickered with every frame before: two changes
    # per frame, about 24 in these 4 s), and it is the more restrictive one, the peak's
    later = [(t, dec) for t, dec in decisions if t >= 8.0]
    assert {dec.zone for _, dec in later} == {Zone.REDUCED_SPEED}, _changes(later)[:6]
    assert all(dec.reason for _, dec in later)
    # the speed itself still follows the instantaneous age (ISO: the allowed speed now), never above 1
    scales = [dec.speed_scale for _, dec in later]
    assert min(scales) > 0.0 and max(scales) <= 1.0


def test_manual_reset_at_the_sawtooth_trough_is_refused_until_clear_at_its_peak():
    # Prepare: the worker just outside the stop distance at the trough age, inside it at the peak
    stop_trough, _, _ = _thresholds(0.3)
    stop_peak, _, _ = _thresholds(0.3 + 1 / 3)
    offset = _separation_offset_m()
    x_band = (stop_trough + stop_peak) / 2 + offset
    x_out = stop_peak + 0.3 + offset
    # resets pressed right after frames arrive (the trough) at 2.31 s, 4.31 s; the worker steps back at 6 s
    mon = _monitor(restart_interlock="manual", min_dwell_s=0.0)
    frame_arrivals = [k / 3 + 0.3 + 0.01 for k in range(6, 34, 6)]

    # Execute
    decisions = _run(mon, seconds=12.0, frame_hz=3.0, pipeline_s=lambda k: 0.3,
                     x_m=lambda t: x_band if t < 6.0 else x_out, reset_at=tuple(frame_arrivals))

    # Assert: in the band every reset is refused (before: accepted at the trough, then stopped again at
    # the next peak), out of it the first one is accepted and the robot is not stopped again
    resets = [(t, dec) for t, dec in decisions if dec.reset_accepted is not None]
    refused = [(t, dec) for t, dec in resets if t < 6.3]
    assert refused and not any(dec.reset_accepted for _, dec in refused)
    assert all("human inside the stop distance" in dec.reset_message for _, dec in refused)
    accepted = [t for t, dec in resets if dec.reset_accepted]
    assert accepted and accepted[0] > 6.3
    after = [dec.zone for t, dec in decisions if t > accepted[0]]
    assert Zone.PROTECTIVE_STOP not in after
    before = [dec.zone for t, dec in decisions if t < 6.0]
    assert set(before) == {Zone.PROTECTIVE_STOP}


def test_a_one_cycle_stale_fault_costs_the_clear_time_not_dwell_plus_clear_time():
    # Prepare: the worker 4 m away (CLEAR even at an age of 1 s), 10 Hz frames 0.1 s late, except frame
    # 50 (t = 5.0 s), which is 1.0 s late: the age passes bodies_max_age_s (1.0 s) for a moment. The
    # demo's dwell and clear time.
    dwell_s, clear_s = 0.6, 2.0
    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=clear_s, min_dwell_s=dwell_s)

    # Execute
    decisions = _run(mon, seconds=12.0, frame_hz=10.0, pipeline_s=lambda k: 1.0 if k == 50 else 0.1,
                     x_m=lambda t: 4.0)

    # Assert: one stop, caused by the stale input, left clear_s after the fault ended (the next frame),
    # not dwell_s + clear_s after it began
    changes = [(t, z) for t, z in _changes(decisions) if t > 3.0]  # after the start-up stop
    assert [z for _, z in changes] == ["PROTECTIVE_STOP", "CLEAR"], changes
    (stop_t, _), (clear_t, _) = changes
    first = next(dec for t, dec in decisions if t == stop_t)
    assert any(f.startswith("bodies: stale") for f in first.faults)
    fault_end = max(t for t, dec in decisions if dec.faults)
    recovered = [t for t, dec in decisions if t > fault_end]
    assert clear_t - recovered[0] == pytest.approx(clear_s, abs=2.5 / HEARTBEAT_HZ)
    assert clear_t - stop_t < dwell_s + clear_s
    assert clear_t - stop_t >= dwell_s
    # while waiting, the reason says why the stop holds although the area is clear
    waiting = [dec for t, dec in decisions if fault_end < t < clear_t]
    assert waiting and all(not dec.faults and dec.reasons for dec in waiting)


@pytest.mark.parametrize("frame_hz, pipeline_median_s, far_stops_expected", [
    (3.0, 0.45, True),     # the demo before: 3 Hz, camera->safety median 0.46 s, p95 0.9 s
    (15.0, 0.06, False),   # a cell's camera rate with the perception this round targets (p95 ~0.1 s)
])
def test_far_worker_stops_come_from_the_camera_rate_and_latency(frame_hz, pipeline_median_s,
                                                                 far_stops_expected):
    # Prepare: the demo's walk (4 m, approach to 0.5 m, back to 4 m) over 120 s, the demo's safety values
    # (bodies_max_age_s 1.0, auto restart after 2 s, dwell 0.6 s), a lognormal pipeline latency
    rng = np.random.default_rng(7)
    latencies = pipeline_median_s * np.exp(rng.normal(0.0, 0.45, 4000))
    offset = _separation_offset_m()

    def worker_x(t: float) -> float:  # body centre distance, as in hrc_fl.sim.scenario's keyframes
        f = t / 120.0
        if f < 0.08 or f > 0.54:
            return 4.0
        if f < 0.32:
            return 4.0 - 3.5 * (f - 0.08) / 0.24
        if f < 0.40:
            return 0.5
        return 0.5 + 3.5 * (f - 0.40) / 0.14

    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=2.0, min_dwell_s=0.6)

    # Execute
    decisions = _run(mon, seconds=120.0, frame_hz=frame_hz, pipeline_s=lambda k: float(latencies[k % 4000]),
                     x_m=lambda t: worker_x(t) + offset - 0.5)

    # Assert: stops while the worker is more than 2 m away happen only with the slow, late camera,
    # caused by stale input (never by the distance rule out there)
    far = [dec for t, dec in decisions if t > 5.0 and worker_x(t) > 2.0]
    far_stops = [dec for dec in far if dec.zone == Zone.PROTECTIVE_STOP]
    assert bool(far_stops) == far_stops_expected, len(far_stops) / len(far)
    if far_stops_expected:
        assert any(f.startswith("bodies: stale") for dec in far_stops for f in dec.faults)
    # the approach still stops the robot close to it
    near = [dec for t, dec in decisions if 0.33 * 120 < t < 0.40 * 120]
    assert near and all(dec.zone == Zone.PROTECTIVE_STOP for dec in near)


def test_the_newest_good_message_of_a_cycle_wins_and_every_message_is_checked():
    # Prepare
    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0)
    robot = [JointInput(T0 - 0.01, ROBOT.chain.joint_names, UPRIGHT)]
    # Execute: a near and then a far observation of one frame period arrive in one cycle
    both = mon.step(T0, SafetyInputs(bodies=[BodiesInput(T0 - 0.06, (_body(0.4),)),
                                             BodiesInput(T0 - 0.02, (_body(3.0),))], robot=robot))
    # ... then a good far one and a bad one (NaN uncertainty) after it
    bad = mon.step(T0 + 0.02, SafetyInputs(bodies=[
        BodiesInput(T0 + 0.0, (_body(3.0),)),
        BodiesInput(T0 + 0.01, (BodyObservation("p1", _column(3.0), math.nan, "base_link"),))]))
    # Assert: the far (newest) one decides; the bad one still faults its cycle
    assert both.min_separation_m > 2.5 and not both.faults
    assert bad.zone == Zone.PROTECTIVE_STOP and any("invalid position uncertainty" in f for f in bad.faults)


@pytest.mark.parametrize("far_value, fault", [
    (1e30, True), (9.0, True), (1e200, True), (7.5, False),
])
def test_keypoints_beyond_the_camera_working_range_are_a_fault_not_a_far_body(far_value, fault):
    # Prepare: one keypoint of an otherwise good body at far_value m (range 8 m), one unknown (NaN) row
    mon = _monitor(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0)
    pts = _column(3.0)
    pts[5] = (far_value, 0.0, 1.0)
    pts[6] = np.nan
    robot = [JointInput(T0 - 0.01, ROBOT.chain.joint_names, UPRIGHT)]
    # Execute
    decision = mon.step(T0, SafetyInputs(bodies=[BodiesInput(T0 - 0.01, (BodyObservation(
        "p1", pts, SIGMA_M, "base_link"),))], robot=robot))
    # Assert
    range_faults = [f for f in decision.faults if "working range of the camera" in f]
    assert bool(range_faults) == fault, decision.faults
    if fault:
        assert decision.zone == Zone.PROTECTIVE_STOP
    else:
        assert decision.zone != Zone.PROTECTIVE_STOP
        assert decision.min_separation_m == pytest.approx(3.0 - _separation_offset_m())


def test_a_flood_of_bad_messages_names_each_cause_once_with_its_count():
    # Prepare: 40 bad messages of three causes in one cycle (a heartbeat under a flood)
    mon = _monitor()
    column = _column(3.0)
    infinite = column.copy()
    infinite[0, 0] = math.inf
    bodies = []
    for i in range(40):
        kind = i % 3
        body = (BodyObservation("p1", infinite, SIGMA_M, "base_link") if kind == 0
                else BodyObservation("p1", column, SIGMA_M, "camera_optical_frame") if kind == 1
                else BodyObservation("p1", column, SIGMA_M, "base_link"))
        stamp = T0 + 1.0 if kind == 2 else T0 - 0.01     # kind 2: 1 s in the future
        bodies.append(BodiesInput(stamp, (body,)))
    # Execute
    decision = mon.step(T0, SafetyInputs(bodies=bodies))
    # Assert: one entry per cause, counts add up, the fail-safe answer
    flood = [(f, n) for f, n in zip(decision.faults, decision.fault_counts, strict=True)
             if f.startswith("bodies") and "missing" not in f]
    assert sorted(n for _, n in flood) == [13, 13, 14]
    assert {f.split(": ", 1)[1].split(" ")[0] for f, _ in flood} == {"body", "stamp"}
    assert decision.zone == Zone.PROTECTIVE_STOP


def test_age_peaks_are_kept_for_the_window_and_capped_at_the_watchdog_limit():
    peaks = ObservationAgePeaks(2.0, max_age_s=0.3)
    peaks.observation(10.0, 0.2)
    peaks.observation(10.5, 0.25)
    peaks.observation(11.0, 5.0)        # after a stall: capped, the watchdog handled it
    peaks.observation(11.2, 0.1)
    assert peaks.peak_s(11.5) == pytest.approx(0.3)
    assert peaks.peak_s(13.1) == pytest.approx(0.1)   # the capped peak left the window at 13.0
    assert peaks.peak_s(13.3) == 0.0
    with pytest.raises(ValueError):
        ObservationAgePeaks(-1.0, 0.3)
