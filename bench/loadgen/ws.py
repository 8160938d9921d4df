"""WebSocket subscribers: picows for plain ones, plain asyncio for those that offer permessage-deflate."""

from __future__ import annotations

import asyncio
import base64
import os
import zlib
from urllib.parse import urlsplit

from bench.loadgen.clients import CLIENTS
from bench.loadgen.stats import STATS

try:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
except ImportError:  # pragma: no cover - picows comes with the bench extras (make bench installs them)
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
