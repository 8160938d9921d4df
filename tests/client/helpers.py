"""What the client's stack tests share: bounded collection of events, and publishing to a worker."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from app.client import Client, Event, Message, Reset, Status
from tests.helpers import UNIT


def post(base: str, channel: str, data: Any, key: str | None = None) -> int:
    """Publish over HTTP with the standard library (not the client under test); the id."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{base}/api/channels/{channel}", json.dumps(data).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return int(json.load(answer)["id"])


async def apost(base: str, channel: str, data: Any, key: str | None = None) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, post, base, channel, data, key)


async def next_event(client: Client, timeout: float = 10) -> Event:
    return await asyncio.wait_for(client.__anext__(), timeout * UNIT)


async def until_live(client: Client, timeout: float = 15) -> list[Event]:
    """The events up to and including the next Status live."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout * UNIT):
        while True:
            event = await client.__anext__()
            seen.append(event)
            if isinstance(event, Status) and event.status == "live":
                return seen


async def collect(client: Client, n: int, timeout: float = 15) -> tuple[list[Message], list[Event]]:
    """The next ``n`` messages, and every event seen meanwhile (statuses, resets)."""
    messages: list[Message] = []
    events: list[Event] = []
    async with asyncio.timeout(timeout * UNIT):
        while len(messages) < n:
            event = await client.__anext__()
            events.append(event)
            if isinstance(event, Message):
                messages.append(event)
    return messages, events


def resets(events: list[Event]) -> list[Reset]:
    return [e for e in events if isinstance(e, Reset)]


def statuses(events: list[Event]) -> list[str]:
    return [e.status for e in events if isinstance(e, Status)]
