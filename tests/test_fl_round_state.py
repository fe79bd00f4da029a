"""The aggregator's round state machine, event by event, without FedML or gRPC (milliseconds per test)."""

from __future__ import annotations

import numpy as np
import pytest

from hrc_fl.federated.core.fl_config import RoundPlan
from hrc_fl.federated.core.round_state import (
    DEADLINE,
    START_WAIT,
    ArmTimer,
    AskStatus,
    CloseRound,
    RoundState,
    SendFinish,
    SendSync,
    Status,
)
from hrc_fl.federated.core.update import ClientUpdate

NAMES = {1: "ws1", 2: "ws2", 3: "ws3"}


def _state(num_rounds: int = 2, quorum: int = 2) -> RoundState:
    clock = iter(np.arange(0.0, 1000.0, 0.5))
    return RoundState(RoundPlan(num_rounds, quorum, deadline_s=120.0, start_wait_s=30.0), NAMES,
                      clock=lambda: float(next(clock)))


def _update(rank: int, round_index: int) -> ClientUpdate:
    return ClientUpdate(NAMES[rank], round_index, 10, {"w": np.full(2, float(rank), np.float32)})


def _all_online(state: RoundState) -> list:
    state.on_ready()
    actions = []
    for rank in NAMES:
        actions += state.on_client_online(rank, f"session{rank}")
    return actions


def _of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def test_first_round_opens_when_all_clients_are_online_with_a_deadline():
    state = _state()
    assert _of(state.on_ready(), AskStatus) == [AskStatus(1), AskStatus(2), AskStatus(3)]
    assert not _of(state.on_client_online(1, "a"), SendSync)
    actions = state.on_client_online(2, "b")  # quorum online: wait for the rest
    assert actions == [Status("waiting"), ArmTimer(30.0, START_WAIT)]
    actions = state.on_client_online(3, "c")
    assert _of(actions, SendSync) == [SendSync(1, 1), SendSync(2, 1), SendSync(3, 1)]
    assert ArmTimer(120.0, DEADLINE, 1) in actions


def test_start_wait_opens_with_the_quorum_that_is_online():
    state = _state()
    state.on_ready()
    state.on_client_online(1, "a")
    state.on_client_online(2, "b")
    assert _of(state.on_start_wait(), SendSync) == [SendSync(1, 1), SendSync(2, 1)]


def test_round_closes_as_soon_as_every_selected_client_answered():
    state = _state()
    _all_online(state)
    assert not _of(state.on_update(1, 1, _update(1, 1)), CloseRound)
    assert not _of(state.on_update(2, 1, _update(2, 1)), CloseRound)
    closed = _of(state.on_update(3, 1, _update(3, 1)), CloseRound)
    assert len(closed) == 1 and [u.client_id for u in closed[0].updates] == ["ws1", "ws2", "ws3"]
    actions = state.on_committed("v00001", {"num_accepted": 3.0})
    # the status is about the round that closed, although the state moved on to the next one
    done = _of(actions, Status)[0]
    assert (done.state, done.round, done.metrics["num_accepted"]) == ("done", 1, 3.0) and state.round_index == 2
    assert _of(actions, SendSync) == [SendSync(1, 2), SendSync(2, 2), SendSync(3, 2)]


def test_done_reports_the_round_time_from_open_to_committed_aggregation_included():
    now = [10.0]
    state = RoundState(RoundPlan(2, 2, deadline_s=120.0, start_wait_s=30.0), NAMES, clock=lambda: now[0])
    _all_online(state)  # round 1 opens at 10 s
    now[0] = 12.0
    state.on_update(1, 1, _update(1, 1))
    state.on_update(2, 1, _update(2, 1))
    now[0] = 15.0
    closed = _of(state.on_update(3, 1, _update(3, 1)), CloseRound)[0]
    assert closed.open_s == 5.0
    now[0] = 18.0  # the transport took 3 s to aggregate and commit
    done = _of(state.on_committed("v00001", {"aggregate_s": 2.5}), Status)[0]
    assert done == Status("done", {"aggregate_s": 2.5, "round_s": 8.0}, round=1)


def test_a_refused_update_counts_as_answered_and_the_round_closes_without_its_deadline():
    state = _state()
    _all_online(state)
    state.on_update(1, 1, _update(1, 1))
    assert not _of(state.on_refused(2, 1, "wrong shape for w: (1,) != (2,)"), CloseRound)
    closed = _of(state.on_update(3, 1, _update(3, 1)), CloseRound)[0]
    assert [u.client_id for u in closed.updates] == ["ws1", "ws3"]
    assert closed.refused == {"ws2": "malformed update: wrong shape for w: (1,) != (2,)"}
    assert closed.missed == ()
    # a second answer from the refused client in the same round is ignored
    assert state.on_update(2, 1, _update(2, 1)) == []


def test_deadline_closes_with_a_quorum_and_waits_again_without_one():
    state = _state()
    _all_online(state)
    state.on_update(1, 1, _update(1, 1))
    actions = state.on_deadline(1)  # 1 < quorum 2: wait another deadline
    assert actions == [ArmTimer(120.0, DEADLINE, 1)]
    state.on_update(2, 1, _update(2, 1))
    closed = _of(state.on_deadline(1), CloseRound)[0]
    assert closed.missed == ("ws3",) and closed.why.startswith("deadline")
    assert state.on_deadline(1) == []  # a late timer of a closed round does nothing


def test_next_round_does_not_wait_for_the_client_that_missed_the_last_one():
    state = _state(num_rounds=3)
    _all_online(state)
    state.on_update(1, 1, _update(1, 1))
    state.on_update(2, 1, _update(2, 1))
    state.on_deadline(1)
    state.on_committed("v00001", {})
    state.on_update(1, 2, _update(1, 2))
    closed = _of(state.on_update(2, 2, _update(2, 2)), CloseRound)
    assert closed and closed[0].why == "all responsive clients answered"


def test_skipped_client_does_not_hold_the_round_and_is_asked_again_without_quorum():
    state = _state()
    _all_online(state)
    state.on_update(1, 1, _update(1, 1))
    state.on_skip(2, 1, "3 labelled samples < min_samples 8")
    assert not _of(state.on_skip(3, 1, "too few"), CloseRound)  # 1 valid < quorum: not closed
    actions = state.on_deadline(1)
    assert _of(actions, SendSync) == [SendSync(2, 1), SendSync(3, 1)]
    assert not _of(state.on_update(2, 1, _update(2, 1)), CloseRound)  # ws3 was asked again: wait for it
    closed = _of(state.on_skip(3, 1, "still too few"), CloseRound)
    assert closed and [u.client_id for u in closed[0].updates] == ["ws1", "ws2"]


def test_stale_duplicate_and_unknown_updates_are_ignored():
    state = _state()
    _all_online(state)
    assert state.expecting(1, 1) is state.open_round  # the transport asks before it decodes
    assert state.expecting(1, 7) is None and state.expecting(1, "1") is None  # another round / not an int
    assert state.on_update(1, 7, _update(1, 7)) == []  # another round
    state.on_update(1, 1, _update(1, 1))
    assert state.expecting(1, 1) is None  # answered already
    assert state.on_update(1, 1, _update(1, 1)) == []  # duplicate
    assert state.on_client_online(9, "x") == []  # not a configured client


def test_a_restarted_client_gets_the_open_round_again():
    state = _state()
    _all_online(state)
    assert state.on_client_online(2, "session2") == []  # a repeated hello
    assert state.on_client_online(2, "new-session") == [SendSync(2, 1)]  # a new process


def test_last_round_sends_finish_and_late_clients_get_the_final_model():
    state = _state(num_rounds=1)
    _all_online(state)
    for rank in NAMES:
        state.on_update(rank, 1, _update(rank, 1))
    actions = state.on_committed("v00001", {})
    assert _of(actions, SendFinish) == [SendFinish(1, 1), SendFinish(2, 1), SendFinish(3, 1)]
    assert [(a.state, a.round) for a in _of(actions, Status)] == [("done", 1), ("finished", 1)]
    assert actions[-1] == Status("finished", round=1) and state.finished
    assert state.on_client_online(3, "restarted") == [SendFinish(3, 1)]


def test_resumed_federation_starts_at_its_first_round_and_abort_drops_the_open_round():
    state = RoundState(RoundPlan(5, 2, 120.0, 30.0), NAMES, first_round=4, version="v00003")
    actions = _all_online(state)
    assert _of(actions, SendSync)[0] == SendSync(1, 4)
    assert state.on_abort("operator stop") == [Status("aborted")]
    assert state.open_round is None and state.on_update(1, 4, _update(1, 4)) == []


def test_round_state_refuses_an_impossible_quorum():
    with pytest.raises(ValueError, match="quorum"):
        RoundState(RoundPlan(1, 4, 1.0, 0.0), NAMES)


def _secure_state(pki, names: dict[int, str], max_dropouts: int, vector: int):
    from hrc_fl.federated.core.round_state import SecureSetup
    from hrc_fl.federated.core.secagg import SecAggConfig

    setup = SecureSetup(SecAggConfig(enabled=True, max_dropouts=max_dropouts, phase_timeout_s=5.0), 1.0, pki[0], vector)
    return RoundState(RoundPlan(2, 2, deadline_s=120.0, start_wait_s=30.0), names, secure=setup)


@pytest.fixture(scope="module")
def pki():
    from cryptography.hazmat.primitives import serialization

    from hrc_fl.federated.transport import certs

    ca_key, ca_cert = certs.make_ca("test CA", 1)
    nodes = {}
    for i in range(1, 5):
        key, cert = certs.make_node_certificate(f"ws{i}", ca_key, ca_cert, 1)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        nodes[f"ws{i}"] = (key_pem, cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert.public_bytes(serialization.Encoding.PEM), nodes


def test_secure_round_phases_are_events_and_a_phase_timeout_drops_the_silent_client(pki):
    from hrc_fl.federated.core import secagg
    from hrc_fl.federated.core.round_state import PHASE, CloseSecure, SendSecAgg

    # Prepare: 4 workstations (3 neighbours, 2 shares unmask), one dropout allowed
    names = {r: f"ws{r}" for r in range(1, 5)}
    state = _secure_state(pki, names, max_dropouts=1, vector=16)
    state.on_ready()
    actions = [a for r in names for a in state.on_client_online(r, f"s{r}")]
    syncs = _of(actions, SendSync)
    params = secagg.decode_params(syncs[0].secagg)
    assert [s.rank for s in syncs] == [1, 2, 3, 4] and len({s.secagg for s in syncs}) == 1
    clients = {r: secagg.SecAggClient(params, n, signing_key_pem=pki[1][n][0], certificate_pem=pki[1][n][1],
                                      ca_certificate_pem=pki[0]) for r, n in names.items()}
    updates = {r: np.full(16, 0.01 * r) for r in names}
    # Execute: the phases, each answer an event; a message of another phase is ignored, not counted
    assert state.on_secagg(1, 1, "masked", b"x") == []
    for r, c in clients.items():
        actions = state.on_secagg(r, 1, "advert", secagg.encode_message(c.advertise()))
    assert [a.phase for a in _of(actions, SendSecAgg)] == ["share"] * 4
    assert ArmTimer(5.0, PHASE, 1, "shares") in actions
    requests = {a.rank: a for a in _of(actions, SendSecAgg)}
    for r, c in clients.items():
        actions = state.on_secagg(r, 1, "shares", secagg.encode_messages(
            c.share_keys(secagg.decode_messages(requests[r].payload, params))))
    requests = {a.rank: a for a in _of(actions, SendSecAgg)}
    for r, c in clients.items():
        refused = c.receive_shares(secagg.decode_messages(requests[r].payload, params))
        actions = state.on_secagg(r, 1, "checked", b"", refused)
    requests = {a.rank: a for a in _of(actions, SendSecAgg)}
    assert {a.phase for a in requests.values()} == {"mask"} and requests[1].names == params.clients
    for r in (1, 2, 3):  # ws4 drops here
        masked = clients[r].masked_input(updates[r], list(requests[r].names))
        actions = state.on_secagg(r, 1, "masked", secagg.encode_message(masked))
    assert actions == []  # still waiting for ws4
    assert state.on_phase_deadline(1, "shares") == []  # an earlier phase's timer does nothing
    actions = state.on_phase_deadline(1, "masked")
    requests = {a.rank: a for a in _of(actions, SendSecAgg)}
    assert sorted(requests) == [1, 2, 3] and {a.phase for a in requests.values()} == {"unmask"}
    for r in (1, 2, 3):
        request = secagg.decode_message(requests[r].payload, params)
        actions = state.on_secagg(r, 1, "unmasked", secagg.encode_message(clients[r].unmask(request)))
    # Assert: the sum of the three survivors, ws4 dropped; the next round has a new round id
    closed = _of(actions, CloseSecure)[0]
    assert closed.result.survivors == ("ws1", "ws2", "ws3") and closed.result.dropped == ("ws4",)
    np.testing.assert_allclose(closed.result.total, np.full(16, 0.06), atol=1e-6)
    nxt = _of(state.on_committed("v00001", {}), SendSync)
    assert nxt and secagg.decode_params(nxt[0].secagg).round_id.startswith("2-")
    assert secagg.decode_params(nxt[0].secagg).round_id != params.round_id


def test_a_secure_round_asks_a_skipped_client_again_with_the_same_announcement(pki):
    from hrc_fl.federated.core import secagg

    # Prepare: 3 workstations, quorum 2; ws1 skips and only ws2 advertises before the deadline
    names = {r: f"ws{r}" for r in range(1, 4)}
    state = _secure_state(pki, names, max_dropouts=0, vector=4)
    state.on_ready()
    first = _of([a for r in names for a in state.on_client_online(r, f"s{r}")], SendSync)[0]
    params = secagg.decode_params(first.secagg)
    state.on_skip(1, 1, "too few samples")
    ws2 = secagg.SecAggClient(params, "ws2", signing_key_pem=pki[1]["ws2"][0], certificate_pem=pki[1]["ws2"][1],
                              ca_certificate_pem=pki[0])
    state.on_secagg(2, 1, "advert", secagg.encode_message(ws2.advertise()))
    # Execute
    actions = state.on_deadline(1)
    # Assert: no quorum; ws1 gets the round again, announced as before (same round id), a new deadline
    assert _of(actions, SendSync) == [SendSync(1, 1, first.secagg)]
    assert ArmTimer(120.0, DEADLINE, 1) in actions
