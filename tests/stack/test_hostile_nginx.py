"""Hostile input through nginx: malformed frames and handshakes reach the worker intact; nginx's limits."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import WAIT, WS
from tests.hostile_cases import FRAME_CASES, HANDSHAKE_CASES, Bystander, Target, frame_case, handshake
from tests.stack.conftest import NativeStack, start_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """A 2-worker stack whose nginx allows 8 streaming connections per address."""
    stack = start_stack(tmp_path_factory.mktemp("hostile-stack"), workers=2, CONN_PER_IP="8")
    yield stack
    assert stack.stop() == 0, stack.output()


@pytest.fixture(scope="module")
def via_nginx(limited_stack: NativeStack) -> Target:
    return Target("127.0.0.1", limited_stack.http_port)


@pytest.fixture(scope="module")
def bystander(via_nginx: Target) -> Iterator[Bystander]:
    watcher = Bystander(via_nginx)
    yield watcher
    watcher.close()


@pytest.mark.parametrize(("name", "send", "code", "word"), FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_malformed_frames_through_nginx(
    via_nginx: Target, bystander: Bystander, name: str, send: Callable[..., None], code: int, word: str
) -> None:
    """Protocol violations sent through nginx end with the worker's close code; others are unaffected."""
    closed = frame_case(via_nginx, send)
    assert closed is not None and closed[0] == code and word in closed[1], (name, closed)
    assert bystander.still_served()


@pytest.mark.parametrize(("name", "headers", "status"), HANDSHAKE_CASES, ids=[c[0] for c in HANDSHAKE_CASES])
def test_malformed_handshakes_through_nginx(
    via_nginx: Target, bystander: Bystander, name: str, headers: list[str], status: int
) -> None:
    """Bad handshakes through nginx get the same clear statuses as at a worker."""
    got, _, body = handshake(via_nginx, headers)
    assert got == status, (name, got, body)
    assert bystander.still_served()


def test_overlong_url_is_414(via_nginx: Target, bystander: Bystander) -> None:
    """A request line beyond nginx's buffers gets 414 from nginx, never reaching a worker."""
    with socket.create_connection((via_nginx.host, via_nginx.port), timeout=WAIT) as s:
        s.sendall(f"GET /events?channel={'x' * 100_000} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        data = b""
        while b"</html>" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 414")
    assert bystander.still_served()


async def test_connections_per_address_are_limited(limited_stack: NativeStack, bystander: Bystander) -> None:
    """Past CONN_PER_IP streams from one address nginx answers 429 JSON; existing ones go on."""
    opened: list[WS] = []
    refused = None
    for _ in range(12):
        try:
            opened.append(await WS.connect(limited_stack.ws))
        except Exception as exc:  # tornado raises HTTPClientError carrying the response
            refused = exc
            break
    # The bystander holds one of the 8 slots.
    assert len(opened) == 7, len(opened)
    response = getattr(refused, "response", None)
    assert response is not None and response.code == 429
    assert json.loads(response.body)["code"] == "too_many_connections"
    for ws in opened:
        ws.close()
