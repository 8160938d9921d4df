"""One load-generator process: holds many WebSocket/SSE subscribers and times what they receive.

Run by bench/run.py, several at once, each pinned away from the server's
core. It is driven by JSON lines on stdin and answers with JSON lines on
stdout. It is written to cost as little as possible per received message:
picows (Cython WebSocket client) on uvloop, and from every frame it reads
only the publish timestamp and the phase number, never the whole JSON.

Commands:
    {"cmd": "connect", "url": U, "kind": "ws"|"wsz"|"sse", "n": N, "concurrency": C}
        wsz: a plain-asyncio WebSocket client that offers permessage-deflate
        as Chromium does, inflates what it gets, and counts the bytes it
        reads off the socket (for bytes on the wire per message)
    {"cmd": "pause", "n": N}      stop reading on N clients (slow consumers)
    {"cmd": "stats", "phase": P}  counts and latency histogram of phase P, bytes read by wsz clients
    {"cmd": "close"}              disconnect every client
    {"cmd": "quit"}
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import resource
import sys
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

# The timestamp (CLOCK_MONOTONIC, ns, when the publish was scheduled) and the
# phase number, as the publisher writes them at the start of each message.
STAMP = re.compile(rb'"t":(\d+),"p":(\d+)')

# Latency histogram: 20 us buckets up to 20 ms, then 2 ms buckets up to 60 s.
FINE_US, FINE_STEP, COARSE_STEP = 20_000, 20, 2_000
BUCKETS = FINE_US // FINE_STEP + 60_000_000 // COARSE_STEP


def bucket(lat_us: int) -> int:
    if lat_us < FINE_US:
        return lat_us // FINE_STEP if lat_us > 0 else 0
    return min(BUCKETS - 1, FINE_US // FINE_STEP + (lat_us - FINE_US) // COARSE_STEP)


def bucket_floor_us(index: int) -> int:
    """The lower edge of a bucket, in microseconds (for percentiles)."""
    fine = FINE_US // FINE_STEP
    if index < fine:
        return index * FINE_STEP
    return FINE_US + (index - fine) * COARSE_STEP


class Stats:
    """Per-phase delivery counts and latency histograms for this process."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.hists: dict[int, dict[int, int]] = {}
        self.maxima: dict[int, int] = {}

    def record(self, phase: int, sent_ns: int, now_ns: int) -> None:
        lat_us = (now_ns - sent_ns) // 1000
        counts = self.counts
        counts[phase] = counts.get(phase, 0) + 1
        hist = self.hists.get(phase)
        if hist is None:
            hist = self.hists[phase] = {}
            self.maxima[phase] = 0
        b = bucket(lat_us)
        hist[b] = hist.get(b, 0) + 1
        if lat_us > self.maxima[phase]:
            self.maxima[phase] = lat_us

    def scan(self, data: bytes) -> None:
        """Record every message stamp found in ``data`` (one frame, or a stretch of SSE stream)."""
        now = time.monotonic_ns()
        for m in STAMP.finditer(data):
            self.record(int(m.group(2)), int(m.group(1)), now)

    def report(self, phase: int) -> dict[str, Any]:
        return {
            "count": self.counts.get(phase, 0),
            "hist": self.hists.get(phase, {}),
            "max_us": self.maxima.get(phase, 0),
        }


STATS = Stats()


class Clients:
    """Every subscriber this process holds, with the transports to pause or close them."""

    def __init__(self) -> None:
        self.ws: list[Any] = []  # picows WSTransport
        self.wsz: list[asyncio.Transport] = []
        self.sse: list[asyncio.Transport] = []
        self.open = 0
        self.paused = 0
        self.wire_bytes = 0  # read by wsz clients after their handshake, frame headers included
        self.deflated = 0  # wsz clients the server agreed permessage-deflate with

    def all_transports(self) -> list[Any]:
        return [t.underlying_transport for t in self.ws] + list(self.wsz) + list(self.sse)


CLIENTS = Clients()


# WebSocket subscribers (picows).

try:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
except ImportError:  # pragma: no cover - reported by run.py's dependency check
    WSListener = object  # type: ignore[assignment,misc]


class WsClient(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.open += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            STATS.scan(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.open -= 1


async def connect_ws(url: str) -> None:
    transport, _ = await ws_connect(WsClient, url, websocket_handshake_timeout=30)
    CLIENTS.ws.append(transport)


# WebSocket subscribers that offer permessage-deflate (picows does not): plain asyncio.

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"  # what Chromium sends
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 section 7.2.2


class WszClient(asyncio.Protocol):
    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.ready = ready
        self.buf = b""
        self.upgraded = False
        self.deflate = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.buf[:end].lower(), self.buf[end + 4 :]
            self.buf = b""
            if not head.startswith(b"http/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
                self.transport.close()
                return
            self.upgraded = True
            self.deflate = b"sec-websocket-extensions: permessage-deflate" in head
            CLIENTS.open += 1
            CLIENTS.deflated += self.deflate
            if not self.ready.done():
                self.ready.set_result(None)
        CLIENTS.wire_bytes += len(data)
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        while n - pos >= 2:
            first, length = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if n - start < length:
                break
            payload = buf[start : start + length]
            pos = start + length
            opcode = first & 0x0F
            if opcode in (0x1, 0x2):  # the server sends each message as one final frame
                if first & 0x40:  # RSV1: deflated, no context kept between messages
                    payload = zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + DEFLATE_TAIL)
                STATS.scan(payload)
            elif opcode == 0x9:  # ping: a masked pong with the same payload
                self.transport.write(masked(0x8A, payload))
            elif opcode == 0x8:
                self.transport.close()
                return
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upgraded:
            CLIENTS.open -= 1
            CLIENTS.deflated -= self.deflate
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))


def masked(first: int, payload: bytes) -> bytes:
    """A client frame: ``first`` (FIN + opcode), a short payload masked with a random key."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(body)]) + key + body


async def connect_wsz(url: str) -> None:
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: WszClient(request, ready), parts.hostname, parts.port or 80
    )
    try:
        await asyncio.wait_for(ready, 30)
    except BaseException:
        transport.close()
        raise
    CLIENTS.wsz.append(transport)


# SSE subscribers: a plain protocol that de-chunks the response and scans it.


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


# Control.


async def connect_many(url: str, kind: str, n: int, concurrency: int) -> dict[str, Any]:
    connect = {"ws": connect_ws, "wsz": connect_wsz, "sse": connect_sse}[kind]
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                await connect(url)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    return {
        "connected": n - len(errors),
        "failed": len(errors),
        "errors": sorted(set(errors))[:3],
        "seconds": time.monotonic() - started,
        "open": CLIENTS.open,
        "deflated": CLIENTS.deflated,
    }


def pause(n: int) -> int:
    done = 0
    for transport in CLIENTS.all_transports()[CLIENTS.paused : CLIENTS.paused + n]:
        transport.pause_reading()
        done += 1
    CLIENTS.paused += done
    return done


async def close_all() -> dict[str, Any]:
    for transport in CLIENTS.ws:
        transport.disconnect()
    for transport in CLIENTS.wsz:
        transport.close()
    for sse in CLIENTS.sse:
        sse.close()
    CLIENTS.wsz.clear()
    CLIENTS.ws.clear()
    CLIENTS.sse.clear()
    CLIENTS.paused = 0
    deadline = time.monotonic() + 10
    while CLIENTS.open > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    return {"open": CLIENTS.open}


async def handle(command: dict[str, Any]) -> dict[str, Any]:
    cmd = command["cmd"]
    if cmd == "connect":
        url, kind, n = command["url"], command["kind"], command["n"]
        return await connect_many(url, kind, n, command.get("concurrency", 100))
    if cmd == "pause":
        return {"paused": pause(command["n"])}
    if cmd == "stats":
        report = STATS.report(command["phase"])
        counts = {"open": CLIENTS.open, "paused": CLIENTS.paused, "deflated": CLIENTS.deflated}
        return {**report, **counts, "bytes": CLIENTS.wire_bytes}
    if cmd == "close":
        return await close_all()
    if cmd == "ping":
        return {"pong": True}
    raise ValueError(f"unknown command {cmd!r}")


async def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            answer = await handle(command)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    await close_all()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
