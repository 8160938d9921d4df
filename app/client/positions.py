"""Resume bookkeeping: which channels, and the last id taken and delivered on each. Pure, no I/O.

Two positions per channel:
- *taken*: the last id the client accepted from a connection (queued for the
  caller). A reconnect resumes after it, and a message at or below it is a
  repeat and is dropped.
- *delivered*: the last id the caller has been handed. ``positions()`` reports
  these, so another client given them as ``since`` carries on exactly where
  this caller stopped.
A channel with nothing delivered yet reports where it started: its ``since``,
or the latest id the server named when it was subscribed.

A channel started at ``"latest"`` has no position until the server names its
latest id (the ``subscribed`` answer, the SSE stream's opening id). Until then
every connection asks for ``"latest"`` again; from then on it resumes after an
id like any other channel, so no reconnect skips a message. The message that
id names (the newest retained one) is taken once even though it is not above
it.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.client.frames import LATEST, Message, Point, Reset, Start

__all__ = ["Positions"]


class Positions:
    def __init__(self, channels: Iterable[str], since: dict[str, Start]) -> None:
        self._channels: dict[str, None] = dict.fromkeys(channels)
        self._taken: dict[str, int] = {
            c: p for c, p in since.items() if c in self._channels and isinstance(p, int)
        }
        self._start: dict[str, int] = dict(self._taken)
        self._delivered: dict[str, int] = {}
        # Channels to start at their newest message, while the server has not named it yet.
        self._latest: set[str] = {c for c, p in since.items() if c in self._channels and p == LATEST}
        # The id of the newest message a "latest" subscription is about to replay.
        self._due: dict[str, int] = {}

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels

    def resume_points(self) -> dict[str, Point]:
        """Each channel and the id to resume after (None: from now on; "latest": its newest message)."""
        return {c: self._taken.get(c, LATEST if c in self._latest else None) for c in self._channels}

    def add(self, channel: str, since: Start | None) -> bool:
        """Subscribe ``channel``; with ``since``, (re)start it there. False if nothing changed."""
        if channel in self._channels and since is None:
            return False
        self._channels[channel] = None
        if since is not None:
            self._forget(channel)
            if since == LATEST:
                self._latest.add(channel)
            else:
                self._taken[channel] = self._start[channel] = since
        return True

    def remove(self, channel: str) -> bool:
        if channel not in self._channels:
            return False
        del self._channels[channel]
        self._forget(channel)
        return True

    def _forget(self, channel: str) -> None:
        for positions in (self._taken, self._start, self._delivered, self._due):
            positions.pop(channel, None)
        self._latest.discard(channel)

    def started(self, channel: str, latest: int) -> None:
        """The server named where a channel subscribed from now on (or at its newest message) begins."""
        if channel in self._channels and channel not in self._taken:
            self._taken[channel] = self._start[channel] = latest
            if channel in self._latest:
                self._latest.discard(channel)
                self._due[channel] = latest

    def take(self, message: Message) -> bool:
        """Accept a message from a connection: False for a channel not subscribed, or a repeat."""
        if message.channel not in self._channels:
            return False
        last = self._taken.get(message.channel)
        due = self._due.pop(message.channel, None)
        if message.id == due:
            # The newest message a "latest" subscription replays: the caller starts just before it.
            self._start[message.channel] = message.id - 1
        elif last is not None and message.id <= last:
            return False
        self._taken[message.channel] = message.id
        return True

    def take_reset(self, reset: Reset) -> bool:
        """History was lost: whatever is still kept follows, so accept everything from here."""
        if reset.channel not in self._channels:
            return False
        self._taken[reset.channel] = 0
        self._due.pop(reset.channel, None)
        return True

    def deliver(self, event: Message | Reset) -> bool:
        """Hand an accepted event to the caller: False if it no longer applies (unsubscribed, restarted)."""
        if event.channel not in self._channels:
            return False
        if isinstance(event, Reset):
            self._delivered[event.channel] = 0
            return True
        last = self._delivered.get(event.channel, self._start.get(event.channel))
        if last is not None and event.id <= last:
            return False
        self._delivered[event.channel] = event.id
        return True

    def positions(self) -> dict[str, int]:
        """The last id delivered on each channel (where it started, if nothing was yet)."""
        result = {}
        for channel in self._channels:
            pos = self._delivered.get(channel, self._start.get(channel))
            if pos is not None:
                result[channel] = pos
        return result
