"""What a transport's connection and the client's core say to each other."""

from __future__ import annotations

from typing import Any, Protocol

from app.client.frames import Point

__all__ = ["Reopen", "Session", "Sink"]


class Reopen(Exception):
    """The core asked for a new connection at once (an SSE stream whose channels changed)."""


class Sink(Protocol):
    """The client's core, as a connection sees it."""

    def resume_points(self) -> dict[str, Point]:
        """Each channel to subscribe, with the id to resume after (None: from now on; "latest")."""
        ...

    def started(self, channel: str, latest: int) -> None:
        """The server named the latest id of a channel subscribed from now on (or at "latest")."""
        ...

    def live(self) -> None:
        """Every channel is subscribed: the connection is live."""
        ...

    async def message(self, channel: str, id: int, data: Any) -> None: ...

    async def reset(self, channel: str, id: int, reason: str) -> None: ...

    async def error(self, code: str, message: str, channel: str | None) -> None:
        """An error frame nothing was waiting for; with ``channel``, that channel was refused for good."""
        ...


class Session(Protocol):
    """One connection, from its opening to its end."""

    async def run(self) -> None:
        """Connect, subscribe, deliver to the sink; raise ClientError (or Reopen) when it ends."""
        ...

    async def subscribe(self, channel: str, since: Point) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def stop(self) -> None:
        """End the connection cleanly (a WebSocket closing handshake); run() then returns."""
        ...
