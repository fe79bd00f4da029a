"""Protective separation distance of ISO/TS 15066 speed and separation monitoring (SSM).

    S_p = S_h + S_r + S_s + C + Z_d + Z_r

with (all distances in metres, speeds in m/s, times in s):

- S_h = v_h * (T_r + T_s)        human travel while the robot reacts and stops
- S_r = v_r * T_r                robot travel during its reaction time
- S_s = S_s(v_r)                 robot stopping distance (table over robot speed)
- C                              intrusion distance (body parts reaching past the detection)
- Z_d = k * sigma + v_h * t_lat  perception position uncertainty (k-sigma of the pose node's 1-sigma
                                 ``position_uncertainty_m``) plus what a human at v_h covers during the
                                 measured perception latency t_lat = now - image stamp
- Z_r                            robot position uncertainty

Human speed (ISO 13855): v_h = 2.0 m/s while the measured minimum separation is below 0.5 m, else
1.6 m/s. Applied on the *measured* separation (not on the computed S_p as in ISO 13855's iteration), and
2.0 m/s when the separation is unknown: the closer (or less known) the human, the faster they are assumed.
This keeps S_p non-increasing in the separation, so moving closer never allows a faster robot.

Stopping time and distance come from a table over robot speed (ISO 10218-1 Annex B style data),
interpolated linearly between rows and, above the last row, extrapolated as for constant deceleration
(T_s proportional to v, S_s proportional to v^2). The reaction time T_r is one number.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

from hrc_fl.safety.records import frozen_record

#: ISO 13855 walking speed (m/s) and the approach speed of hands/arms close to the hazard.
HUMAN_SPEED_MPS = 1.6
HUMAN_SPEED_CLOSE_MPS = 2.0
CLOSE_SEPARATION_M = 0.5
#: Coverage factor on the pose node's 1-sigma position uncertainty (Z_d = k * sigma + ...).
POSITION_UNCERTAINTY_K = 3.0


@dataclass(frozen=True)
class StoppingTable:
    """Robot stopping time and distance over robot speed; rows sorted by speed, first row at 0 m/s.

    Both columns must be non-decreasing in speed (a faster robot never stops sooner), which the closed
    form for the allowed speed relies on.
    """

    speeds_mps: tuple[float, ...]
    stopping_times_s: tuple[float, ...]
    stopping_distances_m: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.speeds_mps)
        if n < 2 or len(self.stopping_times_s) != n or len(self.stopping_distances_m) != n:
            raise ValueError("stopping table needs >= 2 rows and equal-length speed/time/distance columns")
        for name, col in (("speeds_mps", self.speeds_mps), ("stopping_times_s", self.stopping_times_s),
                          ("stopping_distances_m", self.stopping_distances_m)):
            if not all(math.isfinite(x) and x >= 0.0 for x in col):
                raise ValueError(f"stopping table {name} must be finite and >= 0: {col}")
        if self.speeds_mps[0] != 0.0:
            raise ValueError("stopping table must start at speed 0 m/s")
        if any(b <= a for a, b in pairwise(self.speeds_mps)):
            raise ValueError(f"stopping table speeds must strictly increase: {self.speeds_mps}")
        for name, col in (("stopping_times_s", self.stopping_times_s),
                          ("stopping_distances_m", self.stopping_distances_m)):
            if any(b < a for a, b in pairwise(col)):
                raise ValueError(f"stopping table {name} must not decrease with speed: {col}")

    @property
    def max_speed_mps(self) -> float:
        return self.speeds_mps[-1]

    def at(self, speed_mps: float) -> tuple[float, float]:
        """(stopping time s, stopping distance m) at ``speed_mps`` (interpolated / extrapolated)."""
        if not math.isfinite(speed_mps) or speed_mps < 0.0:
            raise ValueError(f"robot speed must be finite and >= 0, got {speed_mps!r}")
        v_top = self.speeds_mps[-1]
        if speed_mps > v_top:
            ratio = speed_mps / v_top
            return self.stopping_times_s[-1] * ratio, self.stopping_distances_m[-1] * ratio * ratio
        # Plain Python (tables have a handful of rows; np.interp on tuples costs more than the search).
        i = min(bisect_right(self.speeds_mps, speed_mps), len(self.speeds_mps) - 1)
        v0, v1 = self.speeds_mps[i - 1], self.speeds_mps[i]
        f = (speed_mps - v0) / (v1 - v0)
        t0, t1 = self.stopping_times_s[i - 1], self.stopping_times_s[i]
        s0, s1 = self.stopping_distances_m[i - 1], self.stopping_distances_m[i]
        return t0 + f * (t1 - t0), s0 + f * (s1 - s0)


@dataclass(frozen=True)
class SeparationParameters:
    """Plant-tuned constants of S_p. Units in the names."""

    reaction_time_s: float                 # T_r: robot (controller + safety function) reaction time
    stopping: StoppingTable                # T_s, S_s over robot speed
    intrusion_distance_m: float            # C
    robot_position_uncertainty_m: float    # Z_r
    position_uncertainty_k: float = POSITION_UNCERTAINTY_K  # coverage factor applied to the pose node's 1-sigma
    human_speed_mps: float = HUMAN_SPEED_MPS
    human_speed_close_mps: float = HUMAN_SPEED_CLOSE_MPS
    close_separation_m: float = CLOSE_SEPARATION_M

    def __post_init__(self) -> None:
        for name in ("reaction_time_s", "intrusion_distance_m", "robot_position_uncertainty_m",
                     "position_uncertainty_k", "human_speed_mps", "human_speed_close_mps",
                     "close_separation_m"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.human_speed_close_mps < self.human_speed_mps:
            raise ValueError("human_speed_close_mps must be >= human_speed_mps (closer is never slower)")
        if self.human_speed_mps <= 0.0:
            raise ValueError("human_speed_mps must be > 0")

    @cached_property
    def allowed_speed_rows(self) -> dict[float, tuple[float, tuple[tuple[float, float, float], ...]]]:
        """Per human speed v_h, the parts of :func:`allowed_robot_speed_mps`'s closed form that do not
        depend on the perception: S_p(0) less C + Z_d + Z_r, and per table row interval with B_i > 0
        (v_{i+1}, A_i less C + Z_d + Z_r, B_i), each summed in the closed form's order, so the result is
        the same to the last bit. A row with B_i <= 0 has a flat S_p (T_r = 0 and a flat table): the
        whole row is allowed, so it is left out. Computed once (the same every cycle)."""
        table, t_r = self.stopping, self.reaction_time_s
        speeds, times, dists = table.speeds_mps, table.stopping_times_s, table.stopping_distances_m
        out = {}
        for v_h in (self.human_speed_mps, self.human_speed_close_mps):
            rows = []
            for i in range(len(speeds) - 1):
                v0, v1 = speeds[i], speeds[i + 1]
                a = (times[i + 1] - times[i]) / (v1 - v0)
                b = (dists[i + 1] - dists[i]) / (v1 - v0)
                big_b = v_h * a + t_r + b
                if big_b > 0.0:
                    rows.append((v1, v_h * (t_r + times[i] - a * v0) + dists[i] - b * v0, big_b))
            out[v_h] = (v_h * (t_r + times[0]) + dists[0], tuple(rows))
        return out


@dataclass(frozen=True)
class SeparationTerms:
    """Every term of S_p (m) and the inputs they were computed from."""

    s_h_m: float
    s_r_m: float
    s_s_m: float
    c_m: float
    z_d_m: float
    z_r_m: float
    human_speed_mps: float
    robot_speed_mps: float
    reaction_time_s: float
    stopping_time_s: float
    perception_latency_s: float

    @property
    def protective_separation_m(self) -> float:
        """S_p = S_h + S_r + S_s + C + Z_d + Z_r."""
        return self.s_h_m + self.s_r_m + self.s_s_m + self.c_m + self.z_d_m + self.z_r_m


def human_speed_mps(separation_m: float, params: SeparationParameters) -> float:
    """ISO 13855 approach speed for the measured separation (NaN/unknown -> the close speed)."""
    if not separation_m >= params.close_separation_m:  # also True for NaN
        return params.human_speed_close_mps
    return params.human_speed_mps


def _check_perception(position_uncertainty_m: float, perception_latency_s: float) -> None:
    if not math.isfinite(position_uncertainty_m) or position_uncertainty_m < 0.0:
        raise ValueError(f"position uncertainty must be finite and >= 0, got {position_uncertainty_m!r}")
    if not math.isfinite(perception_latency_s) or perception_latency_s < 0.0:
        raise ValueError(f"perception latency must be finite and >= 0, got {perception_latency_s!r}")


def protective_separation_distance(
    *, separation_m: float, robot_speed_mps: float, position_uncertainty_m: float,
    perception_latency_s: float, params: SeparationParameters,
) -> SeparationTerms:
    """All terms of S_p for the current situation.

    ``separation_m``: measured minimum human-robot surface distance (selects v_h; NaN = unknown).
    ``robot_speed_mps``: robot speed towards the human (the full speed magnitude is used: conservative).
    ``position_uncertainty_m``: 1-sigma human position uncertainty from perception.
    ``perception_latency_s``: age of the human observation (now - image stamp).
    Raises ValueError for non-finite or negative speed, uncertainty or latency.
    """
    _check_perception(position_uncertainty_m, perception_latency_s)
    v_h = human_speed_mps(separation_m, params)
    t_r = params.reaction_time_s
    t_s, s_s = params.stopping.at(robot_speed_mps)
    return frozen_record(
        SeparationTerms,
        s_h_m=v_h * (t_r + t_s),
        s_r_m=robot_speed_mps * t_r,
        s_s_m=s_s,
        c_m=params.intrusion_distance_m,
        z_d_m=params.position_uncertainty_k * position_uncertainty_m + v_h * perception_latency_s,
        z_r_m=params.robot_position_uncertainty_m,
        human_speed_mps=v_h,
        robot_speed_mps=robot_speed_mps,
        reaction_time_s=t_r,
        stopping_time_s=t_s,
        perception_latency_s=perception_latency_s,
    )


def protective_separation_m(*, separation_m: float, robot_speed_mps: float, position_uncertainty_m: float,
                            perception_latency_s: float, params: SeparationParameters) -> float:
    """S_p only (m), same formula and inputs as :func:`protective_separation_distance` without building the
    terms (hot path: zone thresholds are evaluated several times per cycle). Inputs must be valid."""
    t_s, s_s = params.stopping.at(robot_speed_mps)
    return protective_separation_with_stopping_m(
        separation_m=separation_m, robot_speed_mps=robot_speed_mps, stopping_time_s=t_s, stopping_distance_m=s_s,
        position_uncertainty_m=position_uncertainty_m, perception_latency_s=perception_latency_s, params=params)


def protective_separation_with_stopping_m(
    *, separation_m: float, robot_speed_mps: float, stopping_time_s: float, stopping_distance_m: float,
    position_uncertainty_m: float, perception_latency_s: float, params: SeparationParameters,
) -> float:
    """S_p (m) as :func:`protective_separation_m` with the stopping time/distance at ``robot_speed_mps``
    given (``params.stopping.at(robot_speed_mps)``): the zone thresholds use fixed speeds, so the monitor
    looks them up once instead of every cycle."""
    v_h = human_speed_mps(separation_m, params)
    t_r = params.reaction_time_s
    return (v_h * (t_r + stopping_time_s) + robot_speed_mps * t_r + stopping_distance_m
            + params.intrusion_distance_m + params.position_uncertainty_k * position_uncertainty_m
            + v_h * perception_latency_s + params.robot_position_uncertainty_m)


def allowed_robot_speed_mps(
    *, separation_m: float, position_uncertainty_m: float, perception_latency_s: float,
    params: SeparationParameters, max_speed_mps: float | None = None,
) -> float:
    """Largest robot speed v (m/s) with S_p(v) <= separation_m, in closed form; 0 if none.

    On table row interval i (speeds v_i..v_{i+1}) stopping time and distance are linear,
    T_s(v) = T_i + a_i (v - v_i), S_s(v) = S_i + b_i (v - v_i) with a_i, b_i the row slopes, so S_p is
    linear in v there:

        S_p(v) = A_i + B_i v,
        A_i = v_h (T_r + T_i - a_i v_i) + S_i - b_i v_i + C + Z_d + Z_r,
        B_i = v_h a_i + T_r + b_i,

    and the allowed speed is v = (d - A_i) / B_i on the interval where S_p(v_i) <= d <= S_p(v_{i+1})
    (d = ``separation_m``). S_p is non-decreasing in v, so that interval is unique. The result is capped at
    ``max_speed_mps`` (default: the table's last speed; the robot is never allowed beyond its table).
    NaN or negative separation -> 0. The parts of A_i and B_i that do not depend on the perception are
    computed once per parameter set (:attr:`SeparationParameters.allowed_speed_rows`).
    """
    _check_perception(position_uncertainty_m, perception_latency_s)
    table = params.stopping
    cap = table.max_speed_mps if max_speed_mps is None else min(max_speed_mps, table.max_speed_mps)
    if not separation_m >= 0.0:  # NaN (unknown) or inside the robot: no motion allowed
        return 0.0
    d = separation_m
    v_h = human_speed_mps(d, params)
    fixed = (params.intrusion_distance_m + params.position_uncertainty_k * position_uncertainty_m
             + v_h * perception_latency_s + params.robot_position_uncertainty_m)
    at_zero, rows = params.allowed_speed_rows[v_h]
    if d < at_zero + fixed:  # S_p(0) > d
        return 0.0
    for v1, a_part, big_b in rows:
        v = (d - (a_part + fixed)) / big_b
        if v < v1:
            return max(0.0, min(v, cap))
    return cap


def stopping_table_from_rows(speeds_mps: Sequence[float], stopping_times_s: Sequence[float],
                             stopping_distances_m: Sequence[float]) -> StoppingTable:
    """Build a validated :class:`StoppingTable` from config lists."""
    return StoppingTable(tuple(float(v) for v in speeds_mps), tuple(float(t) for t in stopping_times_s),
                         tuple(float(s) for s in stopping_distances_m))
