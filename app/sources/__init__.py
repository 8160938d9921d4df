"""Ingest sources: live data entering Windsock from UDP sensors, HTTP pollers and the demo.

Every source publishes through the hub, exactly like the HTTP publish API,
so every subscriber on every worker sees its data. A source never dies of a
broker outage or bad input: it counts, logs at a bounded rate, and goes on.

The submodules are imported inside ``start_sources`` so that they can import
the helpers below without a cycle, and so embedded mode never imports redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any

from app.config import ConfigError, Settings
from app.errors import WindsockError
from app.hub import Hub, PublishResult

if TYPE_CHECKING:
    from app.sources.demo import DemoSource
    from app.sources.http_poll import Poller
    from app.sources.lease import Leases
    from app.sources.udp import UdpListener

__all__ = ["Publisher", "Sources", "Throttle", "check_sources", "start_sources", "stop_tasks", "unix_time"]

log = logging.getLogger("windsock.sources")

# How long stop() waits for the sources: releasing a lease is one Redis call.
_STOP_TIMEOUT = 5.0


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


class Publisher:
    """Publishes for one source; a broker outage is counted and logged now and then, never raised."""

    def __init__(self, hub: Hub, source: str, interval: float = 10.0) -> None:
        self.hub = hub
        self.source = source
        self.errors = 0
        self._throttle = Throttle(interval)

    async def __call__(
        self, channel: str, data: bytes, *, skip_unchanged: bool = False
    ) -> PublishResult | None:
        """Publish encoded JSON ``data``; None if the broker could not take it."""
        try:
            return await self.hub.publish(channel, data, skip_unchanged=skip_unchanged)
        except Exception as exc:
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


class Sources:
    """The sources running in this process; ``stop`` ends them all."""

    def __init__(self) -> None:
        self.udp: UdpListener | None = None
        self.demo: DemoSource | None = None
        self.pollers: list[Poller] = []
        self.leases: Leases | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def udp_port(self) -> int | None:
        """The bound UDP port (useful when UDP_PORT=0), or None without the UDP source."""
        return self.udp.port if self.udp is not None else None

    @property
    def dropped(self) -> dict[str, int]:
        """Bad datagrams dropped so far, by reason."""
        return dict(self.udp.dropped) if self.udp is not None else {}

    def spawn(self, name: str, job: Job) -> None:
        """Run ``job`` until stop; under a lease, only while this process holds it."""
        runner = self.leases.run(name, job) if self.leases is not None else job()
        self._tasks.append(asyncio.create_task(runner, name=f"source-{name}"))

    def status(self) -> dict[str, Any]:
        """Facts for the ingest process's /healthz."""
        result: dict[str, Any] = {}
        if self.udp is not None:
            result["udp"] = self.udp.status()
        if self.demo is not None:
            result["demo"] = self.demo.status()
        if self.pollers:
            result["pollers"] = [poller.status() for poller in self.pollers]
        if self.leases is not None:
            result["leases"] = self.leases.status()
        return result

    async def stop(self) -> None:
        """Stop listening and polling; leases are released so a standby takes over at once."""
        grace = 0.0
        if self.leases is not None:
            # Lease runners stop their jobs and release their leases themselves;
            # cancelling them would cut that short.
            self.leases.stop()
            grace = _STOP_TIMEOUT - 1.0
        # Bounded: a source that fails to stop must not hold up the shutdown.
        for task in await stop_tasks(self._tasks, _STOP_TIMEOUT, grace=grace):
            log.error("source %s did not stop within %g s", task.get_name(), _STOP_TIMEOUT)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("source %s had failed", task.get_name(), exc_info=task.exception())
        self._tasks.clear()
        if self.udp is not None:
            await self.udp.stop()
        if self.leases is not None:
            await self.leases.close()


def check_sources(settings: Settings) -> None:
    """Read the sources file now, so a mistake in it stops the program at start.

    Raises:
        ConfigError: the file is missing or declares something unusable; the message says what.
    """
    if "pollers" in settings.sources and settings.sources_file:
        from app.sources.http_poll import load_pollers

        load_pollers(settings.sources_file)


async def start_sources(settings: Settings, hub: Hub) -> Sources:
    """Start the sources named in ``settings.sources``.

    Pollers and the demo run under a Redis lease when the broker is Redis, so
    exactly one process in the deployment runs each of them.

    Raises:
        ConfigError: the sources file is unusable, or the UDP port cannot be bound.
    """
    sources = Sources()
    try:
        if settings.redis_url and {"demo", "pollers"} & set(settings.sources):
            from app.sources.lease import Leases

            sources.leases = Leases(settings.redis_url, settings.redis_prefix, settings.lease_seconds)
        if "udp" in settings.sources:
            from app.sources.udp import UdpListener

            sources.udp = UdpListener(
                Publisher(hub, "udp"), token=settings.udp_token, max_bytes=settings.udp_max_bytes
            )
            try:
                await sources.udp.start(settings.udp_host, settings.udp_port)
            except OSError as exc:
                raise ConfigError(
                    f"UDP_PORT={settings.udp_port}: cannot listen on {settings.udp_host}: {exc.strerror}"
                ) from None
        if "demo" in settings.sources:
            from app.sources.demo import DemoSource

            sources.demo = DemoSource(Publisher(hub, "demo"), settings.demo_rate)
            sources.spawn("demo", sources.demo.run)
        if "pollers" in settings.sources and settings.sources_file:
            from app.sources.http_poll import Poller, load_pollers

            for config in load_pollers(settings.sources_file):
                publish = Publisher(hub, f"poller {config.name}")
                poller = Poller(config, publish, hub, max_bytes=settings.max_message_bytes)
                sources.pollers.append(poller)
                sources.spawn(f"poller:{config.name}", poller.run)
    except BaseException:
        await sources.stop()
        raise
    running = [f"udp on port {sources.udp_port}"] if sources.udp is not None else []
    running += [f"demo at {settings.demo_rate:g}/s"] if sources.demo is not None else []
    running += [f"{len(sources.pollers)} pollers"] if "pollers" in settings.sources else []
    log.info("sources: %s%s", ", ".join(running) or "none", " (under leases)" if sources.leases else "")
    return sources
