"""The Broker interface: what the hub needs from whatever carries messages between processes."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.messages import Message

__all__ = ["Broker", "History", "OnMessage", "OnRecover", "PublishResult", "first_id"]

OnMessage = Callable[[Message], None]
OnRecover = Callable[[], None]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The id a publish got; the latest id if it was skipped as unchanged; the first id if a repeat.

    ``duplicate``: the idempotency key was used on this channel within the
    window, so nothing was published and ``id`` is what the first use got.
    """

    id: int
    skipped: bool = False
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """A channel's latest id (0: nothing stored) and its retained messages after some id."""

    seq: int
    messages: list[Message] = field(default_factory=list)


def first_id() -> int:
    """The id of a channel's first message: the time in microseconds.

    Starting from the clock instead of 1 keeps ids increasing even after the
    history was lost (Redis restarted empty, the channel expired), so an old
    Last-Event-ID is recognised as from before the loss, never mistaken for
    a position in the new sequence.
    """
    return time.time_ns() // 1000


class Broker(abc.ABC):
    """Carries published messages to every process subscribed to their channel.

    The hub calls ``bind`` once, then ``subscribe`` on a channel's first local
    subscriber and ``unsubscribe`` after its last. Messages arrive through
    the ``on_message`` callback in id order per channel. After a broker
    outage, ``on_recover`` tells the hub to fill the gap from history.
    """

    def __init__(self) -> None:
        self._on_message: OnMessage = lambda message: None
        self._on_recover: OnRecover = lambda: None

    def bind(self, on_message: OnMessage, on_recover: OnRecover) -> None:
        self._on_message = on_message
        self._on_recover = on_recover

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether publishes and deliveries work right now."""

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def disconnect(self) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; returns once messages published from now on will arrive."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abc.abstractmethod
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
        """Store ``data`` (encoded JSON) in the channel's history and deliver it everywhere.

        With an idempotency ``key`` already used on this channel within the
        broker's window, nothing is published: the answer is the first use's
        id, marked ``duplicate``. The check and the publish are one atomic
        step, so two workers racing one key cannot both publish.
        ``history_size`` and ``history_ttl`` override the broker's defaults
        for this channel (its namespace's rules).

        Raises:
            WindsockError: ``broker_unavailable`` when the broker cannot be reached.
        """

    @abc.abstractmethod
    async def history(self, channel: str, since: int = 0, *, latest: bool = False) -> History:
        """The channel's latest id and its retained messages with ids above ``since``.

        With ``latest``, only the newest retained message (if any), whatever ``since``.

        Raises:
            WindsockError: ``broker_unavailable`` when the broker cannot be reached.
        """

    def status(self) -> dict[str, Any]:
        """Facts for /healthz."""
        return {"healthy": self.healthy}
