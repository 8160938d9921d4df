"""Open-loop HTTP publisher: POSTs at a fixed rate over keep-alive connections.

Each message carries the time it was *scheduled* to be sent, so a publisher
(or server) that falls behind shows up as latency instead of quietly
lowering the offered rate (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

MESSAGE_BYTES = 100


def message(sent_ns: int, phase: int, seq: int) -> bytes:
    """A JSON object of exactly MESSAGE_BYTES bytes, its stamp first (the load generator reads only that)."""
    head = b'{"t":%d,"p":%d,"s":%d,"x":"' % (sent_ns, phase, seq)
    return head + b"x" * max(0, MESSAGE_BYTES - len(head) - 2) + b'"}'


def sensor_message(sent_ns: int, phase: int, seq: int) -> bytes:
    """A typical sensor reading as JSON (about 120 bytes), its stamp first; values vary as real ones do."""
    wobble = (seq * 7919) % 1000 / 1000  # deterministic, different from one message to the next
    return (
        b'{"t":%d,"p":%d,"sensor":"greenhouse-%d","temperature":%.2f,"humidity":%.3f,'
        b'"battery":%.2f,"ts":%.3f}'
        % (
            sent_ns,
            phase,
            seq % 8 + 1,
            18 + 6 * wobble,
            0.4 + 0.3 * wobble,
            3.6 + 0.2 * wobble,
            sent_ns / 1e9,
        )
    )


BODIES = {"filler": message, "sensor": sensor_message}


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, pool: Publisher) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.closed = False
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        body = self.buf[end + 4 :]
        if b"transfer-encoding: chunked" in head:
            if not body.endswith(b"0\r\n\r\n"):
                return
        else:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(body) < length:
                return
        self.buf = b""
        self.busy = False
        self.reusable = b"connection: close" not in head
        status = int(head[9:12])
        self.pool.answered(self, 200 <= status < 300)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)


@dataclass
class PublishReport:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    max_late_ms: float = 0.0
    connections: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Publisher:
    """POSTs ``message(...)`` bodies (or ``body(...)``: see BODIES) to ``path`` on ``host:port``."""

    def __init__(
        self, host: str, port: int, path: str, max_connections: int = 64, body: str = "filler"
    ) -> None:
        self.body = BODIES[body]
        self.host = host
        self.port = port
        self.path = path
        self.max_connections = max_connections
        self.idle: list[_Conn] = []
        self.all: set[_Conn] = set()
        self.queue: list[bytes] = []
        self.report = PublishReport()
        self.opening = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def _request(self, body: bytes) -> bytes:
        return (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (self.path.encode(), self.host.encode(), self.port, len(body), body)
        )

    async def _open(self) -> None:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            transport, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
            conn.transport = transport
            self.all.add(conn)
            self.report.connections += 1
            self._ready(conn)
        except OSError as exc:
            self.report.errors.append(str(exc))
            # Requests waiting for this connection fail rather than wait forever.
            if not self.all:
                self.report.failed += len(self.queue)
                self.queue.clear()
        finally:
            self.opening -= 1

    def _ready(self, conn: _Conn) -> None:
        if self.queue:
            conn.send(self.queue.pop(0))
        else:
            self.idle.append(conn)

    def answered(self, conn: _Conn, ok: bool) -> None:
        if ok:
            self.report.ok += 1
        else:
            self.report.failed += 1
        if conn.reusable:
            self._ready(conn)
        else:
            assert conn.transport is not None
            conn.transport.close()

    def lost(self, conn: _Conn) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            self.report.failed += 1
            self.report.errors.append("connection lost with a request in flight")

    def submit(self, body: bytes) -> None:
        self.report.sent += 1
        request = self._request(body)
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.send(request)
                return
        self.queue.append(request)
        if len(self.all) + self.opening < self.max_connections:
            task = asyncio.ensure_future(self._open())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def run(self, rate: float, seconds: float, phase: int) -> PublishReport:
        """Publish ``rate`` messages per second for ``seconds``; wait (bounded) for the answers."""
        self.report = PublishReport()
        total = max(1, round(rate * seconds))
        interval = 1e9 / rate
        start = time.monotonic_ns() + 20_000_000
        for k in range(total):
            due = start + int(k * interval)
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
                now = time.monotonic_ns()
            self.report.max_late_ms = max(self.report.max_late_ms, (now - due) / 1e6)
            self.submit(self.body(due, phase, k))
        deadline = time.monotonic() + 5
        while self.report.ok + self.report.failed < self.report.sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self.report.seconds = (time.monotonic_ns() - start) / 1e9
        return self.report

    def close(self) -> None:
        for conn in list(self.all):
            if conn.transport is not None:
                conn.transport.close()
