"""Publish idempotency keys: a repeat within the window publishes nothing and answers the first id."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis

from app.brokers.base import PublishResult
from app.brokers.redis import RedisBroker
from app.errors import WindsockError
from app.hub import Hub
from app.sources.base import Publisher
from tests.helpers import WS, eventually, http


def url(server: Any, channel: str) -> str:
    return f"{server.base}/api/channels/{channel}"


async def post(server: Any, channel: str, data: Any, key: str | None) -> tuple[int, Any]:
    status, body, _ = await http(
        "POST", url(server, channel), data, {"Idempotency-Key": key} if key else None
    )
    return status, body


async def only_frames(ws: WS, n: int) -> list[dict[str, Any]]:
    """The next ``n`` frames, then proof nothing else came: the frame after them answers a ping sent now."""
    frames = [await ws.recv() for _ in range(n)]
    await ws.send({"type": "ping", "ref": "end"})
    assert await ws.recv() == {"type": "pong", "ref": "end"}
    return frames


async def test_http_repeat_answers_200_duplicate_with_the_first_id(server: Any) -> None:
    """One Idempotency-Key twice on a channel: 202, then 200 duplicate with the same id; delivered once."""
    ws = await WS.connect(server.ws)
    await ws.subscribe("idem.http")
    status, first = await post(server, "idem.http", {"v": 1}, "order-17")
    assert status == 202 and "duplicate" not in first
    status, again = await post(server, "idem.http", {"v": "a retry may even differ"}, "order-17")
    assert status == 200 and again == {"id": first["id"], "channel": "idem.http", "duplicate": True}
    [message] = await only_frames(ws, 1)
    assert (message["id"], message["data"]) == (first["id"], {"v": 1})
    _, state, _ = await http("GET", url(server, "idem.http"))
    assert state["history"] == 1


async def test_a_key_is_per_channel_and_no_key_never_deduplicates(server: Any) -> None:
    """One key on two channels publishes on both; publishes without a key are never merged."""
    assert (await post(server, "idem.a", 1, "k"))[0] == 202
    assert (await post(server, "idem.b", 1, "k"))[0] == 202
    assert (await post(server, "idem.b", 1, None))[0] == 202
    assert (await post(server, "idem.b", 1, None))[0] == 202
    _, state, _ = await http("GET", url(server, "idem.b"))
    assert state["history"] == 3


async def test_websocket_publish_with_idempotency_key(server: Any) -> None:
    """A publish frame's idempotency_key: the repeat answers published with duplicate and the first id."""
    ws = await WS.connect(server.ws)
    await ws.subscribe("chat.idem")
    frame = {"type": "publish", "channel": "chat.idem", "data": "hi", "idempotency_key": "m-1", "ref": 1}
    await ws.send(frame)
    # The memory broker delivers before it answers, Redis after: either order.
    frames = {f["type"]: f for f in [await ws.recv(), await ws.recv()]}
    first, message = frames["published"], frames["message"]
    assert "duplicate" not in first and message["id"] == first["id"]
    await ws.send({**frame, "ref": 2})
    [again] = await only_frames(ws, 1)
    assert again == {
        "type": "published",
        "channel": "chat.idem",
        "id": first["id"],
        "ref": 2,
        "duplicate": True,
    }


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "caf\u00e9", "tab\there"])
async def test_a_bad_http_key_is_refused_and_publishes_nothing(server: Any, key: str) -> None:
    """An unusable Idempotency-Key gets 400 bad_idempotency_key, and nothing is published."""
    status, body, _ = await http("POST", url(server, "idem.bad"), {"v": 1}, {"Idempotency-Key": key})
    assert status == 400 and body["code"] == "bad_idempotency_key", body
    _, state, _ = await http("GET", url(server, "idem.bad"))
    assert state["history"] == 0


@pytest.mark.parametrize("key", ["", 7, ["k"], "x" * 129, "has space"])
async def test_a_bad_frame_key_gets_an_error_frame_and_the_connection_lives(server: Any, key: Any) -> None:
    """A publish frame with an unusable idempotency_key gets an error frame; the socket still works."""
    ws = await WS.connect(server.ws)
    await ws.send({"type": "publish", "channel": "chat.bad", "data": 1, "idempotency_key": key, "ref": 9})
    error = await ws.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_idempotency_key", 9), error
    await ws.send({"type": "publish", "channel": "chat.bad", "data": 2, "ref": 10})
    assert (await ws.recv_type("published"))["ref"] == 10


async def test_two_workers_racing_one_key_publish_once(redis_server: Any, make_server: Any) -> None:
    """40 concurrent POSTs of one key over two workers on one Redis: one 202, 39 duplicates of its id."""
    one = await make_server(redis_url=redis_server.url)
    two = await make_server(redis_url=redis_server.url)
    ws = await WS.connect(two.ws)
    await ws.subscribe("idem.race")
    answers = await asyncio.gather(
        *(post((one, two)[i % 2], "idem.race", {"i": i}, "race-1") for i in range(40))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 39 + [202], statuses
    assert len({body["id"] for _, body in answers}) == 1
    [message] = await only_frames(ws, 1)
    assert message["id"] == answers[0][1]["id"]


async def test_a_key_is_forgotten_after_the_window(make_server: Any, redis_server: Any) -> None:
    """With IDEMPOTENCY_WINDOW=1, a key publishes again once the window has passed, on either broker."""
    memory = await make_server(idempotency_window=1)
    shared = await make_server(idempotency_window=1, redis_url=redis_server.url)
    for short in (memory, shared):
        assert (await post(short, "idem.window", 1, "w"))[0] == 202
        assert (await post(short, "idem.window", 1, "w"))[0] == 200

        async def published_again(short: Any = short) -> bool:
            return (await post(short, "idem.window", 1, "w"))[0] == 202

        await eventually(published_again, timeout=10, interval=0.3)


async def test_redis_keeps_each_key_no_longer_than_the_window(redis_server: Any, make_server: Any) -> None:
    """Memory stays bounded: every idempotency key in Redis carries a TTL of at most IDEMPOTENCY_WINDOW."""
    server = await make_server(redis_url=redis_server.url, idempotency_window=120)
    for i in range(5):
        assert (await post(server, "idem.ttl", i, f"t-{i}"))[0] == 202
    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = list(client.scan_iter(match=f"{server.settings.redis_prefix}:idem.ttl:idem:*"))
        assert len(keys) == 5
        assert all(0 < client.ttl(k) <= 120 for k in keys)
    finally:
        client.close()


class LosesAnswers(RedisBroker):
    """A real Redis broker whose first ``lose`` publishes reach Redis but answer broker_unavailable."""

    def __init__(self, url: str, prefix: str, lose: int) -> None:
        super().__init__(url, prefix=prefix)
        self.lose = lose

    async def publish(self, channel: str, data: bytes, **options: Any) -> PublishResult:
        result = await super().publish(channel, data, **options)
        if self.lose:
            self.lose -= 1
            raise WindsockError("broker_unavailable")  # as a timeout after Redis ran the script looks
        return result


async def test_a_source_retry_after_a_lost_answer_publishes_once(
    redis_server: Any, make_settings: Any
) -> None:
    """A source's publish that reached Redis but lost its answer is retried under its key: published once."""
    settings = make_settings(redis_url=redis_server.url)
    broker = LosesAnswers(redis_server.url, settings.redis_prefix, lose=2)
    hub = Hub(broker)
    await hub.start()
    try:
        publish = Publisher(hub, "test", retries=(0.01, 0.01))
        result = await publish("src.retry", b'{"v":1}')
        assert result is not None and result.duplicate and publish.retried == 2 and publish.errors == 0
        history = await hub.history("src.retry")
        assert [m.data() for m in history.messages] == [{"v": 1}]
        # The same three tries without a key publish it three times.
        broker.lose = 2
        for _ in range(3):
            with contextlib.suppress(WindsockError):
                await hub.publish("src.unkeyed", b'{"v":1}')
        assert len((await hub.history("src.unkeyed")).messages) == 3
    finally:
        await hub.stop()
