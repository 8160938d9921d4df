"""What the client's stack tests share: bounded collection of events, and publishing to a worker."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from app.client import Client, Event, Message, Reset, Status
from tests.helpers import UNIT, http


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


@dataclass
class Publisher:
    """Publishes at a fixed total rate, round robin over channels, straight to one worker; records ids."""

    base: str
    channels: list[str]
    rate: float
    key: str | None = None
    accepted: dict[str, list[int]] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else None
        interval, next_at, n = 1.0 / self.rate, time.monotonic(), 0
        while not stop.is_set():
            channel = self.channels[n % len(self.channels)]
            status, body, _ = await http("POST", f"{self.base}/api/channels/{channel}", {"n": n}, headers)
            if status == 202:
                self.accepted.setdefault(channel, []).append(body["id"])
            else:
                self.refused[status] = self.refused.get(status, 0) + 1
            n += 1
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))


@dataclass
class Recorder:
    """Everything one Client yields, until it is closed."""

    client: Client
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    live: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async for event in self.client:
            self.events.append(event)
            if isinstance(event, Message):
                self.messages.append(event)
            elif isinstance(event, Status) and event.status == "live":
                self.live.set()

    def received(self, channel: str) -> list[int]:
        return [m.id for m in self.messages if m.channel == channel]

    def reconnects(self) -> int:
        return sum(1 for e in self.events if isinstance(e, Status) and e.status == "reconnecting")

    def errors(self) -> list[str]:
        return [e.error.code for e in self.events if isinstance(e, Status) and e.error is not None]


def ledger(name: str, publisher: Publisher, recorder: Recorder) -> dict[str, Any]:
    """Published against received, per channel: lost, duplicated, out of order; printed like tests/faults/."""
    published = received = lost = duplicated = disordered = 0
    for channel in publisher.channels:
        sent = publisher.accepted.get(channel, [])
        got = recorder.received(channel)
        published += len(sent)
        received += len(got)
        lost += len(set(sent) - set(got))
        duplicated += len(got) - len(set(got))
        disordered += sum(1 for x, y in itertools.pairwise(got) if y <= x)
    figures = {
        "published": published,
        "received": received,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": disordered,
        "refused": dict(publisher.refused),
        "reconnects": recorder.reconnects(),
        "errors": sorted(set(recorder.errors())),
    }
    print(f"\n[client] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return figures


async def all_received(publisher: Publisher, recorder: Recorder, timeout: float = 30) -> None:
    """Wait (bounded) until every accepted message has arrived, or the time is up."""
    deadline = time.monotonic() + timeout * UNIT
    while time.monotonic() < deadline:
        if all(set(ids) <= set(recorder.received(ch)) for ch, ids in publisher.accepted.items()):
            return
        await asyncio.sleep(0.1)
