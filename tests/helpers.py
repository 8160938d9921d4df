"""Test clients and process helpers shared by the suites (no mocks: real sockets, real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

# One timing unit; slow machines scale it with WINDSOCK_TEST_TIMEOUT_SCALE.
UNIT = float(os.environ.get("WINDSOCK_TEST_TIMEOUT_SCALE", "1"))
WAIT = 5.0 * UNIT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_binary(name: str) -> str:
    """Path of a real server binary; skipped with a reason outside CI, a failure in CI."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        message = f"{name} is not installed (apt-get install {name}); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(predicate: Any, timeout: float = WAIT, interval: float = 0.05) -> None:
    """Poll a synchronous predicate until true, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.1f} s")


async def eventually(predicate: Any, timeout: float = WAIT, interval: float = 0.05) -> None:
    """Poll an (a)synchronous predicate until true, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.1f} s")


# HTTP.


def http_status(url: str, timeout: float = 2.0) -> int:
    """GET ``url`` synchronously: its status, or 0 if nothing answered.

    An HTTPError holds its open response; it is closed here, or its socket
    would leak until some later garbage collection (a ResourceWarning that
    fails whichever test happens to be running).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return 0


async def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, Any, HTTPResponse]:
    """Make a request; return (status, decoded JSON body or None, response), never raising on status."""
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    request = HTTPRequest(
        url,
        method=method,
        body=raw,
        headers=headers,
        request_timeout=WAIT,
        allow_nonstandard_methods=True,
    )
    try:
        response = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as exc:
        assert exc.response is not None, exc
        response = exc.response
    try:
        decoded = json.loads(response.body) if response.body else None
    except ValueError:
        decoded = None
    return response.code, decoded, response


async def publish(base: str, channel: str, data: Any, **headers: str) -> int:
    status, body, _ = await http("POST", f"{base}/api/channels/{channel}", data, headers or None)
    assert status == 202, (status, body)
    return int(body["id"])


# WebSocket.

# Every client connection a test opens, closed by an autouse fixture after it.
OPEN_SOCKETS: list[WebSocketClientConnection | asyncio.StreamWriter] = []


@dataclass
class WS:
    """A WebSocket test client that decodes JSON frames."""

    conn: WebSocketClientConnection

    @classmethod
    async def connect(cls, url: str | HTTPRequest, **kwargs: Any) -> WS:
        conn = await asyncio.wait_for(websocket_connect(url, **kwargs), WAIT)
        OPEN_SOCKETS.append(conn)
        return cls(conn)

    async def send(self, obj: Any) -> None:
        await self.conn.write_message(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any] | None:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        return None if raw is None else json.loads(raw)

    async def recv_type(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """Read frames until one of ``kind`` arrives (others are dropped, and named if it never does)."""
        deadline = time.monotonic() + timeout
        dropped: list[dict[str, Any]] = []
        while True:
            try:
                frame = await self.recv(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                worker = self.conn.headers.get("X-Windsock-Worker", "?")
                raise AssertionError(
                    f"no {kind} frame within {timeout} s from worker {worker}; dropped {dropped[-5:]}"
                ) from None
            assert frame is not None, f"closed while waiting for {kind}; dropped {dropped[-5:]}"
            if frame["type"] == kind:
                return frame
            dropped.append(frame)

    async def subscribe(self, channel: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.recv_type("subscribed")

    async def messages(self, n: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        return [await self.recv_type("message", timeout) for _ in range(n)]

    async def no_message(self, wait: float = 0.3) -> None:
        """Assert that nothing arrives for ``wait`` seconds."""
        try:
            frame = await asyncio.wait_for(self.conn.read_message(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame!r}")

    def close(self) -> None:
        self.conn.close()


# Server-Sent Events: a raw client, so tests see exactly the bytes on the wire.


@dataclass
class SSE:
    """An EventSource-like test client over a raw socket (HTTP/1.1, chunked)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    body: bytes = b""
    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    ended: bool = False
    _buffer: bytes = b""
    _chunked: bool = False

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> SSE:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
        lines = [
            f"GET {parts.path}?{parts.query} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                parsed[k.strip().lower()] = v.strip()
        OPEN_SOCKETS.append(writer)
        client = cls(reader, writer, int(status_line.split()[1]), parsed)
        client._chunked = parsed.get("transfer-encoding", "").lower() == "chunked"
        if client.status != 200:
            length = int(parsed.get("content-length", "0"))
            client.body = await asyncio.wait_for(reader.readexactly(length), WAIT) if length else b""
        return client

    def json(self) -> Any:
        return json.loads(self.body)

    async def _read_more(self) -> None:
        if self._chunked:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                self.ended = True
                raise EOFError("stream ended")
            self._buffer += chunk[:-2]
        else:
            chunk = await self.reader.read(65536)
            if not chunk:
                self.ended = True
                raise EOFError("stream ended")
            self._buffer += chunk

    async def event(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next dispatched event as {"id": ..., "data": decoded JSON}; comments are collected."""

        async def next_event() -> dict[str, Any]:
            while True:
                while b"\n\n" not in self._buffer:
                    await self._read_more()
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                data: list[str] = []
                event_id = None
                for line in block.decode().split("\n"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "":
                        self.comments.append(value)
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
                    elif name == "retry":
                        self.retry = int(value)
                if event_id is not None:
                    self.last_event_id = event_id
                if data:
                    return {"id": event_id, "data": json.loads("\n".join(data))}

        return await asyncio.wait_for(next_event(), timeout)

    async def preamble(self, timeout: float = WAIT) -> str:
        """Read the stream's opening blocks (retry, starting id); return the starting id."""

        async def read() -> str:
            while not self.last_event_id:
                while b"\n\n" not in self._buffer:
                    await self._read_more()
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                for line in block.decode().split("\n"):
                    name, _, value = line.partition(": ")
                    if name == "id":
                        self.last_event_id = value
                    elif name == "retry":
                        self.retry = int(value)
                    elif name == "data":
                        raise AssertionError("a message arrived before the starting id")
            return self.last_event_id

        return await asyncio.wait_for(read(), timeout)

    async def messages(self, n: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        result = []
        while len(result) < n:
            event = await self.event(timeout)
            if event["data"].get("type") == "message":
                result.append(event["data"])
        return result

    async def ends(self, timeout: float = WAIT) -> bool:
        """Wait for the server to end the stream; True if it did."""
        try:
            while True:
                await asyncio.wait_for(self._read_more(), timeout)
        except (EOFError, asyncio.IncompleteReadError, ConnectionError):
            return True

    def close(self) -> None:
        self.writer.close()


# Processes.


class Process:
    """A child process that is always stopped, and whose output is kept for failures."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: str | None = None) -> None:
        self.log_path = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]

    def stop(self, sig: int = 15, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def output(self) -> str:
        if not self.log_path:
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()


class RawWS:
    """A WebSocket client on a bare socket: it sends exactly what a test says and reads only when told."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            # Set before connecting so the window stays small: the server's
            # writes back up into its own queue, as behind a slow mobile link.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect((host, port))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        self.head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1]) if self.head else 0

    @classmethod
    async def open(cls, *args: Any, **kwargs: Any) -> RawWS:
        """Connect from a thread, so an in-process server on this loop can answer."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: cls(*args, **kwargs))

    def send_text(self, payload: bytes) -> None:
        """Send one masked text frame (clients must mask)."""
        self.send_frame(0x1, payload)

    def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        masked: bool = True,
        rsv: int = 0,
        declared: int | None = None,
    ) -> None:
        """Send any frame, including ones that break RFC 6455 on purpose."""
        self.sock.sendall(client_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv, declared=declared))

    def frames(self, timeout: float = WAIT) -> list[tuple[int, bytes]]:
        """Read frames until the server closes (or the time is up)."""
        return parse_frames(self.read_all(timeout))

    def close_frame(self, timeout: float = WAIT) -> tuple[int, str] | None:
        """The (code, reason) of the server's close frame, if it sent one; answered as a client does."""
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while True:
            closes = [p for op, p in parse_frames(self.buffer) if op == 0x8]
            if closes:
                code = int.from_bytes(closes[0][:2], "big")
                with contextlib.suppress(OSError):
                    self.send_frame(0x8, closes[0][:2])
                return code, closes[0][2:].decode()
            if time.monotonic() > deadline:
                return None
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def next_json(self, timeout: float = WAIT) -> Any:
        """Read until one whole text frame arrives; return it decoded."""
        self.sock.settimeout(timeout)
        while True:
            frames = parse_frames(self.buffer)
            if frames:
                opcode, payload = frames[0]
                consumed = _frame_size(self.buffer)
                self.buffer = self.buffer[consumed:]
                if opcode == 0x8:
                    raise EOFError(f"closed: {int.from_bytes(payload[:2], 'big')} {payload[2:]!r}")
                if opcode == 0x1:
                    return json.loads(payload)
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk

    def read_all(self, timeout: float = WAIT) -> bytes:
        """Read until the server closes the connection, bounded in time."""
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        data = self.buffer
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    declared: int | None = None,
) -> bytes:
    """One client frame as bytes, any bit of it as told; ``declared`` may give a length that lies."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n <= 0xFFFF:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frame_size(data: bytes) -> int:
    n, i = data[1] & 0x7F, 2
    if n == 126:
        n, i = int.from_bytes(data[2:4], "big"), 4
    elif n == 127:
        n, i = int.from_bytes(data[2:10], "big"), 10
    return i + n


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); a trailing partial frame is dropped."""
    frames = []
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        if i + n > len(data):
            break
        frames.append((opcode, data[i : i + n]))
        i += n
    return frames
