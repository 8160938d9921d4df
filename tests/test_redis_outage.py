"""A worker survives Redis going away: it stays up, says so, and catches up when Redis is back."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from tests.helpers import SSE, WS, eventually, http, publish


def _redis_command(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        command = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        s.sendall(command.encode())
        return s.recv(4096)


async def _health(server: Any) -> tuple[int, str]:
    status, body, _ = await http("GET", server.base + "/healthz")
    return status, body["status"]


async def test_redis_down_then_back_empty(own_redis: Any, make_server: Any) -> None:
    """Redis stops: 503 degraded, publish 503 at once, clients stay; back empty: reset, then live."""
    server = await make_server(redis_url=own_redis.url)
    ws = await WS.connect(server.ws)
    await ws.subscribe("plant")
    sse = await SSE.connect(f"{server.base}/events?channel=plant")
    await publish(server.base, "plant", "before")
    assert (await ws.messages(1))[0]["data"] == "before"
    assert (await sse.messages(1))[0]["data"] == "before"

    own_redis.stop()
    await eventually(lambda: _is(server, (503, "degraded")), timeout=10)
    started = time.monotonic()
    status, body, _ = await http("POST", f"{server.base}/api/channels/plant", "during")
    assert (status, body["code"]) == (503, "broker_unavailable")
    assert time.monotonic() - started < 5, "a publish during an outage must not hang"
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong"  # still connected and served

    own_redis.start()  # comes back with no data at all
    await eventually(lambda: _is(server, (200, "ok")), timeout=10)
    reset = await ws.recv_type("reset")
    assert reset["channel"] == "plant"
    after = await publish(server.base, "plant", "after")
    [live] = await ws.messages(1)
    assert (live["data"], live["id"]) == ("after", after)
    sse_events = await sse.messages(1)
    assert sse_events[0]["data"] == "after"
    ws.close()
    sse.close()


async def _is(server: Any, expected: tuple[int, str]) -> bool:
    return await _health(server) == expected


async def test_pubsub_blip_loses_nothing(own_redis: Any, make_server: Any) -> None:
    """Killing the pub/sub connection mid-stream: the worker resubscribes and refills the gap, once."""
    server = await make_server(redis_url=own_redis.url)
    ws = await WS.connect(server.ws)
    await ws.subscribe("blip")
    sent = []
    for round_ in range(5):
        _redis_command(own_redis.port, "CLIENT", "KILL", "TYPE", "pubsub")
        for n in range(10):
            sent.append(await publish(server.base, "blip", round_ * 10 + n))
        await asyncio.sleep(0.05)
    got = await ws.messages(len(sent), timeout=15)
    assert [m["id"] for m in got] == sent
    await ws.no_message()
    assert server.hub.status()["broker"]["reconnects"] >= 1
    ws.close()


async def test_redis_still_loading_its_data_is_not_back_yet(own_redis: Any, make_server: Any) -> None:
    """Redis LOADING after a restart (yet confirming SUBSCRIBE): the worker stays degraded, then resumes."""
    port = own_redis.port
    # 20,000 keys read at 100 us each keep the restarted Redis loading for seconds.
    assert (
        _redis_command(port, "EVAL", "for i=1,20000 do redis.call('SET','pad:'..i,i) end", "0") == b"$-1\r\n"
    )
    server = await make_server(redis_url=own_redis.url)
    ws = await WS.connect(server.ws)
    await ws.subscribe("plant")
    before = await publish(server.base, "plant", "before")
    assert (await ws.messages(1))[0]["id"] == before
    assert _redis_command(port, "SAVE") == b"+OK\r\n"

    own_redis.stop()
    await eventually(lambda: _is(server, (503, "degraded")), timeout=10)
    own_redis.start("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024", ready=False)
    loading_seen = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = _redis_command(port, "PING")
        except OSError:
            await asyncio.sleep(0.05)  # not listening yet
            continue
        if not answer.startswith(b"-LOADING"):
            break
        loading_seen += 1
        # Redis answers SUBSCRIBE now, but cannot serve history or publishes.
        assert await _health(server) == (503, "degraded"), "healthy while Redis is still loading"
        await asyncio.sleep(0.1)
    assert loading_seen >= 3, f"Redis was seen loading only {loading_seen} times"
    await eventually(lambda: _is(server, (200, "ok")), timeout=10)
    after = await publish(server.base, "plant", "after")
    assert after == before + 1
    [live] = await ws.messages(1)
    assert (live["type"], live["id"]) == ("message", after)
    ws.close()
