"""permessage-deflate (RFC 7692): off by default; when on, one deflated frame per message for all."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest
from websockets.asyncio.client import connect

from app.messages import Message, deflate_message
from app.transports.ws_frames import DEFLATE_RESPONSE, deflate_acceptable
from tests.helpers import RawWS, eventually, parse_frames, publish
from tests.ws_strict_cases import frame, read_close

OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
READING = {"sensor": "greenhouse-3", "temperature": 21.4, "humidity": 0.61, "battery": 3.71, "ok": True}


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\x00\x00\xff\xff")


def raw_frames(ws: RawWS, n: int) -> list[bytes]:
    """Read until ``n`` whole frames are buffered; return them as raw bytes, headers included."""
    ws.sock.settimeout(5)
    while len(parse_frames(ws.buffer)) < n:
        chunk = ws.sock.recv(65536)
        assert chunk, "connection closed"
        ws.buffer += chunk
    frames, i = [], 0
    for _ in range(n):
        start = i
        length, i = ws.buffer[i + 1] & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(ws.buffer[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(ws.buffer[i : i + 8], "big"), i + 8
        i += length
        frames.append(ws.buffer[start:i])
    ws.buffer = ws.buffer[i:]
    return frames


async def test_deflate_is_off_by_default(server: Any) -> None:
    """By default a client offering permessage-deflate is answered without it, and gets plain frames."""
    async with connect(server.ws) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send(json.dumps({"type": "subscribe", "channel": "plain"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await publish(server.base, "plain", READING)
        assert json.loads(await ws.recv())["data"] == READING


async def test_websockets_client_agrees_and_both_directions_work(make_server: Any) -> None:
    """With WS_DEFLATE_LEVEL, the websockets client agrees to no context takeover; messages flow both ways."""
    server = await make_server(ws_deflate_level=6)
    async with connect(server.ws) as ws, connect(server.ws) as other:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == DEFLATE_RESPONSE
        for client in (ws, other):
            await client.send(json.dumps({"type": "subscribe", "channel": "chat.room"}))
            assert json.loads(await client.recv())["type"] == "subscribed"
        await publish(server.base, "sensors", READING)
        for n in range(3):  # each compressed by the client, with no context kept
            await ws.send(
                json.dumps({"type": "publish", "channel": "chat.room", "data": {"n": n, **READING}})
            )
        got = [json.loads(await other.recv()) for _ in range(3)]
        assert [m["data"] for m in got] == [{"n": n, **READING} for n in range(3)]


async def test_every_subscriber_gets_the_same_deflated_bytes(make_server: Any) -> None:
    """Subscribers that agreed to deflate get the same bytes: RSV1 set, smaller, inflating to the message."""
    server = await make_server(ws_deflate_level=6)
    loop = asyncio.get_running_loop()
    clients = [
        await RawWS.open("127.0.0.1", server.port, "/ws?channel=sensors", headers=OFFER) for _ in range(3)
    ]
    try:
        for ws in clients:
            assert ws.status == 101
            assert f"sec-websocket-extensions: {DEFLATE_RESPONSE}".encode() in ws.head.lower()
            await loop.run_in_executor(None, raw_frames, ws, 1)  # subscribed
        await eventually(lambda: server.hub.subscriber_count("sensors") == 3)
        msg_id = await publish(server.base, "sensors", READING)
        frames = [(await loop.run_in_executor(None, raw_frames, ws, 1))[0] for ws in clients]
        assert frames[0] == frames[1] == frames[2]
        assert frames[0][0] == 0xC1  # FIN, RSV1, text
        [(_, payload)] = parse_frames(frames[0])
        envelope = json.loads(inflate(payload))
        assert envelope == {"type": "message", "channel": "sensors", "id": msg_id, "data": READING}
        assert len(payload) < len(json.dumps(envelope, separators=(",", ":")))
    finally:
        for ws in clients:
            ws.close()


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; nonsense=1",
        "x-webkit-deflate-frame",
    ],
)
async def test_offers_it_cannot_honour_are_declined(make_server: Any, offer: str) -> None:
    """An offer that limits the server's window, or has unknown parameters, is declined: plain frames."""
    server = await make_server(ws_deflate_level=6)
    ws = await RawWS.open(
        "127.0.0.1", server.port, "/ws?channel=s", headers={"Sec-WebSocket-Extensions": offer}
    )
    try:
        assert ws.status == 101 and b"sec-websocket-extensions" not in ws.head.lower()
        await eventually(lambda: server.hub.subscriber_count("s") == 1)
        await publish(server.base, "s", READING)
        frames = await asyncio.get_running_loop().run_in_executor(None, raw_frames, ws, 2)
        assert frames[1][0] == 0x81 and json.loads(parse_frames(frames[1])[0][1])["data"] == READING
    finally:
        ws.close()


def test_negotiation_rules() -> None:
    """The offer rules: a valid client window is fine, a server window below 15 or a bad value is not."""
    assert deflate_acceptable([("permessage-deflate", {})])
    assert deflate_acceptable([("permessage-deflate", {"client_max_window_bits": "10"})])
    assert deflate_acceptable([("permessage-deflate", {"server_max_window_bits": "15"})])
    assert deflate_acceptable([("x", {}), ("permessage-deflate", {"server_no_context_takeover": None})])
    assert not deflate_acceptable([("permessage-deflate", {"server_max_window_bits": "9"})])
    assert not deflate_acceptable([("permessage-deflate", {"client_max_window_bits": "16"})])
    assert not deflate_acceptable([])


def test_message_is_deflated_once() -> None:
    """A message's deflated frame is built once and then reused for every subscriber."""
    message = Message.build("c", 1, json.dumps(READING).encode())
    assert message.ws_deflated(6) is message.ws_deflated(6)


@pytest.mark.parametrize(
    ("payload", "code", "offer"),
    [
        (deflate_message(b'{"type":"ping","ref":"\xff"}', 6), 1007, True),
        (deflate_message(b" " * 200_000, 9), 1009, True),
        (deflate_message(b'{"type":"ping"}', 6), 1002, False),
    ],
    ids=["invalid UTF-8 once inflated", "over MAX_MESSAGE_BYTES once inflated", "RSV1 without the extension"],
)
async def test_bad_deflated_client_messages_are_closed(
    make_server: Any, payload: bytes, code: int, offer: bool
) -> None:
    """A deflated message inflating to bad UTF-8 or too much, or RSV1 not agreed, gets its close code."""
    server = await make_server(ws_deflate_level=6)
    ws = await RawWS.open("127.0.0.1", server.port, "/ws", headers=OFFER if offer else None)
    try:
        ws.sock.sendall(frame(0x1, payload, rsv=0b100))
        closed = await asyncio.get_running_loop().run_in_executor(None, read_close, ws)
        assert closed[::2] == (code, "close"), closed
    finally:
        ws.close()
