"""foxglove_bridge_node: a Foxglove websocket client receives SafetyZoneState as CDR."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from hrc_fl.tools.foxglove_server import FoxgloveForwarder

#: foxglove-sdk 0.30 speaks "foxglove.sdk.v1" (the successor of "foxglove.websocket.v1", same framing);
#: a client offers both and the server picks the one it speaks.
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_forwarder_rejects_bad_host_and_unknown_type():
    # Prepare / Execute / Assert
    with pytest.raises(ValueError, match="host"):
        FoxgloveForwarder(host="localhost:8765", port=0)
    forwarder = FoxgloveForwarder(port=0)
    try:
        with pytest.raises(ValueError, match="no message definition"):
            forwarder.add_topic("/x", "nosuch_msgs/msg/Thing")
        with pytest.raises(ValueError, match="not added"):
            forwarder.forward("/y", b"\x00\x01\x00\x00", 0)
    finally:
        forwarder.close()


async def _receive_safety_state(port: int, publish, deadline_s: float):
    import websockets

    end = time.monotonic() + deadline_s
    ws = None
    while ws is None:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS)
        except OSError:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)
    channel = None
    assert ws.subprotocol in SUBPROTOCOLS
    try:
        while time.monotonic() < end:
            publish()
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=0.1)
            except TimeoutError:
                continue
            if isinstance(frame, str):
                op = json.loads(frame)
                for adv in op.get("channels", []) if op.get("op") == "advertise" else []:
                    if adv["topic"] == "/ws1/safety/state":
                        channel = adv
                        await ws.send(json.dumps({"op": "subscribe",
                                                  "subscriptions": [{"id": 7, "channelId": adv["id"]}]}))
            elif frame[0] == 0x01:  # MessageData: op, subscription id, log time, payload
                sub_id, _log_time = struct.unpack_from("<IQ", frame, 1)
                return channel, sub_id, bytes(frame[13:])
    finally:
        await ws.close()
    raise AssertionError("no SafetyZoneState message arrived over the websocket")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_bridge_forwards_safety_state_to_websocket_client(ros_probe, node_processes):
    # Prepare
    from hrc_fl_msgs.msg import SafetyZoneState
    from rclpy.serialization import deserialize_message

    from hrc_fl.nodes.common import SAFETY_QOS

    port = _free_port()
    pub = ros_probe.publisher(SafetyZoneState, "/ws1/safety/state", SAFETY_QOS)
    sent = SafetyZoneState(zone=SafetyZoneState.REDUCED_SPEED, zone_name="REDUCED_SPEED",
                           speed_scale=0.25, min_separation_m=1.125, reason="probe")
    node_processes.start("foxglove_bridge_node", parameters={"port": port, "topics": ["/ws1/safety/state"],
                                                             "discovery_period_s": 0.2})
    ros_probe.wait_for_subscribers(pub, timeout_s=20.0)

    # Execute
    channel, sub_id, payload = asyncio.run(_receive_safety_state(port, lambda: pub.publish(sent), 30.0))

    # Assert
    assert channel["encoding"] == "cdr"
    assert channel["schemaEncoding"] == "ros2msg"
    assert channel["schemaName"] == "hrc_fl_msgs/msg/SafetyZoneState"
    assert "float32 protective_separation_m" in channel["schema"]
    assert sub_id == 7
    got = deserialize_message(payload, SafetyZoneState)
    assert got.zone == SafetyZoneState.REDUCED_SPEED
    assert got.zone_name == "REDUCED_SPEED"
    assert got.min_separation_m == pytest.approx(1.125)
    assert got.reason == "probe"
