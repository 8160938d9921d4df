"""The RFC 6455 rules for client frames (app.transports.ws_frames), without sockets."""

from __future__ import annotations

import pytest

from app.transports.ws_frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    FIN,
    RSV1,
    PeerClose,
    check_header,
    close_payload,
    parse_close,
    utf8_decoder,
    valid_close_code,
)

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def header(
    first: int,
    length: int = 5,
    masked: bool = True,
    fragmenting: bool = False,
    fragment_bytes: int = 0,
    deflate: bool = False,
    limit: int = 1000,
) -> tuple[int, str] | None:
    return check_header(
        first,
        length,
        masked,
        fragmenting=fragmenting,
        fragment_bytes=fragment_bytes,
        deflate=deflate,
        max_message_size=limit,
    )


def test_well_formed_frames_pass() -> None:
    """A masked text, binary, ping, pong or close frame, and a continuation in a message, break nothing."""
    for first in (FIN | TEXT, FIN | BINARY, FIN | PING, FIN | PONG, FIN | CLOSE, TEXT):
        assert header(first) is None
    assert header(FIN | CONTINUATION, fragmenting=True) is None
    assert header(FIN | TEXT | RSV1, deflate=True) is None


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"first": FIN | TEXT, "masked": False}, "client frames must be masked"),
        ({"first": FIN | 0xB}, "unknown opcode 11"),
        ({"first": FIN | 0x3}, "unknown opcode 3"),
        ({"first": FIN | PING, "length": 126}, "control frame over 125 bytes"),
        ({"first": PING}, "fragmented control frame"),
        ({"first": FIN | PING | RSV1}, "reserved bits set"),
        ({"first": FIN | CONTINUATION}, "continuation frame with nothing to continue"),
        ({"first": FIN | TEXT, "fragmenting": True}, "new message before the fragmented one ended"),
        ({"first": FIN | TEXT | RSV1}, "reserved bits set"),  # deflate not agreed
        ({"first": FIN | CONTINUATION | RSV1, "fragmenting": True, "deflate": True}, "reserved bits set"),
        ({"first": FIN | TEXT | 0x20, "deflate": True}, "reserved bits set"),
    ],
)
def test_each_header_violation_is_a_1002_naming_it(kwargs: dict[str, object], what: str) -> None:
    """Each way a header breaks RFC 6455 closes with 1002 and a reason that names it."""
    assert header(**kwargs) == (CLOSE_PROTOCOL_ERROR, f"protocol error: {what}")  # type: ignore[arg-type]


def test_a_message_over_the_limit_is_a_1009_counting_its_fragments() -> None:
    """A frame that takes the message past max_message_size, with the fragments before it, is a 1009."""
    assert header(FIN | TEXT, length=1001) == (CLOSE_MESSAGE_TOO_BIG, "message too big")
    assert header(FIN | CONTINUATION, length=600, fragmenting=True, fragment_bytes=401) == (
        CLOSE_MESSAGE_TOO_BIG,
        "message too big",
    )
    assert header(FIN | CONTINUATION, length=600, fragmenting=True, fragment_bytes=400) is None


def test_peer_close_frames_are_echoed_or_answered_with_the_error() -> None:
    """A valid code is echoed, an empty close answered empty; else 1002 or 1007 naming the fault."""
    assert parse_close(b"") == PeerClose(None, None, None)
    assert parse_close(b"\x03\xe8bye") == PeerClose(1000, "bye", 1000)
    assert parse_close(b"\x0f\xa0") == PeerClose(4000, "", 4000)
    assert parse_close(b"\x03").answer_code == CLOSE_PROTOCOL_ERROR
    assert parse_close(b"\x03\xed") == PeerClose(
        1005, None, CLOSE_PROTOCOL_ERROR, "protocol error: invalid close code 1005"
    )
    assert parse_close(b"\x03\xe8\xff") == PeerClose(
        1000, None, CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason"
    )


def test_valid_close_codes_follow_the_registry() -> None:
    """1000-1003, 1007-1014 and 3000-4999 may be sent; 1004-1006, 1015 and the rest may not."""
    allowed = [code for code in range(0, 6000) if valid_close_code(code)]
    assert allowed == [*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)]


def test_close_payload_fits_a_control_frame_on_a_character_boundary() -> None:
    """A long reason is cut to 123 bytes without splitting a UTF-8 character; a reason alone means 1000."""
    payload = close_payload(1008, "é" * 100)
    assert len(payload) <= 125
    assert payload[:2] == b"\x03\xf0"
    payload[2:].decode()  # raises if a character was split
    assert close_payload(None, "bye") == b"\x03\xe8bye"
    assert close_payload(None, None) == b""


def test_the_utf8_decoder_fails_at_the_fragment_that_breaks_it() -> None:
    """A character split across fragments is fine; an invalid byte fails at its own fragment."""
    decoder = utf8_decoder()
    assert decoder.decode("é".encode()[:1], False) == ""
    assert decoder.decode("é".encode()[1:], False) == "é"
    with pytest.raises(UnicodeDecodeError):
        decoder.decode(b"\xff", False)
