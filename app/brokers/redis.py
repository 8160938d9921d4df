"""The Redis broker: pub/sub carries every message to every process; history lives in Redis.

Per channel ``C`` under prefix ``P`` it keeps three keys: ``P:C:seq`` (the
latest id), ``P:C:hist`` (a sorted set of envelopes scored by id) and
``P:C:last`` (the latest data, for skip-unchanged); messages travel on the
pub/sub channel ``P:C``. ``P:C:idem:K`` holds the id idempotency key ``K`` got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.brokers.base import Broker, History, PublishResult, first_id
from app.brokers.redis_scripts import HISTORY, PUBLISH
from app.errors import WindsockError
from app.messages import Message

__all__ = ["RedisBroker"]

log = logging.getLogger("windsock.redis")

_BACKOFF_MIN = 0.05
# Capped low so live delivery resumes within about a second of Redis returning.
_BACKOFF_MAX = 1.0


class RedisBroker(Broker):
    """Publishes through a Lua script and listens on one pub/sub connection per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "windsock",
        history_size: int = 100,
        history_ttl: int = 0,
        idempotency_window: int = 300,
        timeout: float = 2.0,
        ping_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self._prefix = prefix
        self._size = history_size
        self._ttl = history_ttl
        self._window = idempotency_window
        self._timeout = timeout
        self._ping_interval = ping_interval
        # One retry replaces a pooled connection that died while Redis
        # restarted; more would only make a publish during an outage hang.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        # The listener must see every disconnect itself, to know it has a gap
        # to fill, so its client never retries behind its back.
        # Its socket timeout bounds the connection handshake and every send;
        # reads pass their own timeouts.
        self._sub_client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._publish_script = self._redis.register_script(PUBLISH)
        self._history_script = self._redis.register_script(HISTORY)
        self._control = f"{prefix}:__control__".encode()
        self._channels: set[str] = set()
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._healthy = False
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0
        self.round_trip = 0.0  # seconds the last publish took (the ops reports publish every second)

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def connect(self) -> None:
        """Start listening; return once connected, or after the timeout if Redis is down (degraded)."""
        self._listener = asyncio.create_task(self._listen(), name="redis-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._timeout)

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._healthy = False
        await self._redis.aclose()
        await self._sub_client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "healthy": self._healthy,
            "kind": "redis",
            "channels": len(self._channels),
            "reconnects": self.reconnects,
            "round_trip_ms": round(self.round_trip * 1000, 3),
        }

    # Subscriptions.

    def _topic(self, channel: str) -> bytes:
        return f"{self._prefix}:{channel}".encode()

    async def subscribe(self, channel: str) -> None:
        topic = self._topic(channel)
        confirmed = self._confirmations.setdefault(topic, asyncio.get_running_loop().create_future())
        self._channels.add(channel)
        try:
            await self._send("SUBSCRIBE", topic)
            # SUBSCRIBE is only in force once Redis confirms it; a history read
            # made before that could miss a message published in between.
            await asyncio.wait_for(asyncio.shield(confirmed), self._timeout)
        except (WindsockError, RedisError, OSError, TimeoutError) as exc:
            self._channels.discard(channel)
            raise WindsockError("broker_unavailable") from exc

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        # Best effort: if Redis is gone, the resubscribe after it returns
        # simply leaves this channel out.
        with contextlib.suppress(WindsockError, RedisError, OSError):
            await self._send("UNSUBSCRIBE", self._topic(channel))

    async def _send(self, *command: str | bytes) -> None:
        """Write a command on the listener's connection, or fail; never reconnect it.

        redis-py's ``PubSub.subscribe`` reconnects a broken connection before
        it raises, and resubscribes it. Done from here, outside the listener,
        that would race the listener's own recovery over one connection:
        only the listener connects, and everyone else just writes.
        """
        pubsub = self._pubsub
        # redis-py declares PubSub.connection as None (it is set later).
        conn = cast("Connection | None", pubsub.connection if pubsub is not None else None)
        if not self._healthy or conn is None or not conn.is_connected:
            raise WindsockError("broker_unavailable")
        await conn.send_command(*command, check_health=False)

    # Publishing and history.

    def _keys(self, channel: str) -> list[str]:
        base = f"{self._prefix}:{channel}"
        return [f"{base}:seq", f"{base}:hist", f"{base}:last"]

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        skip_unchanged: bool = False,
        key: str | None = None,
        history_size: int | None = None,
        history_ttl: int | None = None,
    ) -> PublishResult:
        args = [
            channel,
            data,
            self._size if history_size is None else history_size,
            "1" if skip_unchanged else "0",
            first_id() - 1,
            self._ttl if history_ttl is None else history_ttl,
            self._topic(channel),
            self._window,
        ]
        keys = self._keys(channel) + ([] if key is None else [f"{self._prefix}:{channel}:idem:{key}"])
        started = time.perf_counter()
        try:
            sid, skipped, duplicate = await self._publish_script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise WindsockError("broker_unavailable") from exc
        self.round_trip = time.perf_counter() - started
        return PublishResult(int(sid), skipped=bool(skipped), duplicate=bool(duplicate))

    async def history(self, channel: str, since: int = 0, *, latest: bool = False) -> History:
        try:
            seq, flat = await self._history_script(
                keys=self._keys(channel)[:2], args=[since, "1" if latest else "0"]
            )
        except (RedisError, OSError) as exc:
            raise WindsockError("broker_unavailable") from exc
        # WITHSCORES alternates member, score; scores are ids below 2**53, exact.
        messages = [Message(channel, int(float(flat[i + 1])), flat[i]) for i in range(0, len(flat), 2)]
        return History(int(seq), messages)

    # The listener.

    async def _listen(self) -> None:
        delay = _BACKOFF_MIN
        recovering = False
        while True:
            pubsub = self._sub_client.pubsub()
            try:
                await self._attach(pubsub, recovering)
                delay = _BACKOFF_MIN
                await self._read(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                if self._healthy or not recovering:
                    log.warning("redis unreachable (%s); retrying with backoff", exc)
                self._healthy = False
                self._pubsub = None
            except Exception:
                # Anything else is a bug, here or in redis-py. Were it to end
                # this task, the process would be deaf while /healthz says ok.
                log.exception("redis listener failed; reconnecting")
                self._healthy = False
                self._pubsub = None
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            recovering = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _attach(self, pubsub: PubSub, recovering: bool) -> None:
        """Subscribe the control topic and every channel, and wait for Redis to confirm all."""
        topics = {self._control, *(self._topic(c) for c in self._channels)}
        await asyncio.wait_for(pubsub.subscribe(*topics), self._timeout)
        self._pubsub = pubsub
        early: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while topics:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("redis did not confirm SUBSCRIBE")
            msg = await pubsub.get_message(timeout=remaining)
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                topics.discard(msg["channel"])
                self._confirm(msg["channel"])
            elif msg["type"] == "message":
                early.append(msg)
        # A restarting Redis confirms SUBSCRIBE while it still loads its data,
        # yet answers every other command with LOADING: not back until the
        # command connection works, or the refill and publishes would fail.
        await self._redis.ping()
        self._healthy = True
        self._connected.set()
        if recovering:
            self.reconnects += 1
            log.warning("redis is back; resubscribed %d channels", len(self._channels))
            # Called before delivering anything new, so the hub can hold live
            # messages until it has replayed the gap from history, in order.
            self._on_recover()
        for msg in early:
            self._deliver(msg["channel"], msg["data"])

    async def _read(self, pubsub: PubSub) -> None:
        """Deliver messages until the connection fails; a silent connection counts as failed."""
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while True:
            msg = await pubsub.get_message(timeout=self._ping_interval)
            now = loop.time()
            if msg is None:
                # A half-open TCP connection never errors; without this check
                # the process would go deaf without noticing.
                if now - last_heard > 2 * self._ping_interval:
                    raise TimeoutError("redis did not answer PING")
                await pubsub.ping()
                continue
            last_heard = now
            kind = msg["type"]
            if kind == "message":
                self._deliver(msg["channel"], msg["data"])
            elif kind == "subscribe":
                self._confirm(msg["channel"])

    def _confirm(self, topic: bytes) -> None:
        future = self._confirmations.pop(topic, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _deliver(self, topic: bytes, payload: bytes) -> None:
        try:
            channel = topic[len(self._prefix) + 1 :].decode()
            sid, _, envelope = payload.partition(b" ")
            message = Message(channel, int(sid), envelope)
        except ValueError:
            # Someone else published on our topic; never let it stop the listener.
            log.warning("ignoring a malformed message on %r", topic)
            return
        self._on_message(message)
