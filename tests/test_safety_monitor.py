"""SafetyMonitor (pure, injectable time): fail-safe behaviour, commands, intention, property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hrc_fl.paths import config_file
from hrc_fl.safety.config import load_robot_model
from hrc_fl.safety.monitor import (
    BodiesInput,
    BodyObservation,
    GestureInput,
    IntentionInput,
    JointInput,
    SafetyConfig,
    SafetyInputs,
    SafetyMonitor,
    TcpInput,
)
from hrc_fl.safety.zones import Zone, ZoneConfig

ROBOT = load_robot_model(config_file("robot_ur5e.yaml"))
UPRIGHT = (0.0, -math.pi / 2, 0.0, -math.pi / 2, 0.0, 0.0)  # arm pointing up, wrist over the base
T0 = 1000.0


def _config(**kw) -> SafetyConfig:
    zones = kw.pop("zones", ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0))
    return SafetyConfig(robot=ROBOT, zones=zones, **kw)


def _body(x_m: float, *, frame: str = "base_link", sigma: float = 0.02, arm: int = 0, arm_conf: float = 0.0,
          body_id: str = "b1") -> BodyObservation:
    # A standing human as a vertical column of 33 keypoints at (x, 0), 0.1 .. 1.8 m high.
    pts = np.stack([np.full(33, x_m), np.zeros(33), np.linspace(0.1, 1.8, 33)], axis=1)
    return BodyObservation(body_id, pts, sigma, frame, arm, arm_conf)


def _inputs(t: float, bodies=(), *, latency: float = 0.03, **kw) -> SafetyInputs:
    return SafetyInputs(bodies=[BodiesInput(t - latency, tuple(bodies))],
                        robot=[JointInput(t - 0.01, ROBOT.chain.joint_names, UPRIGHT)], **kw)


def _settle(mon: SafetyMonitor, x_m: float | None, t: float, steps: int = 40, dt: float = 0.1):
    decision = None
    for _ in range(steps):
        bodies = () if x_m is None else (_body(x_m),)
        decision = mon.step(t, _inputs(t, bodies))
        t += dt
    return decision, t


def test_nobody_in_view_is_clear_at_full_speed_after_ramp():
    decision, _ = _settle(SafetyMonitor(_config()), None, T0)
    assert decision.zone == Zone.CLEAR
    assert decision.speed_scale == pytest.approx(1.0)
    assert decision.min_separation_m == math.inf


def test_zones_walk_in_order_as_the_human_approaches():
    mon = SafetyMonitor(_config())
    t = T0
    zones = []
    for x in np.linspace(3.0, 0.2, 57):
        decision = mon.step(t, _inputs(t, (_body(float(x)),)))
        t += 0.05
        if decision.zone not in zones:
            zones.append(decision.zone)
    # auto restart with 0 s clear time: the start-up stop is left at the first good cycle.
    assert zones == [Zone.CLEAR, Zone.WARNING, Zone.REDUCED_SPEED, Zone.PROTECTIVE_STOP]


def test_reduced_speed_scale_equals_closed_form_allowed_speed():
    decision, _ = _settle(SafetyMonitor(_config()), 1.1, T0, steps=60)
    assert decision.zone == Zone.REDUCED_SPEED
    assert 0.0 < decision.speed_scale < 1.0
    assert decision.speed_scale == pytest.approx(decision.allowed_robot_speed_mps / ROBOT.max_speed_mps)
    assert decision.stop_distance_m < decision.min_separation_m < decision.reduced_speed_distance_m


def test_stale_bodies_stop_within_one_cycle():
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    assert decision.zone == Zone.CLEAR
    # Robot keeps publishing, perception stops: 0.31 s after the last body stamp -> stop.
    last_body_stamp = t - 0.1 - 0.03
    t_stale = last_body_stamp + 0.31
    robot_only = SafetyInputs(robot=[JointInput(t_stale - 0.01, ROBOT.chain.joint_names, UPRIGHT)])
    decision = mon.step(t_stale, robot_only)
    assert decision.zone == Zone.PROTECTIVE_STOP and decision.speed_scale == 0.0
    assert any("bodies: stale" in f for f in decision.faults)


@pytest.mark.parametrize("bad", ["nan_uncertainty", "inf_point", "wrong_frame", "too_few_points", "future",
                                 "out_of_order", "nan_joint", "missing_joint", "tcp_in_joint_mode"])
def test_each_invalid_input_stops_in_the_same_cycle(bad):
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    assert decision.zone == Zone.CLEAR
    body, robot = _body(3.0), JointInput(t - 0.01, ROBOT.chain.joint_names, UPRIGHT)
    stamp = t - 0.03
    if bad == "nan_uncertainty":
        body = _body(3.0, sigma=math.nan)
    elif bad == "inf_point":
        body.points_m[5, 0] = math.inf
    elif bad == "wrong_frame":
        body = _body(3.0, frame="camera_optical_frame")
    elif bad == "too_few_points":
        body.points_m[3:, :] = math.nan
    elif bad == "future":
        stamp = t + 1.0
    elif bad == "out_of_order":
        stamp = t - 0.25
    elif bad == "nan_joint":
        robot = JointInput(t - 0.01, ROBOT.chain.joint_names, (math.nan, *UPRIGHT[1:]))
    elif bad == "missing_joint":
        robot = JointInput(t - 0.01, ROBOT.chain.joint_names[:5], UPRIGHT[:5])
    elif bad == "tcp_in_joint_mode":
        robot = TcpInput(t - 0.01, "base_link", (0.3, 0.0, 0.5), (0.0, 0.0, 0.0, 1.0))
    decision = mon.step(t, SafetyInputs(bodies=[BodiesInput(stamp, (body,))], robot=[robot]))
    assert decision.zone == Zone.PROTECTIVE_STOP and decision.speed_scale == 0.0
    assert decision.faults


def test_unknown_keypoints_are_ignored_when_enough_remain():
    mon = SafetyMonitor(_config())
    t = T0
    for _ in range(40):
        body = _body(3.0)
        body.points_m[::2] = math.nan  # 16 of 33 known
        decision = mon.step(t, _inputs(t, (body,)))
        t += 0.1
    assert decision.zone == Zone.CLEAR and not decision.faults
    assert decision.human_points_m.shape == (16, 3)


def test_stop_gesture_stops_and_needs_reset_thumb_up_cannot_override_distance():
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    assert decision.zone == Zone.CLEAR
    stop = GestureInput(t - 0.02, 1, 0.9, True)
    decision = mon.step(t, _inputs(t, (_body(3.0),), gestures=[stop]))
    assert decision.zone == Zone.PROTECTIVE_STOP and decision.reset_required
    decision, t = _settle(mon, 3.0, t + 0.1, steps=30)
    assert decision.zone == Zone.PROTECTIVE_STOP  # auto mode, but a command stop needs a reset
    # Human now close; a THUMB_UP is refused by the distance rule.
    decision, t = _settle(mon, 0.3, t, steps=3)
    thumb = GestureInput(t - 0.02, 4, 0.9, True)
    decision = mon.step(t, _inputs(t, (_body(0.3),), gestures=[thumb]))
    assert decision.zone == Zone.PROTECTIVE_STOP and decision.reset_accepted is False
    # Far again: THUMB_UP resets.
    decision, t = _settle(mon, 3.0, t + 0.1, steps=3)
    thumb = GestureInput(t - 0.02, 4, 0.9, True)
    decision = mon.step(t, _inputs(t, (_body(3.0),), gestures=[thumb]))
    assert decision.reset_accepted is True and decision.zone == Zone.CLEAR


def test_stop_gesture_that_is_not_a_debounced_command_is_ignored():
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    decision = mon.step(t, _inputs(t, (_body(3.0),), gestures=[GestureInput(t - 0.02, 1, 0.9, False)]))
    assert decision.zone == Zone.CLEAR


def test_all_stop_arm_signal_is_debounced_over_frames():
    mon = SafetyMonitor(_config(arm_signal_min_frames=3))
    decision, t = _settle(mon, 3.0, T0)
    zones = []
    for _ in range(3):
        decision = mon.step(t, _inputs(t, (_body(3.0, arm=1, arm_conf=0.9),)))
        zones.append(decision.zone)
        t += 0.05
    assert zones == [Zone.CLEAR, Zone.CLEAR, Zone.PROTECTIVE_STOP]


def test_intention_lowers_speed_but_never_raises_it():
    # Far: an approach intention caps the scale at 0.5.
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    intent = IntentionInput(t - 0.05, "approach", 0.9)
    decision = mon.step(t, _inputs(t, (_body(3.0),), intentions=[intent]))
    assert decision.speed_scale == pytest.approx(0.5)
    assert decision.zone == Zone.REDUCED_SPEED
    # Close (separation rule allows < 0.5): the intention does not raise the scale.
    mon2 = SafetyMonitor(_config())
    base, t2 = _settle(mon2, 0.75, T0)
    assert base.speed_scale < 0.5
    with_intent = mon2.step(t2, _inputs(t2, (_body(0.75),), intentions=[IntentionInput(t2 - 0.05, "approach", 0.9)]))
    assert with_intent.speed_scale <= base.speed_scale + 1e-9


def test_clock_going_back_is_a_fault():
    mon = SafetyMonitor(_config())
    decision, t = _settle(mon, 3.0, T0)
    decision = mon.step(t - 1.0, _inputs(t - 1.0, (_body(3.0),)))
    assert decision.zone == Zone.PROTECTIVE_STOP
    assert any("clock" in f for f in decision.faults)


def test_tcp_mode_uses_the_tool_capsule():
    mon = SafetyMonitor(_config(robot_source="tcp"))
    t = T0
    for _ in range(40):
        tcp = TcpInput(t - 0.01, "base_link", (0.4, 0.0, 0.6), (1.0, 0.0, 0.0, 0.0))
        decision = mon.step(t, SafetyInputs(bodies=[BodiesInput(t - 0.03, (_body(1.5),))], robot=[tcp]))
        t += 0.1
    # Closest robot part: the TCP capsule at x = 0.4 m, radius 0.10 m -> 1.5 - 0.4 - 0.1 = 1.0 m.
    assert decision.min_separation_m == pytest.approx(1.0)


# ---------------------------------------------------------------- properties
invalid_kind = st.sampled_from(["nan_point", "inf_point", "nan_sigma", "neg_sigma", "frame", "future",
                                "old", "nan_stamp", "nan_joint", "missing_bodies", "missing_robot",
                                "nan_gesture_conf", "bad_intention_conf", "no_points"])


@settings(max_examples=150, deadline=None)
@given(kind=invalid_kind, x=st.floats(0.0, 5.0), warmup=st.integers(0, 30), idx=st.integers(0, 32))
def test_invalid_input_never_yields_clear(kind, x, warmup, idx):
    mon = SafetyMonitor(_config())
    t = T0
    for _ in range(warmup):
        mon.step(t, _inputs(t, (_body(x),)))
        t += 0.1
    body = _body(x)
    body_stamp, robot = t - 0.03, JointInput(t - 0.01, ROBOT.chain.joint_names, UPRIGHT)
    extra: dict = {}
    bodies = [BodiesInput(body_stamp, (body,))]
    robots = [robot]
    if kind == "nan_point":
        body.points_m[:30] = math.nan  # only 3 known points remain
    elif kind == "inf_point":
        body.points_m[idx, 2] = -math.inf
    elif kind == "nan_sigma":
        body = _body(x, sigma=math.nan)
        bodies = [BodiesInput(body_stamp, (body,))]
    elif kind == "neg_sigma":
        bodies = [BodiesInput(body_stamp, (_body(x, sigma=-0.1),))]
    elif kind == "frame":
        bodies = [BodiesInput(body_stamp, (_body(x, frame=""),))]
    elif kind == "future":
        bodies = [BodiesInput(t + 0.5, (body,))]
    elif kind == "old":
        bodies = [BodiesInput(t - 5.0, (body,))]
    elif kind == "nan_stamp":
        bodies = [BodiesInput(math.nan, (body,))]
    elif kind == "nan_joint":
        robots = [JointInput(t - 0.01, ROBOT.chain.joint_names, (*UPRIGHT[:idx % 6], math.nan, *UPRIGHT[idx % 6 + 1:]))]
    elif kind == "missing_bodies":
        bodies = []
    elif kind == "missing_robot":
        robots = []
    elif kind == "nan_gesture_conf":
        extra["gestures"] = [GestureInput(t - 0.02, 4, math.nan, True)]
    elif kind == "bad_intention_conf":
        extra["intentions"] = [IntentionInput(t - 0.02, "idle", 1.5)]
    elif kind == "no_points":
        body.points_m[:] = math.nan
    decision = mon.step(t, SafetyInputs(bodies=bodies, robot=robots, **extra))
    if kind in ("missing_bodies", "missing_robot") and warmup > 0:
        # A missing message within the max age is not yet a fault; it must become one after the max age.
        decision = mon.step(t + 0.35, SafetyInputs())
    assert decision.zone == Zone.PROTECTIVE_STOP
    assert decision.speed_scale == 0.0


@settings(max_examples=100, deadline=None)
@given(x=st.floats(0.3, 4.0), closer=st.floats(0.0, 2.0), sigma=st.floats(0.0, 0.1),
       latency=st.floats(0.0, 0.25))
def test_moving_the_human_closer_never_allows_more_speed(x, closer, sigma, latency):
    def first_allowed(pos: float):
        mon = SafetyMonitor(_config())
        t = T0
        inp = SafetyInputs(bodies=[BodiesInput(t - latency, (_body(pos, sigma=sigma),))],
                           robot=[JointInput(t - 0.01, ROBOT.chain.joint_names, UPRIGHT)])
        return mon.step(t, inp)

    far = first_allowed(x)
    near = first_allowed(x - closer)
    # "Closer" is judged by the measured separation (moving along x can pass the robot).
    assume(near.min_separation_m <= far.min_separation_m)
    assert near.allowed_robot_speed_mps <= far.allowed_robot_speed_mps
    assert near.zone >= far.zone


def _robot_only(t: float, positions, bodies=None) -> SafetyInputs:
    bodies = (_body(1.0),) if bodies is None else bodies
    return SafetyInputs(bodies=[BodiesInput(t - 0.03, tuple(bodies))],
                        robot=[JointInput(t - 0.01, ROBOT.chain.joint_names, tuple(positions))])


def test_cached_geometry_follows_a_new_joint_state():
    # Prepare: a monitor that has seen the upright arm, and a turned pose (shoulder pan 90 deg). The
    # reference for the turned pose is a fresh monitor that never cached anything.
    mon = SafetyMonitor(_config())
    turned = (math.pi / 2, *UPRIGHT[1:])
    first = mon.step(T0, _robot_only(T0, UPRIGHT))
    # Execute: the same human, a new joint state (the distance cache must not survive it), then the same
    # joint state again (reused kinematics), then back.
    moved = mon.step(T0 + 0.1, _robot_only(T0 + 0.1, turned))
    again = mon.step(T0 + 0.2, _robot_only(T0 + 0.2, turned))
    back = mon.step(T0 + 0.3, _robot_only(T0 + 0.3, UPRIGHT))
    fresh = SafetyMonitor(_config()).step(T0 + 0.1, _robot_only(T0 + 0.1, turned))
    # Assert: the geometry is that of the newest joint state every time.
    assert moved.min_separation_m == pytest.approx(fresh.min_separation_m, abs=1e-12)
    assert moved.capsules.ends == pytest.approx(fresh.capsules.ends, abs=1e-12)
    assert not np.allclose(moved.capsules.ends, first.capsules.ends)
    assert again.capsules.ends == pytest.approx(moved.capsules.ends, abs=1e-12)
    assert back.min_separation_m == pytest.approx(first.min_separation_m, abs=1e-12)
    assert back.capsules.ends == pytest.approx(first.capsules.ends, abs=1e-12)


def test_robot_speed_is_measured_from_changed_joint_states_and_zero_when_unchanged():
    # Prepare: the shoulder pan turns by 0.1 rad in 0.1 s between two states, then holds.
    mon = SafetyMonitor(_config())
    turned = (0.1, *UPRIGHT[1:])
    mon.step(T0, _robot_only(T0, UPRIGHT))
    # Execute
    moving = mon.step(T0 + 0.1, _robot_only(T0 + 0.1, turned))
    held = mon.step(T0 + 0.2, _robot_only(T0 + 0.2, turned))
    # Assert: the fastest capsule end point moved r * 0.1 rad (chord) in 0.1 s, r = its distance from the
    # pan axis; with the state unchanged the robot is measured as standing still.
    ends = np.concatenate([moving.capsules.starts, moving.capsules.ends])[:, :2]
    radius_m = float(np.linalg.norm(ends, axis=1).max())
    assert moving.terms.robot_speed_mps == pytest.approx(2.0 * radius_m * math.sin(0.05) / 0.1, rel=1e-6)
    assert held.terms.robot_speed_mps == 0.0


def test_cached_distance_follows_new_keypoints_with_an_unchanged_robot():
    # Prepare: the same joint state every cycle, the human steps closer by 0.3 m.
    mon = SafetyMonitor(_config())
    far = mon.step(T0, _robot_only(T0, UPRIGHT, bodies=(_body(1.5),)))
    # Execute
    near = mon.step(T0 + 0.1, _robot_only(T0 + 0.1, UPRIGHT, bodies=(_body(1.2),)))
    # Assert: a vertical column at x moves 0.3 m closer to every capsule it is closest to.
    assert near.min_separation_m == pytest.approx(far.min_separation_m - 0.3, abs=1e-9)


step_kind = st.sampled_from(["body", "body", "body", "stale", "stop_gesture", "reset"])


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(step_kind, st.floats(0.2, 4.0)), min_size=5, max_size=60),
       interlock=st.sampled_from(["auto", "manual"]), dwell=st.sampled_from([0.0, 0.3, 0.6]),
       latency=st.sampled_from([0.03, 0.2, 0.5]))
def test_every_decision_other_than_clear_says_why(steps, interlock, dwell, latency):
    # Prepare: zone releases that need a dwell, so zones are held after their cause ended (the demo
    # published PROTECTIVE_STOP and WARNING states with an empty reason there)
    zones = ZoneConfig(restart_interlock=interlock, auto_reset_clear_s=0.2, min_dwell_s=dwell)
    mon = SafetyMonitor(_config(zones=zones, bodies_max_age_s=0.6))
    t = T0

    # Execute: a walk of positions with stale-perception cycles, STOP gestures and resets
    for kind, x in steps:
        if kind == "stale":  # robot only, bodies older than their max age
            decision = mon.step(t + 0.7, SafetyInputs(robot=[JointInput(t + 0.69, ROBOT.chain.joint_names, UPRIGHT)]))
            t += 0.7
        else:
            extra = {}
            if kind == "stop_gesture":
                extra["gestures"] = [GestureInput(t - 0.02, 1, 0.9, True)]
            elif kind == "reset":
                extra["reset_requested"] = True
            decision = mon.step(t, _inputs(t, (_body(x),), latency=latency, **extra))

        # Assert
        if decision.zone != Zone.CLEAR:
            assert decision.reasons and all(decision.reasons), (kind, x, decision.zone)
        t += 0.1


def test_a_stop_held_after_a_one_cycle_fault_names_the_dwell():
    # Prepare: clear at 3 m, auto restart after the minimum dwell
    zones = ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.5)
    mon = SafetyMonitor(_config(zones=zones))
    decision, t = _settle(mon, 3.0, T0)
    assert decision.zone == Zone.CLEAR

    # Execute: one cycle without the body message, then good data again
    stale = mon.step(t + 0.35, SafetyInputs(robot=[JointInput(t + 0.34, ROBOT.chain.joint_names, UPRIGHT)]))
    held = mon.step(t + 0.45, _inputs(t + 0.45, (_body(3.0),)))
    released, _ = _settle(mon, 3.0, t + 0.55, steps=10)

    # Assert
    assert stale.zone == Zone.PROTECTIVE_STOP and any("bodies: stale" in f for f in stale.faults)
    assert held.zone == Zone.PROTECTIVE_STOP and not held.faults
    assert held.reasons == ("protective stop held: minimum dwell 0.50 s not elapsed",)
    assert released.zone == Zone.CLEAR
