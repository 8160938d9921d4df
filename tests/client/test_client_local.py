"""The client against nothing: giving up, asking the token again per attempt, closing during backoff."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.client import Client, ClientError, Status
from tests.helpers import UNIT, free_port


async def read_all(client: Client, into: list[Any]) -> None:
    async with client, asyncio.timeout(20 * UNIT):
        async for event in client:
            into.append(event)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_max_attempts_gives_up_with_the_last_error(transport: Any) -> None:
    """max_attempts=3 and no server: 3 attempts fail, with backoff, then the iteration raises unreachable."""
    client = Client(
        f"http://127.0.0.1:{free_port()}", ["a"], transport=transport, max_attempts=3, min_delay=0.05
    )
    seen: list[Any] = []
    with pytest.raises(ClientError) as caught:
        await read_all(client, seen)
    assert caught.value.code == "unreachable" and "connection refused" in caught.value.message
    states = [(e.status, e.attempt) for e in seen if isinstance(e, Status)]
    assert states == [
        ("connecting", 0),
        ("reconnecting", 1),
        ("connecting", 1),
        ("reconnecting", 2),
        ("connecting", 2),
        ("closed", 2),
    ]
    waits = [e.retry_in for e in seen if isinstance(e, Status) and e.status == "reconnecting"]
    assert 0.025 <= waits[0] <= 0.05 and 0.05 <= waits[1] <= 0.1, "jittered, doubling"


@pytest.mark.parametrize("kind", ["plain", "async"])
async def test_the_token_callable_is_asked_on_every_attempt(kind: str) -> None:
    """A token callable (plain or async) is called once per connection attempt: a fresh token each time."""
    calls: list[float] = []

    def plain() -> str:
        calls.append(time.monotonic())
        return f"token-{len(calls)}"

    async def coroutine() -> str:
        return plain()

    token = plain if kind == "plain" else coroutine
    client = Client(f"http://127.0.0.1:{free_port()}", ["a"], token=token, max_attempts=4, min_delay=0.02)
    with pytest.raises(ClientError):
        await read_all(client, [])
    assert len(calls) == 4


async def test_close_during_backoff_ends_at_once() -> None:
    """close() while the client waits 30 s or more to reconnect ends the iteration at once, without error."""
    client = Client(f"http://127.0.0.1:{free_port()}", ["a"], min_delay=60, max_delay=60)
    async with client, asyncio.timeout(10 * UNIT):
        event = await client.__anext__()
        while not (isinstance(event, Status) and event.status == "reconnecting"):
            event = await client.__anext__()
        assert event.retry_in >= 30
        started = time.monotonic()
        await client.close()
        assert [e async for e in client] == []
        assert time.monotonic() - started < 3 * UNIT
        assert client.status == "closed"


def test_bad_options_are_refused_at_once() -> None:
    """A bad transport, URL, channel or since raises ClientError with its code when the Client is made."""
    for kwargs, code in [
        ({"transport": "carrier-pigeon"}, "bad_transport"),
        ({"url": "ftp://127.0.0.1"}, "bad_url"),
        ({"channels": ["a b"]}, "bad_channel"),
        ({"channels": ["a"], "since": -1}, "bad_since"),
        ({"channels": ["a"], "since": {"a": "x"}}, "bad_since"),
    ]:
        with pytest.raises(ClientError) as caught:
            Client(**kwargs)
        assert caught.value.code == code, kwargs
