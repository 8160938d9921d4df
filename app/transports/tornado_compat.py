"""Every use of Tornado's private API, in one module.

Windsock leans on Tornado below its public surface in a few places, each for
a reason given where it is used: the WebSocket receiving side is replaced to
make it strict (app.transports.ws_protocol), writes skip a Future per call
(app.transports.stream), and a stream's response drops what only a finished
response needs. Those names are private: any Tornado release may rename them.
So they are used here and nowhere else, each behind a name of ours, and
tests/test_tornado_compat.py fails loudly, naming the attribute, if an
installed Tornado lacks one (and fails if a private name is used outside
this module).

Checked against Tornado 6.6 and 6.6.1 (``CHECKED``: the suites of the
WebSocket, SSE and HTTP transports pass on each); pyproject.toml pins
``>=6.6,<7``. Earlier releases are not supported: 6.5 answers every ping
with its own pong (unbounded when a peer never reads them), and 6.4 lacks
names used here.
"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPConnection, HTTPHeaders
from tornado.iostream import IOStream
from tornado.util import _websocket_mask
from tornado.web import RequestHandler
from tornado.websocket import (
    WebSocketHandler,
    WebSocketProtocol13,
    _DecompressTooLargeError,
    _PerMessageDeflateDecompressor,
    _WebSocketParams,
)

__all__ = [
    "CHECKED",
    "FrameProtocol",
    "InflateTooLarge",
    "chunked_output",
    "protocol_params",
    "release_response",
    "set_max_body_size",
    "status_reason",
    "unmask",
    "write_now",
]

CHECKED = ("6.6", "6.6.1")


def unmask(mask: bytes, data: bytes) -> bytes:
    """A client frame's payload, unmasked (Tornado's C speedup, when built)."""
    return _websocket_mask(mask, data)


class InflateTooLarge(Exception):
    """A compressed message inflates beyond the connection's max_message_size."""


def protocol_params(
    ping_interval: float | None, ping_timeout: float | None, max_message_size: int
) -> _WebSocketParams:
    """A WebSocketProtocol13's parameters; no compression options (ws_protocol agrees its own)."""
    return _WebSocketParams(
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_message_size=max_message_size,
        compression_options=None,
    )


class FrameProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, its private hooks and tools under names of ours.

    A subclass implements ``receive_loop`` (in place of Tornado's frame
    loop), may implement ``negotiate`` (before the 101 is sent) and
    ``callback_failed`` (a handler callback raised; True when handled), and
    uses the tools below instead of Tornado's private methods.
    """

    # Hooks.

    async def receive_loop(self) -> None:
        raise NotImplementedError

    def negotiate(self, handler: WebSocketHandler) -> None:
        """Called before the 101 is written; may set response headers."""

    def callback_failed(self) -> bool:
        """A handler callback (``open``, ``on_message``) raised; True if this closed the connection."""
        return False

    async def _receive_frame_loop(self) -> None:
        await self.receive_loop()

    async def _accept_connection(self, handler: WebSocketHandler) -> None:
        self.negotiate(handler)
        await super()._accept_connection(handler)

    def _abort(self) -> None:
        if not self.callback_failed():
            super()._abort()

    # Tools.

    async def read_exactly(self, n: int) -> bytes:
        """Read ``n`` bytes, counted in the wire bytes received."""
        return await self._read_bytes(n)

    def count_wire_bytes(self, n: int) -> None:
        self._wire_bytes_in += n

    @property
    def wire_bytes_in(self) -> int:
        return self._wire_bytes_in

    def write_frame(self, fin: bool, opcode: int, data: bytes) -> Future[None]:
        return self._write_frame(fin, opcode, data)

    def run_callback(self, callback: Callable[..., Any], *args: Any) -> Awaitable[None] | None:
        """Run a handler callback as Tornado does: a raise aborts the connection (``callback_failed``)."""
        return self._run_callback(callback, *args)

    def extension_offers(self, headers: HTTPHeaders) -> Sequence[tuple[str, Mapping[str, str | None]]]:
        """The client's Sec-WebSocket-Extensions offers, parsed."""
        return self._parse_extensions_header(headers)

    def agree_deflate(self) -> None:
        """Inflate compressed messages from now on, with no context kept between them."""
        self._decompressor = _PerMessageDeflateDecompressor(
            persistent=False, max_wbits=None, max_message_size=self.params.max_message_size
        )

    @property
    def deflate_agreed(self) -> bool:
        return self._decompressor is not None

    def inflate(self, data: bytes) -> bytes:
        """Raises:
        InflateTooLarge: it would exceed max_message_size.
        """
        assert self._decompressor is not None
        try:
            return self._decompressor.decompress(data)
        except _DecompressTooLargeError:
            raise InflateTooLarge from None

    def answer_ping(self, payload: bytes) -> None:
        self._send_pong(payload)

    def pong_received(self) -> None:
        self._received_pong = True

    def stop_ping_task(self) -> None:
        if self._ping_coroutine:
            self._ping_coroutine.cancel()
            self._ping_coroutine = None


def write_now(stream: IOStream, data: bytes) -> None:
    """Write ``data`` to ``stream``, in order after anything already queued.

    ``IOStream.write`` less its per-call Future (app.transports.stream says
    why): straight to the socket when nothing is queued ahead, and anything
    the kernel did not take, and every error, handed to ``IOStream.write``,
    which queues it, enforces ``max_write_buffer_size`` and closes the
    stream on errors as before.

    Raises:
        StreamBufferFullError: queueing the rest would exceed the stream's limit.
        StreamClosedError: the stream is closed.
    """
    # Only a plain socket stream with nothing queued: SSL streams, and bytes
    # waiting in Tornado's buffer, must go through IOStream.write. (Nothing
    # is queued when all bytes Tornado took were sent: the counters agree;
    # two attribute reads, where len(_write_buffer) is a Python call.)
    sock = stream.socket
    if (
        stream._total_write_index == stream._total_write_done_index
        and sock is not None
        and type(stream) is IOStream
    ):
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # IOStream.write meets the same error and closes the stream its way.
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
    stream.write(data)


def chunked_output(connection: HTTP1Connection) -> bool:
    """Whether the response on ``connection``, its headers written, goes out in HTTP/1.1 chunks."""
    # Read as is, with no default: a Tornado without it fails here, loudly,
    # rather than framing every event wrongly.
    return connection._chunking_output


def release_response(handler: RequestHandler) -> None:
    """Drop what ``handler`` keeps only to build a response, once its response is a stream.

    The response headers were sent (SSE) or answered by the 101 of the
    upgrade (WebSocket), and the ``ui`` namespace only serves templates;
    Tornado drops them too, but only when the request ends (``_break_cycles``),
    which for a stream is hours later. About 1.3 KiB per connection.
    """
    handler._headers = HTTPHeaders()
    handler.ui = None  # type: ignore[assignment]


def status_reason(handler: RequestHandler) -> str:
    """The reason phrase of the status ``handler`` set (as Tornado's own ``write_error`` reads it)."""
    return handler._reason


def set_max_body_size(connection: HTTPConnection, size: int) -> None:
    """Set the body limit of this one request (public on HTTP1Connection, not on its interface)."""
    connection.set_max_body_size(size)  # type: ignore[attr-defined]
