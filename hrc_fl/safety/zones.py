"""Zone state machine with safety-laser-scanner semantics.

Zones, least to most restrictive: CLEAR, WARNING (warns only, full speed), REDUCED_SPEED (speed scaled by
the separation rule), PROTECTIVE_STOP (speed 0). Rules:

- Entering a more restrictive zone is immediate. Relaxing needs the zone computed at
  ``separation - hysteresis_m`` to be less restrictive, without a break for at least ``min_dwell_s``
  (every update that still demands the current zone starts that time again).
- PROTECTIVE_STOP is forced by: the distance rule, a stop command (STOP gesture / ALL_STOP arm signal),
  or any input fault. Leaving it needs "ready" (no fault, no stop command asserted, the hysteresis
  distance zone is not PROTECTIVE_STOP, ``min_dwell_s`` in the stop) AND the restart interlock:
  ``manual``: a reset request while ready; ``auto``: ready, and the stop's cause ended (no fault, no
  command, not inside the stop distance) without interruption for ``auto_reset_clear_s`` (that time runs
  concurrently with the dwell).
  A stop caused by a command needs a manual reset even in ``auto`` mode when
  ``command_stop_requires_manual_reset`` is set. A reset request that arrives while not ready is refused
  and forgotten (it never arms a later restart).
- Speed scale: drops at once to the target; rises at most ``ramp_up_per_s`` (scale units per second).
- The machine starts in PROTECTIVE_STOP (nothing is known at start-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from hrc_fl.safety.settings import setting


class Zone(IntEnum):
    """Values equal the SafetyZoneState constants; larger is more restrictive."""

    CLEAR = 0
    WARNING = 1
    REDUCED_SPEED = 2
    PROTECTIVE_STOP = 3


#: The members under module names, for the per-cycle comparisons: a member looked up on its enum class
#: costs about 70 ns (the enum type's attribute access), a module global about 7 ns.
CLEAR, WARNING, REDUCED_SPEED, PROTECTIVE_STOP = Zone.CLEAR, Zone.WARNING, Zone.REDUCED_SPEED, Zone.PROTECTIVE_STOP

INTERLOCK_MODES = ("manual", "auto")


@dataclass(frozen=True)
class ZoneConfig:
    """Zone state machine settings (node parameters of the same names, hrc_fl.safety.settings)."""

    min_dwell_s: float = setting(0.2, "s", "Minimum time in a zone before relaxing it.")
    restart_interlock: str = setting("manual", "-", "Leaving PROTECTIVE_STOP: 'manual' (safety/reset or "
                                     "THUMB_UP) or 'auto' (area clear for auto_reset_clear_s).")
    auto_reset_clear_s: float = setting(2.0, "s", "Auto restart: time the area must stay clear.")
    command_stop_requires_manual_reset: bool = setting(True, "-", "A STOP gesture / ALL_STOP stop always "
                                                       "needs a reset.")
    ramp_up_per_s: float = setting(0.5, "1/s", "Speed scale rise rate (decrease is immediate).")

    def __post_init__(self) -> None:
        if self.restart_interlock not in INTERLOCK_MODES:
            raise ValueError(f"restart_interlock must be one of {INTERLOCK_MODES}, got {self.restart_interlock!r}")
        for name in ("min_dwell_s", "auto_reset_clear_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not (math.isfinite(self.ramp_up_per_s) and self.ramp_up_per_s > 0.0):
            raise ValueError(f"ramp_up_per_s must be > 0, got {self.ramp_up_per_s!r}")


class ZoneUpdate(NamedTuple):
    """Result of one update (a tuple: one is built per cycle)."""

    zone: Zone
    speed_scale: float
    reset_required: bool          # in PROTECTIVE_STOP and a manual reset is needed to leave
    ready_to_reset: bool          # the conditions for leaving the stop hold now
    not_ready_reason: str         # why not ready ("" when ready)
    reset_accepted: bool | None   # None: no reset requested this update
    reset_message: str


class ZoneMachine:
    """Holds the zone, its timers and the speed-scale ramp. Time is passed in (seconds)."""

    def __init__(self, config: ZoneConfig) -> None:
        self.config = config
        self.zone = PROTECTIVE_STOP
        self._since_s: float | None = None      # when the current zone was entered (None: at start)
        self._ready_since_s: float | None = None
        self._command_latched = False
        self._scale = 0.0
        self._last_s: float | None = None

    def _manual_needed(self) -> bool:
        return self.config.restart_interlock == "manual" or (
            self._command_latched and self.config.command_stop_requires_manual_reset)

    def _enter(self, zone: Zone, now_s: float) -> None:
        self.zone = zone
        self._since_s = now_s
        if zone == PROTECTIVE_STOP:
            self._ready_since_s = None

    def update(self, now_s: float, *, distance_zone: Zone, relaxed_zone: Zone, target_scale: float,
               stop_command: bool, fault: bool, reset_request: bool = False) -> ZoneUpdate:
        """Advance to ``now_s``.

        ``distance_zone``: zone of the current separation; ``relaxed_zone``: zone at separation minus the
        hysteresis (never less restrictive than ``distance_zone``); ``target_scale``: speed scale the
        separation rule allows (0..1); ``stop_command``: a stop command is asserted now; ``fault``: an
        input fault this cycle; ``reset_request``: a reset (service or resume gesture) arrived.
        """
        if not math.isfinite(now_s):
            raise ValueError(f"time must be finite, got {now_s!r}")
        if distance_zone > relaxed_zone:
            relaxed_zone = distance_zone
        if stop_command:
            self._command_latched = True
        must_stop = fault or stop_command or distance_zone == PROTECTIVE_STOP
        if must_stop and self.zone != PROTECTIVE_STOP:
            self._enter(PROTECTIVE_STOP, now_s)

        dwell_s = math.inf if self._since_s is None else now_s - self._since_s
        reset_accepted: bool | None = None
        reset_message = ""
        ready = False
        reason = ""
        if self.zone == PROTECTIVE_STOP:
            if fault:
                reason = "input fault"
            elif stop_command:
                reason = "stop command asserted"
            elif relaxed_zone == PROTECTIVE_STOP:
                reason = "human inside the stop distance (plus hysteresis)"
            # The area-clear time runs from the moment the stop's cause ended, concurrently with the
            # dwell: counting it only after the dwell made every one-cycle fault cost
            # min_dwell_s + auto_reset_clear_s of stop (docs/safety.md, "Why the restart waited").
            # Leaving still needs both: the stop lasted min_dwell_s AND the area stayed clear for
            # auto_reset_clear_s without a break.
            if reason:
                self._ready_since_s = None
            elif self._ready_since_s is None:
                self._ready_since_s = now_s
            if not reason and dwell_s < self.config.min_dwell_s:
                reason = f"minimum dwell {self.config.min_dwell_s:.2f} s not elapsed"
            ready = reason == ""
            leave = False
            if reset_request:
                reset_accepted = ready
                reset_message = "reset accepted" if ready else f"reset refused: {reason}"
                leave = ready
            elif ready and not self._manual_needed():
                leave = now_s - self._ready_since_s >= self.config.auto_reset_clear_s
            if leave:
                self._command_latched = False
                self._enter(relaxed_zone, now_s)
        else:
            if reset_request:
                reset_accepted, reset_message = True, "no protective stop active"
            if distance_zone > self.zone:
                self._enter(distance_zone, now_s)
            elif relaxed_zone >= self.zone:
                # still demanded: the release timer starts again, so relaxing needs the less restrictive
                # condition to hold without a break for min_dwell_s (no flicker at a zone border when the
                # separation or S_p jitters, e.g. S_p's latency term between camera frames)
                self._since_s = now_s
            elif dwell_s >= self.config.min_dwell_s:
                self._enter(relaxed_zone, now_s)

        zone = self.zone
        in_stop = zone == PROTECTIVE_STOP
        target = 0.0 if in_stop else min(1.0, max(0.0, target_scale))
        dt_s = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        self._scale = target if target <= self._scale else min(target, self._scale + self.config.ramp_up_per_s * dt_s)
        return ZoneUpdate(zone, self._scale, in_stop and self._manual_needed(), in_stop and ready,
                          reason if in_stop else "", reset_accepted, reset_message)
