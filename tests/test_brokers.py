"""One contract suite for every broker: the memory one and the Redis one against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.brokers import Broker, make_broker
from app.config import load_settings
from app.messages import Message, encode_envelope
from tests.helpers import eventually


class Sink:
    """Collects what a broker delivers."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recoveries = 0

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_recover(self) -> None:
        self.recoveries += 1


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Sink]]:
    """A connected broker of each kind, history size 5, with a sink bound to it."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else ""
    settings = load_settings(
        environ={}, redis_url=url, history_size=5, redis_prefix=f"t-{uuid.uuid4().hex[:10]}"
    )
    instance = make_broker(settings)
    sink = Sink()
    instance.bind(sink.on_message, sink.on_recover)
    await instance.connect()
    yield instance, sink
    await instance.disconnect()


async def test_ids_increase_per_channel(broker: Any) -> None:
    """Each publish gets the next id of its channel; channels count separately."""
    b, _ = broker
    a1 = (await b.publish("a", b"1")).id
    a2 = (await b.publish("a", b"2")).id
    z1 = (await b.publish("z", b"3")).id
    assert a2 == a1 + 1
    assert z1 > 0 and z1 != a2


async def test_subscribers_receive_in_order(broker: Any) -> None:
    """A subscribed channel delivers every publish, in id order, with the documented envelope."""
    b, sink = broker
    await b.subscribe("c")
    ids = [(await b.publish("c", b'{"n":%d}' % n)).id for n in range(20)]
    await eventually(lambda: len(sink.messages) == 20)
    assert [m.id for m in sink.messages] == ids
    assert [m.data()["n"] for m in sink.messages] == list(range(20))
    assert sink.messages[0].envelope == encode_envelope("c", ids[0], b'{"n":0}')


async def test_unsubscribed_channels_are_not_delivered(broker: Any) -> None:
    """After unsubscribe, and for channels never subscribed, nothing is delivered."""
    b, sink = broker
    await b.subscribe("c")
    await b.unsubscribe("c")
    await b.publish("c", b"1")
    await b.publish("other", b"1")
    await b.subscribe("marker")
    await b.publish("marker", b"1")
    await eventually(lambda: len(sink.messages) >= 1)
    assert [m.channel for m in sink.messages] == ["marker"]


async def test_history_keeps_the_last_n(broker: Any) -> None:
    """History keeps HISTORY_SIZE messages and answers those after an id, oldest first."""
    b, _ = broker
    ids = [(await b.publish("h", str(n).encode())).id for n in range(8)]
    history = await b.history("h")
    assert history.seq == ids[-1]
    assert [m.id for m in history.messages] == ids[-5:]
    assert [m.data() for m in history.messages] == [3, 4, 5, 6, 7]
    after = await b.history("h", ids[5])
    assert [m.id for m in after.messages] == ids[6:]


async def test_history_of_unknown_channel_is_empty(broker: Any) -> None:
    """A channel with no messages has latest id 0 and no history."""
    b, _ = broker
    history = await b.history("never")
    assert (history.seq, history.messages) == (0, [])


async def test_skip_unchanged(broker: Any) -> None:
    """With skip_unchanged, data equal to the latest is not stored or delivered again."""
    b, sink = broker
    await b.subscribe("s")
    first = await b.publish("s", b'{"v":1}', skip_unchanged=True)
    again = await b.publish("s", b'{"v":1}', skip_unchanged=True)
    changed = await b.publish("s", b'{"v":2}', skip_unchanged=True)
    forced = await b.publish("s", b'{"v":2}')
    assert again.skipped and again.id == first.id
    assert not changed.skipped and changed.id == first.id + 1
    assert forced.id == changed.id + 1
    await eventually(lambda: len(sink.messages) == 3)
    assert len((await b.history("s")).messages) == 3


async def test_concurrent_publishes_get_distinct_consecutive_ids(broker: Any) -> None:
    """Many concurrent publishes on one channel get consecutive ids, delivered in id order."""
    b, sink = broker
    await b.subscribe("p")
    results = await asyncio.gather(*(b.publish("p", b"0") for _ in range(50)))
    ids = sorted(r.id for r in results)
    assert ids == list(range(ids[0], ids[0] + 50))
    await eventually(lambda: len(sink.messages) == 50)
    assert [m.id for m in sink.messages] == ids


async def test_broker_is_healthy_when_connected(broker: Any) -> None:
    """A connected broker reports itself healthy."""
    b, _ = broker
    assert b.healthy and b.status()["healthy"] is True


async def test_redis_listener_outlives_a_bug_in_what_it_calls(redis_server: Any) -> None:
    """An exception out of the message callback: the listener reconnects, and later publishes arrive."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    settings = load_settings(environ={}, redis_url=redis_server.url, redis_prefix=prefix)
    broker = make_broker(settings)
    sink = Sink()
    failed: list[int] = []

    def on_message(message: Message) -> None:
        if not failed:
            failed.append(message.id)
            raise RuntimeError("a bug downstream")
        sink.on_message(message)

    broker.bind(on_message, sink.on_recover)
    await broker.connect()
    try:
        await broker.subscribe("c")
        first = (await broker.publish("c", b"1")).id
        await eventually(lambda: failed == [first])
        # The old listener task ended here, and the process stayed "healthy" but deaf.
        await eventually(lambda: broker.healthy and sink.recoveries == 1, timeout=10)
        second = (await broker.publish("c", b"2")).id
        await eventually(lambda: [m.id for m in sink.messages] == [second], timeout=10)
    finally:
        await broker.disconnect()
