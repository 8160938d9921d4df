"""The wire formats, tested without sockets."""

from __future__ import annotations

import json
import struct

import pytest

from app.client_frames import encode_cursor, parse_client_frame, parse_cursor, parse_id
from app.errors import WindsockError
from app.messages import (
    Message,
    encode_envelope,
    encode_reset,
    plan_resume,
    sse_comment,
    sse_event,
    ws_text_frame,
)


def test_envelope_is_the_documented_json() -> None:
    """The envelope decodes to type, channel, id and data, with data spliced in unchanged."""
    raw = encode_envelope("sensors.a", 42, b'{"t":21.5,"s":"\\u00e9"}')
    assert json.loads(raw) == {
        "type": "message",
        "channel": "sensors.a",
        "id": 42,
        "data": {"t": 21.5, "s": "é"},
    }
    assert b"\n" not in raw


def test_message_encodings_are_built_once() -> None:
    """A message's WebSocket frame and SSE event are computed once and then reused."""
    message = Message.build("c", 7, b"[1,2]")
    assert message.ws_frame is message.ws_frame
    assert message.sse_event is message.sse_event
    assert message.sse_event == b"id: 7\ndata: " + message.envelope + b"\n\n"
    assert message.data() == [1, 2]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_ws_frame_length_encodings(size: int) -> None:
    """Text frames use the 7-bit, 16-bit and 64-bit length forms at the RFC 6455 boundaries."""
    payload = b"x" * size
    frame = ws_text_frame(payload)
    assert frame[0] == 0x81  # FIN + text opcode
    assert frame[1] & 0x80 == 0  # servers never mask
    length = frame[1] & 0x7F
    if size < 126:
        assert length == size and frame[2:] == payload
    elif size <= 0xFFFF:
        assert length == 126 and struct.unpack("!H", frame[2:4])[0] == size and frame[4:] == payload
    else:
        assert length == 127 and struct.unpack("!Q", frame[2:10])[0] == size and frame[10:] == payload


def test_sse_framing() -> None:
    """SSE events carry an optional id and one data line; comments start with a colon."""
    assert sse_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse_event(b"1", "a=1,b=2") == b"id: a=1,b=2\ndata: 1\n\n"
    assert sse_comment("ping") == b": ping\n\n"


def test_client_frames_decode() -> None:
    """Valid subscribe, unsubscribe, publish and ping frames decode to their fields."""
    sub = parse_client_frame('{"type":"subscribe","channel":"a.b","since":"12"}')
    assert (sub.type, sub.channel, sub.since) == ("subscribe", "a.b", 12)
    pub = parse_client_frame(b'{"type":"publish","channel":"chat.x","data":{"k":[1,null]},"ref":3}')
    assert (pub.data, pub.ref) == (b'{"k":[1,null]}', 3)
    assert parse_client_frame('{"type":"ping"}').type == "ping"
    assert parse_client_frame('{"type":"unsubscribe","channel":"a"}').channel == "a"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("NaN", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ("[1,2]", "bad_message"),
        ('{"channel":"a"}', "bad_message"),
        ('{"type":5}', "bad_message"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"type":"subscribe"}', "bad_channel"),
        ('{"type":"subscribe","channel":"../etc"}', "bad_channel"),
        ('{"type":"subscribe","channel":"' + "x" * 129 + '"}', "bad_channel"),
        ('{"type":"subscribe","channel":"caf\u00e9"}', "bad_channel"),
        ('{"type":"subscribe","channel":7}', "bad_channel"),
        ('{"type":"subscribe","channel":"a","since":-1}', "bad_since"),
        ('{"type":"subscribe","channel":"a","since":"x"}', "bad_since"),
        ('{"type":"subscribe","channel":"a","since":true}', "bad_since"),
        ('{"type":"publish","channel":"a"}', "bad_message"),
    ],
)
def test_bad_client_frames_name_their_error(raw: str | bytes, code: str) -> None:
    """Every kind of bad frame raises a WindsockError with its documented code."""
    with pytest.raises(WindsockError) as info:
        parse_client_frame(raw)
    assert info.value.code == code
    assert info.value.as_dict()["type"] == "error"


def test_parse_id_bounds() -> None:
    """Ids are non-negative integers below 2**63, given as numbers or decimal strings."""
    assert parse_id("0") == 0 and parse_id(2**62) == 2**62
    for bad in ("", "1e3", "٣", 2**63, -5, 1.5, None, "9" * 30):
        with pytest.raises(WindsockError):
            parse_id(bad)


def test_cursor_round_trip() -> None:
    """A multi-channel cursor names each channel's id; a bare id applies to all channels."""
    text = encode_cursor({"a": 5, "b.c:d": 9})
    assert text == "a=5,b.c:d=9"
    assert parse_cursor(text, ["a", "b.c:d"]) == {"a": 5, "b.c:d": 9}
    assert parse_cursor(text, ["a"]) == {"a": 5}
    assert parse_cursor("0", ["a", "b"]) == {"a": 0, "b": 0}
    with pytest.raises(WindsockError):
        parse_cursor("a=1,b", ["a", "b"])


def _history(*ids: int) -> list[Message]:
    return [Message.build("c", i, b"null") for i in ids]


def test_resume_without_gap() -> None:
    """A resume whose next id is still kept replays exactly the missed messages."""
    replay, lost = plan_resume(11, 14, _history(12, 13, 14))
    assert [m.id for m in replay] == [12, 13, 14] and not lost


def test_resume_up_to_date() -> None:
    """A resume from the latest id replays nothing."""
    assert plan_resume(14, 14, []) == ([], False)


def test_resume_from_zero_replays_everything() -> None:
    """since=0 asks for the whole history and is never a loss."""
    replay, lost = plan_resume(0, 14, _history(13, 14))
    assert [m.id for m in replay] == [13, 14] and not lost


def test_resume_past_history_is_a_loss() -> None:
    """A resume older than the kept history is flagged lost and replays what is kept."""
    replay, lost = plan_resume(5, 14, _history(13, 14))
    assert [m.id for m in replay] == [13, 14] and lost


def test_resume_after_history_was_wiped_is_a_loss() -> None:
    """An id the channel never issued (history wiped, channel gone) is flagged lost."""
    assert plan_resume(99, 0, []) == ([], True)
    replay, lost = plan_resume(99, 50, _history(49, 50))
    assert lost and [m.id for m in replay] == [49, 50]


def test_reset_notice() -> None:
    """A reset names the channel and its latest id, with a reason, as one compact JSON object."""
    notice = json.loads(encode_reset("a.b", 17))
    assert notice == {
        "type": "reset",
        "channel": "a.b",
        "id": 17,
        "reason": "messages after your last id are no longer in history",
    }
