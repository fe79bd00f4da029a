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

Secure aggregation (``secure``: docs/federated_secagg.md): a round's clients are the ones online when it
opens, announced with the round's :class:`~hrc_fl.federated.core.secagg.RoundParams`; a client that trained
answers with its signed key advert instead of an update (a plain update is refused), and the rules above
decide when the advert phase ends. Then the phases ``shares``, ``checked`` (each client confirms or
refuses the shares it received), ``masked`` and ``unmasked`` each end when every asked client answered or
at ``phase_timeout_s``; the silent ones go on as dropped. The round's :class:`SecAggServer` holds the
adverts, shares in transit and the running masked sum only; nothing of it is ever checkpointed. A round
that cannot be unmasked fails: status ``failed`` with the reason, the model unchanged, the next round opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hrc_fl.federated.core import secagg
from hrc_fl.federated.core.fl_config import RoundPlan
from hrc_fl.federated.core.secagg import RoundFailed, RoundParams, SecAggConfig, SecAggError, SecAggServer, SecureSum
from hrc_fl.federated.core.update import ClientUpdate

LOG = logging.getLogger("hrc_fl.federated.rounds")

DEADLINE = "deadline"
START_WAIT = "start_wait"
PHASE = "phase"  # a secure round's phase timeout

# what a secure round collects, in order (client -> aggregator), and what the aggregator asks for each
# phase after the adverts (aggregator -> client): share (with the neighbours' adverts), check (with the
# shares for the client), mask (with the participants), unmask (with the unmask request)
ADVERT, SHARES, CHECKED, MASKED, UNMASKED = "advert", "shares", "checked", "masked", "unmasked"
SECURE_PHASES = (ADVERT, SHARES, CHECKED, MASKED, UNMASKED)
_REQUEST = {SHARES: "share", CHECKED: "check", MASKED: "mask", UNMASKED: "unmask"}


@dataclass(frozen=True)
class SendSync:
    """Send round ``round``'s global model (and the strategy's client config) to ``rank``; ``secagg``: the
    secure round's announcement (:func:`hrc_fl.federated.core.secagg.encode_params`), empty without it."""

    rank: int
    round: int
    secagg: bytes = b""


@dataclass(frozen=True)
class SendSecAgg:
    """Send ``rank`` the secure round's request ``phase`` (share | check | mask | unmask): ``payload`` wire
    bytes from :mod:`hrc_fl.federated.core.secagg` (adverts, shares, unmask request), ``names`` the participants."""

    rank: int
    round: int
    phase: str
    payload: bytes = b""
    names: tuple[str, ...] = ()


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
    """Deliver ``on_deadline(round)`` (kind ``deadline``), ``on_start_wait()`` or ``on_phase_deadline(round,
    phase)`` (kind ``phase``) after ``delay_s``."""

    delay_s: float
    kind: str
    round: int = 0
    phase: str = ""


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
    ``aborted``, ``failed``) with ``metrics``; ``round`` is the round it is about (None: the current round);
    ``reason``: why (a failed secure round)."""

    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    round: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class CloseSecure:
    """Apply the unmasked ``result`` (the sum of the survivors' clipped deltas) of secure round ``round``,
    commit it, then call :meth:`RoundState.on_committed`. ``refused``: client name -> why it is not in the
    sum (a refused advert or message, excluded before masking)."""

    round: int
    result: SecureSum
    missed: tuple[str, ...]
    why: str
    open_s: float
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Audit:
    """One line of the aggregator's audit log: what a client sent in a round (no values)."""

    round: int
    client: str
    tensors: tuple[str, ...]
    scheme: str
    delta_norm: float | None = None


Action = SendSync | SendSecAgg | AskStatus | SendFinish | ArmTimer | CloseRound | CloseSecure | Status | Audit


@dataclass(frozen=True)
class SecureSetup:
    """What the aggregator needs for secure rounds: the ``secure_aggregation`` section, the clients' L2
    ``clip_norm``, the plant CA (PEM) that signs every node certificate, and the length of the flat
    shared-layer vector (:func:`hrc_fl.federated.core.secagg.flatten` of the global model)."""

    config: SecAggConfig
    clip_norm: float
    ca_certificate_pem: bytes
    vector_size: int


@dataclass
class SecureRound:
    """A secure round's protocol state: the announcement, the aggregator's :class:`SecAggServer`, the phase
    it collects, who was asked in it and who answered (advertisers are kept for the advert phase)."""

    params: RoundParams
    server: SecAggServer
    announcement: bytes
    phase: str = ADVERT
    asked: set[int] = field(default_factory=set)
    answered: set[int] = field(default_factory=set)
    advertised: set[int] = field(default_factory=set)


@dataclass
class OpenRound:
    """A round in progress: who was asked, who answered with what."""

    index: int
    opened_s: float
    selected: set[int]
    updates: dict[int, ClientUpdate] = field(default_factory=dict)  # valid updates
    refused: dict[int, str] = field(default_factory=dict)  # malformed updates, with the reason
    skipped: dict[int, str] = field(default_factory=dict)  # rank -> why it sent no update
    secure: SecureRound | None = None

    @property
    def answered(self) -> set[int]:
        advertised = self.secure.advertised if self.secure is not None else set()
        return set(self.updates) | set(self.refused) | set(self.skipped) | advertised

    @property
    def valid(self) -> int:
        """Valid answers towards the quorum: updates, or in a secure round verified key adverts."""
        return len(self.secure.advertised) if self.secure is not None else len(self.updates)


class RoundState:
    """Quorum, deadline, skip, restart and abort of the aggregator's rounds (see the module docstring).

    ``names``: rank -> node name for every client; ``first_round``/``version``: where a (resumed) federation
    continues; ``clock``: monotonic seconds (injectable for tests); ``secure``: run every round as a
    secure-aggregation round (None: plain updates).
    """

    def __init__(self, plan: RoundPlan, names: Mapping[int, str], *, first_round: int = 1, version: str = "",
                 clock: Callable[[], float] = time.monotonic, secure: SecureSetup | None = None) -> None:
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
        self.secure = secure

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
            if current.secure is not None:
                # a secure round's clients are fixed when it opens; one that restarted before its advert
                # gets the announcement again (new keys), later it counts as dropped
                if restarted and rank in current.selected and rank not in current.answered \
                        and current.secure.phase == ADVERT:
                    actions.append(SendSync(rank, current.index, current.secure.announcement))
                return actions
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
        if current.secure is not None and current.secure.phase != ADVERT:
            return []  # the secure phases after the adverts have their own timeouts
        if current.valid >= self.plan.quorum:
            return self._close(current, f"deadline with {current.valid}/{len(current.selected)} updates")
        LOG.warning("round %d deadline: %d updates < quorum %d; waiting another %.1f s", current.index,
                    current.valid, self.plan.quorum, self.plan.deadline_s)
        actions: list[Action] = []
        announcement = current.secure.announcement if current.secure is not None else b""
        for rank in sorted(current.skipped):  # they may have enough samples by now: ask again
            current.skipped.pop(rank)
            actions.append(SendSync(rank, current.index, announcement))
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
        return self._next_round([Status("done", metrics, round=closed)], closed)

    def _next_round(self, actions: list[Action], closed: int) -> list[Action]:
        self.round_index += 1
        if self.round_index > self.plan.num_rounds:
            self.finished = True
            return [*actions, *(SendFinish(rank, closed) for rank in sorted(self.online)),
                    Status("finished", round=closed)]
        return actions + self._open()

    # ------------------------------------------------------------------ secure-aggregation events
    def on_secagg(self, rank: int, round_index: object, phase: str, payload: bytes,
                  refused: Mapping[str, str] | None = None) -> list[Action]:
        """A secure-aggregation answer of ``phase`` (advert | shares | checked | masked | unmasked) from
        ``rank``: ``payload`` its wire bytes, ``refused`` (checked) sender -> why it refused that share. A
        malformed, forged or out-of-protocol message is refused with ONE warning line and the round goes on
        (its sender is out of the round); a replayed one (another round id) is refused and the sender's own
        answer may still come."""
        current = self.open_round
        name = self.names.get(rank, f"rank {rank}")
        if current is None or current.secure is None or round_index != current.index:
            LOG.warning("ignored secure-aggregation %s from %s for round %r (open round: %s)", phase, name,
                        round_index, None if current is None else current.index)
            return []
        sec = current.secure
        if phase != sec.phase or (phase == ADVERT and (rank not in current.selected or rank in current.answered)) \
                or (phase != ADVERT and (rank not in sec.asked or rank in sec.answered)):
            LOG.warning("ignored unexpected secure-aggregation %s from %s in round %d (collecting %s)", phase, name,
                        current.index, sec.phase)
            return []
        try:
            self._secure_receive(sec, name, phase, payload, dict(refused or {}))
        except (ValueError, TypeError) as exc:  # SecAggError and anything a crafted payload could still raise
            LOG.warning("round %d refused %s from %s: %s", current.index, phase, name, exc)
            if isinstance(exc, secagg.ReplayError):
                return []
            if phase == ADVERT:
                current.refused[rank] = str(exc)
                return [Audit(current.index, name, (), "refused"), *self._maybe_close(current)]
            sec.answered.add(rank)
            return self._phase_done(current)
        if phase == ADVERT:
            sec.advertised.add(rank)
            self.missed.discard(rank)
            LOG.info("round %d: key advert from %s (%d/%d)", current.index, name, len(sec.advertised),
                     len(current.selected))
            return [Audit(current.index, name, (), "secagg"), *self._maybe_close(current)]
        sec.answered.add(rank)
        return self._phase_done(current)

    def on_phase_deadline(self, round_index: int, phase: str) -> list[Action]:
        """The timeout of secure phase ``phase`` of round ``round_index``: go on without the silent clients."""
        current = self.open_round
        if current is None or current.secure is None or round_index != current.index or current.secure.phase != phase:
            return []
        silent = sorted(self.names[r] for r in current.secure.asked - current.secure.answered)
        LOG.warning("round %d: no %s from %s within %.1f s: going on without them", current.index, phase, silent,
                    current.secure.params.config.phase_timeout_s)
        return self._secure_advance(current)

    def _secure_receive(self, sec: SecureRound, name: str, phase: str, payload: bytes,
                        refused: dict[str, str]) -> None:
        params, server = sec.params, sec.server
        if phase == CHECKED:
            for sender, reason in sorted(refused.items()):
                LOG.warning("round %s: %s excluded before masking: %s refused its share (%s)", params.round_id,
                            sender, name, str(reason)[:200])
                server.exclude(str(sender), f"{name} refused its share: {reason}")
            return
        if phase == SHARES:
            shares = secagg.decode_messages(payload, params)
            if not all(isinstance(s, secagg.EncryptedShare) for s in shares):
                raise SecAggError(f"malformed shares from {name}: not encrypted shares")
            server.receive_shares(name, shares)  # type: ignore[arg-type]
            return
        message = secagg.decode_message(payload, params)
        expected = {ADVERT: secagg.KeyAdvert, MASKED: secagg.MaskedInput, UNMASKED: secagg.UnmaskResponse}[phase]
        if not isinstance(message, expected):
            raise SecAggError(f"malformed {phase} from {name}: a {type(message).__name__}")
        if getattr(message, "sender", name) != name:
            raise SecAggError(f"{phase} from {name} names sender {message.sender!r}")
        if phase == ADVERT:
            server.receive_advert(message)  # type: ignore[arg-type]
        elif phase == MASKED:
            server.receive_masked(message)  # type: ignore[arg-type]
        else:
            server.receive_unmask(message)  # type: ignore[arg-type]

    def _phase_done(self, current: OpenRound) -> list[Action]:
        sec = current.secure
        assert sec is not None
        return self._secure_advance(current) if sec.answered >= sec.asked else []

    def _secure_advance(self, current: OpenRound) -> list[Action]:
        """End the phase being collected and ask for the next one (or release the sum / fail the round)."""
        sec = current.secure
        assert sec is not None
        server, rank_of = sec.server, {n: r for r, n in self.names.items()}
        try:
            if sec.phase == UNMASKED:
                result = server.finish()
                self.open_round = None
                self.closing = True
                self._closing_opened_s = current.opened_s
                missed = tuple(sorted(self.names[r] for r in current.selected
                                      if self.names[r] not in result.survivors))
                refused = {**{self.names[r]: why for r, why in current.refused.items()}, **server.excluded}
                return [Status("aggregating"), CloseSecure(current.index, result, missed,
                                                           f"unmasked the sum of {len(result.survivors)} clients",
                                                           self.clock() - current.opened_s, refused)]
            if sec.phase == ADVERT:
                nxt, ranks = SHARES, sorted(sec.advertised)
                requests = [SendSecAgg(r, current.index, _REQUEST[nxt],
                                       secagg.encode_messages(server.adverts_for(self.names[r]))) for r in ranks]
            elif sec.phase == SHARES:
                nxt, ranks = CHECKED, sorted(r for r in sec.asked if self.names[r] in server.shared)
                requests = [SendSecAgg(r, current.index, _REQUEST[nxt],
                                       secagg.encode_messages(server.shares_for(self.names[r]))) for r in ranks]
            elif sec.phase == CHECKED:
                for r in sorted(sec.asked - sec.answered):  # unconfirmed shares: it must not mask
                    server.exclude(self.names[r], "did not confirm the shares it received")
                participants = server.participants()
                if len(participants) < max(2, self.plan.quorum):
                    raise RoundFailed(f"{len(participants)} clients left to mask ({list(participants)}), "
                                      f"quorum {self.plan.quorum}: no sum released")
                nxt, ranks = MASKED, sorted(rank_of[n] for n in participants)
                requests = [SendSecAgg(r, current.index, _REQUEST[nxt], names=participants) for r in ranks]
            else:  # MASKED
                request = server.unmask_request()
                nxt, ranks = UNMASKED, sorted(rank_of[n] for n in request.survivors)
                requests = [SendSecAgg(r, current.index, _REQUEST[nxt], secagg.encode_message(request))
                            for r in ranks]
        except (RoundFailed, ValueError) as exc:  # ValueError: e.g. a recovered key that is no key
            return self._fail(current, str(exc))
        sec.phase, sec.asked, sec.answered = nxt, set(ranks), set()
        return [*requests, ArmTimer(sec.params.config.phase_timeout_s, PHASE, current.index, nxt)]

    def _fail(self, current: OpenRound, why: str) -> list[Action]:
        """A secure round that cannot release its sum: the model stays, the status says why, the next round
        opens (the round's protocol state, the masked sum included, is dropped with it)."""
        LOG.warning("round %d failed: %s; model %s unchanged, the next round runs", current.index, why,
                    self.version or "?")
        self.open_round = None
        return self._next_round([Status("failed", {"secure_failed": 1.0}, round=current.index, reason=why)],
                                current.index)

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
        ranks = sorted(self.online)
        secure = None
        if self.secure is not None:
            try:
                params = RoundParams.announce(self.round_index, [self.names[r] for r in ranks], self.secure.config,
                                              self.secure.clip_norm)
            except ValueError as exc:  # e.g. too few clients online for the threshold and max_dropouts
                LOG.warning("round %d cannot run securely with %s: %s; waiting", self.round_index,
                            [self.names[r] for r in ranks], exc)
                return [Status("waiting", reason=str(exc)), ArmTimer(self.plan.deadline_s, START_WAIT)]
            secure = SecureRound(params, SecAggServer(params, ca_certificate_pem=self.secure.ca_certificate_pem,
                                                      vector_size=self.secure.vector_size),
                                 secagg.encode_params(params))
        self.open_round = OpenRound(self.round_index, self.clock(), set(ranks), secure=secure)
        LOG.info("round %d opened for %s%s", self.round_index, sorted(self.names[r] for r in ranks),
                 " (secure aggregation)" if secure else "")
        announcement = secure.announcement if secure else b""
        return [*(SendSync(rank, self.round_index, announcement) for rank in ranks),
                ArmTimer(self.plan.deadline_s, DEADLINE, self.round_index), Status("training")]

    def _maybe_close(self, current: OpenRound) -> list[Action]:
        if current.secure is not None and current.secure.phase != ADVERT:
            return []
        answered, valid = current.answered, current.valid
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
        if current.secure is not None:
            LOG.info("round %d: %d key adverts (%s): secure aggregation begins", current.index,
                     len(current.secure.advertised), why)
            return [Status("aggregating"), *self._secure_advance(current)]
        updates = tuple(current.updates[r] for r in sorted(current.updates))
        refused = {self.names[r]: f"malformed update: {reason}" for r, reason in current.refused.items()}
        self.open_round = None
        self.closing = True
        self._closing_opened_s = current.opened_s
        return [Status("aggregating"),
                CloseRound(current.index, updates, refused, missed, why, self.clock() - current.opened_s)]

