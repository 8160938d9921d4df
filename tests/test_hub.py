"""The hub alone: resume, held live messages, a lagging pub/sub, refill after an outage, the grace period.

A scripted broker stands behind the hub's Broker interface, so each test
decides exactly what pub/sub delivers and when, and what history holds:
the orderings that end-to-end tests can only hope to hit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app import hub as hub_module
from app.brokers.base import Broker, History, PublishResult
from app.errors import WindsockError
from app.hub import Hub
from app.messages import Message


def msg(channel: str, n: int) -> Message:
    return Message.build(channel, n, b'{"n":%d}' % n)


class ScriptedBroker(Broker):
    """History the test sets; pub/sub messages only when the test pushes them."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, list[Message]] = {}
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.gate: asyncio.Event | None = None  # when set, history() waits for it
        self.history_calls = 0
        self.failures = 0  # history() raises this many times first

    @property
    def healthy(self) -> bool:
        return True

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def subscribe(self, channel: str) -> None:
        self.subscribed.append(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribed.append(channel)

    async def publish(self, channel: str, data: bytes, **options: Any) -> PublishResult:
        raise NotImplementedError  # the hub's publish is a pass-through; not what these tests are about

    async def history(self, channel: str, since: int = 0, *, latest: bool = False) -> History:
        self.history_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise WindsockError("broker_unavailable")
        kept = self.stored.get(channel, [])
        return History(kept[-1].id if kept else 0, kept[-1:] if latest else [m for m in kept if m.id > since])

    # The test's levers.

    def store(self, channel: str, *ids: int) -> None:
        self.stored.setdefault(channel, []).extend(msg(channel, n) for n in ids)

    def push(self, channel: str, *ids: int) -> None:
        """Pub/sub delivers these ids (whether or not history has them)."""
        for n in ids:
            self._on_message(msg(channel, n))

    def recover(self) -> None:
        self._on_recover()


class Recorder:
    """A subscriber that writes down everything the hub tells it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def deliver(self, message: Message) -> None:
        self.events.append(("message", message.id))

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        self.events.append(("subscribed", seq, lost))

    def reset(self, channel: str, seq: int) -> None:
        self.events.append(("reset", seq))

    def ids(self) -> list[int]:
        return [e[1] for e in self.events if e[0] == "message"]


def make_hub(grace: float = 0.05) -> tuple[Hub, ScriptedBroker]:
    broker = ScriptedBroker()
    return Hub(broker, grace=grace), broker


async def test_resume_replays_what_came_after_since() -> None:
    """A subscriber resuming after id 12 is told the latest id, then gets 13..15, in order."""
    hub, broker = make_hub()
    broker.store("c", 11, 12, 13, 14, 15)
    sub = Recorder()
    assert await hub.subscribe("c", sub, since=12) == 15
    assert sub.events == [("subscribed", 15, False), ("message", 13), ("message", 14), ("message", 15)]


async def test_no_since_is_live_only() -> None:
    """Without since nothing is replayed; the next live message is the first delivered."""
    hub, broker = make_hub()
    broker.store("c", 11, 12)
    sub = Recorder()
    await hub.subscribe("c", sub)
    broker.push("c", 13)
    assert sub.events == [("subscribed", 12, False), ("message", 13)]


class Broken(Recorder):
    """A subscriber whose delivery raises, as a transport with a bug would."""

    def deliver(self, message: Message) -> None:
        raise RuntimeError("transport bug")


async def test_a_subscriber_that_raises_costs_the_others_nothing() -> None:
    """A subscriber whose deliver raises: the others, before and after it, get every message."""
    hub, broker = make_hub()
    first, broken, last = Recorder(), Broken(), Recorder()
    for sub in (first, broken, last):
        await hub.subscribe("c", sub)
    broker.push("c", 1, 2)  # on the old hub the exception reached the broker here
    assert first.ids() == last.ids() == [1, 2]
    assert hub.stats.messages == 2


async def test_resume_past_kept_history_is_flagged_lost() -> None:
    """A since older than the oldest kept message is reported lost, then the kept ones follow."""
    hub, broker = make_hub()
    broker.store("c", 20, 21)
    sub = Recorder()
    await hub.subscribe("c", sub, since=10)
    assert sub.events == [("subscribed", 21, True), ("message", 20), ("message", 21)]
    assert hub.stats.resets == 1


async def test_live_messages_during_the_history_read_are_held_not_doubled() -> None:
    """What pub/sub brings while history is read arrives once, after the replay, in id order."""
    hub, broker = make_hub()
    broker.store("c", 1, 2, 3)
    broker.gate = asyncio.Event()
    sub = Recorder()
    subscribing = asyncio.ensure_future(hub.subscribe("c", sub, since=1))
    await asyncio.sleep(0)  # the hub now waits on history()
    broker.push("c", 3)  # already in the history being read
    broker.store("c", 4)
    broker.push("c", 4)  # newer than that history: must come after the replay
    assert sub.events == []
    broker.stored["c"] = [m for m in broker.stored["c"] if m.id <= 3]  # the read saw up to 3
    broker.gate.set()
    await subscribing
    assert sub.ids() == [2, 3, 4]
    broker.push("c", 5)
    assert sub.ids() == [2, 3, 4, 5]


async def test_subscriber_ahead_of_a_lagging_pubsub_gets_nothing_twice() -> None:
    """History read at 7, pub/sub delivered only 5: pub/sub's 6 and 7 are dropped for it, 8 is not."""
    hub, broker = make_hub()
    first = Recorder()
    broker.store("c", 4)
    await hub.subscribe("c", first)
    broker.store("c", 5)
    broker.push("c", 5)  # this worker's pub/sub has reached 5
    broker.store("c", 6, 7)  # another worker published 6 and 7; pub/sub here has not caught up
    late = Recorder()
    await hub.subscribe("c", late, since=5)
    assert late.ids() == [6, 7]
    broker.push("c", 6, 7, 8)
    assert late.ids() == [6, 7, 8]
    assert first.ids() == [5, 6, 7, 8]


async def test_refill_after_an_outage_fills_the_gap_in_order() -> None:
    """After a broker outage the hub replays what was published meanwhile, then what it held, once each."""
    hub, broker = make_hub()
    broker.store("c", 1, 2)
    sub = Recorder()
    await hub.subscribe("c", sub)
    broker.push("c", 3)
    broker.store("c", 3, 4, 5)  # 4 and 5 were published while pub/sub was down
    broker.gate = asyncio.Event()
    broker.recover()
    broker.push("c", 6)  # live again before the refill's history read returns
    await asyncio.sleep(0)
    assert sub.ids() == [3]
    broker.store("c", 6)
    broker.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sub.ids() == [3, 4, 5, 6]
    broker.push("c", 6, 7)  # a late duplicate from pub/sub is dropped
    assert sub.ids() == [3, 4, 5, 6, 7]


async def test_refill_that_finds_history_lost_sends_reset_then_what_is_kept() -> None:
    """An outage that lost history (Redis restarted empty): subscribers get reset, then the new messages."""
    hub, broker = make_hub()
    broker.store("c", 10, 11)
    sub = Recorder()
    await hub.subscribe("c", sub)
    broker.push("c", 11)
    broker.stored["c"] = [msg("c", 100), msg("c", 101)]  # a new sequence, far above
    broker.recover()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sub.events[1:] == [("reset", 101), ("message", 100), ("message", 101)]
    assert hub.stats.resets == 1


async def _settle(hub: Hub) -> None:
    """Let the hub's refill tasks run to their end."""
    for _ in range(50):
        if not hub._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the refill did not end")


async def _outage_with_failing_reads(
    monkeypatch: pytest.MonkeyPatch, failures: int, missed: tuple[int, ...] = ()
) -> tuple[Hub, ScriptedBroker, Recorder]:
    """A subscriber of "c" at id 1, then an outage after which the first ``failures`` history reads fail."""
    monkeypatch.setattr(hub_module, "_REFILL_BACKOFF", (0.01,) * 3)
    hub, broker = make_hub()
    broker.store("c", 1)
    sub = Recorder()
    await hub.subscribe("c", sub)
    broker.store("c", *missed)  # published while pub/sub was down
    broker.failures = failures
    broker.recover()
    return hub, broker, sub


async def test_refill_whose_history_read_fails_tries_again_and_fills_the_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broker back for pub/sub but not yet for reads (Redis LOADING): the refill retries, no gap."""
    hub, broker, sub = await _outage_with_failing_reads(monkeypatch, 2, missed=(2, 3))
    broker.push("c", 4)
    broker.store("c", 4)
    await _settle(hub)
    assert sub.ids() == [2, 3, 4]
    assert broker.failures == 0 and hub.stats.resets == 0


async def test_refill_that_cannot_read_history_sends_reset_not_a_silent_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refill whose history read never succeeds tells subscribers reset, then delivers what it held."""
    hub, broker, sub = await _outage_with_failing_reads(monkeypatch, 100)
    broker.push("c", 5, 6)  # 2 to 4 are unknowable
    await _settle(hub)
    assert sub.events[1:] == [("reset", 4), ("message", 5), ("message", 6)]
    assert hub.stats.resets == 1
    broker.push("c", 7)
    assert sub.ids()[-1] == 7


async def test_broker_is_released_only_after_the_grace_period() -> None:
    """The last unsubscribe releases the broker after the grace period; a return within it keeps it."""
    hub, broker = make_hub(grace=0.05)
    sub = Recorder()
    await hub.subscribe("c", sub)
    hub.unsubscribe("c", sub)
    await hub.subscribe("c", sub)  # back within the grace period
    await asyncio.sleep(0.1)
    assert broker.subscribed == ["c"] and broker.unsubscribed == []
    hub.unsubscribe("c", sub)
    await asyncio.sleep(0.1)
    assert broker.unsubscribed == ["c"] and hub.subscriber_count("c") == 0


async def test_latest_is_the_newest_kept_message() -> None:
    """latest() gives the newest retained message, or None for a channel that keeps none."""
    hub, broker = make_hub()
    assert await hub.latest("c") is None
    broker.store("c", 7, 8, 9)
    latest = await hub.latest("c")
    assert latest is not None and latest.id == 9 and latest.data() == {"n": 9}


async def test_status_and_slow_consumers_are_counted_in_the_hub() -> None:
    """status() carries the broker's facts and the hub's counters, slow consumers included."""
    hub, _ = make_hub()
    hub.slow_consumer()
    status = hub.status()
    assert status["broker"] == {"healthy": True} and status["slow_consumers"] == 1
    assert hub.healthy
