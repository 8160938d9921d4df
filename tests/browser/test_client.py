"""windsock.js on its own in chromium: resume, reset, publish, backoff, idle detection, both transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import Tab
from tests.helpers import UNIT, eventually, publish

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "sse"])

START = """async (options) => {
    const { Windsock } = await import("/windsock.js");
    window.events = [];
    window.client = new Windsock(options);
    for (const kind of ["message", "status", "reset", "error"]) {
        window.client.on(kind, (event) => window.events.push({ kind, ...event }));
    }
}"""


async def start_client(open_tab: Any, base: str, **options: Any) -> Tab:
    """A blank same-origin page running one Windsock client that records every event in window.events."""
    tab: Tab = await open_tab(f"{base}/healthz")
    await tab.page.evaluate(START, {"url": base, **options})
    return tab


async def events(tab: Tab, kind: str) -> list[dict[str, Any]]:
    return list(await tab.page.evaluate("(kind) => window.events.filter((e) => e.kind === kind)", kind))


async def statuses(tab: Tab) -> list[str]:
    return [e["status"] for e in await events(tab, "status")]


async def wait_messages(tab: Tab, n: int) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(await events(tab, "message")) >= n

    await eventually(enough)
    return await events(tab, "message")


async def wait_status(tab: Tab, status: str, after: int = 0) -> None:
    async def seen() -> bool:
        return status in (await statuses(tab))[after:]

    await eventually(seen)


@TRANSPORTS
async def test_resume_from_lost_position_reports_reset(
    make_server: Any, open_tab: Any, transport: str
) -> None:
    """A position older than the kept history gives a reset event, then the kept messages, then live ones."""
    server = await make_server(history_size=3)
    ids = [await publish(server.base, "news", i) for i in range(6)]
    tab = await start_client(
        open_tab, server.base, transport=transport, channels=["news"], since={"news": ids[0]}
    )
    await wait_messages(tab, 3)
    ids.append(await publish(server.base, "news", 6))
    messages = await wait_messages(tab, 4)
    assert [(m["id"], m["data"]) for m in messages] == list(zip(ids[3:], [3, 4, 5, 6], strict=True))
    resets = await events(tab, "reset")
    assert [(r["channel"], r["id"]) for r in resets] == [("news", ids[5])]
    assert await statuses(tab) == ["connecting", "live"]
    assert tab.page_errors == []


@TRANSPORTS
async def test_live_subscription_and_later_subscribe(make_server: Any, open_tab: Any, transport: str) -> None:
    """Without since a channel starts live; subscribe(c, 0) adds one with its history; unsubscribe() drops."""
    server = await make_server()
    await publish(server.base, "a", "old")
    await publish(server.base, "b", "b-old")
    tab = await start_client(open_tab, server.base, transport=transport, channels=["a"])
    await wait_status(tab, "live")
    await publish(server.base, "a", "new")
    await wait_messages(tab, 1)
    await tab.page.evaluate("window.client.subscribe('b', 0)")
    await wait_messages(tab, 2)
    await tab.page.evaluate("window.client.unsubscribe('a')")
    await publish(server.base, "a", "ignored")
    await publish(server.base, "b", "b-new")
    messages = await wait_messages(tab, 3)
    await tab.page.wait_for_timeout(200)
    assert [(m["channel"], m["data"]) for m in await events(tab, "message")] == [
        ("a", "new"),
        ("b", "b-old"),
        ("b", "b-new"),
    ]
    assert len(messages) == 3 and tab.page_errors == []


async def test_replayed_messages_are_not_delivered_twice(make_server: Any, open_tab: Any) -> None:
    """Messages the server sends again (here: the raw resubscribe frame at 0) are dropped by id."""
    server = await make_server()
    tab = await start_client(open_tab, server.base, transport="websocket", channels=["x"], since=0)
    await wait_status(tab, "live")
    for i in range(3):
        await publish(server.base, "x", i)
    await wait_messages(tab, 3)
    # Behind the client's back, as a retrying proxy might: the server replays all three.
    await tab.page.evaluate("window.client._send({type: 'subscribe', channel: 'x', since: 0})")
    await publish(server.base, "x", 3)
    await wait_messages(tab, 4)
    await tab.page.wait_for_timeout(200)
    assert [m["data"] for m in await events(tab, "message")] == [0, 1, 2, 3]


async def test_publish_answers(make_server: Any, open_tab: Any) -> None:
    """publish() resolves with the id over WebSocket, rejects a forbidden channel; over SSE, httpPublish()."""
    server = await make_server()
    tab = await start_client(open_tab, server.base, transport="websocket", channels=["chat.x"])
    await wait_status(tab, "live")
    published = await tab.page.evaluate("window.client.publish('chat.x', {text: 'hi'})")
    messages = await wait_messages(tab, 1)
    assert messages[0]["id"] == published and messages[0]["data"] == {"text": "hi"}
    refused = await tab.page.evaluate("window.client.publish('news', 1).catch((e) => e.code)")
    assert refused == "forbidden"

    sse = await start_client(open_tab, server.base, transport="sse", channels=["chat.x"])
    await wait_status(sse, "live")
    error = await sse.page.evaluate("window.client.publish('chat.x', 1).catch((e) => e.message)")
    assert "httpPublish" in error
    sent = await sse.page.evaluate(
        "import('/windsock.js').then((m) => m.httpPublish(location.origin, 'chat.x', {text: 'by http'}))"
    )
    assert sent == published + 1
    assert [m["data"] for m in await wait_messages(sse, 1)] == [{"text": "by http"}]


@TRANSPORTS
async def test_backoff_grows_with_jitter_when_the_worker_is_gone(
    spawn_worker: Callable[..., Any], open_tab: Any, transport: str
) -> None:
    """After the worker drains and exits, retries wait min*2^n, jittered to [half, whole] and capped."""
    worker = await spawn_worker()
    tab = await start_client(
        open_tab, worker.base, transport=transport, channels=["x"], minDelay=0.2, maxDelay=0.8
    )
    await wait_status(tab, "live")
    worker.stop()  # SIGTERM: WebSocket close 1001 / the SSE stream ends; then nothing listens

    async def retries() -> bool:
        return len([e for e in await events(tab, "status") if e["status"] == "reconnecting"]) >= 5

    await eventually(retries)
    waits = [
        (e["attempt"], e["retryIn"]) for e in await events(tab, "status") if e["status"] == "reconnecting"
    ]
    for attempt, retry_in in waits[:5]:
        step = min(0.8, 0.2 * 2 ** (attempt - 1))
        assert step / 2 - 0.02 <= retry_in <= step + 0.001, waits
    assert [a for a, _ in waits[:5]] == [1, 2, 3, 4, 5]
    await tab.page.evaluate("window.client.close()")
    assert (await statuses(tab))[-1] == "closed"


@TRANSPORTS
async def test_silent_connection_is_detected_and_replaced(
    spawn_worker: Callable[..., Any], open_tab: Any, transport: str
) -> None:
    """A worker that stops answering (SIGSTOP) is left after 2.5 heartbeats; on SIGCONT nothing is lost."""
    worker = await spawn_worker()
    other = await spawn_worker()
    tab = await start_client(
        open_tab,
        worker.base,
        transport=transport,
        channels=["x"],
        since=0,
        heartbeat=0.4 * UNIT,
        minDelay=0.2,
    )
    await wait_status(tab, "live")
    # Healthy but quiet for 4 heartbeats: pongs (WebSocket) or a quiet stream
    # replacement (SSE) keep it live, with no reconnecting shown.
    await tab.page.wait_for_timeout(1600 * UNIT)
    assert await statuses(tab) == ["connecting", "live"]
    await publish(worker.base, "x", "before")
    await wait_messages(tab, 1)

    worker.pause()
    await wait_status(tab, "reconnecting")
    await publish(other.base, "x", "during")
    worker.resume()
    await wait_status(tab, "live", after=2)
    await publish(worker.base, "x", "after")
    await wait_messages(tab, 3)
    await tab.page.wait_for_timeout(200)
    assert [m["data"] for m in await events(tab, "message")] == ["before", "during", "after"]
    assert tab.page_errors == []


@TRANSPORTS
async def test_token_option_refreshes_on_reconnect(make_server: Any, open_tab: Any, transport: str) -> None:
    """With SUBSCRIBE_SECRET set, a token function is asked again on reconnect; expiry loses nothing."""
    from app.auth import mint_token

    secret = "browser-secret-0123456789-abcdefgh"
    server = await make_server(subscribe_secret=secret)
    tab: Tab = await open_tab(f"{server.base}/healthz")
    await tab.page.evaluate("(token) => { window.token = token; }", mint_token(secret, ["feed"], ttl=3))
    await tab.page.evaluate(
        START.replace("new Windsock(options)", "new Windsock({...options, token: () => window.token})"),
        {"url": server.base, "transport": transport, "channels": ["feed"], "minDelay": 0.1},
    )
    await wait_status(tab, "live")
    await publish(server.base, "feed", "before expiry")
    await wait_messages(tab, 1)
    # The page hands the client a fresh token; the old one expires on the open connection.
    await tab.page.evaluate("(token) => { window.token = token; }", mint_token(secret, ["feed"], ttl=600))
    await wait_status(tab, "reconnecting")
    await publish(server.base, "feed", "during reconnect")
    await wait_status(tab, "live", after=2)
    await publish(server.base, "feed", "after")
    messages = await wait_messages(tab, 3)
    assert [m["data"] for m in messages] == ["before expiry", "during reconnect", "after"]
    assert tab.page_errors == []


@TRANSPORTS
async def test_latest_gives_each_channels_newest_message_then_live(
    make_server: Any, open_tab: Any, transport: str
) -> None:
    """since "latest": each channel's newest message once (nothing for an empty one), then live messages."""
    server = await make_server()
    ids = [await publish(server.base, "a", i) for i in range(3)]
    tab = await start_client(open_tab, server.base, transport=transport, channels=["a", "b"], since="latest")
    await wait_status(tab, "live")
    [newest] = await wait_messages(tab, 1)
    assert (newest["channel"], newest["id"], newest["data"]) == ("a", ids[-1], 2)
    live = [await publish(server.base, channel, channel) for channel in ("b", "a")]
    messages = await wait_messages(tab, 3)
    await tab.page.wait_for_timeout(200)  # let anything late show up
    assert [(m["channel"], m["id"]) for m in await events(tab, "message")] == [
        ("a", ids[-1]),
        ("b", live[0]),
        ("a", live[1]),
    ]
    assert await tab.page.evaluate("window.client.positions()") == {"a": live[1], "b": live[0]}
    assert await events(tab, "reset") == [] and len(messages) == 3 and tab.page_errors == []


@TRANSPORTS
async def test_latest_per_channel_and_subscribe_latest_while_live(
    make_server: Any, open_tab: Any, transport: str
) -> None:
    """since {a: "latest", b: 0}: a's newest, b's history; subscribe("c", "latest") later: c's newest."""
    server = await make_server()
    ids_a = [await publish(server.base, "a", f"a{i}") for i in range(3)]
    ids_b = [await publish(server.base, "b", f"b{i}") for i in range(2)]
    id_c = [await publish(server.base, "c", f"c{i}") for i in range(2)][-1]
    tab = await start_client(
        open_tab, server.base, transport=transport, channels=["a", "b"], since={"a": "latest", "b": 0}
    )
    await wait_status(tab, "live")
    first = await wait_messages(tab, 3)
    assert sorted((m["channel"], m["id"]) for m in first) == [
        ("a", ids_a[-1]),
        ("b", ids_b[0]),
        ("b", ids_b[1]),
    ]
    await tab.page.evaluate("window.client.subscribe('c', 'latest')")
    later = (await wait_messages(tab, 4))[3]
    assert (later["channel"], later["id"], later["data"]) == ("c", id_c, "c1")
    live = await publish(server.base, "c", "live")
    await wait_messages(tab, 5)
    await tab.page.wait_for_timeout(200)
    assert [(m["channel"], m["id"]) for m in await events(tab, "message")][3:] == [("c", id_c), ("c", live)]
    assert tab.page_errors == []


@TRANSPORTS
async def test_a_reconnect_after_latest_resumes_from_the_last_id(
    spawn_worker: Callable[..., Any], open_tab: Any, transport: str
) -> None:
    """The worker goes away after a "latest" start: the reconnect gets every message of the gap, in order."""
    worker = await spawn_worker()
    other = await spawn_worker()
    ids = [await publish(worker.base, "x", i) for i in range(3)]
    tab = await start_client(
        open_tab, worker.base, transport=transport, channels=["x"], since="latest", minDelay=0.2, maxDelay=0.4
    )
    [newest] = await wait_messages(tab, 1)
    assert newest["id"] == ids[-1]
    await wait_status(tab, "live")
    worker.stop()  # SIGTERM: WebSocket close 1001 / the SSE stream ends; then nothing listens on its port
    await wait_status(tab, "reconnecting")
    gap = [await publish(other.base, "x", f"gap {n}") for n in range(3)]
    await spawn_worker(port=worker.port)  # a new worker on the same port, sharing the same Redis

    async def caught_up() -> bool:
        return any(m["id"] == gap[-1] for m in await events(tab, "message"))

    await eventually(caught_up)
    await tab.page.wait_for_timeout(200)
    assert [m["id"] for m in await events(tab, "message")] == [ids[-1], *gap], "the gap, not just its newest"
    assert tab.page_errors == []
