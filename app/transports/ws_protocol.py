"""The WebSocket protocol of /ws: Tornado's, with a strict receiving side and a real closing handshake."""

from __future__ import annotations

import asyncio
import codecs
import struct
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from app.transports.tornado_compat import InflateTooLarge, unmask
from app.transports.ws_closing import ClosingProtocol
from app.transports.ws_frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    DEFLATE_RESPONSE,
    FIN,
    OPCODE_MASK,
    RSV1,
    Violation,
    check_header,
    deflate_acceptable,
    parse_close,
    utf8_decoder,
)

__all__ = ["StrictProtocol"]

# The frame loop yields to other connections after this much work, a frame
# counting this much besides its bytes, so one client flooding small frames
# cannot hold the process. These are Tornado 6.6's own figures; they are ours
# here, since older Tornados have none and the strict loop replaces theirs.
YIELD_THRESHOLD = 256 * 1024
FRAME_YIELD_COST = 1024


class StrictProtocol(ClosingProtocol):
    """Tornado's RFC 6455 protocol with the receiving side made strict, and a real closing handshake.

    Receiving (``receive_loop``, in place of Tornado's): every violation of
    the rules in app.transports.ws_frames is answered with a close frame
    holding its code and a reason, never a bare TCP close; unmasked client
    frames are refused (section 5.1); invalid UTF-8 closes with 1007
    (section 8.1), found in a fragmented message at the fragment that
    breaks it, by an incremental decoder; a peer's close with a code no
    endpoint may send is answered with 1002 (section 7.4).

    Closing (app.transports.ws_closing): after its close frame it reads on
    and discards all but the peer's close frame, which completes the
    handshake.

    Tornado's private frame-level API is reached only through
    app.transports.tornado_compat.
    """

    # permessage-deflate: the zlib level offered (0: never) and, once agreed, used.
    deflate_offered = 0
    deflate_level = 0

    # Per-connection state, at class level until a connection needs it.
    _fragment_opcode: int | None = None
    _fragments: list[Any] | None = None
    _fragment_bytes = 0
    _decoder: codecs.IncrementalDecoder | None = None
    _compressed = False

    def negotiate(self, handler: WebSocketHandler) -> None:
        # Tornado negotiates compression only with compression options,
        # keeping a compressor per connection; this agreement needs none.
        if self.deflate_offered and deflate_acceptable(self.extension_offers(handler.request.headers)):
            handler.set_header("Sec-WebSocket-Extensions", DEFLATE_RESPONSE)
            self.deflate_level = self.deflate_offered
            self.agree_deflate()

    # Receiving.

    async def receive_loop(self) -> None:
        try:
            work = 0  # as Tornado's loop: yield to other connections now and then
            while not self.client_terminated:
                start = self.wire_bytes_in
                if self.server_terminated:
                    await self._discard_frame()
                else:
                    try:
                        await self._next_frame()
                    except Violation as exc:
                        self.close(exc.code, exc.reason)
                work += FRAME_YIELD_COST + self.wire_bytes_in - start
                if work >= YIELD_THRESHOLD:
                    work = 0
                    await asyncio.sleep(0)
            # Both close frames are sent: read on (and discard) until the
            # peer's FIN, or until the linger timer closes the stream.
            while True:
                await self._skip(YIELD_THRESHOLD)
        except StreamClosedError:
            pass
        finally:
            self._end()
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _frame_header(self) -> tuple[int, int, bool]:
        """Read a frame's header: (first byte, payload length, masked)."""
        first, second = await self.read_exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.read_exactly(8))[0]
        return first, length, bool(second & 0x80)

    async def _skip(self, n: int) -> None:
        """Read and drop ``n`` bytes, yielding to other connections now and then."""
        assert self.stream is not None
        work = 0
        while n > 0:
            chunk = await self.stream.read_bytes(min(n, 65536), partial=True)
            n -= len(chunk)
            self.count_wire_bytes(len(chunk))
            work += len(chunk)
            if work >= YIELD_THRESHOLD:
                # A read from a busy socket completes without a turn of the
                # loop: without this, a flood would hold the loop (and the
                # timers that end the connection) for as long as it lasts.
                work = 0
                await asyncio.sleep(0)

    async def _next_frame(self) -> None:
        first, length, masked = await self._frame_header()
        if self.server_terminated:  # closed while this frame was on its way
            await self._discard_body(first, length, masked)
            return
        fin = bool(first & FIN)
        opcode = first & OPCODE_MASK
        violation = check_header(
            first,
            length,
            masked,
            fragmenting=self._fragment_opcode is not None,
            fragment_bytes=self._fragment_bytes,
            deflate=self.deflate_agreed,
            max_message_size=self.params.max_message_size,
        )
        if violation is not None:
            # Close first, then read past the frame: a peer that declared a
            # huge frame and sends nothing gets its close frame at once, and
            # the frames after it are read in step (and discarded).
            self.close(*violation)
            await self._skip(length + 4 if masked else length)
            return
        mask = await self.read_exactly(4)
        payload = unmask(mask, await self.read_exactly(length)) if length else b""
        if self.is_closing():  # closed while it was being read
            if opcode == 0x8:
                self._closed_after_ours(payload)
            return
        if opcode & 0x8:
            self._control_frame(opcode, payload)
            return
        if opcode != 0:
            self._compressed = bool(first & RSV1)
            if fin:  # a whole message in one frame: the common case
                await self._message(opcode, payload)
                return
            self._fragment_opcode = opcode
            self._fragments = []
            if opcode == 0x1 and not self._compressed:
                self._decoder = utf8_decoder()
        await self._fragment(payload, fin)

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
                raise Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message") from None
        else:
            self._fragments.append(payload)
        if not fin:
            return
        opcode, parts, decoded = self._fragment_opcode, self._fragments, self._decoder is not None
        self._fragment_opcode = self._fragments = self._decoder = None
        self._fragment_bytes = 0
        await self._message(opcode, "".join(parts) if decoded else b"".join(parts))

    async def _message(self, opcode: int, data: str | bytes) -> None:
        if self._compressed:
            assert isinstance(data, bytes)
            try:
                data = self.inflate(data)
            except InflateTooLarge:
                raise Violation(CLOSE_MESSAGE_TOO_BIG, "message too big after decompression") from None
        if opcode == 0x1 and isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message") from None
        handled = self.run_callback(self.handler.on_message, data)
        if handled is not None:
            await handled

    def _control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x8:
            self._peer_closed(payload)
        elif opcode == 0x9:
            self.answer_ping(payload)
            self.run_callback(self.handler.on_ping, payload)
        else:  # 0xA: check_header refused the other control opcodes
            self.pong_received()
            self.run_callback(self.handler.on_pong, payload)

    def _peer_closed(self, payload: bytes) -> None:
        """The peer's close frame: answered with its code if valid (section 5.5.1), else 1002 or 1007."""
        self.client_terminated = True
        peer = parse_close(payload)
        if peer.code is not None:
            self.close_code = peer.code
        if peer.reason is not None:
            self.close_reason = peer.reason
        self.close(peer.answer_code, peer.answer_reason)

    async def _discard_frame(self) -> None:
        """After our close: read a frame and act on none but a close (section 5.5.1)."""
        first, length, masked = await self._frame_header()
        await self._discard_body(first, length, masked)

    async def _discard_body(self, first: int, length: int, masked: bool) -> None:
        if first & OPCODE_MASK == 0x8 and length <= 125:
            mask = await self.read_exactly(4) if masked else b""
            payload = await self.read_exactly(length) if length else b""
            self._closed_after_ours(unmask(mask, payload) if masked else b"")
            return
        await self._skip(length + 4 if masked else length)

    def _closed_after_ours(self, payload: bytes) -> None:
        """The peer's answer to our close frame: the closing handshake is complete."""
        self.client_terminated = True
        if len(payload) >= 2:
            self.close_code = struct.unpack("!H", payload[:2])[0]
        self._half_close()
