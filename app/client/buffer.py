"""The events a client has received and its caller has not yet taken, bounded."""

from __future__ import annotations

import asyncio
from collections import deque

from app.client.frames import Event, Message

__all__ = ["EventBuffer"]


class EventBuffer:
    """Events for the caller, in order; a full buffer makes the connection wait (and the server see it)."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Event] = deque()
        self._capacity = capacity
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._end: BaseException | None = None
        self._ended = False

    async def put(self, item: Event) -> None:
        while len(self._items) >= self._capacity and not self._ended:
            self._writable.clear()
            await self._writable.wait()
        self.put_nowait(item)

    def put_nowait(self, item: Event) -> None:
        if not self._ended:
            self._items.append(item)
            self._readable.set()

    async def get(self) -> Event:
        while not self._items:
            if self._ended:
                if isinstance(self._end, BaseException):
                    raise self._end
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self._capacity:
            self._writable.set()
        return item

    def purge(self, channel: str) -> None:
        """Drop the queued messages of one channel."""
        self._items = deque(e for e in self._items if not (isinstance(e, Message) and e.channel == channel))
        self._writable.set()

    def end(self, error: BaseException | None = None, drop: bool = False) -> None:
        """No more events: the queued ones still come (unless ``drop``), then ``error`` or the end."""
        if drop:
            self._items.clear()
        self._ended, self._end = True, error
        self._readable.set()
        self._writable.set()
