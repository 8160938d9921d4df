"""The Python client against the native stack through nginx: both transports, several channels."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from app.client import Client, ClientError, Message, ServerError, Status, publish, subscribe
from tests.client.helpers import apost, collect, next_event, post, statuses, until_live
from tests.helpers import eventually
from tests.stack.conftest import NativeStack, get_json

pytestmark = pytest.mark.stack

TRANSPORTS = ["websocket", "sse"]


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_since_0_replays_every_channels_history_then_live(
    native_stack: NativeStack, transport: Any
) -> None:
    """since=0 over several channels: each one's whole history, in order, then live messages, once each."""
    a, b = fresh("c.a"), fresh("c.b")
    history = {
        a: [post(native_stack.base, a, {"n": i}) for i in range(3)],
        b: [post(native_stack.base, b, "x")],
    }
    async with Client(native_stack.base, [a, b], since=0, transport=transport) as client:
        got, events = await collect(client, 4)
        assert statuses(events)[0] == "connecting"
        assert {ch: [m.id for m in got if m.channel == ch] for ch in (a, b)} == history
        assert [m.data for m in got if m.channel == a] == [{"n": 0}, {"n": 1}, {"n": 2}]
        live = await apost(native_stack.base, b, {"live": True})
        [message], _ = await collect(client, 1)
        assert message == Message(b, live, {"live": True})
        assert client.positions() == {a: history[a][-1], b: live}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_since_map_resumes_each_channel_after_its_own_id(
    native_stack: NativeStack, transport: Any
) -> None:
    """since={ch: id}: each named channel resumes after its id; a channel left out starts live."""
    a, b, c = fresh("m.a"), fresh("m.b"), fresh("m.c")
    ids_a = [post(native_stack.base, a, i) for i in range(4)]
    ids_b = [post(native_stack.base, b, i) for i in range(2)]
    post(native_stack.base, c, "old, not wanted")
    async with Client(native_stack.base, [a, b, c], since={a: ids_a[1], b: 0}, transport=transport) as client:
        got, _ = await collect(client, 4)
        assert [(m.channel, m.id) for m in got if m.channel == a] == [(a, i) for i in ids_a[2:]]
        assert [(m.channel, m.id) for m in got if m.channel == b] == [(b, i) for i in ids_b]
        await until_live_or_already(client)
        new_c = await apost(native_stack.base, c, "new")
        [message], _ = await collect(client, 1)
        assert (message.channel, message.id, message.data) == (c, new_c, "new")


async def until_live_or_already(client: Client) -> None:
    if client.status != "live":
        await until_live(client)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_since_none_starts_live_and_positions_name_the_start(
    native_stack: NativeStack, transport: Any
) -> None:
    """since=None: no history, only what is published after the subscription; positions() names the start."""
    a, b = fresh("n.a"), fresh("n.b")
    old = post(native_stack.base, a, "before")
    async with Client(native_stack.base, [a, b], transport=transport) as client:
        await until_live(client)
        assert client.positions()[a] == old
        new = [await apost(native_stack.base, ch, ch) for ch in (a, b, a)]
        got, _ = await collect(client, 3)
        assert sorted(m.id for m in got) == sorted(new)
        assert all(m.data == m.channel for m in got)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_subscribe_unsubscribe_and_publish_while_live(
    native_stack: NativeStack, transport: Any
) -> None:
    """subscribe() adds a channel (with since: from there), unsubscribe() stops it, publish() gives the id."""
    a, b, chat = fresh("s.a"), fresh("s.b"), fresh("chat")
    before_b = post(native_stack.base, b, "kept")
    async with Client(native_stack.base, [a], transport=transport) as client:
        await until_live(client)
        await client.subscribe(b, since=0)
        await client.subscribe(chat)
        [message], _ = await collect(client, 1)
        assert (message.channel, message.id) == (b, before_b)
        await until_live_or_already(client)
        await client.unsubscribe(a)
        # Over WebSocket this is a publish frame (chat.* is CLIENT_PUBLISH); over SSE it is HTTP.
        sent = await client.publish(chat, {"text": "hi"})
        [echo], _ = await collect(client, 1)
        assert (echo.channel, echo.id, echo.data) == (chat, sent, {"text": "hi"})
        await apost(native_stack.base, a, "after unsubscribe")
        marker = await apost(native_stack.base, b, "marker")
        [after], _ = await collect(client, 1)
        assert (after.channel, after.id) == (b, marker), "nothing more from the unsubscribed channel"
        assert set(client.positions()) == {b, chat}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_publish_retried_with_its_idempotency_key_is_published_once(
    native_stack: NativeStack, transport: Any
) -> None:
    """publish(..., idempotency_key=K) twice (a WebSocket frame, or HTTP over SSE): one id, one message."""
    chat = fresh("chat")
    async with Client(native_stack.base, [chat], transport=transport) as client:
        await until_live(client)
        first = await client.publish(chat, {"text": "once"}, idempotency_key="retry-1")
        again = await client.publish(chat, {"text": "once"}, idempotency_key="retry-1")
        assert again == first
        [echo], _ = await collect(client, 1)
        assert (echo.id, echo.data) == (first, {"text": "once"})
        with pytest.raises(ClientError) as bad:
            await client.publish(chat, 1, idempotency_key="has space")
        assert bad.value.code == "bad_idempotency_key"
        marker = await apost(native_stack.base, chat, "marker")
        [after], _ = await collect(client, 1)
        assert after.id == marker, "the repeat published nothing"
    assert publish(native_stack.base, chat, 2, idempotency_key="sync-1") == publish(
        native_stack.base, chat, 3, idempotency_key="sync-1"
    )


async def test_publish_errors_carry_the_servers_code(native_stack: NativeStack) -> None:
    """A refused publish raises ClientError with the server's code (forbidden outside CLIENT_PUBLISH)."""
    async with Client(native_stack.base, [], transport="websocket") as client:
        with pytest.raises(ClientError) as caught:
            await client.publish(fresh("not-chat"), 1)
        assert caught.value.code == "forbidden"
        with pytest.raises(ClientError) as bad:
            await client.publish(fresh("chat"), float("nan"))
        assert bad.value.code == "bad_json"
    with pytest.raises(ClientError) as wrong:
        Client(native_stack.base, ["no spaces allowed"])
    assert wrong.value.code == "bad_channel"


async def test_too_many_channels_is_an_event_not_a_hang(native_stack: NativeStack) -> None:
    """A channel the server refuses for good (too_many_channels) is reported as a ServerError event."""
    names = [f"many.{i}" for i in range(101)]  # MAX_CHANNELS is 100
    async with Client(native_stack.base, names, transport="websocket") as client:
        seen = await until_live(client)
        errors = [e for e in seen if isinstance(e, ServerError)]
        assert [(e.code, e.channel) for e in errors] == [("too_many_channels", "many.100")]
        assert "many.100" not in client.channels


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_close_is_clean_and_ends_the_iteration(native_stack: NativeStack, transport: Any) -> None:
    """close() from another task ends `async for` without error; no worker holds the connection after."""
    client = Client(native_stack.base, [fresh("close")], transport=transport)
    await until_live(client)
    assert sum(open_connections(native_stack).values()) == 1

    async def consume() -> list[Any]:
        return [event async for event in client]

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    await client.close()
    assert await asyncio.wait_for(consumer, 10) == []
    assert client.status == "closed"
    await eventually(lambda: sum(open_connections(native_stack).values()) == 0, timeout=10)


def open_connections(stack: NativeStack) -> dict[str, int]:
    """The client connections every worker holds, by kind (websocket, sse)."""
    total: dict[str, int] = {}
    for port in stack.worker_ports:
        for kind, n in get_json(f"http://127.0.0.1:{port}/healthz")[1]["connections"].items():
            total[kind] = total.get(kind, 0) + n
    return total


def test_sync_facade_subscribes_and_publishes(native_stack: NativeStack) -> None:
    """subscribe() and publish() without asyncio: history, then a live message, in a plain for loop."""
    a = fresh("sync")
    first = publish(native_stack.base, a, {"n": 1})
    got: list[Message] = []
    for event in subscribe(native_stack.base, a, since=0, transport="sse"):
        if isinstance(event, Message):
            got.append(event)
            if len(got) == 1:
                publish(native_stack.base, a, {"n": 2})
            else:
                break
    assert got[0].id == first
    assert [m.data for m in got] == [{"n": 1}, {"n": 2}]
    with pytest.raises(ClientError) as caught:
        publish(native_stack.base, "bad channel", 1)
    assert caught.value.code == "bad_channel"


async def test_the_first_event_is_connecting(native_stack: NativeStack) -> None:
    """The first event of a new client is its connecting status."""
    async with Client(native_stack.base, [fresh("first")]) as client:
        event = await next_event(client)
        assert isinstance(event, Status) and event.status == "connecting"
