"""What the hub delivers to: a transport connection, or a stand-in the hub puts in its place.

A stand-in takes a subscriber's place in the fan-out while the hub cannot
deliver to it directly yet: while its history is replayed (``Pending``), or
while it is ahead of this process's pub/sub stream (``After``).
"""

from __future__ import annotations

from typing import Protocol

from app.messages import Message

__all__ = ["After", "Pending", "Subscriber"]


class CatchUp(Protocol):
    """The hub, as a stand-in sees it."""

    def caught_up(self, channel: str, subscriber: Subscriber, stand_in: Subscriber) -> None: ...


class Subscriber(Protocol):
    """What a transport connection offers the hub. No method may block or raise."""

    def deliver(self, message: Message) -> None:
        """Queue ``message`` for the client."""

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        """The subscription is in force from id ``seq``; replayed messages follow.

        ``lost`` says some of what the client asked to resume is gone.
        """

    def reset(self, channel: str, seq: int) -> None:
        """Messages were lost in a broker outage and cannot be replayed."""


class Pending:
    """Stands in for a subscriber while its history is replayed, holding live messages."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[Message] = []

    def deliver(self, message: Message) -> None:
        self.held.append(message)

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        pass

    def reset(self, channel: str, seq: int) -> None:
        # Its own history read comes after the outage, so it has nothing to miss.
        pass


class After:
    """Stands in for a subscriber that is ahead of this process's pub/sub stream.

    A client resuming on this worker may already have messages that this
    worker's pub/sub has not delivered yet (it got them from another worker,
    or from the history just read): those must not reach it a second time.
    On the first newer message the hub puts the subscriber itself back.
    """

    __slots__ = ("channel", "floor", "hub", "subscriber")

    def __init__(self, hub: CatchUp, channel: str, subscriber: Subscriber, floor: int) -> None:
        self.hub = hub
        self.channel = channel
        self.subscriber = subscriber
        self.floor = floor

    def deliver(self, message: Message) -> None:
        if message.id <= self.floor:
            return
        self.hub.caught_up(self.channel, self.subscriber, self)
        self.subscriber.deliver(message)

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        pass

    def reset(self, channel: str, seq: int) -> None:
        # After a loss the ids restart above every earlier one: no floor left.
        self.hub.caught_up(self.channel, self.subscriber, self)
        self.subscriber.reset(channel, seq)
