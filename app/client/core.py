"""The client's core: one connection at a time, reconnected with backoff, resumed without loss or repeats.

``async with Client(url, channels=[...]) as c: async for event in c`` yields
every Message, and every Reset, Status and ServerError, in the order they
happened. Nothing is hidden: a reset means history was lost, a status says
the connection is connecting, live, reconnecting (why, and when next) or
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Literal

import httpx

from app.client.backoff import backoff_delay
from app.client.buffer import EventBuffer
from app.client.errors import ClientError
from app.client.frames import (
    Event,
    Message,
    Reset,
    ServerError,
    Since,
    Status,
    StatusName,
    check_channels,
    normalize_url,
    since_for,
)
from app.client.httpapi import http_publish
from app.client.positions import Positions
from app.client.retry import Token, current_token, is_fatal
from app.client.session import Reopen
from app.client.sse import SseSession
from app.client.websocket import WebSocketSession

__all__ = ["DEFAULT_URL", "Client", "Token"]

DEFAULT_URL = "http://127.0.0.1:8888"


class Client:
    """A Windsock subscriber (and publisher) over WebSocket or SSE; see docs/python-client.md."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        channels: Iterable[str] = (),
        *,
        since: Since = None,
        transport: Literal["websocket", "sse"] = "websocket",
        token: Token = None,
        publish_key: str | None = None,
        heartbeat: float = 15.0,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        max_attempts: int | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        max_queue: int = 10_000,
    ) -> None:
        if transport not in ("websocket", "sse"):
            raise ClientError("bad_transport", f"transport must be 'websocket' or 'sse', not {transport!r}")
        if isinstance(channels, str):
            channels = [channels]
        self.url = normalize_url(url)
        names = check_channels(channels)
        self._positions = Positions(names, since_for(names, since))
        self.transport = transport
        self.token = token
        self.publish_key = publish_key
        self.heartbeat = heartbeat
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.status: StatusName = "connecting"
        self.attempt = 0
        self._buffer = EventBuffer(max_queue)
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: WebSocketSession | SseSession | None = None
        self._session_live = False
        self._closing = False  # the connection loop is to stop
        self._closed = False  # close() has run
        self._wake = asyncio.Event()

    # Life cycle.

    async def __aenter__(self) -> Client:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Begin connecting in the background (``async with`` and iterating do it too)."""
        if self._task is None and not self._closed:
            self._http = httpx.AsyncClient(trust_env=False)
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Close the connection cleanly (WebSocket close 1000) and end the iteration."""
        if self._closed:
            return
        self._closed = self._closing = True
        self._wake.set()
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.stop(), 5)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self._http is not None:
            await self._http.aclose()
        self._set_status("closed")
        self._buffer.end(drop=True)

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        self.start()
        while True:
            event = await self._buffer.get()
            if isinstance(event, (Message, Reset)) and not self._positions.deliver(event):
                continue  # unsubscribed, or restarted from another id, since it was queued
            return event

    # What the caller may do meanwhile.

    def positions(self) -> dict[str, int]:
        """The last id delivered on each channel: give it as ``since`` to another client to carry on."""
        return self._positions.positions()

    @property
    def channels(self) -> list[str]:
        return self._positions.channels

    async def subscribe(self, channel: str, since: int | Literal["latest"] | None = None) -> None:
        """Add a channel (from now on, after ``since``, or "latest"); with ``since``, restart one there."""
        [channel] = check_channels([channel])
        if since is not None:
            since = since_for([channel], since)[channel]
        if not self._positions.add(channel, since):
            return
        if since is not None:
            self._buffer.purge(channel)
        session = self._session
        if session is not None:
            with contextlib.suppress(ClientError, ConnectionError):
                await session.subscribe(channel, self._positions.resume_points()[channel])

    async def unsubscribe(self, channel: str) -> None:
        if not self._positions.remove(channel):
            return
        self._buffer.purge(channel)
        session = self._session
        if session is not None:
            with contextlib.suppress(ClientError, ConnectionError):
                await session.unsubscribe(channel)

    async def publish(self, channel: str, data: Any, idempotency_key: str | None = None) -> int:
        """Publish; the message's id. Over the WebSocket (channels matching CLIENT_PUBLISH), or over
        HTTP when the client has a ``publish_key`` or uses SSE. ClientError carries the server's code.

        A publish whose answer is lost (``connection_lost``) may have been accepted: retry it with the
        same ``idempotency_key`` to publish it once. Each waits up to ``request_timeout`` seconds.
        """
        within = self.request_timeout
        [channel] = check_channels([channel])
        if self._closed:
            raise ClientError("closed")
        if self.publish_key is not None or self.transport == "sse":
            self.start()
            assert self._http is not None
            key = self.publish_key
            answer = await http_publish(self._http, self.url, channel, data, key, within, idempotency_key)
            return int(answer["id"])
        self.start()
        return await (await self._open_websocket(within)).publish(channel, data, within, idempotency_key)

    async def _open_websocket(self, within: float) -> WebSocketSession:
        deadline = asyncio.get_running_loop().time() + within
        while not self._closing:
            session = self._session
            if isinstance(session, WebSocketSession) and session.opened.is_set():
                return session
            if self._task is not None and self._task.done():
                break
            if asyncio.get_running_loop().time() > deadline:
                raise ClientError("timeout", f"not connected within {within:g} s")
            await asyncio.sleep(0.02)
        raise ClientError("closed")

    # The connection loop.

    async def _run(self) -> None:
        quiet = False
        while not self._closing:
            if not quiet:
                self._set_status("connecting")
            quiet = False
            self._session_live = False
            error: ClientError
            try:
                token = await current_token(self.token)
                if self._is_closing():
                    return
                self._session = self._new_session(token)
                await self._session.run()
                error = ClientError("closed") if self._closing else ClientError("connection_lost")
            except Reopen:
                quiet = True
                continue
            except ClientError as exc:
                error = exc
            except Exception as exc:  # a failure no transport foresaw: report it, and try again
                error = ClientError("connection_lost", f"{type(exc).__name__}: {exc}")
            finally:
                self._session = None
            if self._is_closing():
                return
            if self._session_live:
                self.attempt = 0
                if error.code == "idle" and self.transport == "sse":
                    # The server's heartbeat may be slower than ours: replace a quiet
                    # stream without fuss. Only a replacement that fails counts.
                    quiet = True
                    continue
            if is_fatal(error, token_renews=callable(self.token)) or (
                self.max_attempts is not None and self.attempt + 1 >= self.max_attempts
            ):
                self._set_status("closed", error=error)
                self._buffer.end(error)
                self._closing = True
                if self._http is not None:
                    await self._http.aclose()
                return
            delay = backoff_delay(self.attempt, self.min_delay, self.max_delay)
            self.attempt += 1
            self._set_status("reconnecting", retry_in=delay, error=error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _new_session(self, token: str | None) -> WebSocketSession | SseSession:
        if self.transport == "websocket":
            return WebSocketSession(self.url, token, self, self.heartbeat, self.connect_timeout)
        assert self._http is not None
        return SseSession(self._http, self.url, token, self, self.heartbeat, self.connect_timeout)

    def _is_closing(self) -> bool:
        return self._closing  # a method: mypy would take the flag as still False after the awaits

    def _set_status(
        self, status: StatusName, retry_in: float = 0.0, error: ClientError | None = None
    ) -> None:
        if status == self.status == "live" or self.status == "closed":
            return
        self.status = status
        self._buffer.put_nowait(Status(status, self.transport, self.attempt, round(retry_in, 3), error))

    # The Sink a session delivers to.

    def resume_points(self) -> dict[str, int | Literal["latest"] | None]:
        return self._positions.resume_points()

    def started(self, channel: str, latest: int) -> None:
        self._positions.started(channel, latest)

    def live(self) -> None:
        self._session_live = True
        self.attempt = 0
        self._set_status("live")

    async def message(self, channel: str, id: int, data: Any) -> None:
        message = Message(channel, id, data)
        if self._positions.take(message):
            await self._buffer.put(message)

    async def reset(self, channel: str, id: int, reason: str) -> None:
        reset = Reset(channel, id, reason)
        if self._positions.take_reset(reset):
            await self._buffer.put(reset)

    async def error(self, code: str, message: str, channel: str | None) -> None:
        if channel is not None:
            self._positions.remove(channel)
        await self._buffer.put(ServerError(code, message, channel))
