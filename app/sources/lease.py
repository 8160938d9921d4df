"""Redis leases: however many ingest processes run, each leased job runs in exactly one of them.

A lease is a redis-py ``Lock`` with a timeout. The holder renews it every
third of the lease; a process that dies simply stops renewing, the key
expires, and a standby, which keeps trying to acquire, takes over within
about ``lease_seconds``. A process that stops cleanly releases its leases,
so its standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockError, RedisError

from app.sources.base import Job, Throttle, held_back, stop_tasks

__all__ = ["Leases"]

log = logging.getLogger("windsock.lease")


class Leases:
    """Runs jobs under leases held in one Redis, with keys under ``prefix``."""

    def __init__(self, url: str, prefix: str, seconds: float) -> None:
        self.seconds = seconds
        self._prefix = prefix
        # Every command must answer well within a renewal period, or a slow
        # Redis could let the lease run out while we still wait for it.
        self._call_timeout = min(2.0, seconds / 4)
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=self._call_timeout,
            socket_connect_timeout=self._call_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._held: dict[str, bool] = {}
        self._throttle = Throttle(30.0)
        self._closing = asyncio.Event()

    def key(self, name: str) -> str:
        # '/' never occurs in a channel name, so no channel's keys can collide.
        return f"{self._prefix}/lease/{name}"

    def status(self) -> dict[str, str]:
        """Each lease's role in this process: active or standby."""
        return {name: "active" if held else "standby" for name, held in self._held.items()}

    def run(self, name: str, job: Job) -> Coroutine[Any, Any, None]:
        """Run ``job`` whenever this process holds lease ``name``; returns after ``stop``."""
        self._held[name] = False  # a standby from the start, in status() too
        return self._run(name, job)

    def stop(self) -> None:
        """Ask every runner to stop its job, release its lease and return."""
        self._closing.set()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, name: str, job: Job) -> None:
        lock = Lock(
            self._redis,
            self.key(name),
            timeout=self.seconds,
            sleep=min(1.0, self.seconds / 10),
            thread_local=False,  # one event loop: the token belongs to this object, not a thread
        )
        while await self._acquire(name, lock):
            self._held[name] = True
            log.info("lease %s acquired: running it here", name)
            task = asyncio.create_task(job(), name=f"leased-{name}")
            try:
                failed = await self._keep(name, lock, task)
            finally:
                self._held[name] = False
                # The job ends before the lease is given up, never after.
                if await stop_tasks([task], 3.0):
                    log.error("leased job %s did not stop", name)
                await self._release(name, lock)
            if failed:
                await self._pause(self.seconds)  # a job that keeps failing must not spin

    async def _acquire(self, name: str, lock: Lock) -> bool:
        """Wait until this process holds the lease (True), through Redis outages, or until stop (False)."""
        while not self._closing.is_set():
            try:
                if await lock.acquire(blocking=False):
                    return True
                wait = lock.sleep
            except (RedisError, OSError) as exc:
                self._warn(f"lease {name}: redis unreachable ({exc}); retrying")
                wait = min(1.0, self.seconds / 4)
            await self._pause(wait)
        return False

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    async def _keep(self, name: str, lock: Lock, task: asyncio.Task[None]) -> bool:
        """Renew the lease while ``task`` runs; True if the task ended by failing.

        Returns on stop, when the lease may be lost, or when the task ends.
        """
        loop = asyncio.get_running_loop()
        period = self.seconds / 3
        renewed = loop.time()
        renew_at = renewed + period
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                timeout = max(0.0, renew_at - loop.time())
                done, _ = await asyncio.wait({task, closing}, timeout=timeout, return_when="FIRST_COMPLETED")
                if closing in done:
                    return False
                if task in done:
                    if task.cancelled() or task.exception() is None:
                        return False
                    log.error("leased job %s failed", name, exc_info=task.exception())
                    return True
                # Unconfirmed renewals must give up well before the key can expire
                # and a standby start, so two processes never run the job at once.
                give_up = renewed + self.seconds * 0.7
                attempt = loop.time()  # the lease runs from when we asked, not from the answer
                try:
                    async with asyncio.timeout(max(0.0, give_up - attempt)):
                        await lock.reacquire()
                except LockError:
                    log.warning("lease %s was lost to another process; standing by", name)
                    return False
                except (RedisError, OSError, TimeoutError) as exc:
                    if loop.time() >= give_up:
                        log.warning("lease %s: cannot renew (%s); standing by", name, exc or "timeout")
                        return False
                    renew_at = min(loop.time() + period / 4, give_up)
                else:
                    renewed = attempt
                    renew_at = renewed + period
        finally:
            closing.cancel()

    async def _release(self, name: str, lock: Lock) -> None:
        # Best effort: if Redis is gone, the key simply expires.
        with contextlib.suppress(LockError, RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._call_timeout):
                await lock.release()
            log.info("lease %s released", name)

    def _warn(self, text: str) -> None:
        held = self._throttle(text.split(":", 1)[0])
        if held is not None:
            log.warning("%s%s", text, held_back(held))
