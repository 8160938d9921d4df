"""RFC 6455 strictness through nginx: close codes, early UTF-8 checks, the closing handshake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from app.transports.ws_frames import DEFLATE_RESPONSE
from tests.helpers import publish
from tests.hostile_cases import Target
from tests.stack.conftest import NativeStack, start_stack
from tests.ws_strict_cases import (
    INVALID_CLOSE_CODES,
    VIOLATIONS,
    close_payload,
    close_reply,
    fragments_without_end,
    frame,
    keeps_sending_while_closed,
    repeated_violation,
)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """A 1-worker stack: 1 KiB messages, a burst of 20 client frames, permessage-deflate on."""
    stack = start_stack(
        tmp_path_factory.mktemp("strict-stack"),
        workers=1,
        MAX_MESSAGE_BYTES="1024",
        CLIENT_RATE="1",
        CLIENT_BURST="20",
        WS_DEFLATE_LEVEL="6",
    )
    yield stack
    assert stack.stop() == 0, stack.output()


@pytest.fixture(scope="module")
def via_nginx(strict_stack: NativeStack) -> Target:
    return Target("127.0.0.1", strict_stack.http_port)


def test_invalid_close_codes_through_nginx(via_nginx: Target) -> None:
    """Through nginx too, every invalid close code is answered with 1002."""
    got = {code: close_reply(via_nginx, close_payload(code))[::2] for code in INVALID_CLOSE_CODES}
    assert got == dict.fromkeys(INVALID_CLOSE_CODES, (1002, "close")), got


def test_invalid_utf8_fragment_through_nginx(via_nginx: Target) -> None:
    """Through nginx, a fragment that breaks UTF-8 closes with 1007 before the message ends."""
    code, _, ended = fragments_without_end(via_nginx, [b'{"type":"ping",', b'"ref":"\xff', b"x" * 100])
    assert (code, ended) == (1007, "close")


@pytest.mark.parametrize(("name", "violation", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_close_frame_survives_through_nginx(
    via_nginx: Target, name: str, violation: bytes, code: int
) -> None:
    """Through nginx, a client still sending after a violation reads the close code, then a FIN (15 of 15)."""
    results = repeated_violation(via_nginx, violation, rounds=15)
    assert results == [(code, "close", "eof")] * 15, results


def test_unanswered_close_through_nginx(via_nginx: Target) -> None:
    """Through nginx, a client that keeps sending and never answers the close reads it, then a FIN."""
    assert keeps_sending_while_closed(via_nginx, frame(0x1, b"{}", masked=False)) == ("close", "eof")


async def test_deflate_through_nginx(strict_stack: NativeStack) -> None:
    """Through nginx, the websockets client agrees to permessage-deflate and gets the message."""
    async with connect(strict_stack.ws + "?channel=sensors") as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == DEFLATE_RESPONSE
        assert json.loads(await ws.recv())["type"] == "subscribed"
        msg_id = await publish(strict_stack.base, "sensors", {"temperature": 21.4})
        assert json.loads(await ws.recv()) == {
            "type": "message",
            "channel": "sensors",
            "id": msg_id,
            "data": {"temperature": 21.4},
        }
