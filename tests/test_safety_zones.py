"""Zone state machine: escalation, hysteresis, dwell, restart interlock, ramps; property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrc_fl.safety.zones import Zone, ZoneConfig, ZoneMachine

C, W, R, S = Zone.CLEAR, Zone.WARNING, Zone.REDUCED_SPEED, Zone.PROTECTIVE_STOP


def _step(m: ZoneMachine, t: float, zone: Zone, relaxed: Zone | None = None, scale: float = 1.0, **kw):
    return m.update(t, distance_zone=zone, relaxed_zone=zone if relaxed is None else relaxed,
                    target_scale=scale, stop_command=kw.pop("stop", False), fault=kw.pop("fault", False), **kw)


def test_starts_in_protective_stop_and_manual_reset_releases_it():
    m = ZoneMachine(ZoneConfig(restart_interlock="manual", min_dwell_s=0.0))
    first = _step(m, 0.0, C)
    assert first.zone == S and first.reset_required and first.speed_scale == 0.0
    assert _step(m, 5.0, C).zone == S                 # waiting forever without a reset
    out = _step(m, 5.1, C, reset_request=True)
    assert out.zone == C and out.reset_accepted


def test_reset_refused_while_human_inside_and_not_remembered():
    m = ZoneMachine(ZoneConfig(restart_interlock="manual", min_dwell_s=0.0))
    out = _step(m, 0.0, S, reset_request=True)
    assert out.reset_accepted is False and "human inside" in out.reset_message
    # The human leaves; the refused reset must not release the stop.
    assert _step(m, 1.0, C).zone == S


def test_hysteresis_and_dwell_before_relaxing():
    m = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.5))
    _step(m, 0.0, C)
    _step(m, 1.0, C)                                  # leaves the start-up stop (dwell 1 s >= 0.5 s)
    assert _step(m, 1.1, R, scale=0.5).zone == R      # escalation is immediate
    # Distance zone is WARNING but the zone at (d - hysteresis) is still REDUCED: stay.
    assert _step(m, 2.0, W, relaxed=R).zone == R
    # Hysteresis satisfied but dwell not yet (entered at 1.1 s, relax needs >= 1.6 s).
    m2 = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.5))
    _step(m2, 0.0, C)
    _step(m2, 1.0, C)
    _step(m2, 1.1, R, scale=0.5)
    assert _step(m2, 1.3, W).zone == R
    assert _step(m2, 1.6, W).zone == W


def test_relaxing_needs_the_condition_without_a_break_for_the_dwell_time():
    # S_p jitters at a zone border (e.g. its latency term grows between camera frames): the demanded zone
    # alternates WARNING / CLEAR every 0.15 s. The zone must stay WARNING instead of flickering, and relax
    # only once CLEAR has held for min_dwell_s without a break.
    m = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.5))
    _step(m, 0.0, C)
    _step(m, 1.0, C)
    assert _step(m, 1.05, W).zone == W
    zones = [_step(m, 1.05 + 0.15 * k, C if k % 2 else W).zone for k in range(1, 20)]
    assert zones == [W] * 19                          # time in WARNING far beyond 0.5 s, yet no relaxing
    last_w = 1.05 + 0.15 * 18
    assert _step(m, last_w + 0.3, C).zone == W        # clear for 0.3 s only
    assert _step(m, last_w + 0.55, C).zone == C       # clear without a break for >= 0.5 s


def test_auto_restart_needs_area_clear_for_configured_time():
    m = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=2.0, min_dwell_s=0.0))
    _step(m, 0.0, S)
    assert _step(m, 1.0, C).zone == S                  # clear since 1.0 s
    assert _step(m, 2.5, C).zone == S
    assert _step(m, 2.7, S).zone == S                  # intrusion restarts the clock
    assert _step(m, 3.0, C).zone == S
    assert _step(m, 4.9, C).zone == S
    assert _step(m, 5.0, C).zone == C                  # clear 3.0 .. 5.0 = 2 s


def test_command_stop_needs_manual_reset_even_in_auto():
    m = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0))
    _step(m, 0.0, C)
    assert _step(m, 0.1, C).zone == C
    out = _step(m, 0.2, C, stop=True)
    assert out.zone == S and out.reset_required
    assert _step(m, 5.0, C).zone == S
    refused = _step(m, 5.1, C, stop=True, reset_request=True)
    assert refused.reset_accepted is False and refused.zone == S
    assert _step(m, 5.2, C, reset_request=True).zone == C


def test_speed_scale_drops_at_once_and_rises_at_the_ramp_rate():
    m = ZoneMachine(ZoneConfig(restart_interlock="auto", auto_reset_clear_s=0.0, min_dwell_s=0.0,
                               ramp_up_per_s=0.5))
    _step(m, 0.0, C)
    assert _step(m, 0.0, C).speed_scale == 0.0
    assert _step(m, 1.0, C).speed_scale == pytest.approx(0.5)    # 0 + 0.5/s * 1 s
    assert _step(m, 1.4, C).speed_scale == pytest.approx(0.7)    # + 0.5 * 0.4
    assert _step(m, 1.5, R, scale=0.2).speed_scale == pytest.approx(0.2)  # immediate drop
    assert _step(m, 1.6, S).speed_scale == 0.0


def test_config_validation():
    with pytest.raises(ValueError):
        ZoneConfig(restart_interlock="sometimes")
    with pytest.raises(ValueError):
        ZoneConfig(ramp_up_per_s=0.0)


events = st.tuples(
    st.floats(0.0, 1.0),                               # dt
    st.sampled_from(list(Zone)),                       # distance zone
    st.booleans(),                                     # hysteresis zone one step more restrictive
    st.booleans(),                                     # stop command
    st.booleans(),                                     # fault
    st.booleans(),                                     # reset request
    st.floats(0.0, 1.0),                               # target scale
)


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(["manual", "auto"]), clear_s=st.floats(0.0, 2.0), dwell_s=st.floats(0.0, 0.5),
       command_manual=st.booleans(), seq=st.lists(events, min_size=1, max_size=60))
def test_never_leaves_protective_stop_without_the_reset_condition(mode, clear_s, dwell_s, command_manual, seq):
    cfg = ZoneConfig(restart_interlock=mode, auto_reset_clear_s=clear_s, min_dwell_s=dwell_s,
                     command_stop_requires_manual_reset=command_manual)
    m = ZoneMachine(cfg)
    t = 0.0
    prev = S
    stop_entered = -float("inf")                     # the start-up stop has no dwell to wait for
    commanded = False
    clear_since: float | None = None
    for dt, zone, harder, stop, fault, reset, scale in seq:
        t += dt
        relaxed = Zone(min(int(zone) + 1, 3)) if harder else zone
        condition_now = not stop and not fault and relaxed != S
        commanded = commanded or stop
        if prev == S:
            clear_since = (t if clear_since is None else clear_since) if condition_now else None
        out = _step(m, t, zone, relaxed=relaxed, scale=scale, stop=stop, fault=fault, reset_request=reset)
        if stop or fault or zone == S:
            assert out.zone == S                        # stopping is immediate
        if prev == S and out.zone != S:
            # Left the stop: the conditions hold now, dwell elapsed and the interlock was satisfied.
            assert condition_now and t - stop_entered >= dwell_s
            if mode == "manual" or (commanded and command_manual):
                assert reset
            else:
                assert reset or (clear_since is not None and t - clear_since >= clear_s)
            assert out.speed_scale <= scale + 1e-12
            commanded = False
        if out.zone == S:
            assert out.speed_scale == 0.0
            if prev != S:
                stop_entered, clear_since = t, None
        prev = out.zone
