"""What every source shares: publishing that never raises, a log throttle, time stamps, stopping tasks.

A source never dies of a broker outage or bad input: it counts, logs at a
bounded rate, and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from app.errors import WindsockError
from app.hub import Hub, PublishResult

__all__ = ["Job", "Publisher", "Throttle", "held_back", "stop_tasks", "unix_time"]

log = logging.getLogger("windsock.sources")


class Throttle:
    """Lets one event per key through every ``interval`` seconds and counts the ones it holds back.

    It keeps a flood of garbage from flooding the log. The number of keys is
    bounded, so a sender that forges many source addresses cannot grow memory.
    """

    def __init__(self, interval: float, max_keys: int = 1024) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str = "") -> int | None:
        """None: stay quiet. Otherwise log now; the int is how many events were held back meanwhile."""
        now = time.monotonic()
        if key not in self._next and len(self._next) >= self._max_keys:
            self._forget(now)
            if len(self._next) >= self._max_keys:
                key = "*"  # every further sender shares one budget
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self._interval
        return self._held.pop(key, 0)

    def _forget(self, now: float) -> None:
        for key in [k for k, until in self._next.items() if until <= now]:
            del self._next[key]
            self._held.pop(key, None)


def unix_time() -> float:
    """The time stamped on readings and status messages: Unix seconds to the millisecond."""
    return round(time.time(), 3)


def held_back(count: int) -> str:
    """The tail of a throttled log line: how many like it were not logged."""
    return f" ({count} more since the last report)" if count else ""


# Waits before each retry of a publish the broker failed. A failure can come
# after Redis ran the publish (a timeout on the answer), so every retry
# carries the first try's idempotency key and cannot publish twice. Short,
# because a source's readings queue up behind the retries.
_RETRIES = (0.1, 0.5)


class Publisher:
    """Publishes for one source, retrying under one idempotency key; failures are counted, never raised."""

    def __init__(
        self, hub: Hub, source: str, interval: float = 10.0, retries: tuple[float, ...] = _RETRIES
    ) -> None:
        self.hub = hub
        self.source = source
        # The metrics' source label: "poller oslo-weather" counts as "poller".
        self.kind = source.split()[0]
        self.errors = 0
        self.retried = 0
        self._retries = retries
        self._throttle = Throttle(interval)

    async def __call__(
        self, channel: str, data: bytes, *, skip_unchanged: bool = False, key: str | None = None
    ) -> PublishResult | None:
        """Publish encoded JSON ``data`` under ``key`` (default: a new one); None if it never got through."""
        key = key or uuid.uuid4().hex
        for delay in (*self._retries, None):
            try:
                return await self.hub.publish(
                    channel, data, skip_unchanged=skip_unchanged, key=key, source=self.kind
                )
            except Exception as exc:
                if delay is not None and isinstance(exc, WindsockError) and exc.code == "broker_unavailable":
                    self.retried += 1
                    await asyncio.sleep(delay)
                    continue
                # A broker outage, or a bug: either way the source must carry on.
                self.errors += 1
                held = self._throttle()
                if held is not None:
                    log.warning(
                        "%s: cannot publish to %s: %s%s",
                        self.source,
                        channel,
                        exc,
                        held_back(held),
                        exc_info=not isinstance(exc, WindsockError),
                    )
                return None
        return None


Job = Callable[[], Coroutine[Any, Any, None]]


async def stop_tasks(
    tasks: Collection[asyncio.Task[Any]], within: float, *, grace: float = 0.0
) -> set[asyncio.Task[Any]]:
    """Let ``tasks`` end for ``grace`` seconds, then cancel them until they do, all ``within`` seconds.

    Returns the tasks still running after that.

    One cancel is not always enough: on Python 3.11, asyncio.wait_for (which
    redis-py uses to send every command) swallows a cancel that lands as the
    command completes, and the task runs on.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = {task for task in tasks if not task.done()}
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    while pending and (left := deadline - loop.time()) > 0:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.1, left))
    return pending
