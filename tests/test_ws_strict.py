"""RFC 6455 strictness straight at a worker: close codes, early UTF-8 checks, the closing handshake."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import WS, Process, RawWS, eventually, free_port, http_status, publish, wait_until
from tests.hostile_cases import Target
from tests.ws_strict_cases import (
    INVALID_CLOSE_CODES,
    PING,
    VALID_CLOSE_CODES,
    VIOLATIONS,
    close_payload,
    close_reply,
    fragmented_message,
    fragments_without_end,
    frame,
    keeps_sending_while_closed,
    read_close,
    read_end,
    repeated_violation,
    send_all,
)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A `python -m app` process: 1 KiB messages, a burst of 20 client frames."""
    port = free_port()
    log = tmp_path_factory.mktemp("strict") / "worker.log"
    proc = Process(
        [sys.executable, "-m", "app", "--port", str(port)],
        log=str(log),
        env={
            "SOURCES": "",
            "MAX_MESSAGE_BYTES": "1024",
            "CLIENT_RATE": "1",
            "CLIENT_BURST": "20",
            "LOG_LEVEL": "WARNING",
        },
    )
    target = Target("127.0.0.1", port)
    wait_until(lambda: http_status(f"{target.base}/healthz") == 200, timeout=20)
    yield target
    assert proc.proc.poll() is None, "the worker died:\n" + proc.output()
    assert proc.stop() == 0
    assert "Traceback" not in proc.output(), proc.output()


# Close codes (RFC 6455 section 7.4).


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_is_answered_with_1002(worker: Target, code: int) -> None:
    """A close with a code no endpoint may send is answered with 1002, not echoed."""
    assert close_reply(worker, close_payload(code))[::2] == (1002, "close")


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_is_echoed(worker: Target, code: int) -> None:
    """A close with a valid code (1000-1003, 1007-1014, 3000-4999) is answered with the same code."""
    assert close_reply(worker, close_payload(code, b"bye"))[::2] == (code, "close")


def test_close_without_a_code_is_answered_without_one(worker: Target) -> None:
    """An empty close is answered with an empty close (no code: none was received)."""
    assert close_reply(worker, b"")[::2] == (None, "close")


def test_close_with_a_one_byte_body_is_1002(worker: Target) -> None:
    """A close body of one byte cannot hold a code: 1002."""
    assert close_reply(worker, b"\x03")[::2] == (1002, "close")


def test_close_reason_that_is_not_utf8_is_1007(worker: Target) -> None:
    """A close reason that is not UTF-8 is answered with 1007."""
    assert close_reply(worker, close_payload(1000, b"\xff\xfe"))[::2] == (1007, "close")


# UTF-8 (RFC 6455 sections 5.6 and 8.1).


def test_invalid_utf8_text_closes_with_1007(worker: Target) -> None:
    """A text frame that is not UTF-8 is closed with 1007 invalid frame payload data."""
    code, reason, ended = close_reply_to_text(worker, b'{"type":"\xff\xfe"}')
    assert (code, ended) == (1007, "close") and "UTF-8" in reason


def close_reply_to_text(target: Target, payload: bytes) -> tuple[int | None, str, str]:
    result = fragmented_message(target, [payload])
    assert isinstance(result, tuple), result
    return result


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"],
    ids=["0xff", "bad continuation", "surrogate", "above U+10FFFF", "overlong"],
)
def test_invalid_utf8_is_found_at_the_fragment_that_breaks_it(worker: Target, bad: bytes) -> None:
    """A fragment that makes its message invalid UTF-8 closes with 1007 before the last fragment."""
    code, _, ended = fragments_without_end(worker, [b'{"type":"ping",', b'"ref":"' + bad, b"x" * 100])
    assert (code, ended) == (1007, "close")


def test_fragments_may_split_a_character(worker: Target) -> None:
    """A character split between fragments is valid: the message is answered normally."""
    text = '{"type":"ping","ref":"é€😀"}'.encode()
    cut = text.index("é".encode()) + 1
    pieces = [text[:cut], text[cut : cut + 3], text[cut + 3 :]]
    assert fragmented_message(worker, pieces) == {"type": "pong", "ref": "é€😀"}


def test_message_ending_inside_a_character_is_1007(worker: Target) -> None:
    """A fragmented text message whose last fragment ends mid-character is closed with 1007."""
    result = fragmented_message(worker, [b'{"type":"ping"}', b"\xe2\x82"])
    assert isinstance(result, tuple) and result[::2] == (1007, "close"), result


# The closing handshake (RFC 6455 sections 5.5.1, 7.1.1 and 7.1.7).


@pytest.mark.parametrize(("name", "violation", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_close_frame_survives_a_client_that_keeps_sending(
    worker: Target, name: str, violation: bytes, code: int
) -> None:
    """A client still sending after a violation reads the close code, then a FIN, never a reset (15 of 15)."""
    results = repeated_violation(worker, violation, rounds=15)
    assert results == [(code, "close", "eof")] * 15, results


@pytest.mark.parametrize(
    "header",
    [b"\x89\xff" + (10**9).to_bytes(8, "big"), b"\x81\x7e\x03\xe8", b"\x81\xff" + (10**9).to_bytes(8, "big")],
    ids=["control frame of 1 GB", "unmasked 1000-byte frame", "1 GB text frame"],
)
def test_bad_frame_header_is_closed_before_its_payload(worker: Target, header: bytes) -> None:
    """A frame header that breaks a rule is answered at once, without waiting for the payload it declares."""
    ws = worker.ws()
    try:
        ws.sock.sendall(header)
        code, _, ended = read_close(ws, timeout=1.0)
        assert ended == "close" and code in (1002, 1009), (code, ended)
    finally:
        ws.close()


def test_unanswered_close_ends_with_fin_after_a_timeout(worker: Target) -> None:
    """A client that keeps sending for 0.5 s and never answers the close still reads it, then a FIN."""
    assert keeps_sending_while_closed(worker, frame(0x1, b"{}", masked=False)) == ("close", "eof")


async def test_slow_consumer_frames_after_its_1013_are_not_acted_on(make_server: Any) -> None:
    """A slow consumer's publishes after its 1013 close are discarded; it reads the 1013, then a FIN."""
    server = await make_server(max_queue_bytes=64 * 1024, client_rate=1000, client_burst=1000)
    watcher = await WS.connect(server.ws)
    await watcher.subscribe("chat.after")
    slow = await RawWS.open("127.0.0.1", server.port, "/ws?channel=firehose", rcvbuf=4096)
    assert slow.status == 101
    await eventually(lambda: server.hub.subscriber_count("firehose") == 1)
    pad = "x" * 8000
    for i in range(2000):
        await publish(server.base, "firehose", {"i": i, "pad": pad})
        if server.hub.stats.slow_consumers:
            break
    assert server.hub.stats.slow_consumers == 1, "the slow client was never dropped"
    loop = asyncio.get_running_loop()
    publish_frame = frame(0x1, json.dumps({"type": "publish", "channel": "chat.after", "data": 1}).encode())
    for _ in range(5):
        assert await loop.run_in_executor(None, send_all, slow, publish_frame)
    code, _, ended = await loop.run_in_executor(None, read_close, slow, 15)
    assert (code, ended) == (1013, "close")
    assert await loop.run_in_executor(None, send_all, slow, frame(0x8, close_payload(1013)))
    assert await loop.run_in_executor(None, read_end, slow) == "eof"
    await watcher.no_message(0.5)
    slow.close()


def test_flood_after_a_violation_is_bounded(worker: Target) -> None:
    """A client flooding after its violation does not hold the worker, and is cut off within about 5 s."""
    ws = worker.ws()
    ended: list[float] = []

    def flood() -> None:
        chunk = PING * 4000
        started = time.monotonic()
        while time.monotonic() - started < 20:
            if not send_all(ws, chunk):
                break
        ended.append(time.monotonic() - started)

    try:
        ws.sock.sendall(frame(0x1, b"{}", masked=False))
        thread = threading.Thread(target=flood)
        thread.start()
        for _ in range(5):
            started = time.monotonic()
            assert http_status(f"{worker.base}/healthz") == 200
            assert time.monotonic() - started < 1.0
            time.sleep(0.3)
        thread.join(30)
        assert ended and ended[0] < 10, ended
    finally:
        ws.close()
