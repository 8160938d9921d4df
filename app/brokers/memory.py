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
    last_data: bytes = b""
    touched: float = field(default_factory=time.monotonic)


class MemoryBroker(Broker):
    """Keeps each channel's history in this process and delivers synchronously."""

    def __init__(self, history_size: int, history_ttl: float = 0) -> None:
        super().__init__()
        self._size = history_size
        self._ttl = history_ttl
        self._channels: dict[str, _Channel] = {}
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

    async def publish(self, channel: str, data: bytes, *, skip_unchanged: bool = False) -> PublishResult:
        now = time.monotonic()
        self._expire(now)
        state = self._channels.get(channel)
        if state is not None and skip_unchanged and state.last_data == data:
            return PublishResult(state.seq, skipped=True)
        if state is None:
            state = self._channels[channel] = _Channel(first_id() - 1, deque(maxlen=self._size))
        state.seq += 1
        state.last_data = data
        state.touched = now
        message = Message.build(channel, state.seq, data)
        state.history.append(message)
        if channel in self._subscribed:
            self._on_message(message)
        return PublishResult(message.id)

    async def history(self, channel: str, since: int = 0) -> History:
        self._expire(time.monotonic())
        state = self._channels.get(channel)
        if state is None:
            return History(0)
        return History(state.seq, [m for m in state.history if m.id > since])

    def _expire(self, now: float) -> None:
        # Without expiry, publishers naming ever new channels would grow memory
        # without bound. Sweeping at most once a second keeps this cheap.
        if not self._ttl or now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        stale = [name for name, s in self._channels.items() if now - s.touched > self._ttl]
        for name in stale:
            del self._channels[name]
