"""Subscribe tokens, per-connection limits and the SSE cap, against a real worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest

from app.auth import mint_token, verify_token
from app.errors import WindsockError
from app.limits import TokenBucket
from tests.helpers import SSE, WS, eventually, publish

SECRET = "test-secret-0123456789-abcdefghij"


def test_token_round_trip_and_claims() -> None:
    """A minted token verifies and allows exactly its channel globs."""
    grant = verify_token(mint_token(SECRET, ["sensors.*", "chat.room"]), SECRET)
    assert grant.allows("sensors.a") and grant.allows("chat.room")
    assert not grant.allows("chat.other") and not grant.allows("sensorsX")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "required"),
        ("", "required"),
        ("not.a.jwt", "rejected"),
        (mint_token("another-secret-0123456789-abcdefgh", ["a"]), "signature"),
        (mint_token(SECRET, ["a"], ttl=-10), "expired"),
    ],
)
def test_bad_tokens_are_unauthorized(token: str | None, reason: str) -> None:
    """Missing, malformed, forged and expired tokens raise unauthorized naming the problem."""
    with pytest.raises(WindsockError) as info:
        verify_token(token, SECRET)
    assert info.value.code == "unauthorized" and reason in info.value.message


def test_token_bucket() -> None:
    """The bucket allows a burst, then the rate, refilling with time."""
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.allow() and not bucket.allow()
    now[0] += 100
    assert sum(bucket.allow() for _ in range(10)) == 3


async def _closed(ws: WS) -> tuple[int | None, str | None]:
    while await asyncio.wait_for(ws.conn.read_message(), 5) is not None:
        pass
    return ws.conn.close_code, ws.conn.close_reason


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "a subscribe token is required"),
        ("?token=garbage", "token rejected"),
        (f"?token={mint_token('wrong-secret-0123456789-abcdefghi', ['a'])}", "signature is invalid"),
        (f"?token={mint_token(SECRET, ['a'], ttl=-5)}", "token expired"),
    ],
)
async def test_websocket_bad_token_closes_4401(make_server: Any, query: str, reason: str) -> None:
    """Without a valid token the WebSocket is closed with 4401 and the reason, and gets nothing."""
    server = await make_server(subscribe_secret=SECRET)
    ws = await WS.connect(server.ws + query + ("&" if query else "?") + "channel=a")
    code, said = await _closed(ws)
    assert code == 4401 and said is not None and reason in said
    assert server.hub.subscriber_count("a") == 0


async def test_websocket_wrong_channel_closes_4403(make_server: Any) -> None:
    """A subscribe beyond the token's channels closes with 4403 and nothing is delivered."""
    server = await make_server(subscribe_secret=SECRET)
    ws = await WS.connect(f"{server.ws}?token={mint_token(SECRET, ['public.*'])}")
    await ws.subscribe("public.news")
    await ws.send({"type": "subscribe", "channel": "private.payroll"})
    assert await _closed(ws) == (4403, "token does not allow channel private.payroll")
    assert server.hub.subscriber_count("private.payroll") == 0


async def test_websocket_valid_token_by_header_and_expiry(make_server: Any) -> None:
    """A valid bearer token subscribes and receives; at expiry the connection closes with 4401."""
    server = await make_server(subscribe_secret=SECRET)
    token = mint_token(SECRET, ["feed"], ttl=2)
    ws = await WS.connect(HTTPRequest(server.ws, headers={"Authorization": f"Bearer {token}"}))
    await ws.subscribe("feed")
    await publish(server.base, "feed", 1)
    assert (await ws.messages(1))[0]["data"] == 1
    started = time.monotonic()
    assert await _closed(ws) == (4401, "token expired")
    assert time.monotonic() - started < 5


async def test_sse_tokens(make_server: Any) -> None:
    """SSE answers 401 without a valid token, 403 for channels outside it, and streams with one."""
    server = await make_server(subscribe_secret=SECRET)
    url = f"{server.base}/events?channel=feed"
    missing = await SSE.connect(url)
    assert (missing.status, missing.json()["code"]) == (401, "unauthorized")
    forged = await SSE.connect(url + "&token=" + mint_token("x" * 32, ["feed"]))
    assert forged.status == 401
    wrong = await SSE.connect(url + "&token=" + mint_token(SECRET, ["other"]))
    assert (wrong.status, wrong.json()["code"]) == (403, "forbidden")
    good = await SSE.connect(url, {"Authorization": "Bearer " + mint_token(SECRET, ["feed"])})
    await publish(server.base, "feed", "ok")
    assert (await good.messages(1))[0]["data"] == "ok"


async def test_rate_limit_closes_1008(make_server: Any) -> None:
    """A client sending faster than CLIENT_RATE gets a rate_limited error, then close 1008."""
    server = await make_server(client_rate=1, client_burst=5)
    flood = await WS.connect(server.ws)
    calm = await WS.connect(server.ws)
    await calm.subscribe("calm")
    for _ in range(10):
        await flood.send({"type": "ping"})
    frames = []
    while (raw := await asyncio.wait_for(flood.conn.read_message(), 5)) is not None:
        frames.append(raw)
    assert frames[:5] == ['{"type":"pong"}'] * 5
    assert '"code":"rate_limited"' in frames[5]
    assert (flood.conn.close_code, flood.conn.close_reason) == (1008, "rate limit exceeded")
    await publish(server.base, "calm", 1)
    assert (await calm.messages(1))[0]["data"] == 1


async def test_sse_connection_cap(make_server: Any) -> None:
    """Beyond MAX_SSE_CONNECTIONS a worker answers 503 too_many_connections, and recovers after."""
    server = await make_server(max_sse_connections=2)
    url = f"{server.base}/events?channel=a"
    first, second = await SSE.connect(url), await SSE.connect(url)
    await eventually(lambda: server.connections.count("sse") == 2)
    third = await SSE.connect(url)
    assert (third.status, third.json()["code"]) == (503, "too_many_connections")
    first.close()
    await eventually(lambda: server.connections.count("sse") == 1)
    fourth = await SSE.connect(url)
    assert fourth.status == 200
    second.close()


async def test_channel_state_needs_a_token_too(make_server: Any) -> None:
    """With SUBSCRIBE_SECRET set, GET /api/channels/NAME needs a token for NAME (or the publish key)."""
    from tests.helpers import http

    server = await make_server(subscribe_secret=SECRET, publish_key="pk-0123456789")
    await publish(server.base, "secret.feed", {"v": 1}, Authorization="Bearer pk-0123456789")
    url = f"{server.base}/api/channels/secret.feed"
    status, body, _ = await http("GET", url)
    assert (status, body["code"]) == (401, "unauthorized")
    status, body, _ = await http("GET", url + "?token=" + mint_token(SECRET, ["public.*"]))
    assert (status, body["code"]) == (403, "forbidden")
    status, body, _ = await http("GET", url + "?token=" + mint_token(SECRET, ["secret.*"]))
    assert status == 200 and body["latest"]["data"] == {"v": 1}
    status, _, _ = await http("GET", url, headers={"Authorization": "Bearer pk-0123456789"})
    assert status == 200
