"""RFC 6455 rules for the frames a client sends, as pure functions (no sockets, no Tornado).

app.transports.ws_protocol applies them to the bytes it reads; tests check
them directly (tests/test_ws_frames.py) as well as on the wire.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "DEFLATE_RESPONSE",
    "PeerClose",
    "Violation",
    "check_header",
    "close_payload",
    "deflate_acceptable",
    "parse_close",
    "utf8_decoder",
    "valid_close_code",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

# The first byte of a frame header.
FIN = 0x80
RSV_MASK = 0x70
RSV1 = 0x40
OPCODE_MASK = 0x0F


class Violation(Exception):
    """A client frame broke RFC 6455; the connection is closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame (RFC 6455 section 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_payload(code: int | None, reason: str | None) -> bytes:
    """The body of a close frame with ``code`` and ``reason`` (cut to fit 125 bytes)."""
    if code is None and reason is not None:
        code = CLOSE_NORMAL
    if code is None:
        return b""
    data = struct.pack("!H", code)
    if reason:
        # A control frame holds 125 bytes: cut the reason on a character boundary.
        data += reason.encode()[:123].decode(errors="ignore").encode()
    return data


class PeerClose(NamedTuple):
    """A peer's close frame: what it said, and the close frame to answer it with."""

    code: int | None
    reason: str | None
    answer_code: int | None
    answer_reason: str | None = None


def parse_close(payload: bytes) -> PeerClose:
    """Read a peer's close frame: echo a valid code (section 5.5.1), else answer 1002 or 1007."""
    if not payload:
        return PeerClose(None, None, None)
    if len(payload) == 1:
        return PeerClose(None, None, CLOSE_PROTOCOL_ERROR, "protocol error: close frame with a one-byte body")
    code = struct.unpack("!H", payload[:2])[0]
    if not valid_close_code(code):
        return PeerClose(code, None, CLOSE_PROTOCOL_ERROR, f"protocol error: invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        return PeerClose(code, None, CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason")
    return PeerClose(code, reason, code)


def check_header(
    first: int,
    length: int,
    masked: bool,
    *,
    fragmenting: bool,
    fragment_bytes: int,
    deflate: bool,
    max_message_size: int,
) -> tuple[int, str] | None:
    """What a client frame's header breaks, as the (code, reason) to close with; None if nothing.

    ``fragmenting``: a fragmented message is in progress, of ``fragment_bytes``
    so far; ``deflate``: permessage-deflate was agreed.
    """
    rsv = first & RSV_MASK
    opcode = first & OPCODE_MASK
    what = None
    if not masked:
        what = "client frames must be masked"
    elif opcode & 0x8:
        if opcode > 0xA:
            what = f"unknown opcode {opcode}"
        elif length > 125:
            what = "control frame over 125 bytes"
        elif not first & FIN:
            what = "fragmented control frame"
        elif rsv:
            what = "reserved bits set"
    elif opcode > 2:
        what = f"unknown opcode {opcode}"
    elif opcode == 0 and not fragmenting:
        what = "continuation frame with nothing to continue"
    elif opcode != 0 and fragmenting:
        what = "new message before the fragmented one ended"
    # RSV1 marks a compressed message's first frame, if permessage-deflate was agreed.
    elif rsv and (opcode == 0 or rsv != RSV1 or not deflate):
        what = "reserved bits set"
    elif length + fragment_bytes > max_message_size:
        return CLOSE_MESSAGE_TOO_BIG, "message too big"
    return None if what is None else (CLOSE_PROTOCOL_ERROR, f"protocol error: {what}")


def utf8_decoder() -> codecs.IncrementalDecoder:
    """A decoder that finds invalid UTF-8 at the fragment that breaks it."""
    return codecs.getincrementaldecoder("utf-8")()


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
