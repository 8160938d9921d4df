"""GET /ws: the WebSocket transport. Translates client frames to hub calls and messages to frames."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import socket
import struct
import time
from asyncio import Future
from collections.abc import Mapping, Sequence
from typing import Any

import tornado.websocket
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import (
    _FRAME_YIELD_COST,
    _YIELD_THRESHOLD,
    WebSocketProtocol13,
    _DecompressTooLargeError,
    _PerMessageDeflateDecompressor,
)

from app.auth import Grant, verify_token
from app.channels import Patterns
from app.errors import WindsockError
from app.limits import TokenBucket
from app.messages import ClientFrame, Message, dumps, encode_reset, parse_client_frame, ws_text_frame
from app.transports.common import CoreHandler, token_from
from app.transports.stream import Coalescing, release_response, write_now

__all__ = ["WebSocketHandler"]

log = logging.getLogger("windsock.websocket")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 section 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# permessage-deflate (RFC 7692), as this server agrees to it: no context
# kept between messages either way, so each message is deflated once per
# worker and the same frame written to every subscriber, and a connection
# keeps no compressor (nor decompressor) state between messages.
DEFLATE_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
_DEFLATE_PARAMS = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
}


def deflate_acceptable(offers: Sequence[tuple[str, Mapping[str, str | None]]]) -> bool:
    """Whether one of the client's Sec-WebSocket-Extensions offers is permessage-deflate as agreed above.

    An offer that limits the server's window below 15 bits is declined: the
    shared frames are deflated with 15. Unknown parameters decline an offer.
    """
    for name, params in offers:
        if name != "permessage-deflate" or not set(params) <= _DEFLATE_PARAMS:
            continue
        if "server_max_window_bits" in params and params["server_max_window_bits"] != "15":
            continue
        client_bits = params.get("client_max_window_bits")
        if client_bits is not None and client_bits not in {str(n) for n in range(8, 16)}:
            continue
        return True
    return False


class _Violation(Exception):
    """A client frame broke RFC 6455; the connection is closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def _close_payload(code: int | None, reason: str | None) -> bytes:
    if code is None and reason is not None:
        code = CLOSE_NORMAL
    if code is None:
        return b""
    data = struct.pack("!H", code)
    if reason:
        # A control frame holds 125 bytes: cut the reason on a character boundary.
        data += reason.encode()[:123].decode(errors="ignore").encode()
    return data


class StrictProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol with the receiving side made strict, and a real closing handshake.

    Receiving (``_receive_frame``, replacing Tornado's): every violation is
    answered with a close frame holding its code and a reason, never a bare
    TCP close; unmasked client frames are refused (section 5.1); invalid
    UTF-8 closes with 1007 (section 8.1), found in a fragmented message at
    the fragment that breaks it, by an incremental decoder; a peer's close
    with a code no endpoint may send is answered with 1002 (section 7.4).

    Closing (``close``, ``_receive_frame_loop``): after its close frame the
    worker no longer acts on input, but reads and discards it, so that the
    kernel never answers a peer that is still sending with a TCP RST (which
    can destroy the close frame on its way). Once the peer's close arrives,
    or after ``close_timeout``, it half-closes (FIN), reads on until the
    peer's FIN or ``linger_timeout``, and closes.

    It leans on Tornado 6's private frame-level API (``_read_bytes``,
    ``_write_frame``, ``_decompressor``, ``_run_callback``; pinned below 7;
    tests/test_hostile.py and tests/test_ws_strict.py fail if they change).
    """

    close_timeout = 3.0  # for the peer's close frame, after ours
    linger_timeout = 2.0  # for the peer's FIN, after ours

    # permessage-deflate: the zlib level offered (0: never) and, once agreed, used.
    deflate_offered = 0
    deflate_level = 0

    # Per-connection state, at class level until a connection needs it.
    _fragment_opcode: int | None = None
    _fragments: list[Any] | None = None
    _fragment_bytes = 0
    _decoder: codecs.IncrementalDecoder | None = None
    _close_written: Future[None] | None = None
    _close_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _half_closed = False

    async def _accept_connection(self, handler: tornado.websocket.WebSocketHandler) -> None:
        # Tornado negotiates compression only with compression options,
        # keeping a compressor per connection; this agreement needs none.
        if self.deflate_offered and deflate_acceptable(
            self._parse_extensions_header(handler.request.headers)
        ):
            handler.set_header("Sec-WebSocket-Extensions", DEFLATE_RESPONSE)
            self.deflate_level = self.deflate_offered
            self._decompressor = _PerMessageDeflateDecompressor(
                persistent=False, max_wbits=None, max_message_size=self.params.max_message_size
            )
        await super()._accept_connection(handler)

    # Receiving.

    async def _receive_frame_loop(self) -> None:
        try:
            work = 0  # as Tornado's loop: yield to other connections now and then
            while not self.client_terminated:
                start = self._wire_bytes_in
                if self.server_terminated:
                    await self._discard_frame()
                else:
                    try:
                        await self._receive_frame()
                    except _Violation as exc:
                        self.close(exc.code, exc.reason)
                work += _FRAME_YIELD_COST + self._wire_bytes_in - start
                if work >= _YIELD_THRESHOLD:
                    work = 0
                    await asyncio.sleep(0)
            # Both close frames are sent: read on (and discard) until the
            # peer's FIN, or until the linger timer closes the stream.
            while True:
                await self._skip(_YIELD_THRESHOLD)
        except StreamClosedError:
            pass
        finally:
            self._closed()
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _frame_header(self) -> tuple[int, int, bool]:
        """Read a frame's header: (first byte, payload length, masked)."""
        first, second = await self._read_bytes(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self._read_bytes(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self._read_bytes(8))[0]
        return first, length, bool(second & 0x80)

    async def _skip(self, n: int) -> None:
        """Read and drop ``n`` bytes, yielding to other connections now and then."""
        work = 0
        while n > 0:
            chunk = await self.stream.read_bytes(min(n, 65536), partial=True)
            n -= len(chunk)
            self._wire_bytes_in += len(chunk)
            work += len(chunk)
            if work >= _YIELD_THRESHOLD:
                # A read from a busy socket completes without a turn of the
                # loop: without this, a flood would hold the loop (and the
                # timers that end the connection) for as long as it lasts.
                work = 0
                await asyncio.sleep(0)

    async def _receive_frame(self) -> None:
        first, length, masked = await self._frame_header()
        if self.server_terminated:  # closed while this frame was on its way
            await self._discard_body(first, length, masked)
            return
        fin = bool(first & self.FIN)
        opcode = first & self.OPCODE_MASK
        violation = self._check_header(first, length, masked)
        if violation is not None:
            # Close first, then read past the frame: a peer that declared a
            # huge frame and sends nothing gets its close frame at once, and
            # the frames after it are read in step (and discarded).
            self.close(*violation)
            await self._skip(length + 4 if masked else length)
            return
        mask = await self._read_bytes(4)
        payload = _websocket_mask(mask, await self._read_bytes(length)) if length else b""
        if self.is_closing():  # closed while it was being read
            if opcode == 0x8:
                self._closed_after_ours(payload)
            return
        if opcode & 0x8:
            self._control_frame(opcode, payload)
            return
        if opcode != 0:
            self._frame_compressed = bool(first & self.RSV1)
            if fin:  # a whole message in one frame: the common case
                await self._message(opcode, payload)
                return
            self._fragment_opcode = opcode
            self._fragments = []
            if opcode == 0x1 and not self._frame_compressed:
                self._decoder = _utf8_decoder()
        await self._fragment(payload, fin)

    def _check_header(self, first: int, length: int, masked: bool) -> tuple[int, str] | None:
        """What a frame's header breaks, as the (code, reason) to close with; None if nothing."""
        rsv = first & self.RSV_MASK
        opcode = first & self.OPCODE_MASK
        what = None
        if not masked:
            what = "client frames must be masked"
        elif opcode & 0x8:
            if opcode > 0xA:
                what = f"unknown opcode {opcode}"
            elif length > 125:
                what = "control frame over 125 bytes"
            elif not first & self.FIN:
                what = "fragmented control frame"
            elif rsv:
                what = "reserved bits set"
        elif opcode > 2:
            what = f"unknown opcode {opcode}"
        elif opcode == 0 and self._fragment_opcode is None:
            what = "continuation frame with nothing to continue"
        elif opcode != 0 and self._fragment_opcode is not None:
            what = "new message before the fragmented one ended"
        # RSV1 marks a compressed message's first frame, if permessage-deflate was agreed.
        elif rsv and (opcode == 0 or rsv != self.RSV1 or self._decompressor is None):
            what = "reserved bits set"
        elif length + self._fragment_bytes > self.params.max_message_size:
            return CLOSE_MESSAGE_TOO_BIG, "message too big"
        return None if what is None else (CLOSE_PROTOCOL_ERROR, f"protocol error: {what}")

    async def _fragment(self, payload: bytes, fin: bool) -> None:
        assert self._fragments is not None
        assert self._fragment_opcode is not None
        self._fragment_bytes += len(payload)
        if self._decoder is not None:
            # Checked as it comes: a message is refused at the fragment that
            # makes it invalid, not buffered to its end first.
            try:
                self._fragments.append(self._decoder.decode(payload, fin))
            except UnicodeDecodeError:
                raise _Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message") from None
        else:
            self._fragments.append(payload)
        if not fin:
            return
        opcode, parts, decoded = self._fragment_opcode, self._fragments, self._decoder is not None
        self._fragment_opcode = self._fragments = self._decoder = None
        self._fragment_bytes = 0
        await self._message(opcode, "".join(parts) if decoded else b"".join(parts))

    async def _message(self, opcode: int, data: str | bytes) -> None:
        if self._frame_compressed:
            assert self._decompressor is not None
            assert isinstance(data, bytes)
            try:
                data = self._decompressor.decompress(data)
            except _DecompressTooLargeError:
                raise _Violation(CLOSE_MESSAGE_TOO_BIG, "message too big after decompression") from None
        if opcode == 0x1 and isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise _Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message") from None
        handled = self._run_callback(self.handler.on_message, data)
        if handled is not None:
            await handled

    def _control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x8:
            self._peer_closed(payload)
        elif opcode == 0x9:
            self._send_pong(payload)
            self._run_callback(self.handler.on_ping, payload)
        else:  # 0xA: _check_header refused the other control opcodes
            self._received_pong = True
            self._run_callback(self.handler.on_pong, payload)

    def _peer_closed(self, payload: bytes) -> None:
        """The peer's close frame: answer it with its code if valid (section 5.5.1), else 1002 or 1007."""
        self.client_terminated = True
        if not payload:
            self.close()
            return
        if len(payload) == 1:
            self.close(CLOSE_PROTOCOL_ERROR, "protocol error: close frame with a one-byte body")
            return
        code = struct.unpack("!H", payload[:2])[0]
        self.close_code = code
        if not valid_close_code(code):
            self.close(CLOSE_PROTOCOL_ERROR, f"protocol error: invalid close code {code}")
            return
        try:
            self.close_reason = payload[2:].decode()
        except UnicodeDecodeError:
            self.close(CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason")
            return
        self.close(code)

    async def _discard_frame(self) -> None:
        """After our close: read a frame and act on none but a close (section 5.5.1)."""
        first, length, masked = await self._frame_header()
        await self._discard_body(first, length, masked)

    async def _discard_body(self, first: int, length: int, masked: bool) -> None:
        if first & self.OPCODE_MASK == 0x8 and length <= 125:
            mask = await self._read_bytes(4) if masked else b""
            payload = await self._read_bytes(length) if length else b""
            self._closed_after_ours(_websocket_mask(mask, payload) if masked else b"")
            return
        await self._skip(length + 4 if masked else length)

    def _closed_after_ours(self, payload: bytes) -> None:
        """The peer's answer to our close frame: the closing handshake is complete."""
        self.client_terminated = True
        if len(payload) >= 2:
            self.close_code = struct.unpack("!H", payload[:2])[0]
        self._half_close()

    # Closing.

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame (once); then wait for the peer's, or ``close_timeout``, and half-close."""
        stream = self.stream
        if stream is None or stream.closed():
            self.server_terminated = True
            self._closed()
            return
        if not self.server_terminated:
            self.server_terminated = True
            with contextlib.suppress(StreamClosedError, StreamBufferFullError):
                self._close_written = self._write_frame(True, 0x8, _close_payload(code, reason))
            if not self.client_terminated:
                self._close_timer = asyncio.get_running_loop().call_later(
                    self.close_timeout, self._half_close
                )
        if self.client_terminated:
            self._half_close()
        if self._ping_coroutine:
            self._ping_coroutine.cancel()
            self._ping_coroutine = None

    def _half_close(self) -> None:
        """Send FIN once the close frame is out; close the stream at the peer's FIN or ``linger_timeout``."""
        if self._half_closed:
            return
        self._half_closed = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        stream = self.stream
        if stream is None or stream.closed():
            return
        self._linger_timer = asyncio.get_running_loop().call_later(self.linger_timeout, stream.close)
        written = self._close_written
        if written is None or written.done():
            self._shutdown_write()
        else:
            written.add_done_callback(lambda _: self._shutdown_write())

    def _shutdown_write(self) -> None:
        stream = self.stream
        if stream is not None and not stream.closed() and stream.socket is not None:
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_WR)

    def _closed(self) -> None:
        """The connection is over: timers off, stream closed."""
        self.client_terminated = self.server_terminated = True
        for timer in (self._close_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._linger_timer = None
        if self.stream is not None:
            self.stream.close()

    def _abort(self) -> None:
        # Tornado calls this when a callback (on_message, open) raised: a
        # server fault, so 1011, with the same handshake as any close.
        if self.stream is not None and not self.stream.closed() and not self.server_terminated:
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
            return
        super()._abort()


def _utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")()


class WebSocketHandler(CoreHandler, Coalescing, tornado.websocket.WebSocketHandler):
    """One WebSocket client: its subscriptions, and a bounded outgoing buffer."""

    kind = "websocket"
    deflate = 0  # the zlib level of permessage-deflate, once agreed with this client

    def setup(self) -> None:
        config = self.config
        self._turns = self.connections.write_turns
        self.client_publish = Patterns(config.client_publish)
        self.channels: set[str] = set()
        self.grant: Grant | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.bucket = TokenBucket(config.client_rate, config.client_burst)
        self._ping_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong = False

    # Handshake.

    def prepare(self) -> None:
        # Checked before the upgrade so a refusal is a plain HTTP answer with
        # a JSON body, which proxies and browsers both report clearly.
        self.query_channels = self.stream_channels()

    def check_origin(self, origin: str) -> bool:
        return True  # already checked in prepare()

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None  # Tornado answers 426 with the supported version
        protocol = StrictProtocol(
            self,
            False,
            tornado.websocket._WebSocketParams(
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                max_message_size=self.max_message_size,
                compression_options=None,  # StrictProtocol negotiates permessage-deflate itself
            ),
        )
        if self.config.ws_deflate_level:  # else the class default: no per-connection attribute
            protocol.deflate_offered = self.config.ws_deflate_level
        return protocol

    async def open(self) -> None:
        assert self.ws_connection is not None
        assert self.ws_connection.stream is not None
        # A write beyond this raises StreamBufferFullError instead of growing
        # memory without bound behind a client that stopped reading.
        self.ws_connection.stream.max_write_buffer_size = self.config.max_queue_bytes
        if isinstance(self.ws_connection, StrictProtocol) and self.ws_connection.deflate_level:
            self.deflate = self.ws_connection.deflate_level
        self.connections.add(self)
        self._ping_after(self._ping_every())
        release_response(self)
        if self.config.subscribe_secret and not self._authenticate():
            return
        for channel in self.query_channels:
            if not await self._guarded(ClientFrame("subscribe", channel)):
                return

    def _authenticate(self) -> bool:
        """Verify the subscribe token; close 4401 with the reason if it is not good."""
        try:
            self.grant = verify_token(token_from(self), self.config.subscribe_secret)
        except WindsockError as exc:
            self.close(CLOSE_UNAUTHORIZED, exc.message)
            return False
        # Browsers cannot see why a handshake failed, so the refusal is a
        # close code after the upgrade; expiry ends the connection likewise.
        delay = max(0.0, self.grant.expires - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.close, CLOSE_UNAUTHORIZED, "token expired"
        )
        return True

    async def _guarded(self, frame: ClientFrame) -> bool:
        """Subscribe, answering errors with an error frame; False once the connection is closed."""
        try:
            await self._subscribe(frame)
        except WindsockError as exc:
            self._send({**exc.as_dict(), "channel": frame.channel})
        return self.ws_connection is not None and not self.ws_connection.is_closing()

    # Client frames.

    async def on_message(self, message: str | bytes) -> None:
        if not self.bucket.allow():
            self._send(WindsockError("rate_limited").as_dict())
            self.close(CLOSE_POLICY_VIOLATION, "rate limit exceeded")
            return
        frame: ClientFrame | None = None
        try:
            frame = parse_client_frame(message)
            if frame.type == "subscribe":
                await self._subscribe(frame)
            elif frame.type == "unsubscribe":
                self._unsubscribe(frame)
            elif frame.type == "publish":
                await self._publish(frame)
            else:
                self._send({"type": "pong", "ref": frame.ref})
        except WindsockError as exc:
            reply: dict[str, Any] = exc.as_dict()
            if frame is not None:
                reply.update(channel=frame.channel or None, ref=frame.ref)
            self._send(reply)

    async def _subscribe(self, frame: ClientFrame) -> None:
        channel = frame.channel
        if self.grant is not None and not self.grant.allows(channel):
            # Nothing is delivered to a client that asks beyond its token.
            self.close(CLOSE_FORBIDDEN, f"token does not allow channel {channel}")
            return
        if channel in self.channels:
            # A repeated subscribe is a request to resume from a new position.
            self.hub.unsubscribe(channel, self)
        elif len(self.channels) >= self.config.max_channels:
            raise WindsockError("too_many_channels", f"at most {self.config.max_channels} channels")
        self.channels.add(channel)
        try:
            await self.hub.subscribe(channel, self, frame.since)
        except WindsockError:
            self.channels.discard(channel)
            raise

    def _unsubscribe(self, frame: ClientFrame) -> None:
        if frame.channel in self.channels:
            self.channels.discard(frame.channel)
            self.hub.unsubscribe(frame.channel, self)
        self._send({"type": "unsubscribed", "channel": frame.channel, "ref": frame.ref})

    async def _publish(self, frame: ClientFrame) -> None:
        if not self.client_publish.match(frame.channel):
            raise WindsockError("forbidden", f"clients may not publish to {frame.channel!r}")
        result = await self.hub.publish(frame.channel, frame.data)
        self._send({"type": "published", "channel": frame.channel, "id": result.id, "ref": frame.ref})

    # The hub's Subscriber interface.

    def deliver(self, message: Message) -> None:
        # = self._write(), one call less per subscriber
        self._coalesce(message.ws_deflated(self.deflate) if self.deflate else message.ws_frame)

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        self._send({"type": "subscribed", "channel": channel, "id": seq})
        if lost:
            self.reset(channel, seq)

    def reset(self, channel: str, seq: int) -> None:
        self._write(ws_text_frame(encode_reset(channel, seq)))

    # Writing. Frames are built once per message and written as bytes to the
    # stream, bypassing write_message's per-client encoding and, when nothing
    # is queued, IOStream.write's per-call overhead; several in one loop turn
    # are joined into one write (app.transports.stream).

    def _send(self, obj: dict[str, Any]) -> None:
        # Optional fields are left out rather than sent as null.
        obj = {key: value for key, value in obj.items() if value is not None}
        self._write(ws_text_frame(dumps(obj)))

    def _write(self, frame: bytes) -> None:
        self._coalesce(frame)

    def _emit(self, frame: bytes) -> None:
        conn = self.ws_connection
        # conn.is_closing() without its two calls, as this runs for every
        # subscriber; a closed stream makes write_now raise StreamClosedError.
        if conn is None or conn.stream is None or conn.client_terminated or conn.server_terminated:
            return
        try:
            write_now(conn.stream, frame)
        except StreamBufferFullError:
            self._overflow()
        except StreamClosedError:
            pass

    def _overflow(self) -> None:
        self.hub.slow_consumer()
        log.info("dropping slow consumer %s: outgoing queue full", self.request.remote_ip)
        conn = self.ws_connection
        assert conn is not None
        assert conn.stream is not None
        # Let the close frame queue behind the backlog; the connection ends
        # if the client has not read it and answered within
        # StrictProtocol.close_timeout + linger_timeout.
        conn.stream.max_write_buffer_size = None
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer: outgoing queue full")

    # Lifecycle.

    def heartbeat(self) -> None:
        pass  # pinged on its own timer (below), so pings do not come in one burst

    # Keep-alive pings, as Tornado's websocket_ping_interval/timeout do, but on
    # a timer per connection instead of Tornado's ping task (a Task and its
    # coroutine frames): about 1.3 KiB less per connection.

    @property
    def ping_interval(self) -> float | None:
        return None  # turns Tornado's ping task off; see _ping

    def _ping_every(self) -> float:
        return float(self.settings.get("websocket_ping_interval") or 0)

    def _ping_after(self, delay: float) -> None:
        if delay > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(delay, self._ping)

    def _ping(self) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        conn.write_ping(b"")
        interval = self._ping_every()
        timeout = self.ping_timeout
        if timeout is None or timeout > interval:
            timeout = interval
        if timeout <= 0:
            self._ping_after(interval)  # no timeout: ping only
            return
        self._awaiting_pong = True
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(timeout, self._check_pong, interval - timeout)

    def _check_pong(self, rest: float) -> None:
        if self._awaiting_pong:
            self.close(reason="ping timed out")  # as Tornado's own ping task does
            return
        if rest > 0:
            self._ping_after(rest)
        else:
            self._ping()

    def on_pong(self, data: bytes) -> None:
        self._awaiting_pong = False

    def shutdown(self) -> None:
        self.close(CLOSE_GOING_AWAY, "going away")

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames deferred to the end of this loop turn go out before the close
        # frame (an error reply before its 1008, say), not dropped after it.
        self._flush_deferred()
        super().close(code, reason)

    def on_close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        for channel in self.channels:
            self.hub.unsubscribe(channel, self)
        self.channels.clear()
        self.connections.discard(self)
