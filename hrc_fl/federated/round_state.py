"""The aggregator's round as data: a pure state machine driven by events, with no FedML or gRPC import.

Events (methods named ``on_*``): the server is up, a client announced itself (with its session id, so a
restarted client is told from a repeated hello), an update / a skip / a refused (malformed) update
arrived, a round's deadline or the start wait elapsed, the transport layer committed a closed round, the
operator aborted. Each event returns the :class:`Action` s the transport must carry out, in order: send a
round's model to a client, ask a client for its status, send the final model, arm a timer, close a round
(aggregate what it holds and commit it), report a status, write an audit line.

Rules (docs/federated_fedml.md): the first round opens when every client is online, or ``start_wait_s``
after a quorum of them is. A round closes as soon as every selected client answered (an update, a skip,
or a refused update all count as answers), or as soon as every client that answered last time did and a
quorum of valid updates arrived; at its deadline it closes with a quorum of valid updates, else the
clients that skipped are asked again and another deadline is armed. Late, stale-round, unexpected and
duplicate updates are ignored. A client that misses a round is still sent every round, but the next
round does not wait for it before closing early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hrc_fl.federated.fl_config import RoundPlan
from hrc_fl.federated.update import ClientUpdate

LOG = logging.getLogger("hrc_fl.federated.rounds")

DEADLINE = "deadline"
START_WAIT = "start_wait"


@dataclass(frozen=True)
class SendSync:
    """Send round ``round``'s global model (and the strategy's client config) to ``rank``."""

    rank: int
    round: int


@dataclass(frozen=True)
class AskStatus:
    """Ask ``rank`` to announce itself."""

    rank: int


@dataclass(frozen=True)
class SendFinish:
    """Send the final global model to ``rank`` and tell it the federation is over."""

    rank: int
    round: int


@dataclass(frozen=True)
class ArmTimer:
    """Deliver ``on_deadline(round)`` (kind ``deadline``) or ``on_start_wait()`` after ``delay_s``."""

    delay_s: float
    kind: str
    round: int = 0


@dataclass(frozen=True)
class CloseRound:
    """Aggregate ``updates`` (valid ones only) of round ``round``, commit the result, then call
    :meth:`RoundState.on_committed`. ``refused``: client name -> why its update was malformed; ``open_s``:
    seconds from the round's opening to this close (aggregation not included)."""

    round: int
    updates: tuple[ClientUpdate, ...]
    refused: dict[str, str]
    missed: tuple[str, ...]
    why: str
    open_s: float


@dataclass(frozen=True)
class Status:
    """Report the aggregator's state (``waiting``, ``training``, ``aggregating``, ``done``, ``finished``,
    ``aborted``) with ``metrics``; ``round`` is the round it is about (None: the current round)."""

    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    round: int | None = None


@dataclass(frozen=True)
class Audit:
    """One line of the aggregator's audit log: what a client sent in a round (no values)."""

    round: int
    client: str
    tensors: tuple[str, ...]
    scheme: str
    delta_norm: float | None = None


Action = SendSync | AskStatus | SendFinish | ArmTimer | CloseRound | Status | Audit


@dataclass
class OpenRound:
    """A round in progress: who was asked, who answered with what."""

    index: int
    opened_s: float
    selected: set[int]
    updates: dict[int, ClientUpdate] = field(default_factory=dict)  # valid updates
    refused: dict[int, str] = field(default_factory=dict)  # malformed updates, with the reason
    skipped: dict[int, str] = field(default_factory=dict)  # rank -> why it sent no update

    @property
    def answered(self) -> set[int]:
        return set(self.updates) | set(self.refused) | set(self.skipped)


class RoundState:
    """Quorum, deadline, skip, restart and abort of the aggregator's rounds (see the module docstring).

    ``names``: rank -> node name for every client; ``first_round``/``version``: where a (resumed) federation
    continues; ``clock``: monotonic seconds (injectable for tests).
    """

    def __init__(self, plan: RoundPlan, names: Mapping[int, str], *, first_round: int = 1, version: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not names:
            raise ValueError("a federation needs at least one client")
        if plan.quorum > len(names):
            raise ValueError(f"quorum {plan.quorum} exceeds the {len(names)} clients")
        self.plan = plan
        self.names = dict(names)
        self.round_index = int(first_round)
        self.version = version
        self.clock = clock
        self.online: set[int] = set()
        self.sessions: dict[int, str] = {}
        self.open_round: OpenRound | None = None
        self.missed: set[int] = set()
        self.finished = False
        self.closing = False  # a CloseRound was emitted and not committed yet: no round is open
        self._closing_opened_s = 0.0  # when the round being closed opened (clock seconds)
        self._start_armed = False

    # ------------------------------------------------------------------ events
    def on_ready(self) -> list[Action]:
        """The server's transport is up: ask every client (those started earlier answer now)."""
        LOG.info("aggregator up: round %d next, %d clients configured", self.round_index, len(self.names))
        return [Status("waiting"), *(AskStatus(rank) for rank in sorted(self.names))]

    def on_client_online(self, rank: int, session: str) -> list[Action]:
        """``rank`` announced itself with ``session`` (a new id = the client process restarted)."""
        if rank not in self.names:
            LOG.warning("ignored an announcement from unknown rank %s", rank)
            return []
        new = rank not in self.online
        restarted = not new and self.sessions.get(rank) != session
        self.sessions[rank] = session
        self.online.add(rank)
        actions: list[Action] = []
        if new:
            LOG.info("client %s online (%d/%d)", self.names[rank], len(self.online), len(self.names))
            if self.open_round is None and not self.finished:
                actions.append(Status("waiting"))
        if self.finished:
            return [*actions, SendFinish(rank, self.round_index - 1)]
        current = self.open_round
        if current is not None:
            if restarted:
                self.missed.discard(rank)
            if rank not in current.answered and (rank not in current.selected or restarted):
                # a client joining or restarting mid-round gets the current round's model
                current.selected.add(rank)
                actions.append(SendSync(rank, current.index))
            return actions
        return actions + self._maybe_start()

    def on_start_wait(self) -> list[Action]:
        if self.open_round is None and not self.finished and not self.closing and len(self.online) >= self.plan.quorum:
            LOG.info("start wait over with %d/%d clients online", len(self.online), len(self.names))
            return self._open()
        return []

    def on_update(self, rank: int, round_index: object, update: ClientUpdate, *, scheme: str = "",
                  delta_norm: float | None = None) -> list[Action]:
        """A valid update (already decoded against the round's global model) from ``rank``."""
        current = self.expecting(rank, round_index)
        if current is None:
            return []
        current.updates[rank] = update
        self.missed.discard(rank)
        return [Audit(current.index, self.names[rank], tuple(sorted(update.tensors)), scheme, delta_norm),
                *self._maybe_close(current)]

    def on_skip(self, rank: int, round_index: object, reason: str) -> list[Action]:
        """``rank`` answered without an update (e.g. too few labelled samples): the round need not wait for
        it; at a deadline without quorum it is asked again."""
        current = self.expecting(rank, round_index)
        if current is None:
            return []
        LOG.info("%s skips round %d: %s", self.names[rank], current.index, reason)
        current.skipped[rank] = reason
        return [Audit(current.index, self.names[rank], (), "skipped"), *self._maybe_close(current)]

    def on_refused(self, rank: int, round_index: object, reason: str) -> list[Action]:
        """``rank``'s update for this round was malformed: it counts as answered and rejected, and the round
        closes as soon as the rest answered (no deadline wait). One log line says why."""
        current = self.expecting(rank, round_index)
        if current is None:
            return []
        LOG.warning("round %d rejected update from %s: %s", current.index, self.names[rank], reason)
        current.refused[rank] = reason
        return [Audit(current.index, self.names[rank], (), "malformed"), *self._maybe_close(current)]

    def on_deadline(self, round_index: int) -> list[Action]:
        current = self.open_round
        if current is None or round_index != current.index:
            return []
        if len(current.updates) >= self.plan.quorum:
            return self._close(current, f"deadline with {len(current.updates)}/{len(current.selected)} updates")
        LOG.warning("round %d deadline: %d updates < quorum %d; waiting another %.1f s", current.index,
                    len(current.updates), self.plan.quorum, self.plan.deadline_s)
        actions: list[Action] = []
        for rank in sorted(current.skipped):  # they may have enough samples by now: ask again
            current.skipped.pop(rank)
            actions.append(SendSync(rank, current.index))
        return [*actions, ArmTimer(self.plan.deadline_s, DEADLINE, current.index)]

    def on_committed(self, version: str, metrics: Mapping[str, float]) -> list[Action]:
        """The transport aggregated and stored the round of the last :class:`CloseRound`. The ``done``
        status carries ``metrics`` plus ``round_s``: the round's full time, open to committed (the
        aggregation and the commit included)."""
        self.version = version
        self.open_round = None
        self.closing = False
        closed = self.round_index
        metrics = {**metrics, "round_s": self.clock() - self._closing_opened_s}
        actions: list[Action] = [Status("done", metrics, round=closed)]
        self.round_index += 1
        if self.round_index > self.plan.num_rounds:
            self.finished = True
            return [*actions, *(SendFinish(rank, closed) for rank in sorted(self.online)),
                    Status("finished", round=closed)]
        return actions + self._open()

    def on_abort(self, reason: str) -> list[Action]:
        """Stop the federation now (operator or shutdown); an open round is dropped, not aggregated."""
        if self.finished:
            return []
        LOG.warning("federation aborted in round %d: %s", self.round_index, reason)
        self.finished = True
        self.open_round = None
        return [Status("aborted")]

    # ------------------------------------------------------------------ queries
    def expecting(self, rank: int, round_index: object) -> OpenRound | None:
        """The open round when ``rank`` may answer round ``round_index`` now, else None (logged: stale,
        late, unexpected or duplicate). The transport asks this before it decodes an update."""
        name = self.names.get(rank, f"rank {rank}")
        current = self.open_round
        if current is None or round_index != current.index:
            LOG.warning("ignored stale/late update from %s for round %r (open round: %s)", name, round_index,
                        None if current is None else current.index)
            return None
        if rank not in current.selected or rank in current.answered:
            LOG.warning("ignored unexpected or duplicate update from %s in round %d", name, current.index)
            return None
        return current

    # ------------------------------------------------------------------ internals
    def _maybe_start(self) -> list[Action]:
        if self.open_round is not None or self.finished or self.closing:
            return []
        if len(self.online) == len(self.names):
            return self._open()
        if len(self.online) >= self.plan.quorum and not self._start_armed:
            self._start_armed = True
            return [ArmTimer(self.plan.start_wait_s, START_WAIT)]
        return []

    def _open(self) -> list[Action]:
        self.open_round = OpenRound(self.round_index, self.clock(), set(self.online))
        LOG.info("round %d opened for %s", self.round_index, sorted(self.names[r] for r in self.online))
        return [*(SendSync(rank, self.round_index) for rank in sorted(self.online)),
                ArmTimer(self.plan.deadline_s, DEADLINE, self.round_index), Status("training")]

    def _maybe_close(self, current: OpenRound) -> list[Action]:
        answered, valid = current.answered, len(current.updates)
        if answered >= current.selected and (valid >= self.plan.quorum or not current.skipped):
            return self._close(current, "all selected clients answered")
        if answered >= current.selected - self.missed and valid >= self.plan.quorum:
            return self._close(current, "all responsive clients answered")
        return []

    def _close(self, current: OpenRound, why: str) -> list[Action]:
        self.missed = current.selected - current.answered
        missed = tuple(sorted(self.names[r] for r in self.missed))
        if missed:
            LOG.warning("round %d: no update from %s", current.index, list(missed))
        updates = tuple(current.updates[r] for r in sorted(current.updates))
        refused = {self.names[r]: f"malformed update: {reason}" for r, reason in current.refused.items()}
        self.open_round = None
        self.closing = True
        self._closing_opened_s = current.opened_s
        return [Status("aggregating"),
                CloseRound(current.index, updates, refused, missed, why, self.clock() - current.opened_s)]

