"""Secure aggregation between real processes: five client processes and the aggregator (this process)
exchange only wire-format bytes over pipes; one client is killed after sharing its keys."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from hrc_fl.federated.core import secagg
from hrc_fl.federated.transport import certs

VECTOR = 4096
CLIP = 1.0
TIMEOUT_S = 60.0


def client_process(conn, name: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes, update: np.ndarray) -> None:
    """A workstation's side: every message in and out is wire bytes."""
    params = secagg.decode_params(conn.recv_bytes())
    client = secagg.SecAggClient(params, name, signing_key_pem=key_pem, certificate_pem=cert_pem,
                                 ca_certificate_pem=ca_pem)
    conn.send_bytes(secagg.encode_message(client.advertise()))
    adverts = secagg.decode_messages(conn.recv_bytes(), params)
    conn.send_bytes(secagg.encode_messages(client.share_keys(adverts)))
    conn.send(client.receive_shares(secagg.decode_messages(conn.recv_bytes(), params)))
    participants = conn.recv()
    conn.send_bytes(secagg.encode_message(client.masked_input(update, participants)))
    request = secagg.decode_message(conn.recv_bytes(), params)
    conn.send_bytes(secagg.encode_message(client.unmask(request)))


def _recv(conn, *, as_bytes: bool = False):
    assert conn.poll(TIMEOUT_S), "client process did not answer"
    return conn.recv_bytes() if as_bytes else conn.recv()


@pytest.fixture()
def federation():
    ca_key, ca_cert = certs.make_ca("test CA", 1)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    names = [f"ws{i}" for i in range(5)]
    rng = np.random.default_rng(7)
    updates = {n: rng.normal(0, 0.05, VECTOR) for n in names}
    context = multiprocessing.get_context("spawn")
    procs, conns = {}, {}
    for name in names:
        key, cert = certs.make_node_certificate(name, ca_key, ca_cert, 1)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        mine, theirs = context.Pipe()
        proc = context.Process(target=client_process, args=(theirs, name, key_pem,
                                                            cert.public_bytes(serialization.Encoding.PEM),
                                                            ca_pem, updates[name]), daemon=True)
        proc.start()
        procs[name], conns[name] = proc, mine
    yield names, ca_pem, updates, procs, conns
    for proc in procs.values():
        proc.kill()
        proc.join(10)


def test_round_between_processes_with_a_client_killed_after_sharing(federation):
    names, ca_pem, updates, procs, conns = federation
    params = secagg.RoundParams.announce(3, names, secagg.SecAggConfig(enabled=True, max_dropouts=1), CLIP)
    server = secagg.SecAggServer(params, ca_certificate_pem=ca_pem, vector_size=VECTOR)
    wire_seen: list[bytes] = []

    def receive(name: str) -> bytes:
        payload = _recv(conns[name], as_bytes=True)
        wire_seen.append(payload)
        return payload

    for name in names:
        conns[name].send_bytes(secagg.encode_params(params))
    for name in names:
        server.receive_advert(secagg.decode_message(receive(name), params))
    for name in names:
        conns[name].send_bytes(secagg.encode_messages(server.adverts_for(name)))
    for name in names:
        server.receive_shares(name, secagg.decode_messages(receive(name), params))
    for name in names:
        conns[name].send_bytes(secagg.encode_messages(server.shares_for(name)))
    for name in names:
        assert _recv(conns[name]) == {}
    killed = names[3]
    procs[killed].kill()  # drops after sharing, before its masked input
    procs[killed].join(10)
    participants = server.participants()
    alive = [n for n in names if n != killed]
    for name in alive:
        conns[name].send(list(participants))
    for name in alive:
        server.receive_masked(secagg.decode_message(receive(name), params))
    request = server.unmask_request()
    assert request.dropped == (killed,)
    for name in alive:
        conns[name].send_bytes(secagg.encode_message(request))
    for name in alive:
        server.receive_unmask(secagg.decode_message(receive(name), params))
    result = server.finish()
    # the sum of the survivors' quantised updates, exactly
    config = params.config
    ring = sum(secagg.quantize(updates[n], config, CLIP) for n in alive) & np.uint64(0xFFFFFFFF)
    np.testing.assert_array_equal(result.total, secagg.dequantize_sum(ring, config))
    # no client's quantised update (or its float form) appears in anything that crossed the wire
    for name in names:
        for plain in (secagg.quantize(updates[name], config, CLIP).astype("<u4").tobytes(),
                      updates[name].astype("<f8").tobytes(), updates[name].astype("<f4").tobytes()):
            windows = [plain[i:i + 32] for i in range(0, 32 * 64, 32)]
            assert not any(w in payload for payload in wire_seen for w in windows)


def test_malformed_wire_messages_are_refused_and_the_round_goes_on(federation):
    names, ca_pem, _, _, conns = federation
    params = secagg.RoundParams.announce(4, names, secagg.SecAggConfig(enabled=True, max_dropouts=1), CLIP)
    server = secagg.SecAggServer(params, ca_certificate_pem=ca_pem, vector_size=VECTOR)
    for name in names:
        conns[name].send_bytes(secagg.encode_params(params))
    adverts = {name: _recv(conns[name], as_bytes=True) for name in names}
    with pytest.raises(secagg.SecAggError, match="malformed"):
        secagg.decode_message(adverts[names[0]][:-7], params)
    with pytest.raises(secagg.SecAggError, match="malformed"):
        secagg.decode_message(b"not a message", params)
    with pytest.raises(secagg.SecAggError, match="malformed"):
        secagg.decode_messages(adverts[names[0]], params)  # a single message where a batch belongs
    for payload in adverts.values():
        server.receive_advert(secagg.decode_message(payload, params))
    assert sorted(server.adverts) == names
