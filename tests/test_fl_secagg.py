"""Secure aggregation core (hrc_fl.federated.core.secagg): the phases between real clients' and the aggregator's
state objects, with real certificates from the federation CA, real X25519/AES-GCM/ChaCha20 and Shamir."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from hrc_fl.federated.core import secagg
from hrc_fl.federated.core.secagg import RoundFailed, RoundParams, SecAggConfig, SecAggError
from hrc_fl.federated.transport import certs

VECTOR = 257
CLIP = 1.0


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    """A federation CA and 40 node certificates (as `hrc-fl fl-certs` makes them)."""
    ca_key, ca_cert = certs.make_ca("test CA", 1)
    nodes = {}
    for i in range(40):
        key, cert = certs.make_node_certificate(f"ws{i:02d}", ca_key, ca_cert, 1)
        nodes[f"ws{i:02d}"] = (_pem(key), cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert.public_bytes(serialization.Encoding.PEM), nodes, ca_key, ca_cert


def _setup(pki, n: int, config: SecAggConfig, round_index: int = 1):
    ca_pem, nodes, _, _ = pki
    names = sorted(nodes)[:n]
    params = RoundParams.announce(round_index, names, config, CLIP)
    clients = {name: secagg.SecAggClient(params, name, signing_key_pem=nodes[name][0],
                                         certificate_pem=nodes[name][1], ca_certificate_pem=ca_pem)
               for name in names}
    server = secagg.SecAggServer(params, ca_certificate_pem=ca_pem, vector_size=VECTOR)
    return params, clients, server


def _updates(names, seed=0):
    rng = np.random.default_rng(seed)
    return {name: np.clip(rng.normal(0, 0.05, VECTOR), -CLIP, CLIP) for name in names}


def _share_phase(clients, server):
    for client in clients.values():
        server.receive_advert(client.advertise())
    for name, client in clients.items():
        server.receive_shares(name, client.share_keys(server.adverts_for(name)))
    for name, client in clients.items():
        for sender, reason in client.receive_shares(server.shares_for(name)).items():
            server.exclude(sender, reason)


def _finish(clients, server, updates, drop=()):
    participants = server.participants()
    for name in participants:
        if name not in drop:
            server.receive_masked(clients[name].masked_input(updates[name], participants))
    request = server.unmask_request()
    for name in request.survivors:
        server.receive_unmask(clients[name].unmask(request))
    return server.finish()


def _plain_sum(config, updates, names):
    ring = sum(secagg.quantize(updates[n], config, CLIP) for n in names)
    return secagg.dequantize_sum(ring & np.uint64((1 << config.ring_bits) - 1), config)


@pytest.mark.parametrize("n, drops", [(2, 0), (3, 0), (5, 1), (12, 0), (12, 2), (30, 3)])
def test_unmasked_sum_equals_plain_quantised_sum(pki, n, drops):
    # Prepare: dense graph up to 9 clients, sparse (k = 2 ceil(log2 n)) above
    config = SecAggConfig(enabled=True, max_dropouts=max(drops, 0) if n > 2 else 0)
    params, clients, server = _setup(pki, n, config)
    updates = _updates(params.clients, seed=n)
    dropped = params.clients[1:1 + drops]
    # Execute
    _share_phase(clients, server)
    result = _finish(clients, server, updates, drop=dropped)
    # Assert: exactly the plain quantised sum of the survivors, bit for bit
    survivors = [c for c in params.clients if c not in dropped]
    assert result.survivors == tuple(survivors) and result.dropped == tuple(dropped)
    np.testing.assert_array_equal(result.total, _plain_sum(config, updates, survivors))
    assert np.max(np.abs(result.total - sum(updates[c] for c in survivors))) <= len(survivors) * 0.5 / config.scale


@pytest.mark.parametrize("bits", [8, 11, 16, 23, 32, 64])
def test_bit_packing_round_trips_and_is_the_little_endian_integers_at_whole_widths(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2 ** min(bits, 63), 1001, dtype=np.uint64)
    packed = secagg.pack_bits(values, bits)
    assert len(packed) == -(-1001 * bits // 8)  # ceil: bits per value, nothing more
    np.testing.assert_array_equal(secagg.unpack_bits(packed, bits).astype(np.uint64), values)
    if bits in (16, 32, 64):
        assert packed == values.astype(f"<u{bits // 8}").tobytes()


@pytest.mark.parametrize("n, drops", [(5, 1), (12, 2), (30, 0)])
def test_narrow_packed_ring_sums_exactly_what_the_value_bits_hold(pki, n, drops):
    # Prepare: 6-bit values clipped at +-0.02: the ring is 6 + ceil(log2 n) bits wide
    config = SecAggConfig(enabled=True, max_dropouts=drops, value_bits=6, value_clip=0.02)
    params, clients, server = _setup(pki, n, config)
    updates = _updates(params.clients, seed=n)
    dropped = params.clients[2:2 + drops]
    _share_phase(clients, server)
    masked = clients[params.clients[0]].masked_input(updates[params.clients[0]], server.participants())
    payload = secagg.encode_message(masked)
    # Execute
    server.receive_masked(secagg.decode_message(payload, params))
    rest = {name: client for name, client in clients.items() if name != params.clients[0]}
    participants = server.participants()
    for name in participants[1:]:
        if name not in dropped:
            server.receive_masked(secagg.decode_message(
                secagg.encode_message(rest[name].masked_input(updates[name], participants)), params))
    request = server.unmask_request()
    for name in request.survivors:
        server.receive_unmask(clients[name].unmask(request))
    result = server.finish()
    # Assert: the ring width, the packed size on the wire, and the exact sum of the 6-bit values, computed here
    width = 6 + int(np.ceil(np.log2(n)))
    assert params.ring.ring_bits == width and masked.bits == width
    assert len(payload) < VECTOR * width / 8 + 1024
    scale = 31 / 0.02
    survivors = [c for c in params.clients if c not in dropped]
    ints = sum(np.rint(np.clip(updates[c], -0.02, 0.02) * scale).astype(np.int64) for c in survivors)
    np.testing.assert_array_equal(result.total, ints / scale)


def test_a_masked_input_packed_at_another_width_is_refused(pki):
    config = SecAggConfig(enabled=True, value_bits=6, value_clip=0.02)
    params, clients, server = _setup(pki, 3, config)
    _share_phase(clients, server)
    name = params.clients[0]
    masked = clients[name].masked_input(_updates(params.clients)[name], server.participants())
    wrong = secagg.MaskedInput(masked.round_id, masked.sender, masked.masked, masked.bits + 1)
    with pytest.raises(SecAggError, match="packed at 9 bits, the round's ring is 8"):
        secagg.decode_message(secagg.encode_message(wrong), params)


def test_sparse_graph_is_regular_and_symmetric(pki):
    params, _, _ = _setup(pki, 40, SecAggConfig(enabled=True, max_dropouts=2))
    k = params.config.degree(40)
    assert k == 12  # 2 * ceil(log2 40)
    for name in params.clients:
        mates = params.neighbours(name)
        assert len(mates) == k and name not in mates
        assert all(name in params.neighbours(m) for m in mates)


def test_aggregator_holds_no_individual_update_and_no_key(pki):
    config = SecAggConfig(enabled=True)
    params, clients, server = _setup(pki, 5, config)
    updates = _updates(params.clients)
    _share_phase(clients, server)
    participants = server.participants()
    masked = {name: clients[name].masked_input(updates[name], participants) for name in participants}
    for message in masked.values():
        server.receive_masked(message)
    state = server.held_state()
    # what was on the wire: each masked vector is far from the quantised input and looks uniform on the ring
    for name, message in masked.items():
        plain = secagg.quantize(updates[name], config, CLIP).astype(np.uint32)
        assert np.mean(message.masked == plain) < 0.01
        assert 0.4 < np.mean(message.masked.astype(np.float64)) / 2.0 ** 32 < 0.6
    # what the aggregator holds: the masked sum only, never a vector equal to any input's quantisation
    held = state["sum"] & np.uint64(0xFFFFFFFF)
    for name in participants:
        assert np.mean(held == secagg.quantize(updates[name], config, CLIP)) < 0.01
    assert set(state) == {"adverts", "mailbox", "sum", "responses"}
    secret_bytes = set()
    for client in clients.values():
        secret_bytes.add(client._seed)
        secret_bytes.add(client._mask_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                        serialization.NoEncryption()))
    blob = repr(state).encode()
    for share_list in state["mailbox"].values():
        for share in share_list:
            blob += share.ciphertext
    assert not any(secret in blob for secret in secret_bytes)


def test_too_many_drops_fail_clearly_and_release_nothing(pki):
    config = SecAggConfig(enabled=True, max_dropouts=1)
    params, clients, server = _setup(pki, 6, config)
    updates = _updates(params.clients)
    _share_phase(clients, server)
    with pytest.raises(RoundFailed, match=r"2 clients dropped after masking.*at most 1"):
        _finish(clients, server, updates, drop=params.clients[:2])
    assert server.held_state()["sum"].size == 0
    with pytest.raises(RoundFailed):
        server.finish()


def test_too_few_unmask_answers_fail_without_a_sum(pki):
    config = SecAggConfig(enabled=True, max_dropouts=1)
    params, clients, server = _setup(pki, 5, config)
    updates = _updates(params.clients)
    _share_phase(clients, server)
    for name in server.participants():
        server.receive_masked(clients[name].masked_input(updates[name], server.participants()))
    request = server.unmask_request()
    for name in request.survivors[:params.threshold - 1]:  # the rest stop answering
        server.receive_unmask(clients[name].unmask(request))
    with pytest.raises(RoundFailed, match="needed: no sum released"):
        server.finish()


def test_corrupt_share_is_rejected_and_the_round_survives(pki):
    config = SecAggConfig(enabled=True, max_dropouts=1)
    params, clients, server = _setup(pki, 5, config)
    updates = _updates(params.clients)
    bad = params.clients[2]
    for client in clients.values():
        server.receive_advert(client.advertise())
    for name, client in clients.items():
        shares = client.share_keys(server.adverts_for(name))
        if name == bad:  # one flipped byte in one share
            first = shares[0]
            shares[0] = dataclasses.replace(first, ciphertext=bytes([first.ciphertext[0] ^ 1]) + first.ciphertext[1:])
        server.receive_shares(name, shares)
    refusals = {}
    for name, client in clients.items():
        for sender, reason in client.receive_shares(server.shares_for(name)).items():
            refusals[sender] = reason
            server.exclude(sender, reason)
    assert list(refusals) == [bad] and "authentication failed" in refusals[bad]
    result = _finish(clients, server, updates)
    others = [c for c in params.clients if c != bad]
    assert result.survivors == tuple(others)
    np.testing.assert_array_equal(result.total, _plain_sum(config, updates, others))


def test_wrongly_signed_or_swapped_key_is_rejected_and_the_round_survives(pki):
    ca_pem, nodes, _, _ = pki
    config = SecAggConfig(enabled=True)
    params, clients, server = _setup(pki, 4, config)
    updates = _updates(params.clients)
    adverts = {name: c.advertise() for name, c in clients.items()}
    a, b = params.clients[:2]
    # the aggregator (or anyone on the path) swaps a's mask key for one it holds
    swapped = dataclasses.replace(adverts[a], mask_public=adverts[b].mask_public)
    with pytest.raises(SecAggError, match=f"{a}: signature does not verify"):
        server.receive_advert(swapped)
    # b signs with its own key but claims to be a, carrying a's certificate
    forged = dataclasses.replace(adverts[b], sender=a, certificate_pem=nodes[a][1])
    with pytest.raises(SecAggError, match="signature does not verify"):
        server.receive_advert(forged)
    # a certificate from another CA
    other_key, other_ca = certs.make_ca("rogue", 1)
    key, cert = certs.make_node_certificate(a, other_key, other_ca, 1)
    rogue = secagg.SecAggClient(params, a, signing_key_pem=_pem(key),
                                certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
                                ca_certificate_pem=ca_pem).advertise()
    with pytest.raises(SecAggError, match="not issued by the federation CA"):
        server.receive_advert(rogue)
    # a peer refuses a tampered advert even when the aggregator forwards it
    with pytest.raises(SecAggError, match="signature does not verify"):
        clients[b].share_keys([swapped])
    # the round goes on with the genuine adverts (a's included)
    fresh_clients = {n: c for n, c in clients.items() if n != b}
    for name, advert in adverts.items():
        if name != b:
            server.receive_advert(advert)
    for name, client in fresh_clients.items():
        server.receive_shares(name, client.share_keys(server.adverts_for(name)))
    for name, client in fresh_clients.items():
        assert client.receive_shares(server.shares_for(name)) == {}
    result = _finish(fresh_clients, server, updates)
    np.testing.assert_array_equal(result.total, _plain_sum(config, updates, list(fresh_clients)))


def test_replayed_messages_from_an_earlier_round_are_rejected(pki):
    ca_pem, nodes, _, _ = pki
    config = SecAggConfig(enabled=True)
    params1, clients1, server1 = _setup(pki, 4, config, round_index=1)
    updates = _updates(params1.clients)
    old_adverts = {n: c.advertise() for n, c in clients1.items()}
    for advert in old_adverts.values():
        server1.receive_advert(advert)
    old_shares = {n: c.share_keys(server1.adverts_for(n)) for n, c in clients1.items()}
    # round 2 (same clients, fresh round id and keys)
    params2 = RoundParams(params1.round_id.replace("1-", "2-", 1), params1.clients, config, CLIP, params1.graph_seed)
    clients2 = {n: secagg.SecAggClient(params2, n, signing_key_pem=nodes[n][0], certificate_pem=nodes[n][1],
                                       ca_certificate_pem=ca_pem) for n in params2.clients}
    server2 = secagg.SecAggServer(params2, ca_certificate_pem=ca_pem, vector_size=VECTOR)
    name = params1.clients[0]
    with pytest.raises(secagg.ReplayError, match="replayed or stale"):
        server2.receive_advert(old_adverts[name])
    # relabelling the old advert with the new round id breaks its signature
    with pytest.raises(SecAggError, match="signature does not verify"):
        server2.receive_advert(dataclasses.replace(old_adverts[name], round_id=params2.round_id))
    for client in clients2.values():
        server2.receive_advert(client.advertise())
    for n, client in clients2.items():
        server2.receive_shares(n, client.share_keys(server2.adverts_for(n)))
    with pytest.raises(secagg.ReplayError):
        server2.receive_shares(name, old_shares[name])
    # an old share relabelled for round 2 fails authentication at its receiver, which reports it
    receiver = clients2[old_shares[name][0].receiver]
    relabelled = dataclasses.replace(old_shares[name][0], round_id=params2.round_id)
    assert "authentication failed" in receiver.receive_shares([relabelled])[name]
    old_masked = clients1[name]
    for n, client in clients1.items():
        client.receive_shares([s for shares in old_shares.values() for s in shares if s.receiver == n])
    stale = old_masked.masked_input(updates[name], params1.clients)
    with pytest.raises(secagg.ReplayError):
        server2.receive_masked(stale)
    # round 2 completes
    for n, client in clients2.items():
        assert client.receive_shares(server2.shares_for(n)) == {}
    result = _finish(clients2, server2, updates)
    np.testing.assert_array_equal(result.total, _plain_sum(config, updates, params2.clients))


def test_client_refuses_to_reveal_its_own_mask_and_answers_once(pki):
    params, clients, server = _setup(pki, 4, SecAggConfig(enabled=True))
    updates = _updates(params.clients)
    _share_phase(clients, server)
    participants = server.participants()
    with pytest.raises(ValueError, match="non-finite"):
        clients[params.clients[1]].masked_input(np.full(VECTOR, np.nan), participants)
    for name in participants:
        server.receive_masked(clients[name].masked_input(updates[name], participants))
    me = params.clients[0]
    lie = secagg.UnmaskRequest(params.round_id, tuple(params.clients[1:]), (me,))
    with pytest.raises(SecAggError, match="calls it dropped"):
        clients[me].unmask(lie)
    both = secagg.UnmaskRequest(params.round_id, tuple(params.clients), (params.clients[1],))
    with pytest.raises(SecAggError, match="both surviving and dropped"):
        clients[me].unmask(both)
    request = server.unmask_request()
    clients[me].unmask(request)
    with pytest.raises(SecAggError, match="already answered"):
        clients[me].unmask(request)


def test_config_validation():
    with pytest.raises(ValueError, match="overflows"):
        RoundParams.announce(1, [f"c{i}" for i in range(100)], SecAggConfig(enabled=True, scale=2.0 ** 30), 1.0)
    with pytest.raises(ValueError, match="fewer than the"):
        RoundParams.announce(1, [f"c{i}" for i in range(5)], SecAggConfig(enabled=True, max_dropouts=2), 1.0)
    with pytest.raises(ValueError, match="more than half"):
        RoundParams.announce(1, [f"c{i}" for i in range(5)], SecAggConfig(enabled=True, threshold=2), 1.0)
    with pytest.raises(ValueError, match="unknown keys"):
        SecAggConfig.from_mapping({"enabled": True, "treshold": 3})


def _packaged_config(**changes):
    import yaml

    from hrc_fl import paths

    with open(paths.config_file("federated.yaml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for section, values in changes.items():
        data[section] = {**(data.get(section) or {}), **values}
    return data


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "median_anchored"])
def test_federation_config_refuses_rules_that_need_individual_updates(tmp_path, rule):
    from hrc_fl.federated.core.fl_config import parse_config

    data = _packaged_config(secure_aggregation={"enabled": True}, strategy={"name": rule})
    with pytest.raises(ValueError, match=f"strategy '{rule}' needs every client's update, but secure_aggregation"):
        parse_config(data, tmp_path)
    data["secure_aggregation"]["enabled"] = False
    assert parse_config(data, tmp_path).strategy["name"] == rule


def test_federation_config_with_secure_aggregation_moves_clipping_to_the_client(tmp_path):
    from hrc_fl.federated.core.fl_config import parse_config

    data = _packaged_config(secure_aggregation={"enabled": True},
                            strategy={"name": "fedavg", "dp": {"clip_norm": 0.5, "noise_multiplier": 1.0,
                                                               "expected_clients": 3}})
    config = parse_config(data, tmp_path)
    assert config.secure_aggregation.enabled and config.client_clip_norm == 0.5
    data["strategy"] = {"name": "fedavg"}  # no clip bound anywhere
    with pytest.raises(ValueError, match="needs a client clip bound"):
        parse_config(data, tmp_path)
    data["strategy"] = {"name": "fedavg", "max_update_norm": 10.0}
    data["secure_aggregation"]["max_dropouts"] = 1  # 3 workstations: 2 neighbours, 2 shares needed
    with pytest.raises(ValueError, match="fewer than the 2 shares"):
        parse_config(data, tmp_path)


def test_dp_noise_goes_on_the_unmasked_sum_with_the_fixed_denominator(pki):
    from hrc_fl.federated.core.privacy import DPStrategy
    from hrc_fl.federated.core.strategies import FedAvg

    config = SecAggConfig(enabled=True, max_dropouts=1)
    params, clients, server = _setup(pki, 5, config)
    updates = _updates(params.clients)
    _share_phase(clients, server)
    result = _finish(clients, server, updates, drop=params.clients[:1])
    current = {"a": np.zeros(200, np.float32), "b": np.ones((57,), np.float32)}
    plain = secagg.apply_secure_sum(current, result)
    survivors = list(params.clients[1:])
    expected_mean = sum(updates[c] for c in survivors) / len(survivors)
    np.testing.assert_allclose(secagg.flatten(plain.tensors) - secagg.flatten(current), expected_mean, atol=1e-5)
    assert plain.rule == "secure_sum" and plain.accepted_ids == survivors
    dp = DPStrategy(FedAvg(), clip_norm=CLIP, noise_multiplier=0.0, expected_clients=8)
    private = secagg.apply_secure_sum(current, result, dp=dp)
    np.testing.assert_allclose(secagg.flatten(private.tensors) - secagg.flatten(current),
                               sum(updates[c] for c in survivors) / 8, atol=1e-5)
    assert private.metrics["dp_denominator"] == 8.0
    noisy = secagg.apply_secure_sum(current, result, dp=DPStrategy(FedAvg(), clip_norm=CLIP, noise_multiplier=1.0,
                                                                    expected_clients=8))
    noise = secagg.flatten(noisy.tensors) - secagg.flatten(private.tensors)
    assert 0.8 * CLIP / 8 < np.std(noise) < 1.2 * CLIP / 8 and noisy.metrics["epsilon"] > 0


def test_client_refuses_to_mask_without_shares_of_a_participating_neighbour(pki):
    # Prepare: the aggregator withholds b's advert from a, so a holds no share from b
    params, clients, server = _setup(pki, 5, SecAggConfig(enabled=True, max_dropouts=1))
    a, b = params.clients[:2]
    for client in clients.values():
        server.receive_advert(client.advertise())
    shares = {n: c.share_keys([ad for ad in server.adverts_for(n) if {n, ad.sender} != {a, b}])
              for n, c in clients.items()}
    for name, share_list in shares.items():
        server.receive_shares(name, share_list)
    for name, client in clients.items():
        client.receive_shares(server.shares_for(name))
    # Execute / Assert: with b still announced as a participant, a refuses instead of leaving b's mask in the sum
    with pytest.raises(SecAggError, match=f"holds no shares from participants \\['{b}'\\]"):
        clients[a].masked_input(_updates(params.clients)[a], server.participants())
    with pytest.raises(SecAggError, match="already shared"):
        clients[a].share_keys(server.adverts_for(a))


def test_dp_release_of_a_secure_sum_refuses_more_contributors_than_the_denominator():
    from hrc_fl.federated.core.privacy import DPStrategy
    from hrc_fl.federated.core.strategies import FedAvg

    dp = DPStrategy(FedAvg(), clip_norm=1.0, noise_multiplier=1.0, expected_clients=3)
    current = {"w": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match="4 contributors exceed expected_clients 3"):
        dp.release_sum(current, {"w": np.ones(4)}, 4, {})
    assert dp.accountant.history == []  # nothing released, nothing spent


def test_a_workstation_refuses_a_secure_round_announced_without_its_settings(tmp_path):
    from hrc_fl.federated.core.fl_config import parse_config
    from hrc_fl.federated.transport.fedml_client import secure_round_params

    # Prepare: the packaged federation (3 workstations) with secure aggregation on
    data = _packaged_config(secure_aggregation={"enabled": True},
                            strategy={"name": "fedavg", "max_update_norm": 10.0})
    config = parse_config(data, tmp_path)
    clients = [config.nodes[r].name for r in config.client_ranks]
    good = secagg.RoundParams.announce(4, clients, config.secure_aggregation, 10.0)
    # Execute / Assert: the aggregator's own announcement is taken
    assert secure_round_params(config, "ws1", 4, secagg.encode_params(good)).round_id == good.round_id
    # no announcement: the workstation would otherwise send a readable update
    with pytest.raises(ValueError, match="no secure-aggregation announcement"):
        secure_round_params(config, "ws1", 4, b"")
    # another round, a lowered threshold, a wider clip bound, a client list without it: refused
    with pytest.raises(ValueError, match="not for round 5"):
        secure_round_params(config, "ws1", 5, secagg.encode_params(good))
    weaker = dataclasses.replace(config.secure_aggregation, threshold=2, neighbours=2, scale=2.0 ** 10)
    for params in (secagg.RoundParams.announce(4, clients, weaker, 10.0),
                   secagg.RoundParams.announce(4, clients, config.secure_aggregation, 20.0)):
        with pytest.raises(ValueError, match="differ from this federation's configuration"):
            secure_round_params(config, "ws1", 4, secagg.encode_params(params))
    others = secagg.RoundParams.announce(4, ["ws2", "ws3"], dataclasses.replace(config.secure_aggregation), 10.0)
    with pytest.raises(ValueError, match="not among the round's clients"):
        secure_round_params(config, "ws1", 4, secagg.encode_params(others))


def test_share_batches_and_unmask_answers_travel_compactly_and_malformed_ones_are_refused(pki):
    # Prepare: a sparse round of 30 (k = 10), one client's shares and its unmask answer
    config = SecAggConfig(enabled=True)
    params, clients, server = _setup(pki, 30, config)
    name = params.clients[0]
    _share_phase(clients, server)
    shares = server.shares_for(name)
    # Execute
    payload = secagg.encode_messages(shares)
    # Assert: the same shares back, with little more than their own bytes around them
    assert secagg.decode_messages(payload, params) == shares
    own = sum(len(s.nonce) + len(s.ciphertext) for s in shares)
    assert len(payload) < own + 1500, (len(payload), own)
    updates = _updates(params.clients)
    participants = server.participants()
    for n in participants:
        server.receive_masked(clients[n].masked_input(updates[n], participants))
    answer = clients[name].unmask(server.unmask_request())
    assert secagg.decode_message(secagg.encode_message(answer), params) == answer
    # a batch whose columns do not fit, or whose cut points overrun the blob, is refused as malformed
    from hrc_fl.federated.core import wire

    body = wire.decode(payload)
    body["receivers"] = body["receivers"][:-1]
    with pytest.raises(SecAggError, match="malformed"):
        secagg.decode_messages(wire.encode(body), params)
    body = wire.decode(payload)
    body["ciphertexts"]["sizes"] = body["ciphertexts"]["sizes"] + 1
    with pytest.raises(SecAggError, match="malformed"):
        secagg.decode_messages(wire.encode(body), params)
    body = wire.decode(payload)
    body["nonces"]["names"] = ["x"] * len(body["nonces"]["names"])
    with pytest.raises(SecAggError, match="malformed"):
        secagg.decode_messages(wire.encode(body), params)
