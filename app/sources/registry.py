"""Which sources a process runs: the kinds by name, started from SOURCES, stopped together.

Each kind is a module with ``async def start(settings, hub, sources)``, and
optionally ``def check(settings)`` to refuse a bad configuration at start.
Adding a kind is one line in ``KINDS``. The modules are imported only when
their kind is asked for, so embedded mode never imports redis.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import ConfigError, Settings
from app.hub import Hub
from app.sources.base import Job, stop_tasks

if TYPE_CHECKING:
    from app.sources.lease import Leases

__all__ = ["KINDS", "Kind", "Sources", "check_sources", "start_sources"]

log = logging.getLogger("windsock.sources")

# How long stop() waits for the sources: releasing a lease is one Redis call.
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Kind:
    """A kind of source: its module, and whether it runs under a lease (once per deployment)."""

    module: str
    leased: bool = False


# SOURCES names these.
KINDS = {
    "udp": Kind("app.sources.udp"),
    "demo": Kind("app.sources.demo", leased=True),
    "pollers": Kind("app.sources.http_poll", leased=True),
}


class Sources:
    """The sources running in this process, by kind; ``stop`` ends them all."""

    def __init__(self, leases: Leases | None = None) -> None:
        self.leases = leases
        self._running: dict[str, list[Any]] = {}
        self._many: set[str] = set()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    # For the kinds' start() functions.

    def add(
        self, kind: str, source: Any, *, many: bool = False, stop: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Record a running ``source`` (it has ``status()``); ``stop`` is awaited when the sources stop."""
        self._running.setdefault(kind, []).append(source)
        if many:
            self._many.add(kind)
        if stop is not None:
            self._closers.append(stop)

    def spawn(self, name: str, job: Job) -> None:
        """Run ``job`` until stop; under a lease, only while this process holds it."""
        runner = self.leases.run(name, job) if self.leases is not None else job()
        self._tasks.append(asyncio.create_task(runner, name=f"source-{name}"))

    # For everyone else.

    def of(self, kind: str) -> list[Any]:
        """The running sources of ``kind`` (empty if it does not run here)."""
        return list(self._running.get(kind, ()))

    def one(self, kind: str) -> Any:
        """The one running source of ``kind``, or None."""
        found = self._running.get(kind)
        return found[0] if found else None

    def status(self) -> dict[str, Any]:
        """Facts for the ingest process's /healthz: each kind's status (a list for kinds of many)."""
        result: dict[str, Any] = {
            kind: [s.status() for s in items] if kind in self._many else items[0].status()
            for kind, items in self._running.items()
        }
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
        for close in self._closers:
            await close()
        self._closers.clear()
        if self.leases is not None:
            await self.leases.close()


def _module(kind: str) -> Any:
    return importlib.import_module(KINDS[kind].module)


def check_sources(settings: Settings) -> None:
    """Let each kind in SOURCES check its configuration now, so a mistake stops the program at start.

    Raises:
        ConfigError: SOURCES names an unknown kind, or something is unusable
            (a sources file, say); the message says what.
    """
    unknown = sorted(set(settings.sources) - set(KINDS))
    if unknown:
        raise ConfigError(f"SOURCES has unknown entries {unknown}; use {', '.join(KINDS)}")
    for kind in settings.sources:
        check = getattr(_module(kind), "check", None)
        if check is not None:
            check(settings)


async def start_sources(settings: Settings, hub: Hub) -> Sources:
    """Start the sources named in ``settings.sources``.

    Leased kinds (pollers, the demo) run under a Redis lease when the broker
    is Redis, so exactly one process in the deployment runs each of them.

    Raises:
        ConfigError: a kind cannot start (the sources file is unusable, the UDP port is taken).
    """
    leases = None
    if settings.redis_url and any(KINDS[kind].leased for kind in settings.sources):
        from app.sources.lease import Leases

        leases = Leases(settings.redis_url, settings.redis_prefix, settings.lease_seconds)
    sources = Sources(leases)
    try:
        for kind in settings.sources:
            await _module(kind).start(settings, hub, sources)
    except BaseException:
        await sources.stop()
        raise
    running = ", ".join(f"{kind} x{len(sources.of(kind))}" for kind in settings.sources) or "none"
    log.info("sources: %s%s", running, " (under leases)" if leases else "")
    return sources
