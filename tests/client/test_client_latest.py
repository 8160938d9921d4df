"""The Python client's since="latest" through nginx, over both transports.

A channel asked for at "latest" gets its newest retained message, then live
ones; once the client holds a position there, every reconnect resumes after
that id like any other channel (it never asks for "latest" again, which
would skip what was published while it was away).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from app.client import Client, Message, Reset, ServerError, Status
from tests.client.helpers import apost, collect, post, until_live
from tests.helpers import UNIT, eventually
from tests.stack.conftest import NativeStack, get_json

pytestmark = pytest.mark.stack

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "sse"])


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def by_channel(messages: list[Message]) -> dict[str, list[tuple[int, Any]]]:
    result: dict[str, list[tuple[int, Any]]] = {}
    for m in messages:
        result.setdefault(m.channel, []).append((m.id, m.data))
    return result


def only_messages_and_statuses(events: list[Any]) -> None:
    unexpected = [e for e in events if isinstance(e, (Reset, ServerError))]
    assert unexpected == [], unexpected


@TRANSPORTS
async def test_since_latest_gives_each_channels_newest_message_then_live(
    native_stack: NativeStack, transport: str
) -> None:
    """since="latest": each channel's newest message once (none for an empty one), then live messages."""
    a, b, empty = fresh("l.a"), fresh("l.b"), fresh("l.empty")
    ids_a = [post(native_stack.base, a, {"n": i}) for i in range(3)]
    id_b = post(native_stack.base, b, "only")
    async with Client(native_stack.base, [a, b, empty], since="latest", transport=transport) as client:
        first, events = await collect(client, 2)
        assert by_channel(first) == {a: [(ids_a[-1], {"n": 2})], b: [(id_b, "only")]}
        if client.status != "live":
            events += await until_live(client)
        assert client.positions() == {a: ids_a[-1], b: id_b, empty: 0}
        live = [await apost(native_stack.base, ch, ch) for ch in (empty, a)]
        after, more = await collect(client, 2)
        assert [(m.channel, m.id) for m in after] == [(empty, live[0]), (a, live[1])]
        only_messages_and_statuses(events + more)


@TRANSPORTS
async def test_latest_mixes_with_ids_and_live_channels(native_stack: NativeStack, transport: str) -> None:
    """since={a: "latest", b: 0}, c left out: a's newest, b's whole history, c live only (SSE: one stream)."""
    a, b, c = fresh("mix.a"), fresh("mix.b"), fresh("mix.c")
    ids_a = [post(native_stack.base, a, i) for i in range(3)]
    ids_b = [post(native_stack.base, b, i) for i in range(2)]
    post(native_stack.base, c, "old, not wanted")
    async with Client(native_stack.base, [a, b, c], since={a: "latest", b: 0}, transport=transport) as client:
        first, events = await collect(client, 3)
        assert by_channel(first) == {a: [(ids_a[-1], 2)], b: [(ids_b[0], 0), (ids_b[1], 1)]}
        if client.status != "live":
            events += await until_live(client)
        new_c = await apost(native_stack.base, c, "new")
        new_a = await apost(native_stack.base, a, "new")
        after, more = await collect(client, 2)
        assert [(m.channel, m.id) for m in after] == [(c, new_c), (a, new_a)]
        only_messages_and_statuses(events + more)


@TRANSPORTS
async def test_subscribe_latest_while_live(native_stack: NativeStack, transport: str) -> None:
    """subscribe(ch, since="latest") on a live client: that channel's newest message, then its live ones."""
    x, y = fresh("sub.x"), fresh("sub.y")
    ids_y = [post(native_stack.base, y, i) for i in range(3)]
    async with Client(native_stack.base, [x], transport=transport) as client:
        await until_live(client)
        await client.subscribe(y, since="latest")
        [newest], _ = await collect(client, 1)
        assert (newest.channel, newest.id, newest.data) == (y, ids_y[-1], 2)
        live = await apost(native_stack.base, y, "live")
        [message], events = await collect(client, 1)
        assert (message.channel, message.id) == (y, live)
        only_messages_and_statuses(events)


async def until_reconnecting(client: Client, timeout: float = 15) -> list[Any]:
    """The events up to and including the next Status reconnecting."""
    seen: list[Any] = []
    async with asyncio.timeout(timeout * UNIT):
        while not (seen and isinstance(seen[-1], Status) and seen[-1].status == "reconnecting"):
            seen.append(await client.__anext__())
    return seen


async def collect_until(client: Client, last: int, timeout: float = 30) -> tuple[list[Message], list[Any]]:
    """The messages up to and including id ``last``, and every event seen meanwhile."""
    messages: list[Message] = []
    events: list[Any] = []
    async with asyncio.timeout(timeout * UNIT):
        while not (messages and messages[-1].id >= last):
            events.append(event := await client.__anext__())
            if isinstance(event, Message):
                messages.append(event)
    return messages, events


def holder(stack: NativeStack, kind: str) -> int | None:
    """The port of the one worker holding a client connection of this kind (None: not exactly one)."""
    ports = [
        p
        for p in stack.worker_ports
        if get_json(f"http://127.0.0.1:{p}/healthz")[1]["connections"].get(kind, 0) > 0
    ]
    return ports[0] if len(ports) == 1 else None


@TRANSPORTS
async def test_a_reconnect_after_latest_resumes_from_the_last_id(
    fresh_stack: Callable[..., NativeStack], transport: str
) -> None:
    """SIGKILL of the client's worker after a latest start: the reconnect gets every message of the gap."""
    stack = fresh_stack(workers=2)
    channel = fresh("gap")
    ids = [post(stack.base, channel, i) for i in range(3)]
    # The first retry waits 1 to 2 s: far longer than the publishes made in the gap.
    client = Client(stack.base, [channel], since="latest", transport=transport, min_delay=2, max_delay=2)
    async with client:
        [newest], events = await collect(client, 1)
        assert newest.id == ids[-1]
        if client.status != "live":
            events += await until_live(client)
        victim: int | None = None

        async def held() -> bool:
            nonlocal victim
            victim = await asyncio.to_thread(holder, stack, transport)
            return victim is not None

        await eventually(held)
        assert victim is not None
        survivor = next(p for p in stack.worker_ports if p != victim)
        os.kill(stack.worker_pid(victim), signal.SIGKILL)
        events += await until_reconnecting(client)
        gap = [await apost(f"http://127.0.0.1:{survivor}", channel, f"gap {n}") for n in range(3)]
        got, more = await collect_until(client, gap[-1])
        assert [m.id for m in got] == gap, "every message of the gap, not just the newest"
        after = await apost(f"http://127.0.0.1:{survivor}", channel, "after")
        [last], tail = await collect(client, 1)
        assert last.id == after
        only_messages_and_statuses(events + more + tail)
