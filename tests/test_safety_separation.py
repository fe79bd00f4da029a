"""S_p and each of its terms against worked examples computed by hand from ISO/TS 15066's formula."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrc_fl.safety.separation import (
    SeparationParameters,
    StoppingTable,
    allowed_robot_speed_mps,
    human_speed_mps,
    protective_separation_distance,
)

# Table used by the worked examples: speed (m/s) -> stopping time (s), stopping distance (m).
TABLE = StoppingTable((0.0, 0.5, 1.0), (0.0, 0.2, 0.4), (0.0, 0.05, 0.2))
PARAMS = SeparationParameters(reaction_time_s=0.1, stopping=TABLE, intrusion_distance_m=0.1,
                              robot_position_uncertainty_m=0.02, position_uncertainty_k=3.0)


def test_far_worked_example_every_term():
    # Prepare: separation 1.2 m >= 0.5 m -> v_h = 1.6 m/s; v_r = 0.75 m/s lies halfway between the 0.5 and
    # 1.0 rows: T_s = (0.2 + 0.4) / 2 = 0.3 s, S_s = (0.05 + 0.2) / 2 = 0.125 m.
    # Execute
    terms = protective_separation_distance(separation_m=1.2, robot_speed_mps=0.75, position_uncertainty_m=0.01,
                                           perception_latency_s=0.05, params=PARAMS)
    # Assert
    assert terms.human_speed_mps == 1.6
    assert terms.stopping_time_s == pytest.approx(0.3)
    assert terms.s_h_m == pytest.approx(1.6 * (0.1 + 0.3))          # 0.64
    assert terms.s_r_m == pytest.approx(0.75 * 0.1)                 # 0.075
    assert terms.s_s_m == pytest.approx(0.125)
    assert terms.c_m == pytest.approx(0.1)
    assert terms.z_d_m == pytest.approx(3 * 0.01 + 1.6 * 0.05)      # 0.03 + 0.08 = 0.11
    assert terms.z_r_m == pytest.approx(0.02)
    assert terms.protective_separation_m == pytest.approx(0.64 + 0.075 + 0.125 + 0.1 + 0.11 + 0.02)  # 1.07


def test_close_worked_example_uses_2_0_mps():
    # Prepare: separation 0.4 m < 0.5 m -> v_h = 2.0 m/s (ISO 13855); other inputs as above.
    # Execute
    terms = protective_separation_distance(separation_m=0.4, robot_speed_mps=0.75, position_uncertainty_m=0.01,
                                           perception_latency_s=0.05, params=PARAMS)
    # Assert: S_h = 2.0 * 0.4 = 0.8; Z_d = 0.03 + 2.0 * 0.05 = 0.13
    assert terms.human_speed_mps == 2.0
    assert terms.s_h_m == pytest.approx(0.8)
    assert terms.z_d_m == pytest.approx(0.13)
    assert terms.protective_separation_m == pytest.approx(0.8 + 0.075 + 0.125 + 0.1 + 0.13 + 0.02)  # 1.25


@pytest.mark.parametrize(("separation_m", "expected_mps"),
                         [(0.5, 1.6), (0.4999, 2.0), (3.0, 1.6), (0.0, 2.0), (-0.1, 2.0), (math.nan, 2.0),
                          (math.inf, 1.6)])
def test_human_speed_switch_at_half_metre(separation_m, expected_mps):
    assert human_speed_mps(separation_m, PARAMS) == expected_mps


def test_stopping_table_extrapolates_as_constant_deceleration():
    # Above the last row (1.0 m/s: 0.4 s, 0.2 m), at 1.5 m/s: T_s = 0.4 * 1.5 = 0.6 s, S_s = 0.2 * 1.5^2 = 0.45 m.
    t_s, s_s = TABLE.at(1.5)
    assert t_s == pytest.approx(0.6)
    assert s_s == pytest.approx(0.45)


def test_allowed_speed_closed_form_worked_examples():
    # Row 0.5..1.0: a = (0.4-0.2)/0.5 = 0.4, b = (0.2-0.05)/0.5 = 0.3; fixed = C + k*sigma + v_h*t + Z_r
    # = 0.1 + 0.03 + 0.08 + 0.02 = 0.23. A = 1.6 (0.1 + 0.2 - 0.4*0.5) + 0.05 - 0.3*0.5 + 0.23 = 0.29,
    # B = 1.6*0.4 + 0.1 + 0.3 = 1.04 -> v = (1.07 - 0.29) / 1.04 = 0.75.
    v = allowed_robot_speed_mps(separation_m=1.07, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                params=PARAMS)
    assert v == pytest.approx(0.75)
    # Row 0..0.5: a = 0.4, b = 0.1; A = 1.6 * 0.1 + 0.23 = 0.39; B = 1.6*0.4 + 0.1 + 0.1 = 0.84
    # -> v = (0.6 - 0.39) / 0.84 = 0.25.
    v = allowed_robot_speed_mps(separation_m=0.6, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                params=PARAMS)
    assert v == pytest.approx(0.25)
    # 0.4 m: v_h = 2.0 -> S_p(0) = 2.0*0.1 + 0.1 + 0.03 + 2.0*0.05 + 0.02 = 0.45 > 0.4 -> must stop.
    assert allowed_robot_speed_mps(separation_m=0.4, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                   params=PARAMS) == 0.0
    # Far away: capped at the table's top speed, or at a lower robot maximum.
    assert allowed_robot_speed_mps(separation_m=9.0, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                   params=PARAMS) == 1.0
    assert allowed_robot_speed_mps(separation_m=9.0, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                   params=PARAMS, max_speed_mps=0.8) == 0.8
    assert allowed_robot_speed_mps(separation_m=math.nan, position_uncertainty_m=0.01, perception_latency_s=0.0,
                                   params=PARAMS) == 0.0


def test_allowed_speed_over_a_flat_row_allows_the_whole_row():
    # Prepare: T_r = 0 and a table flat up to 0.5 m/s (0.1 s, 0.05 m), so S_p does not grow on that row;
    # the close speed only below 0.3 m, so v_h = 1.6 in every case here:
    # fixed = C + k*sigma + v_h*t + Z_r = 0.1 + 0.03 + 0.08 + 0.02 = 0.23,
    # S_p(v <= 0.5) = 1.6*0.1 + 0.05 + 0.23 = 0.44. On 0.5..1.0: a = b = 0.4, S_p(v) = 0.44 + 1.04 (v - 0.5).
    params = SeparationParameters(reaction_time_s=0.0, stopping=StoppingTable((0.0, 0.5, 1.0), (0.1, 0.1, 0.3),
                                                                                (0.05, 0.05, 0.25)),
                                  intrusion_distance_m=0.1, robot_position_uncertainty_m=0.02,
                                  position_uncertainty_k=3.0, close_separation_m=0.3)

    def allowed(d: float) -> float:
        return allowed_robot_speed_mps(separation_m=d, position_uncertainty_m=0.01, perception_latency_s=0.05,
                                       params=params)

    # Execute / Assert: the flat row whole once S_p(0) fits, then the next row's closed form
    assert allowed(0.44 + 1e-12) == pytest.approx(0.5)
    assert allowed(0.6) == pytest.approx(0.5 + 0.16 / 1.04)
    assert allowed(0.43) == 0.0


@pytest.mark.parametrize("kwargs", [
    dict(speeds_mps=(0.1, 0.5), stopping_times_s=(0.0, 0.1), stopping_distances_m=(0.0, 0.1)),  # no 0 row
    dict(speeds_mps=(0.0, 0.5), stopping_times_s=(0.2, 0.1), stopping_distances_m=(0.0, 0.1)),  # decreasing
    dict(speeds_mps=(0.0, 0.5), stopping_times_s=(0.0, math.nan), stopping_distances_m=(0.0, 0.1)),
    dict(speeds_mps=(0.0,), stopping_times_s=(0.0,), stopping_distances_m=(0.0,)),
])
def test_bad_stopping_table_rejected(kwargs):
    with pytest.raises(ValueError):
        StoppingTable(**kwargs)


def test_invalid_perception_inputs_raise():
    for sigma, latency in ((math.nan, 0.0), (0.01, -0.1), (0.01, math.inf)):
        with pytest.raises(ValueError):
            protective_separation_distance(separation_m=1.0, robot_speed_mps=0.5, position_uncertainty_m=sigma,
                                           perception_latency_s=latency, params=PARAMS)


finite = st.floats(0.0, 5.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(d=finite, closer_by=st.floats(0.0, 2.0), sigma=st.floats(0.0, 0.2), latency=st.floats(0.0, 0.5))
def test_moving_closer_never_allows_a_faster_robot(d, closer_by, sigma, latency):
    far = allowed_robot_speed_mps(separation_m=d, position_uncertainty_m=sigma, perception_latency_s=latency,
                                  params=PARAMS)
    near = allowed_robot_speed_mps(separation_m=d - closer_by, position_uncertainty_m=sigma,
                                   perception_latency_s=latency, params=PARAMS)
    assert near <= far


@settings(max_examples=300, deadline=None)
@given(d=finite, sigma=st.floats(0.0, 0.2), latency=st.floats(0.0, 0.5))
def test_allowed_speed_satisfies_the_separation_rule(d, sigma, latency):
    v = allowed_robot_speed_mps(separation_m=d, position_uncertainty_m=sigma, perception_latency_s=latency,
                                params=PARAMS)
    if v > 0.0:
        sp = protective_separation_distance(separation_m=d, robot_speed_mps=v, position_uncertainty_m=sigma,
                                            perception_latency_s=latency, params=PARAMS).protective_separation_m
        assert sp <= d + 1e-9
