"""The UDP sensor listener over real sockets: routing, stamping, bad datagrams, broker outages."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest

from app.sources.udp import BadDatagram, parse_datagram
from tests.helpers import SSE, WS, eventually, http
from tests.test_sources_demo import hang_up


def send(port: int, *datagrams: Any) -> None:
    """Send each datagram (bytes as they are, anything else as JSON) from one real UDP socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            raw = datagram if isinstance(datagram, bytes) else json.dumps(datagram).encode()
            sock.sendto(raw, ("127.0.0.1", port))


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest, make_server: Any) -> tuple[Any, Any]:
    """(the worker listening on UDP, a worker with subscribers): one worker alone, or two sharing Redis."""
    if request.param == "memory":
        server = await make_server(sources=("udp",), udp_port=0)
        return server, server
    url = request.getfixturevalue("redis_server").url
    return await make_server(redis_url=url, sources=("udp",), udp_port=0), await make_server(redis_url=url)


async def test_datagram_reaches_websocket_and_sse(pair: tuple[Any, Any]) -> None:
    """A sensor datagram is published, stamped, to WebSocket and SSE subscribers (on any worker)."""
    listener, server = pair
    ws = await WS.connect(server.ws)
    await ws.subscribe("sensors.greenhouse-1")
    sse = await SSE.connect(f"{server.base}/events?channel=sensors.greenhouse-1")
    before = time.time()
    send(listener.sources.one("udp").port, {"sensor": "greenhouse-1", "temperature": 21.4, "humidity": 0.56})
    [via_ws] = await ws.messages(1)
    [via_sse] = await sse.messages(1)
    assert via_ws == via_sse
    data = via_ws["data"]
    assert before - 0.01 <= data.pop("ts") <= time.time() + 0.01
    assert data == {"sensor": "greenhouse-1", "temperature": 21.4, "humidity": 0.56}
    await hang_up(ws, sse)


async def test_a_reading_sent_again_under_its_key_is_published_once(pair: tuple[Any, Any]) -> None:
    """Datagrams repeating an idempotency_key publish once; the key is not data; a new key publishes again."""
    listener, server = pair
    ws = await WS.connect(server.ws)
    await ws.subscribe("sensors.resend")
    udp = listener.sources.one("udp")
    first = {"sensor": "resend", "v": 1, "idempotency_key": "resend-1"}
    send(
        udp.port,
        first,
        first,
        {**first, "v": "changed"},
        {"sensor": "resend", "v": 2, "idempotency_key": "resend-2"},
    )
    got = await ws.messages(2)
    assert [(m["data"]["v"], "idempotency_key" in m["data"]) for m in got] == [(1, False), (2, False)]
    await eventually(lambda: udp.published + udp.duplicates == 4)
    assert (udp.published, udp.duplicates) == (2, 2)
    # Nothing else arrives: the next frame is the answer to a ping sent now.
    await ws.send({"type": "ping", "ref": "end"})
    assert await ws.recv() == {"type": "pong", "ref": "end"}
    await hang_up(ws)


async def test_channel_rule_and_stripped_fields(make_server: Any) -> None:
    """The channel field wins, else sensors.<sensor>, else sensors; channel and token are not published."""
    server = await make_server(sources=("udp",), udp_port=0)
    ws = await WS.connect(server.ws)
    for channel in ("plant.tomato", "sensors.s-2", "sensors"):
        await ws.subscribe(channel)
    send(
        server.sources.one("udp").port,
        {"channel": "plant.tomato", "sensor": "s-1", "v": 1},
        {"sensor": "s-2", "v": 2, "token": "not configured, still stripped"},
        {"v": 3},
    )
    got = {m["channel"]: m["data"] for m in await ws.messages(3)}
    assert {c: {k: v for k, v in d.items() if k != "ts"} for c, d in got.items()} == {
        "plant.tomato": {"sensor": "s-1", "v": 1},
        "sensors.s-2": {"sensor": "s-2", "v": 2},
        "sensors": {"v": 3},
    }
    await hang_up(ws)


async def test_every_bad_datagram_is_dropped_and_counted_while_good_ones_flow(make_server: Any) -> None:
    """Each class of bad datagram is dropped and counted by reason; good ones around them still arrive."""
    server = await make_server(sources=("udp",), udp_port=0, udp_max_bytes=256)
    ws = await WS.connect(server.ws)
    await ws.subscribe("sensors.ok")
    send(
        server.sources.one("udp").port,
        {"sensor": "ok", "n": 1},
        b"\xff\xfe{}",  # not UTF-8
        b"{temperature: 21",  # not JSON
        b'{"t": NaN}',  # not JSON either
        {"sensor": "ok", "n": 2},
        b"[1, 2]",  # not an object
        b"42",
        {"sensor": "ok", "pad": "x" * 300},  # over UDP_MAX_BYTES
        {"channel": "bad channel!"},
        {"channel": "x" * 200},
        {"sensor": "has space"},
        {"sensor": 7},
        {"sensor": "ok", "n": 3},
    )
    assert [m["data"]["n"] for m in await ws.messages(3)] == [1, 2, 3]
    await eventually(lambda: server.sources.one("udp").received == 13)
    assert server.sources.one("udp").dropped == {
        "not_utf8": 1,
        "bad_json": 2,
        "not_object": 2,
        "too_large": 1,
        "bad_channel": 4,
    }
    assert server.sources.one("udp").published == 3
    await ws.no_message()
    await hang_up(ws)


async def test_token_is_required_and_stripped(make_server: Any) -> None:
    """With UDP_TOKEN, datagrams without it or with a wrong one are dropped; the token is never published."""
    server = await make_server(sources=("udp",), udp_port=0, udp_token="s3cret")
    ws = await WS.connect(server.ws)
    await ws.subscribe("sensors.t")
    send(
        server.sources.one("udp").port,
        {"sensor": "t", "n": 1},
        {"sensor": "t", "n": 2, "token": "wrong"},
        {"sensor": "t", "n": 3, "token": 12345},
        {"sensor": "t", "n": 4, "token": "s3cret"},
    )
    [message] = await ws.messages(1)
    assert message["data"]["n"] == 4 and "token" not in message["data"]
    await eventually(lambda: server.sources.one("udp").dropped == {"bad_token": 3})
    await hang_up(ws)


async def test_garbage_flood_is_logged_once_per_sender(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Hundreds of bad datagrams from one sender are all counted but logged once."""
    caplog.set_level(logging.WARNING, logger="windsock.udp")
    server = await make_server(sources=("udp",), udp_port=0)
    udp = server.sources.one("udp")
    for batch in range(6):
        # In batches: this test shares the listener's event loop, and the
        # kernel drops what overflows the socket buffer while the loop waits.
        send(udp.port, *[b"garbage %d" % n for n in range(50)])
        await eventually(lambda batch=batch: udp.received == 50 * (batch + 1))
    send(udp.port, b"[]", {"sensor": "after"})
    await eventually(lambda: udp.published == 1)
    assert server.sources.one("udp").dropped == {"bad_json": 300, "not_object": 1}
    drops = [r for r in caplog.records if r.name == "windsock.udp" and "dropped" in r.getMessage()]
    assert len(drops) == 1, [r.getMessage() for r in drops]
    assert "127.0.0.1" in drops[0].getMessage()


async def test_listener_survives_a_redis_outage(own_redis: Any, make_server: Any) -> None:
    """Readings during an outage are counted as publish errors; the listener goes on once Redis is back."""
    server = await make_server(redis_url=own_redis.url, sources=("udp",), udp_port=0)
    udp = server.sources.one("udp")
    ws = await WS.connect(server.ws)
    await ws.subscribe("sensors.r")
    own_redis.stop()
    send(udp.port, {"sensor": "r", "n": "during"})
    await eventually(lambda: udp.status()["publish_errors"] == 1, timeout=10)
    own_redis.start()
    await eventually(lambda: _healthy(server), timeout=10)
    send(udp.port, {"sensor": "r", "n": "after"})
    [message] = await ws.messages(1)
    assert message["data"]["n"] == "after"
    assert udp.published == 1 and server.sources.one("udp").dropped == {}
    await hang_up(ws)


async def _healthy(server: Any) -> bool:
    status, _, _ = await http("GET", server.base + "/healthz")
    return status == 200


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc3\x28", "not_utf8"),
        (b"{", "bad_json"),
        (b'"text"', "not_object"),
        (b'{"pad": "' + b"x" * 100 + b'"}', "too_large"),
        (b'{"channel": ""}', "bad_channel"),
        (b'{"sensor": ["a"]}', "bad_channel"),
        (b'{"sensor": "a"}', "bad_token"),
        (b'{"idempotency_key": "a b"}', "bad_key"),
        (b'{"idempotency_key": 7}', "bad_key"),
    ],
)
def test_parse_datagram_reasons(raw: bytes, reason: str) -> None:
    """parse_datagram names the reason each bad datagram is refused for."""
    with pytest.raises(BadDatagram) as caught:
        parse_datagram(raw, token="needed" if reason == "bad_token" else "", max_bytes=64)
    assert caught.value.reason == reason
