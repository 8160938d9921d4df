"""Fault-injection harness: resuming subscribers, an open-loop publisher, and the loss ledger."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import SSE, WS, http

_STOPPED: Any = object()


async def _unless_stopped(read: Any, stop: asyncio.Event) -> Any:
    """Await ``read``, or return _STOPPED as soon as ``stop`` is set (cancelling the read)."""
    reading = asyncio.ensure_future(read)
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if reading not in done:
        reading.cancel()
        return _STOPPED
    return reading.result()


@dataclass
class Subscriber:
    """Subscribes through nginx, and on any disconnect reconnects and resumes from its last id."""

    base: str
    channel: str
    transport: str  # "ws" or "sse"
    received: list[int] = field(default_factory=list)
    last: int | None = None
    reconnects: int = 0
    resets: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            try:
                if self.transport == "ws":
                    await self._ws(stop)
                else:
                    await self._sse(stop)
            except (
                OSError,
                EOFError,
                asyncio.IncompleteReadError,
                TimeoutError,
                AssertionError,
                ValueError,
                KeyError,
            ) as exc:
                del exc
            except Exception as exc:  # tornado's HTTPClientError during a handshake refused by a dying worker
                del exc
            if stop.is_set():
                break
            if not first or self.received:
                self.reconnects += 1
            first = False
            await asyncio.sleep(0.05)

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("type") == "reset":
            self.resets += 1
            return
        if message.get("type") != "message":
            return
        self.received.append(message["id"])
        self.last = message["id"]
        sent = message["data"].get("t") if isinstance(message["data"], dict) else None
        if sent is not None:
            self.latencies.append(time.time() - sent)

    async def _ws(self, stop: asyncio.Event) -> None:
        ws = await WS.connect(f"{self.base.replace('http', 'ws', 1)}/ws")
        try:
            frame: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
            if self.last is not None:
                frame["since"] = self.last
            await ws.send(frame)
            while not stop.is_set():
                message = await _unless_stopped(ws.recv(timeout=3600), stop)
                if message is _STOPPED:
                    return
                if message is None:
                    raise EOFError("closed")
                if message["type"] == "subscribed":
                    if self.last is None:
                        self.last = message["id"]
                    self.connected.set()
                self._take(message)
        finally:
            ws.close()

    async def _sse(self, stop: asyncio.Event) -> None:
        headers = {} if self.last is None else {"Last-Event-ID": str(self.last)}
        sse = await SSE.connect(f"{self.base}/events?channel={self.channel}", headers)
        try:
            if sse.status != 200:
                raise EOFError(f"status {sse.status}")
            start = await sse.preamble()
            if self.last is None:
                self.last = int(start)
            self.connected.set()
            while not stop.is_set():
                event = await _unless_stopped(sse.event(timeout=3600), stop)
                if event is _STOPPED:
                    return
                self._take(event["data"])
        finally:
            sse.close()


@dataclass
class Publisher:
    """Publishes at a fixed rate through nginx, retrying refused publishes; records accepted ids."""

    base: str
    channel: str
    rate: float
    accepted: list[int] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        while not stop.is_set():
            status, body, _ = await http(
                "POST", f"{self.base}/api/channels/{self.channel}", {"n": n, "t": time.time()}
            )
            if status == 202:
                self.accepted.append(body["id"])
                n += 1
            else:
                self.refused[status] = self.refused.get(status, 0) + 1
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))


@dataclass
class Ledger:
    """What was published against what each subscriber received."""

    publisher: Publisher
    subscribers: list[Subscriber]

    def figures(self) -> dict[str, Any]:
        accepted = set(self.publisher.accepted)
        lost = [len(accepted - set(s.received)) for s in self.subscribers]
        duplicated = [len(s.received) - len(set(s.received)) for s in self.subscribers]
        disordered = sum(
            any(b <= a for a, b in zip(s.received, s.received[1:], strict=False)) for s in self.subscribers
        )
        latencies = sorted(x for s in self.subscribers for x in s.latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
        return {
            "published": len(accepted),
            "refused": dict(self.publisher.refused),
            "subscribers": len(self.subscribers),
            "delivered": sum(len(s.received) for s in self.subscribers),
            "lost": sum(lost),
            "duplicated": sum(duplicated),
            "out_of_order": disordered,
            "reconnects": sum(s.reconnects for s in self.subscribers),
            "resets": sum(s.resets for s in self.subscribers),
            "p99_ms": round(p99, 1),
        }

    def report(self, name: str) -> dict[str, Any]:
        figures = self.figures()
        print(f"\n[fault] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        return figures


async def run_scenario(
    base: str, channel: str, clients: int, rate: float, fault: Any, settle: float = 2.0
) -> Ledger:
    """Start clients (half WebSocket, half SSE) and a publisher, run ``fault``, let it settle, stop."""
    subscribers = [Subscriber(base, channel, "ws" if i % 2 == 0 else "sse") for i in range(clients)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(stop)) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subscribers)), 60)
    publisher = Publisher(base, channel, rate)
    pub_stop = asyncio.Event()
    pub_task = asyncio.ensure_future(publisher.run(pub_stop))
    await asyncio.sleep(1.0)
    await fault()
    await asyncio.sleep(settle)
    pub_stop.set()
    await pub_task
    # Let the last messages arrive and every resume finish before counting.
    deadline = time.monotonic() + 20
    accepted = set(publisher.accepted)
    while time.monotonic() < deadline and not all(accepted <= set(s.received) for s in subscribers):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    return Ledger(publisher, subscribers)
