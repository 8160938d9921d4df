"""GET /ws against a real worker, with each broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest

from tests.helpers import WS, RawWS, eventually, http, parse_frames, publish


async def test_subscribe_and_receive(server: Any) -> None:
    """A subscriber gets an ack with the channel position, then each published message as one frame."""
    ws = await WS.connect(server.ws)
    ack = await ws.subscribe("room")
    assert ack["channel"] == "room" and isinstance(ack["id"], int)
    msg_id = await publish(server.base, "room", {"hello": "world"})
    [message] = await ws.messages(1)
    assert message == {"type": "message", "channel": "room", "id": msg_id, "data": {"hello": "world"}}
    ws.close()


async def test_query_channels_subscribe_at_connect(server: Any) -> None:
    """?channel= (repeatable) subscribes at connect."""
    ws = await WS.connect(server.ws + "?channel=a&channel=b")
    acks = {(await ws.recv_type("subscribed"))["channel"] for _ in range(2)}
    assert acks == {"a", "b"}
    await publish(server.base, "b", 2)
    await publish(server.base, "a", 1)
    got = await ws.messages(2)
    assert [(m["channel"], m["data"]) for m in got] == [("b", 2), ("a", 1)]
    ws.close()


async def test_ping_and_unsubscribe(server: Any) -> None:
    """ping answers pong with the client's ref; after unsubscribe nothing more arrives."""
    ws = await WS.connect(server.ws)
    await ws.send({"type": "ping", "ref": "p1"})
    assert await ws.recv() == {"type": "pong", "ref": "p1"}
    await ws.subscribe("u")
    await ws.send({"type": "unsubscribe", "channel": "u"})
    assert (await ws.recv_type("unsubscribed"))["channel"] == "u"
    await publish(server.base, "u", 1)
    await ws.no_message()
    ws.close()


async def test_client_publish_allowed_only_on_client_channels(server: Any) -> None:
    """Clients publish on CLIENT_PUBLISH channels (chat.*) and get the id; elsewhere 'forbidden'."""
    a = await WS.connect(server.ws)
    b = await WS.connect(server.ws)
    await b.subscribe("chat.lobby")
    await a.send({"type": "publish", "channel": "chat.lobby", "data": "hi", "ref": 1})
    published = await a.recv_type("published")
    [received] = await b.messages(1)
    assert received["data"] == "hi" and received["id"] == published["id"] and published["ref"] == 1
    await a.send({"type": "publish", "channel": "prices", "data": 1, "ref": 2})
    error = await a.recv_type("error")
    assert (error["code"], error["ref"], error["channel"]) == ("forbidden", 2, "prices")
    a.close()
    b.close()


async def test_resume_with_since_has_no_gap_and_no_duplicate(server: Any) -> None:
    """A subscribe with since replays exactly the missed messages, then live ones, each once."""
    first = await WS.connect(server.ws)
    await first.subscribe("r")
    ids = [await publish(server.base, "r", n) for n in range(5)]
    seen = await first.messages(3)
    last = seen[-1]["id"]
    first.close()
    later = [await publish(server.base, "r", n) for n in range(5, 8)]
    again = await WS.connect(server.ws)
    await again.send({"type": "subscribe", "channel": "r", "since": last})
    await again.recv_type("subscribed")
    await publish(server.base, "r", 8)
    got = await again.messages(6)
    assert [m["data"] for m in got] == [3, 4, 5, 6, 7, 8]
    assert [m["id"] for m in got[:5]] == ids[3:] + later
    await again.no_message()
    again.close()


async def test_since_zero_gets_history_first(server: Any) -> None:
    """since=0 delivers the channel's history at once, so a dashboard never starts empty."""
    for n in range(3):
        await publish(server.base, "dash", n)
    ws = await WS.connect(server.ws)
    await ws.send({"type": "subscribe", "channel": "dash", "since": 0})
    assert [m["data"] for m in await ws.messages(3)] == [0, 1, 2]
    ws.close()


async def test_resume_beyond_history_is_reset(make_server: Any) -> None:
    """A resume older than the kept history gets a 'reset' frame before what is kept."""
    server = await make_server(history_size=3)
    ids = [await publish(server.base, "small", n) for n in range(6)]
    ws = await WS.connect(server.ws)
    await ws.send({"type": "subscribe", "channel": "small", "since": ids[0]})
    assert (await ws.recv())["type"] == "subscribed"
    reset = await ws.recv()
    assert reset["type"] == "reset" and reset["channel"] == "small" and reset["id"] == ids[-1]
    assert [m["data"] for m in await ws.messages(3)] == [3, 4, 5]
    ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[]", "bad_message"),
        ('{"type":"teleport"}', "unknown_type"),
        ('{"type":"subscribe","channel":"bad/name"}', "bad_channel"),
        ('{"type":"subscribe","channel":"' + "x" * 200 + '"}', "bad_channel"),
        ('{"type":"subscribe","channel":"ok","since":"abc"}', "bad_since"),
        ('{"type":"publish","channel":"chat.a"}', "bad_message"),
    ],
)
async def test_bad_frames_get_an_error_and_keep_the_connection(server: Any, frame: str, code: str) -> None:
    """Each bad frame is answered with an error frame; the client stays connected and served."""
    ws = await WS.connect(server.ws)
    bystander = await WS.connect(server.ws)
    await bystander.subscribe("calm")
    await ws.send(frame)
    error = await ws.recv()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"
    await publish(server.base, "calm", "still here")
    assert (await bystander.messages(1))[0]["data"] == "still here"
    ws.close()
    bystander.close()


async def test_binary_garbage_is_an_error_frame(server: Any) -> None:
    """A binary frame of non-UTF-8 bytes gets a bad_json error, not a crash."""
    ws = await WS.connect(server.ws)
    await ws.conn.write_message(b"\xff\x00\xfe", binary=True)
    assert (await ws.recv())["code"] == "bad_json"
    ws.close()


async def test_oversize_frame_closes_with_1009(make_server: Any) -> None:
    """A frame larger than MAX_MESSAGE_BYTES closes the connection with 1009."""
    server = await make_server(max_message_bytes=1024)
    ws = await WS.connect(server.ws)
    await ws.send({"type": "publish", "channel": "chat.a", "data": "x" * 2000})
    assert await ws.conn.read_message() is None
    assert ws.conn.close_code == 1009


async def test_too_many_channels(make_server: Any) -> None:
    """Subscribing beyond MAX_CHANNELS gets too_many_channels; the handshake refuses too many at once."""
    server = await make_server(max_channels=2)
    ws = await WS.connect(server.ws)
    await ws.subscribe("a")
    await ws.subscribe("b")
    await ws.send({"type": "subscribe", "channel": "c"})
    assert (await ws.recv())["code"] == "too_many_channels"
    ws.close()
    with pytest.raises(HTTPClientError) as info:
        await WS.connect(server.ws + "?channel=a&channel=b&channel=c")
    assert info.value.code == 400


async def test_bad_query_channel_is_400_with_json(server: Any) -> None:
    """An invalid ?channel= on the handshake answers 400 with a JSON error body."""
    status, body, _ = await http("GET", server.base + "/ws?channel=..%2Fetc")
    assert status == 400 and body["code"] == "bad_channel"


async def test_cross_origin_is_refused(make_server: Any) -> None:
    """A browser Origin other than the Host is refused with 403; allowed origins connect."""
    server = await make_server()
    request = HTTPRequest(server.ws, headers={"Origin": "http://evil.example"})
    with pytest.raises(HTTPClientError) as info:
        await WS.connect(request)
    assert info.value.code == 403
    same = HTTPRequest(server.ws, headers={"Origin": server.base})
    (await WS.connect(same)).close()
    allowed = await make_server(allowed_origins=("https://app.example",))
    ok = HTTPRequest(allowed.ws, headers={"Origin": "https://app.example"})
    (await WS.connect(ok)).close()


async def test_slow_consumer_is_dropped_and_fast_one_is_not_delayed(make_server: Any) -> None:
    """A client that stops reading is closed with 1013 once its queue is full; a fast one gets everything."""
    server = await make_server(max_queue_bytes=64 * 1024)
    fast = await WS.connect(server.ws)
    await fast.subscribe("firehose")
    slow = await RawWS.open("127.0.0.1", server.port, "/ws?channel=firehose", rcvbuf=4096)
    assert slow.status == 101
    await eventually(lambda: server.hub.subscriber_count("firehose") == 2)
    pad = "x" * 8000
    n = 2000
    received: list[dict[str, Any]] = []

    async def read_fast() -> None:
        while True:
            received.append((await fast.recv_type("message", timeout=60))["data"])

    sent = n
    reader = asyncio.ensure_future(read_fast())
    for i in range(n):
        await publish(server.base, "firehose", {"i": i, "pad": pad})
        if server.hub.stats.slow_consumers:
            sent = i + 1
            break
    assert server.hub.stats.slow_consumers == 1, "the slow client was never dropped"
    # Read the slow client's backlog now: it ends with the close frame.
    frames = await asyncio.get_running_loop().run_in_executor(None, slow.read_all, 15)
    close = [payload for opcode, payload in parse_frames(frames) if opcode == 0x8]
    assert close and int.from_bytes(close[0][:2], "big") == 1013
    assert b"slow consumer" in close[0]
    await eventually(lambda: len(received) >= sent or reader.done(), timeout=30)
    reader.cancel()
    assert [m["i"] for m in received] == list(range(sent))
    await eventually(lambda: server.hub.subscriber_count("firehose") == 1)
    slow.close()
    fast.close()


async def test_shutdown_closes_with_1001(make_server: Any) -> None:
    """Stopping the worker closes WebSockets with 1001 going away."""
    server = await make_server()
    ws = await WS.connect(server.ws)
    await ws.subscribe("x")
    stop = asyncio.ensure_future(server.stop())
    assert await ws.conn.read_message() is None
    assert (ws.conn.close_code, ws.conn.close_reason) == (1001, "going away")
    await stop
