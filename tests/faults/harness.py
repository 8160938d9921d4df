"""Fault-injection harness: resuming subscribers, an open-loop publisher, and the loss ledger."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
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
    payloads: dict[int, int] = field(default_factory=dict)  # id -> the publisher's payload number n
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
        data = message["data"] if isinstance(message["data"], dict) else {}
        if "n" in data:
            self.payloads[message["id"]] = data["n"]
        if "t" in data:
            self.latencies.append(time.time() - data["t"])

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
    """Publishes at a fixed rate through nginx, retrying refused publishes; records accepted ids.

    A refused payload ``n`` is sent again (``n`` only advances once accepted).
    ``keyed``: every attempt for ``n`` carries the same Idempotency-Key, a
    ``200 duplicate`` answer counts as accepted (its id is the first
    publish's), and a request that got no answer at all is retried too.
    """

    base: str
    channel: str
    rate: float
    keyed: bool = False
    accepted: list[int] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # status (0: no answer) -> count
    retried: int = 0  # attempts that repeated a payload already sent
    duplicate_answers: int = 0  # 200 duplicate: the key had published it already
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # the keys are this run's alone

    def key(self, n: int) -> str:
        return f"{self.channel}-{self.prefix}-{n}"

    async def run(self, stop: asyncio.Event) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        n = 0
        tried = -1
        url = f"{self.base}/api/channels/{self.channel}"
        while not stop.is_set():
            if tried == n:
                self.retried += 1
            tried = n
            headers = {"Idempotency-Key": self.key(n)} if self.keyed else None
            try:
                status, body, _ = await http("POST", url, {"n": n, "t": time.time()}, headers)
            except (AssertionError, OSError):
                # No answer at all (http() asserts a response; a timeout has
                # none): the publish may or may not have happened. Only a key
                # makes sending it again safe.
                if not self.keyed:
                    raise
                status, body = 0, None
            if status == 202 or (self.keyed and status == 200 and body.get("duplicate") is True):
                self.accepted.append(body["id"])
                self.duplicate_answers += status == 200
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

    def unconfirmed(self) -> list[int]:
        """Ids some subscriber got that the publisher never saw accepted (e.g. a 502 that published)."""
        return sorted({i for s in self.subscribers for i in s.received} - set(self.publisher.accepted))

    def figures(self) -> dict[str, Any]:
        accepted = set(self.publisher.accepted)
        lost = [len(accepted - set(s.received)) for s in self.subscribers]
        duplicated = [len(s.received) - len(set(s.received)) for s in self.subscribers]
        # A payload n received under two ids was published twice: ids alone cannot show it.
        duplicated_payloads = [len(s.payloads) - len(set(s.payloads.values())) for s in self.subscribers]
        disordered = sum(
            any(b <= a for a, b in zip(s.received, s.received[1:], strict=False)) for s in self.subscribers
        )
        latencies = sorted(x for s in self.subscribers for x in s.latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
        return {
            "published": len(accepted),
            "refused": dict(self.publisher.refused),
            "retried": self.publisher.retried,
            "keyed": self.publisher.keyed,
            "duplicate_answers": self.publisher.duplicate_answers,
            "subscribers": len(self.subscribers),
            "delivered": sum(len(s.received) for s in self.subscribers),
            "lost": sum(lost),
            "duplicated": sum(duplicated),
            "duplicated_payloads": sum(duplicated_payloads),
            "delivered_not_confirmed": len(self.unconfirmed()),
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
    base: str, channel: str, clients: int, rate: float, fault: Any, settle: float = 2.0, keyed: bool = False
) -> Ledger:
    """Start clients (half WebSocket, half SSE) and a publisher, run ``fault``, let it settle, stop.

    ``keyed``: the publisher sends an Idempotency-Key with every publish (see Publisher).
    """
    subscribers = [Subscriber(base, channel, "ws" if i % 2 == 0 else "sse") for i in range(clients)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(stop)) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subscribers)), 60)
    publisher = Publisher(base, channel, rate, keyed=keyed)
    pub_stop = asyncio.Event()
    pub_task = asyncio.ensure_future(publisher.run(pub_stop))
    try:
        await asyncio.sleep(1.0)
        await fault()
        await asyncio.sleep(settle)
    except BaseException:
        # A failed fault ends the run: stop the clients before reporting it.
        pub_stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(pub_task, *tasks, return_exceptions=True), 30)
        raise
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
