"""since=latest through the native stack: published on one worker, subscribed on another, both transports.

Messages are published straight to one worker's port; the subscriber is held
by another worker, reached at its own port or through nginx (which is asked
again until it picks a worker other than the publisher's). The subscriber
must get exactly the channel's newest message first, then live messages,
and nothing else.
"""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import SSE, WS, publish
from tests.stack.conftest import NativeStack, get_json

pytestmark = pytest.mark.stack

ROUTES = pytest.mark.parametrize("route", ["nginx", "worker"])


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def worker_base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def worker_name(port: int) -> str:
    return str(get_json(f"{worker_base(port)}/healthz")[1]["worker"])


async def publish_some(base: str, channel: str, n: int = 3) -> list[int]:
    return [await publish(base, channel, {"n": i}) for i in range(n)]


async def ws_elsewhere(stack: NativeStack, route: str, publisher: int) -> WS:
    """A WebSocket held by a worker other than ``publisher``: at its port, or through nginx."""
    if route == "worker":
        port = next(p for p in stack.worker_ports if p != publisher)
        return await WS.connect(f"ws://127.0.0.1:{port}/ws")
    avoid = worker_name(publisher)
    held: list[WS] = []  # kept open until a pick is made: nginx balances by open connections
    try:
        for _ in range(20):
            ws = await WS.connect(stack.ws)
            if ws.conn.headers["X-Windsock-Worker"] != avoid:
                return ws
            held.append(ws)
        raise AssertionError("nginx kept choosing the publisher's worker")
    finally:
        for ws in held:
            ws.close()


async def sse_elsewhere(stack: NativeStack, route: str, publisher: int, query: str) -> SSE:
    """An SSE stream of ``/events?query`` held by a worker other than ``publisher``."""
    if route == "worker":
        port = next(p for p in stack.worker_ports if p != publisher)
        return await SSE.connect(f"{worker_base(port)}/events?{query}")
    avoid = worker_name(publisher)
    held: list[SSE] = []
    try:
        for _ in range(20):
            sse = await SSE.connect(f"{stack.base}/events?{query}")
            assert sse.status == 200, sse.body
            if sse.headers["x-windsock-worker"] != avoid:
                return sse
            held.append(sse)
        raise AssertionError("nginx kept choosing the publisher's worker")
    finally:
        for sse in held:
            sse.close()


async def no_event(sse: SSE, wait: float = 0.5) -> None:
    """Assert that no event with data arrives for ``wait`` seconds (heartbeat comments do not count)."""
    try:
        event = await sse.event(timeout=wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected event {event!r}")


@ROUTES
async def test_websocket_latest_gives_the_newest_message_then_live_across_workers(
    native_stack: NativeStack, route: str
) -> None:
    """WebSocket since=latest on another worker: subscribed names the last id, its message, then live only."""
    channel = fresh("latest.ws")
    publisher = native_stack.worker_ports[0]
    ids = await publish_some(worker_base(publisher), channel)
    ws = await ws_elsewhere(native_stack, route, publisher)
    await ws.send({"type": "subscribe", "channel": channel, "since": "latest"})
    assert await ws.recv() == {"type": "subscribed", "channel": channel, "id": ids[-1]}
    assert await ws.recv() == {"type": "message", "channel": channel, "id": ids[-1], "data": {"n": 2}}
    live = await publish(worker_base(publisher), channel, {"n": "live"})
    assert await ws.recv() == {"type": "message", "channel": channel, "id": live, "data": {"n": "live"}}
    await ws.no_message(0.5)
    ws.close()


@ROUTES
async def test_sse_latest_gives_the_newest_message_then_live_across_workers(
    native_stack: NativeStack, route: str
) -> None:
    """SSE ?since=latest on another worker: the opening id is the last id, its message, then live only."""
    channel = fresh("latest.sse")
    publisher = native_stack.worker_ports[0]
    ids = await publish_some(worker_base(publisher), channel)
    sse = await sse_elsewhere(native_stack, route, publisher, f"channel={channel}&since=latest")
    assert await sse.preamble() == str(ids[-1])
    event = await sse.event()
    assert event == {
        "id": str(ids[-1]),
        "data": {"type": "message", "channel": channel, "id": ids[-1], "data": {"n": 2}},
    }
    live = await publish(worker_base(publisher), channel, {"n": "live"})
    event = await sse.event()
    assert (event["id"], event["data"]["id"], event["data"]["data"]) == (str(live), live, {"n": "live"})
    await no_event(sse)
    sse.close()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_latest_on_an_empty_channel_gives_only_live_messages(
    native_stack: NativeStack, transport: str
) -> None:
    """since=latest on a channel that holds nothing: no message and no reset, then each live one."""
    channel = fresh("latest.empty")
    publisher = native_stack.worker_ports[0]
    if transport == "websocket":
        ws = await ws_elsewhere(native_stack, "nginx", publisher)
        await ws.send({"type": "subscribe", "channel": channel, "since": "latest"})
        assert await ws.recv() == {"type": "subscribed", "channel": channel, "id": 0}
        await ws.no_message(0.5)
        live = [await publish(worker_base(publisher), channel, n) for n in range(2)]
        assert [await ws.recv() for _ in live] == [
            {"type": "message", "channel": channel, "id": i, "data": n} for n, i in enumerate(live)
        ]
        await ws.no_message(0.5)
        ws.close()
        return
    sse = await sse_elsewhere(native_stack, "nginx", publisher, f"channel={channel}&since=latest")
    assert await sse.preamble() == "0"
    await no_event(sse)
    live = [await publish(worker_base(publisher), channel, n) for n in range(2)]
    assert [(await sse.event())["data"] for _ in live] == [
        {"type": "message", "channel": channel, "id": i, "data": n} for n, i in enumerate(live)
    ]
    await no_event(sse)
    sse.close()


async def test_sse_latest_over_two_channels_names_both_in_the_cursor(native_stack: NativeStack) -> None:
    """A two-channel SSE stream at since=latest: the cursor names each last id, then each newest message."""
    a, b = fresh("latest.a"), fresh("latest.b")
    publisher = native_stack.worker_ports[0]
    ids_a = await publish_some(worker_base(publisher), a, 2)
    ids_b = await publish_some(worker_base(publisher), b, 3)
    sse = await sse_elsewhere(native_stack, "nginx", publisher, f"channel={a}&channel={b}&since=latest")
    assert await sse.preamble() == f"{a}={ids_a[-1]},{b}={ids_b[-1]}"
    first, second = await sse.event(), await sse.event()
    assert sorted((e["data"]["channel"], e["data"]["id"]) for e in (first, second)) == sorted(
        [(a, ids_a[-1]), (b, ids_b[-1])]
    )
    assert second["id"] == f"{a}={ids_a[-1]},{b}={ids_b[-1]}"
    await no_event(sse)
    sse.close()


async def test_sse_reconnect_with_last_event_id_resumes_not_latest(native_stack: NativeStack) -> None:
    """Reconnecting to the same ?since=latest URL with Last-Event-ID gets every missed message, in order."""
    channel = fresh("latest.resume")
    publisher = native_stack.worker_ports[0]
    ids = await publish_some(worker_base(publisher), channel)
    query = f"channel={channel}&since=latest"
    first = await sse_elsewhere(native_stack, "nginx", publisher, query)
    await first.preamble()
    assert (await first.event())["id"] == str(ids[-1])
    first.close()
    missed = [await publish(worker_base(publisher), channel, f"missed {n}") for n in range(2)]
    other = next(p for p in native_stack.worker_ports if p != publisher)
    again = await SSE.connect(f"{worker_base(other)}/events?{query}", {"Last-Event-ID": str(ids[-1])})
    assert await again.preamble() == str(ids[-1])
    assert [(await again.event())["data"]["id"] for _ in missed] == missed
    await no_event(again)
    again.close()


async def test_sse_since_an_id_on_a_first_connection_resumes_after_it(native_stack: NativeStack) -> None:
    """?since=ID without Last-Event-ID starts a first SSE connection right after that id."""
    channel = fresh("latest.since")
    publisher = native_stack.worker_ports[0]
    ids = await publish_some(worker_base(publisher), channel, 4)
    sse = await sse_elsewhere(native_stack, "nginx", publisher, f"channel={channel}&since={ids[1]}")
    assert await sse.preamble() == str(ids[1])
    assert [(await sse.event())["data"]["id"] for _ in ids[2:]] == ids[2:]
    await no_event(sse)
    sse.close()
