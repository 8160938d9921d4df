"""The client's pure parts, without sockets: resume bookkeeping, frames, cursors, URLs, backoff, errors."""

from __future__ import annotations

import pytest

from app.client.backoff import backoff_delay
from app.client.errors import ClientError, from_http_answer
from app.client.frames import (
    Message,
    Reset,
    check_channels,
    decode_frame,
    encode_cursor,
    encode_json,
    events_url,
    normalize_url,
    parse_start,
    publish_url,
    since_for,
    ws_url,
)
from app.client.positions import Positions


def test_since_applies_to_every_channel_or_per_channel() -> None:
    """since=0 (or an id) applies to every channel, a map to the channels it names, None to none."""
    assert since_for(["a", "b"], 0) == {"a": 0, "b": 0}
    assert since_for(["a", "b"], {"a": 7, "zzz": 1}) == {"a": 7}
    assert since_for(["a", "b"], None) == {}
    for bad in (-1, True, "3", 1.5):
        with pytest.raises(ClientError) as caught:
            since_for(["a"], bad)  # type: ignore[arg-type]
        assert caught.value.code == "bad_since"


def test_since_latest_applies_to_every_channel_or_per_channel() -> None:
    """since="latest" applies to every channel, or to those a map names; any other string is bad_since."""
    assert since_for(["a", "b"], "latest") == {"a": "latest", "b": "latest"}
    assert since_for(["a", "b"], {"a": "latest", "b": 4}) == {"a": "latest", "b": 4}
    for bad in ("newest", {"a": "Latest"}):
        with pytest.raises(ClientError) as caught:
            since_for(["a"], bad)  # type: ignore[arg-type]
        assert caught.value.code == "bad_since"


def test_latest_is_asked_until_the_server_names_an_id_then_resumes_after_it() -> None:
    """A "latest" channel resumes at "latest" until started(); then after the id; its newest is taken once."""
    p = Positions(["a", "b"], {"a": "latest"})
    assert p.resume_points() == {"a": "latest", "b": None}
    assert p.positions() == {}
    p.started("a", 100)  # the subscribed answer, or the SSE stream's opening id
    assert p.resume_points() == {"a": 100, "b": None}, "a reconnect resumes after the id, never latest"
    assert p.positions() == {"a": 100}
    assert p.take(Message("a", 100, "newest")), "the newest message, at the very id named"
    assert not p.take(Message("a", 100, "newest")), "but only once"
    assert p.positions() == {"a": 99}, "not delivered yet: another client from here gets it too"
    assert p.deliver(Message("a", 100, "newest")) and p.positions() == {"a": 100}
    assert p.take(Message("a", 101, None)) and p.resume_points()["a"] == 101


def test_latest_on_an_empty_channel_and_restarts() -> None:
    """An empty "latest" channel takes only what follows its id; add(ch, "latest") asks again from scratch."""
    p = Positions(["a"], {"a": "latest"})
    p.started("a", 0)
    assert p.resume_points() == {"a": 0} and p.positions() == {"a": 0}
    assert p.take(Message("a", 7, "live")) and not p.take(Message("a", 7, "live"))
    assert p.add("a", "latest") and p.resume_points() == {"a": "latest"}
    assert p.positions() == {}
    p.started("a", 7)
    assert p.take(Message("a", 7, "live")), "the newest, again, as asked"
    assert p.add("a", 3) and p.resume_points() == {"a": 3}
    p.started("a", 50)  # ignored: a has a position
    assert not p.take(Message("a", 3, None)) and p.take(Message("a", 4, None))
    assert p.remove("a") and p.resume_points() == {}


def test_channel_names_are_checked_and_deduplicated() -> None:
    """Invalid channel names are refused with bad_channel before anything is sent; repeats collapse."""
    assert check_channels(["a", "b", "a"]) == ["a", "b"]
    for bad in ("", "a b", "x" * 129, "a/b"):
        with pytest.raises(ClientError) as caught:
            check_channels([bad])
        assert caught.value.code == "bad_channel"


def test_repeats_and_old_ids_are_dropped_and_resume_follows_what_was_taken() -> None:
    """A message at or below the last id taken is a repeat; resume points are the last ids taken."""
    p = Positions(["a", "b"], {"a": 5})
    assert p.resume_points() == {"a": 5, "b": None}
    assert not p.take(Message("a", 5, None)) and not p.take(Message("a", 3, None))
    assert p.take(Message("a", 6, None)) and not p.take(Message("a", 6, None))
    assert not p.take(Message("other", 1, None))
    p.started("b", 100)
    p.started("a", 1)  # ignored: a already has a position
    assert p.resume_points() == {"a": 6, "b": 100}
    assert not p.take(Message("b", 100, None)) and p.take(Message("b", 101, None))


def test_positions_report_what_was_delivered_not_what_is_queued() -> None:
    """positions() gives the last id handed to the caller (or where a channel started), not the queued."""
    p = Positions(["a", "b"], {"a": 5})
    p.started("b", 100)
    assert p.take(Message("a", 6, None)) and p.take(Message("a", 7, None))
    assert p.positions() == {"a": 5, "b": 100}
    assert p.deliver(Message("a", 6, None))
    assert p.positions() == {"a": 6, "b": 100}
    assert not p.deliver(Message("a", 6, None)), "never handed over twice"


def test_a_reset_restarts_the_channel_from_what_history_keeps() -> None:
    """After a reset every kept message is taken again; positions() shows 0 once the reset is delivered."""
    p = Positions(["a"], {"a": 50})
    assert p.take_reset(Reset("a", 900, "history lost"))
    assert p.resume_points() == {"a": 0}
    assert p.take(Message("a", 10, None))
    assert p.deliver(Reset("a", 900, "history lost")) and p.positions() == {"a": 0}
    assert p.deliver(Message("a", 10, None)) and p.positions() == {"a": 10}


def test_subscribe_unsubscribe_and_restart() -> None:
    """Adding a channel twice changes nothing; adding with since restarts it; removing forgets it."""
    p = Positions(["a"], {})
    assert not p.add("a", None)
    assert p.add("b", 3) and p.resume_points() == {"a": None, "b": 3}
    p.take(Message("b", 9, None))
    p.deliver(Message("b", 9, None))
    assert p.add("b", 4) and p.positions() == {"b": 4}
    assert p.remove("b") and not p.remove("b") and p.channels == ["a"]
    assert not p.deliver(Message("b", 10, None))


def test_cursors_and_starting_ids() -> None:
    """The SSE cursor names each channel; a stream's first id is a bare id (one channel) or a cursor."""
    assert encode_cursor({"a": 1, "b": 0}) == "a=1,b=0"
    assert parse_start("42", ["a"]) == {"a": 42}
    assert parse_start("a=1,b=2,c=3", ["a", "b"]) == {"a": 1, "b": 2}
    assert parse_start("", ["a"]) == {}
    with pytest.raises(ClientError):
        parse_start("a=x", ["a"])


def test_frames_decode_only_json_objects_with_a_type() -> None:
    """Frames that are not JSON objects with a string type are ignored, not fatal."""
    assert decode_frame('{"type": "pong"}') == {"type": "pong"}
    for bad in ("[1]", "nope", '{"type": 1}'):
        assert decode_frame(bad) is None
    assert encode_json({"x": [1, "é"]}) == '{"x":[1,"é"]}'
    for bad in (float("nan"), {1, 2}):
        with pytest.raises(ClientError) as caught:
            encode_json(bad)
        assert caught.value.code == "bad_json"


def test_urls() -> None:
    """The base URL may be http(s) or ws(s), with a path prefix; anything else is bad_url."""
    assert normalize_url("http://127.0.0.1:8888/") == "http://127.0.0.1:8888"
    assert normalize_url("wss://example.org/windsock") == "https://example.org/windsock"
    assert ws_url("https://example.org/w") == "wss://example.org/w/ws"
    assert ws_url("http://h:1") == "ws://h:1/ws"
    assert events_url("http://h:1") == "http://h:1/events"
    assert publish_url("http://h:1", "a.b") == "http://h:1/api/channels/a.b"
    for bad in ("ftp://x", "127.0.0.1:8888", "http://", "http://h:99999", "http://h/?q=1", ""):
        with pytest.raises(ClientError) as caught:
            normalize_url(bad)
        assert caught.value.code == "bad_url", bad


def test_backoff_doubles_caps_and_jitters() -> None:
    """Waits grow as min_delay * 2^n up to max_delay, each jittered to between half and all of it."""
    assert [backoff_delay(n, 0.5, 30, lambda: 1.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, 0.5, 30, lambda: 0.0) == 2.0
    assert backoff_delay(10_000, 0.5, 30, lambda: 0.5) == 22.5


def test_error_answers_keep_the_servers_code() -> None:
    """An HTTP error answer keeps the server's code; a proxy's own page gets a code for its status."""
    err = from_http_answer(401, b'{"type": "error", "code": "unauthorized", "message": "token expired"}')
    assert (err.code, err.message, err.status) == ("unauthorized", "token expired", 401)
    assert str(err) == "unauthorized: token expired (HTTP 401)"
    assert from_http_answer(502, b"<html>bad gateway</html>").code == "no_worker"
    assert from_http_answer(418, b"").code == "http_418"
    closed = ClientError("unauthorized", "token expired", 4401)
    assert str(closed) == "unauthorized: token expired (close 4401)"
