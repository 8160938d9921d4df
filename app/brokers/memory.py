"""The in-memory broker: one process, nothing else to run. The embedded default."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from app.brokers.base import Broker, History, PublishResult, first_id
from app.messages import Message

__all__ = ["MemoryBroker"]


@dataclass(slots=True)
class _Channel:
    seq: int
    history: deque[Message]
    ttl: float
    last_data: bytes = b""
    touched: float = field(default_factory=time.monotonic)


class MemoryBroker(Broker):
    """Keeps each channel's history in this process and delivers synchronously."""

    def __init__(self, history_size: int, history_ttl: float = 0, idempotency_window: float = 300) -> None:
        super().__init__()
        self._size = history_size
        self._ttl = history_ttl
        self._window = idempotency_window
        self._channels: dict[str, _Channel] = {}
        # (channel, key) -> id, and the same in order of expiry: the window is
        # one constant, so the oldest key always expires first.
        self._keys: dict[tuple[str, str], int] = {}
        self._key_expiry: deque[tuple[float, tuple[str, str]]] = deque()
        self._subscribed: set[str] = set()
        self._next_sweep = 0.0

    @property
    def healthy(self) -> bool:
        return True

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        self._subscribed.clear()

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

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
        now = time.monotonic()
        self._expire(now)
        if key is not None:
            first = self._keys.get((channel, key))
            if first is not None:
                return PublishResult(first, duplicate=True)
        result = self._publish(channel, data, now, skip_unchanged, history_size, history_ttl)
        if key is not None:
            self._keys[channel, key] = result.id
            self._key_expiry.append((now + self._window, (channel, key)))
        return result

    def _publish(
        self, channel: str, data: bytes, now: float, skip: bool, size: int | None, ttl: float | None
    ) -> PublishResult:
        state = self._channels.get(channel)
        if state is not None and skip and state.last_data == data:
            return PublishResult(state.seq, skipped=True)
        if state is None:
            history: deque[Message] = deque(maxlen=self._size if size is None else size)
            expiry = self._ttl if ttl is None else ttl
            state = self._channels[channel] = _Channel(first_id() - 1, history, expiry)
        state.seq += 1
        state.last_data = data
        state.touched = now
        message = Message.build(channel, state.seq, data)
        state.history.append(message)
        if channel in self._subscribed:
            self._on_message(message)
        return PublishResult(message.id)

    async def history(self, channel: str, since: int = 0, *, latest: bool = False) -> History:
        self._expire(time.monotonic())
        state = self._channels.get(channel)
        if state is None:
            return History(0)
        if latest:
            return History(state.seq, [state.history[-1]] if state.history else [])
        return History(state.seq, [m for m in state.history if m.id > since])

    def _expire(self, now: float) -> None:
        expiry = self._key_expiry
        while expiry and expiry[0][0] <= now:
            self._keys.pop(expiry.popleft()[1], None)
        # Without expiry, publishers naming ever new channels would grow memory
        # without bound. Sweeping at most once a second keeps this cheap.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        stale = [name for name, s in self._channels.items() if s.ttl and now - s.touched > s.ttl]
        for name in stale:
            del self._channels[name]
