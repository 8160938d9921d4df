"""Hostile input straight at a worker process: malformed frames and handshakes, slowloris, fuzzing."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ERRORS
from tests.helpers import WAIT, Process, free_port, http_status, wait_until
from tests.hostile_cases import (
    FRAME_CASES,
    HANDSHAKE_CASES,
    Bystander,
    Target,
    frame_case,
    handshake,
    json_values,
)

KNOWN_TYPES = {"error", "subscribed", "unsubscribed", "published", "pong", "message", "reset"}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A `python -m app` process with small limits: 1 KiB messages, 1 s header timeout."""
    port = free_port()
    log = tmp_path_factory.mktemp("hostile") / "worker.log"
    proc = Process(
        [sys.executable, "-m", "app", "--port", str(port)],
        log=str(log),
        env={
            "SOURCES": "",
            "MAX_MESSAGE_BYTES": "1024",
            "HEADER_TIMEOUT": "1",
            "CLIENT_RATE": "1000",
            "CLIENT_BURST": "1000",
            "LOG_LEVEL": "WARNING",
        },
    )
    target = Target("127.0.0.1", port)
    wait_until(lambda: _health(target) == 200, timeout=20)
    yield target
    assert proc.proc.poll() is None, "the worker died:\n" + proc.output()
    assert proc.stop() == 0
    assert "Traceback" not in proc.output(), proc.output()


def _health(target: Target) -> int:
    return http_status(f"{target.base}/healthz")


@pytest.fixture(scope="module")
def bystander(worker: Target) -> Iterator[Bystander]:
    """One subscriber that watches the whole module's abuse go by."""
    watcher = Bystander(worker)
    yield watcher
    watcher.close()


@pytest.mark.parametrize(("name", "send", "code", "word"), FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_malformed_frames_close_with_a_code(
    worker: Target, bystander: Bystander, name: str, send: Callable[..., None], code: int, word: str
) -> None:
    """Each protocol violation is closed with its code and a reason; other clients are unaffected."""
    closed = frame_case(worker, send)
    assert closed is not None, f"{name}: no close frame"
    assert closed[0] == code and word in closed[1], closed
    assert bystander.still_served()


@pytest.mark.parametrize(("name", "headers", "status"), HANDSHAKE_CASES, ids=[c[0] for c in HANDSHAKE_CASES])
def test_malformed_handshakes_are_refused(
    worker: Target, bystander: Bystander, name: str, headers: list[str], status: int
) -> None:
    """Bad handshakes get a clear HTTP status (426 names the supported version)."""
    got, response_headers, body = handshake(worker, headers)
    assert got == status, (name, got, body)
    if status == 426:
        assert response_headers["sec-websocket-version"] == "13"
    assert b"Traceback" not in body
    assert bystander.still_served()


def test_slowloris_half_open_requests_are_closed(worker: Target, bystander: Bystander) -> None:
    """Half-sent handshakes are dropped after HEADER_TIMEOUT while normal clients are served."""
    sockets = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", worker.port), timeout=WAIT)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # and never finish
        sockets.append(s)
    assert bystander.still_served()
    assert _health(worker) == 200
    started = time.monotonic()
    for s in sockets:
        s.settimeout(10)
        assert s.recv(1) == b"", "the server kept a half-open request"
        s.close()
    print(f"100 half-open requests dropped after {time.monotonic() - started:.1f} s")


# Fuzzing. Hypothesis makes the frames; one fresh connection per example.

_json = json_values
_channel = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:\-]{1,20}", fullmatch=True),
    st.text(max_size=30),
    st.just("../etc/passwd"),
    st.just("x" * 200),
    st.integers(),
    st.none(),
)
_frame = st.one_of(
    st.text(max_size=200),
    st.text(min_size=1100, max_size=1500),
    _json.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "publish", "ping", "nope", ""])},
        optional={
            "channel": _channel,
            "since": st.one_of(st.integers(), st.text(max_size=5), _json),
            "data": _json,
            "ref": _json,
        },
    ).map(json.dumps),
)
_fuzz = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(frame=_frame)
def test_fuzz_websocket_protocol(worker: Target, frame: str) -> None:
    """Any text frame gets known replies or an error with a documented code, and the connection lives."""
    ws = worker.ws()
    try:
        raw = frame.encode()
        ws.send_text(raw)
        if len(raw) > 1024:  # the worker's MAX_MESSAGE_BYTES
            assert ws.close_frame() == (1009, "message too big")
            return
        ws.send_text(b'{"type":"ping","ref":"end"}')
        while True:
            reply = ws.next_json()
            assert reply["type"] in KNOWN_TYPES, reply
            if reply["type"] == "error":
                assert reply["code"] in ERRORS and reply["message"], reply
            if reply == {"type": "pong", "ref": "end"}:
                break
    finally:
        ws.close()


@_fuzz
@given(
    name=st.text(max_size=300), body=st.binary(max_size=1500) | _json.map(lambda v: json.dumps(v).encode())
)
def test_fuzz_publish_api(worker: Target, name: str, body: bytes) -> None:
    """Any channel name and body gets 2xx or a JSON error with a documented code; never a 500."""
    url = f"{worker.base}/api/channels/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(url, body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            assert response.status in (200, 202)
            assert "id" in json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the open response: close it, or its socket leaks
            payload = json.load(exc)
        assert exc.code in {400, 404, 413} and payload["code"] in ERRORS, (exc.code, payload)


@_fuzz
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["channel", "last_event_id", "token", "x"]),
            st.one_of(_channel.map(str), st.text(max_size=40), st.just("é" * 1500)),
        ),
        max_size=6,
    )
)
def test_fuzz_event_stream_query(worker: Target, params: list[tuple[str, Any]]) -> None:
    """Any query string on /events opens a stream (200) or answers a JSON 400; nothing else.

    Queries stay under Tornado's 64 KiB header limit, beyond which a worker
    drops the connection; in the stack nginx answers those with 414 first
    (tests/stack/test_hostile_nginx.py).
    """
    query = urllib.parse.urlencode(params)
    with socket.create_connection(("127.0.0.1", worker.port), timeout=WAIT) as s:
        s.sendall(f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{worker.port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "connection closed without an answer"
            head += chunk
    status = int(head.split(b" ", 2)[1])
    assert status in {200, 400}, head[:300]
    if status == 400:
        assert b"application/json" in head.split(b"\r\n\r\n")[0]


def test_worker_survived_everything(worker: Target, bystander: Bystander) -> None:
    """After the whole module, the worker is healthy and the bystander was never dropped."""
    assert _health(worker) == 200
    assert bystander.still_served()
