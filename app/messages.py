"""Wire formats: the message envelope, WebSocket and SSE framing, and the resume plan.

Pure functions with no I/O, so they are tested without sockets. A message is
encoded once per process; every transport writes the same bytes to all of
its subscribers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = [
    "Message",
    "dumps",
    "encode_envelope",
    "encode_reset",
    "http_chunk",
    "plan_resume",
    "sse_comment",
    "sse_event",
    "ws_text_frame",
]


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact JSON with no newlines (safe inside an SSE field)."""
    return orjson.dumps(obj)


def encode_envelope(channel: str, msg_id: int, data: bytes) -> bytes:
    """Build ``{"type":"message","channel":C,"id":N,"data":D}`` from already encoded data.

    Channel names need no JSON escaping (see ``app.channels``), so splicing
    is safe. The Redis broker's publish script builds the same bytes.
    """
    return b'{"type":"message","channel":"%s","id":%d,"data":%s}' % (
        channel.encode(),
        msg_id,
        data,
    )


def encode_reset(channel: str, seq: int) -> bytes:
    """The notice that messages a client asked to resume are gone; the kept ones follow it."""
    return dumps(
        {
            "type": "reset",
            "channel": channel,
            "id": seq,
            "reason": "messages after your last id are no longer in history",
        }
    )


def ws_text_frame(payload: bytes) -> bytes:
    """Build one unmasked, final WebSocket text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n <= 0xFFFF:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def deflate_message(payload: bytes, level: int) -> bytes:
    """A message's permessage-deflate payload, with no context from earlier ones (RFC 7692 section 7.2.1)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # the empty block's 00 00 ff ff, which the receiver puts back


def ws_deflated_frame(payload: bytes, level: int) -> bytes:
    """Build one unmasked, final text frame of ``payload`` deflated, RSV1 set (RFC 7692 section 6)."""
    data = deflate_message(payload, level)
    n = len(data)
    if n < 126:
        return struct.pack("!BB", 0xC1, n) + data
    if n <= 0xFFFF:
        return struct.pack("!BBH", 0xC1, 126, n) + data
    return struct.pack("!BBQ", 0xC1, 127, n) + data


def sse_event(data: bytes, event_id: str | None = None) -> bytes:
    """Build one Server-Sent Event; ``data`` must hold no newline (compact JSON has none)."""
    if event_id is None:
        return b"data: %s\n\n" % data
    return b"id: %s\ndata: %s\n\n" % (event_id.encode(), data)


def http_chunk(data: bytes) -> bytes:
    """Frame ``data`` as one chunk of an HTTP/1.1 chunked body (RFC 9112 section 7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_comment(text: str) -> bytes:
    """Build an SSE comment line, which EventSource ignores (heartbeats)."""
    return b": %s\n\n" % text.encode()


class Message:
    """One published message: its channel, id and envelope, with encodings made on first use."""

    __slots__ = ("_sse_chunk", "_sse_event", "_ws_deflated", "_ws_frame", "channel", "envelope", "id")

    def __init__(self, channel: str, msg_id: int, envelope: bytes) -> None:
        self.channel = channel
        self.id = msg_id
        self.envelope = envelope
        self._ws_frame: bytes | None = None
        self._ws_deflated: bytes | None = None
        self._sse_event: bytes | None = None
        self._sse_chunk: bytes | None = None

    @classmethod
    def build(cls, channel: str, msg_id: int, data: bytes) -> Message:
        return cls(channel, msg_id, encode_envelope(channel, msg_id, data))

    @property
    def ws_frame(self) -> bytes:
        """The envelope as a WebSocket text frame, built once for all subscribers."""
        if self._ws_frame is None:
            self._ws_frame = ws_text_frame(self.envelope)
        return self._ws_frame

    def ws_deflated(self, level: int) -> bytes:
        """The envelope as a permessage-deflate frame, compressed once for all subscribers.

        Every connection that agreed to deflate agreed to
        server_no_context_takeover, so the frame is the same for all.
        """
        if self._ws_deflated is None:
            self._ws_deflated = ws_deflated_frame(self.envelope, level)
        return self._ws_deflated

    @property
    def sse_event(self) -> bytes:
        """The envelope as an SSE event whose ``id:`` is the message id."""
        if self._sse_event is None:
            self._sse_event = sse_event(self.envelope, str(self.id))
        return self._sse_event

    @property
    def sse_chunk(self) -> bytes:
        """``sse_event`` framed as one HTTP/1.1 chunk, for streams with chunked encoding."""
        if self._sse_chunk is None:
            self._sse_chunk = http_chunk(self.sse_event)
        return self._sse_chunk

    def data(self) -> Any:
        return orjson.loads(self.envelope)["data"]

    def __repr__(self) -> str:
        return f"Message({self.channel!r}, {self.id})"


def plan_resume(since: int, seq: int, history: Sequence[Message]) -> tuple[list[Message], bool]:
    """Decide what a subscriber resuming after ``since`` gets.

    ``seq`` is the channel's latest id (0: the channel holds nothing) and
    ``history`` its retained messages, oldest first, with consecutive ids.

    Returns:
        The messages to replay, and whether some were lost so the client must
        be told with a ``reset`` before them.
    """
    if since == 0:
        return list(history), False
    if since == seq:
        return [], False
    if since > seq:
        # An id this channel never issued: history was lost (Redis restarted
        # empty, or the channel expired). Replay what is kept, honestly flagged.
        return list(history), True
    missed = [m for m in history if m.id > since]
    complete = bool(missed) and missed[0].id == since + 1
    return missed, not complete
