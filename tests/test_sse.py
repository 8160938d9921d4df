"""GET /events against a real worker, with each broker, over a raw socket."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.helpers import SSE, eventually, publish


async def test_stream_headers_and_preamble(server: Any) -> None:
    """The stream is unbuffered text/event-stream, sends retry once and a starting id."""
    sse = await SSE.connect(f"{server.base}/events?channel=news")
    assert sse.status == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.headers["x-accel-buffering"] == "no"
    assert "no-cache" in sse.headers["cache-control"]
    msg_id = await publish(server.base, "news", {"headline": "hi"})
    event = await sse.event()
    assert sse.retry == 2000
    assert event == {
        "id": str(msg_id),
        "data": {"type": "message", "channel": "news", "id": msg_id, "data": {"headline": "hi"}},
    }
    sse.close()


async def test_heartbeat_comments(make_server: Any) -> None:
    """A comment line is sent every HEARTBEAT_INTERVAL to keep proxies from timing out."""
    server = await make_server(heartbeat_interval=0.1)
    sse = await SSE.connect(f"{server.base}/events?channel=quiet")

    async def beat() -> bool:
        with contextlib.suppress(TimeoutError):
            await sse.event(timeout=0.3)
        return "ping" in sse.comments

    await eventually(beat)
    sse.close()


async def test_last_event_id_resume_has_no_gap_and_no_duplicate(server: Any) -> None:
    """Reconnecting with Last-Event-ID replays exactly what was missed, then continues live."""
    sse = await SSE.connect(f"{server.base}/events?channel=feed")
    await publish(server.base, "feed", 0)
    await publish(server.base, "feed", 1)
    got = await sse.messages(2)
    sse.close()
    for n in range(2, 5):
        await publish(server.base, "feed", n)
    again = await SSE.connect(f"{server.base}/events?channel=feed", {"Last-Event-ID": str(got[-1]["id"])})
    await publish(server.base, "feed", 5)
    rest = await again.messages(4)
    assert [m["data"] for m in rest] == [2, 3, 4, 5]
    again.close()


async def test_starting_id_covers_a_drop_before_any_message(server: Any) -> None:
    """A client that drops before its first message resumes from the starting id and misses nothing."""
    sse = await SSE.connect(f"{server.base}/events?channel=early")
    await publish(server.base, "early", "x")
    await sse.event()  # sets last_event_id from the preamble, then reads the message
    sse.close()
    fresh = await SSE.connect(f"{server.base}/events?channel=early")
    start_id = await _preamble_id(fresh)
    fresh.close()
    await publish(server.base, "early", "missed")
    resumed = await SSE.connect(f"{server.base}/events?channel=early", {"Last-Event-ID": start_id})
    assert [m["data"] for m in await resumed.messages(1)] == ["missed"]
    resumed.close()


async def _preamble_id(sse: SSE) -> str:
    with contextlib.suppress(TimeoutError):
        await sse.event(timeout=0.3)
    assert sse.last_event_id
    return sse.last_event_id


async def test_query_last_event_id_zero_gets_history(server: Any) -> None:
    """?last_event_id=0 replays the history first, so a dashboard starts full."""
    for n in range(3):
        await publish(server.base, "hist", n)
    sse = await SSE.connect(f"{server.base}/events?channel=hist&last_event_id=0")
    assert [m["data"] for m in await sse.messages(3)] == [0, 1, 2]
    sse.close()


async def test_multi_channel_cursor_resume(server: Any) -> None:
    """A stream over two channels resumes both from its cursor id, losing and repeating nothing."""
    url = f"{server.base}/events?channel=a&channel=b"
    sse = await SSE.connect(url)
    await publish(server.base, "a", "a0")
    await publish(server.base, "b", "b0")
    await sse.messages(2)
    cursor = sse.last_event_id
    assert cursor.startswith("a=") and ",b=" in cursor
    sse.close()
    await publish(server.base, "b", "b1")
    await publish(server.base, "a", "a1")
    again = await SSE.connect(url, {"Last-Event-ID": cursor})
    await publish(server.base, "a", "a2")
    got = [m["data"] for m in await again.messages(3)]
    assert sorted(got) == ["a1", "a2", "b1"] and got.index("a1") < got.index("a2")
    await asyncio.sleep(0.2)
    again.close()


async def test_bad_requests_are_400_json(server: Any) -> None:
    """No channel, a bad channel, or a bad Last-Event-ID answer 400 with a JSON error body."""
    for query, headers, code in [
        ("", {}, "bad_channel"),
        ("?channel=a%20b", {}, "bad_channel"),
        ("?channel=" + "x" * 10_000, {}, "bad_channel"),
        ("?channel=ok", {"Last-Event-ID": "yesterday"}, "bad_since"),
    ]:
        sse = await SSE.connect(f"{server.base}/events{query}", headers)
        assert (sse.status, sse.json()["code"]) == (400, code)
        sse.close()


async def test_cross_origin_is_403(server: Any) -> None:
    """An EventSource from another origin is refused with 403 and a JSON error."""
    sse = await SSE.connect(f"{server.base}/events?channel=a", {"Origin": "https://evil.example"})
    assert sse.status == 403 and sse.json()["code"] == "forbidden"
    sse.close()


async def test_shutdown_ends_the_stream(make_server: Any) -> None:
    """Stopping the worker ends SSE streams so EventSource reconnects elsewhere."""
    server = await make_server()
    sse = await SSE.connect(f"{server.base}/events?channel=x")
    await eventually(lambda: server.connections.counts().get("sse") == 1)
    stop = asyncio.ensure_future(server.stop())
    assert await sse.ends()
    await stop
    sse.close()


async def test_starting_id_is_where_the_replay_begins(server: Any) -> None:
    """With history to replay, the starting id is the resume point: a client dropping there misses nothing."""
    ids = [await publish(server.base, "gap", {"n": n}) for n in range(3)]
    first = await SSE.connect(f"{server.base}/events?channel=gap&last_event_id=0")
    assert await first.preamble() == "0"  # not the latest id, which comes after the replay
    first.close()  # gone before any replayed event arrived
    again = await SSE.connect(f"{server.base}/events?channel=gap", {"Last-Event-ID": first.last_event_id})
    assert [m["id"] for m in await again.messages(3)] == ids
    again.close()


async def test_every_cursor_of_a_replay_names_every_channel(server: Any) -> None:
    """Over several channels, each replayed event's cursor names all of them: a drop mid-replay loses none."""
    a = [await publish(server.base, "ra", n) for n in range(2)]
    b = [await publish(server.base, "rb", n) for n in range(2)]
    url = f"{server.base}/events?channel=ra&channel=rb"
    first = await SSE.connect(url, {"Last-Event-ID": f"ra={a[0] - 1},rb={b[0] - 1}"})
    assert await first.preamble() == f"ra={a[0] - 1},rb={b[0] - 1}"
    event = await first.event()
    assert event["data"]["id"] == a[0]
    assert event["id"] == f"ra={a[0]},rb={b[0] - 1}"  # rb is named before its replay starts
    first.close()  # dropped after one replayed message of four
    again = await SSE.connect(url, {"Last-Event-ID": event["id"]})
    assert sorted(m["id"] for m in await again.messages(3)) == sorted([a[1], *b])
    again.close()
