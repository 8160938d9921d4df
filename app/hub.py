"""The hub: which local connections listen to which channel, and the fan-out to them.

The hub subscribes the broker on a channel's first local subscriber and
unsubscribes a grace period after its last, so clients flapping between
channels do not churn Redis. It replays history to subscribers that resume,
holding back live messages meanwhile, so a resume has no gap and no
duplicate; and after a broker outage it fills the gap from history.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.brokers.base import Broker, History, PublishResult
from app.client_frames import LATEST
from app.messages import Message, plan_resume
from app.namespaces import Namespaces
from app.stats import Stats
from app.subscribers import After, Pending, Subscriber

__all__ = ["History", "Hub", "PublishResult", "Subscriber"]

log = logging.getLogger("windsock.hub")

# A 'since' beyond any id: asks the broker for the latest id and no messages.
_NOTHING = 2**62
# Waits between tries of a refill's history read (about 10 s in all): live
# messages are held meanwhile, so it gives up before holding them for long.
_REFILL_BACKOFF = (0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0)


class Hub:
    """Counts local subscribers per channel and fans broker messages out to them.

    It is the one door to the core: transports and sources publish, read
    history and report through it, and never reach the broker behind it.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        grace: float = 2.0,
        namespaces: Namespaces | None = None,
        stats: Stats | None = None,
    ) -> None:
        self._broker = broker
        self.stats = stats or Stats()
        self._grace = grace
        # None: every channel has the broker's defaults, and skips only when asked.
        self.namespaces = namespaces
        # channel -> {subscriber: where its messages go (itself, or a Pending)}
        self._subs: dict[str, dict[Subscriber, Subscriber]] = {}
        # The same, frozen for the fan-out loop, rebuilt on every change.
        self._fanout: dict[str, tuple[Subscriber, ...]] = {}
        self._last_id: dict[str, int] = {}
        self._broker_subs: dict[str, asyncio.Future[None]] = {}
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}
        # channel -> messages held while the gap after an outage is refilled
        self._refilling: dict[str, list[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        broker.bind(self._on_message, self._on_recover)

    async def start(self) -> None:
        await self._broker.connect()

    async def stop(self) -> None:
        for timer in self._grace_timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._broker.disconnect()

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        skip_unchanged: bool = False,
        key: str | None = None,
        source: str = "http",
    ) -> PublishResult:
        """Publish encoded JSON ``data`` by its channel's namespace (see ``Broker.publish``)."""
        options: dict[str, Any] = {"skip_unchanged": skip_unchanged}
        if self.namespaces is not None:
            options = self.namespaces(channel).publish_options(skip_unchanged)
        result = await self._broker.publish(channel, data, key=key, **options)
        if not (result.skipped or result.duplicate):
            self.stats.published[source] += 1
        return result

    async def history(self, channel: str) -> History:
        """The channel's latest id and every message it retains; may raise broker_unavailable."""
        return await self._broker.history(channel)

    async def latest(self, channel: str) -> Message | None:
        """The channel's latest retained message, or None if it keeps none; may raise broker_unavailable."""
        messages = (await self._broker.history(channel, latest=True)).messages
        return messages[-1] if messages else None

    async def subscribe(self, channel: str, subscriber: Subscriber, since: int | None = None) -> int:
        """Add ``subscriber`` to ``channel``; replay what came after ``since`` (LATEST: the newest) first.

        Returns the channel's latest id when the subscription took effect.

        Raises:
            WindsockError: ``broker_unavailable``; the subscriber is then not added.
        """
        pending = Pending()
        self._set(channel, subscriber, pending)
        try:
            await self._ensure_broker(channel)
            latest = since == LATEST
            history = await self._broker.history(channel, _NOTHING if since is None else since, latest=latest)
        except BaseException:
            self.unsubscribe(channel, subscriber)
            raise
        if self._subs.get(channel, {}).get(subscriber) is not pending:
            return history.seq  # unsubscribed while we waited
        self._last_id.setdefault(channel, history.seq)
        replay: list[Message] = []
        lost = False
        if latest:
            replay = history.messages
        elif since is not None:
            replay, lost = plan_resume(since, history.seq, history.messages)
        if lost:
            self.stats.resets += 1
        subscriber.subscribed(channel, history.seq, lost)
        for message in replay:
            subscriber.deliver(message)
        # Held live messages up to seq are already in the replay (or predate
        # the subscription): skipping them is what prevents duplicates.
        for message in pending.held:
            if message.id > history.seq:
                subscriber.deliver(message)
        if self._last_id.get(channel, 0) < history.seq:
            # Our pub/sub lags the history just read: what it still brings up
            # to history.seq, the subscriber already has.
            self._set(channel, subscriber, After(self, channel, subscriber, history.seq))
        else:
            self._set(channel, subscriber, subscriber)
        return history.seq

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; the broker is unsubscribed after the grace period."""
        targets = self._subs.get(channel)
        if targets is None or targets.pop(subscriber, None) is None:
            return
        self._fanout[channel] = tuple(targets.values())
        if not targets:
            loop = asyncio.get_running_loop()
            self._grace_timers[channel] = loop.call_later(self._grace, self._release, channel)

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs.get(channel, ()))

    def slow_consumer(self) -> None:
        """A transport dropped a client that did not read fast enough."""
        self.stats.slow_consumers += 1

    @property
    def healthy(self) -> bool:
        """Whether the broker can be reached: publishes and subscribes can succeed."""
        return self._broker.healthy

    def status(self) -> dict[str, Any]:
        """Facts for /healthz: the broker's, under ``broker``, and this hub's counters."""
        return {
            "broker": self._broker.status(),
            "channels": len(self._subs),
            "subscriptions": sum(len(t) for t in self._subs.values()),
            **self.stats.health(),
        }

    # Fan-out: the hot path. One dict lookup per message, one call per subscriber.

    def _on_message(self, message: Message) -> None:
        channel = message.channel
        held = self._refilling.get(channel)
        if held is not None:
            held.append(message)
            return
        if message.id <= self._last_id.get(channel, 0):
            return  # already delivered by a refill
        self._last_id[channel] = message.id
        targets = self._fanout.get(channel, ())
        self.stats.messages += 1
        self.stats.deliveries += len(targets)
        self.stats.bytes += len(targets) * len(message.envelope)
        for target in targets:
            try:
                target.deliver(message)
            except Exception:  # one subscriber's bug must not cost the others this message
                log.exception("delivering %s:%d failed for one subscriber", channel, message.id)

    # Bookkeeping.

    def caught_up(self, channel: str, subscriber: Subscriber, stand_in: Subscriber) -> None:
        """Deliver to ``subscriber`` directly from now on, if ``stand_in`` still stands for it."""
        if self._subs.get(channel, {}).get(subscriber) is stand_in:
            self._set(channel, subscriber, subscriber)

    def _set(self, channel: str, subscriber: Subscriber, target: Subscriber) -> None:
        timer = self._grace_timers.pop(channel, None)
        if timer is not None:
            timer.cancel()
        targets = self._subs.setdefault(channel, {})
        targets[subscriber] = target
        self._fanout[channel] = tuple(targets.values())

    async def _ensure_broker(self, channel: str) -> None:
        # An unsubscribe still in flight must land before we subscribe again,
        # or it would cancel the new subscription.
        while (releasing := self._releasing.get(channel)) is not None:
            await asyncio.shield(releasing)
        future = self._broker_subs.get(channel)
        if future is None:
            future = asyncio.ensure_future(self._broker.subscribe(channel))
            self._broker_subs[channel] = future
        try:
            await asyncio.shield(future)
        except Exception:
            if self._broker_subs.get(channel) is future:
                del self._broker_subs[channel]
            raise

    def _release(self, channel: str) -> None:
        self._grace_timers.pop(channel, None)
        if self._subs.get(channel):
            return
        self._subs.pop(channel, None)
        self._fanout.pop(channel, None)
        self._last_id.pop(channel, None)
        self._refilling.pop(channel, None)
        if self._broker_subs.pop(channel, None) is None:
            return

        async def unsubscribe() -> None:
            try:
                await self._broker.unsubscribe(channel)
            finally:
                del self._releasing[channel]

        self._releasing[channel] = self._spawn(unsubscribe())

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Recovery after a broker outage.

    def _on_recover(self) -> None:
        for channel, last in self._last_id.items():
            if channel not in self._refilling:
                self._refilling[channel] = []
                self._spawn(self._refill(channel, last))

    async def _refill(self, channel: str, last: int) -> None:
        """Replay what ``channel`` published while the broker was away, then release held messages."""
        history = await self._read_gap(channel, last)
        held = self._refilling.pop(channel, None)
        if held is None:
            return  # released while we read: nobody is left to tell
        replay: list[Message] = []
        if history is None:
            # The gap cannot be read: say so, rather than leave a silent hole.
            self._reset(channel, held[0].id - 1 if held else last)
        else:
            replay, lost = plan_resume(last, history.seq, history.messages)
            if lost:
                log.warning("history of %s was lost; telling its subscribers", channel)
                self._reset(channel, history.seq)
                # The replay after a reset starts below the old position.
                self._last_id[channel] = 0
        for message in (*replay, *held):
            self._on_message(message)

    async def _read_gap(self, channel: str, last: int) -> History | None:
        """The history after ``last``, tried again while the broker fails; None if it never answers."""
        for delay in (0.0, *_REFILL_BACKOFF):
            await asyncio.sleep(delay)
            if channel not in self._refilling:
                return None
            try:
                return await self._broker.history(channel, last)
            except Exception as exc:
                log.warning("could not refill %s after the outage yet: %s", channel, exc)
        return None

    def _reset(self, channel: str, seq: int) -> None:
        """Tell the channel's subscribers that messages up to ``seq`` may be gone for good."""
        self.stats.resets += 1
        for target in self._fanout.get(channel, ()):
            target.reset(channel, seq)
