"""SSE subscribers: a plain asyncio protocol that de-chunks the response and scans it for stamps."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from bench.loadgen.clients import CLIENTS
from bench.loadgen.stats import STATS


class SseClient(asyncio.Protocol):
    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.remaining = 0  # bytes left in the current chunk
        self.skip = 0  # CRLF after a chunk still to skip
        self.pending = b""  # an incomplete chunk-size line
        self.tail = b""  # an incomplete message at the end of what was read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].lower(), self.head[end + 4 :]
            self.head = b""
            if not head.startswith((b"http/1.1 200", b"http/1.0 200")):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
                self.transport.close()
                return
            self.in_body = True
            self.chunked = b"transfer-encoding: chunked" in head
            CLIENTS.open += 1
            if not self.ready.done():
                self.ready.set_result(None)
        body = self.dechunk(data) if self.chunked else data
        if self.tail:
            body = self.tail + body
        # Keep an unfinished last event for the next read; events end in a blank line.
        cut = body.rfind(b"\n\n")
        if cut < 0:
            self.tail = body
            return
        self.tail = body[cut + 2 :]
        STATS.scan(body[:cut])

    def dechunk(self, data: bytes) -> bytes:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        out = []
        pos, n = 0, len(data)
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                out.append(data[pos : pos + take])
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.skip = 2
            elif self.skip:
                step = min(self.skip, n - pos)
                pos += step
                self.skip -= step
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self.pending = data[pos:]
                    break
                self.remaining = int(data[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if not self.remaining:  # the last chunk: the stream ended
                    self.transport.close()
                    break
        return b"".join(out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_body:
            CLIENTS.open -= 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the stream started: {exc}"))


async def connect_sse(url: str) -> None:
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: SseClient(request, ready), parts.hostname, parts.port or 80
    )
    try:
        await asyncio.wait_for(ready, 30)
    except BaseException:
        transport.close()
        raise
    CLIENTS.sse.append(transport)
