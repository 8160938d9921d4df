"""The WebSocket transport: one connection to /ws, with subscribe frames, pings and publishes (websockets)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from app.client.errors import CLOSE_CODES, ClientError, connect_reason, from_http_answer
from app.client.frames import Point, decode_frame, encode_json, message_of, reset_of, ws_url
from app.client.session import Sink

__all__ = ["WebSocketSession"]

# Refusals of a subscribe that pass: the whole connection is tried again later.
_TEMPORARY = {"broker_unavailable", "shutting_down"}
# Subscribe frames sent at once on connecting, then per second: below the server's defaults.
SUBSCRIBE_BURST = 40
SUBSCRIBE_RATE = 15


class WebSocketSession:
    def __init__(
        self, base: str, token: str | None, sink: Sink, heartbeat: float, connect_timeout: float
    ) -> None:
        self.url = ws_url(base)
        self.token = token
        self.sink = sink
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.opened = asyncio.Event()  # set once the subscribe frames went out
        self._ws: ClientConnection | None = None
        self._awaiting: set[str] = set()
        self._live = False
        self._stopping = False
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._refs = itertools.count(1)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                ping_interval=None,  # application pings below, as windsock.js sends
                close_timeout=2,
                max_size=None,  # the server bounds message sizes
                proxy=None,
                compression=None,
            ) as ws:
                self._ws = ws
                if self._stopping:  # stop() came while connecting: leave with a clean close
                    return
                await self._serve(ws)
        except InvalidStatus as exc:
            raise from_http_answer(exc.response.status_code, bytes(exc.response.body or b"")) from None
        except ConnectionClosed as exc:
            if self._stopping:
                return
            raise _closed(exc) from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ClientError("unreachable", f"cannot connect to {self.url}: {connect_reason(exc)}") from None
        finally:
            self._ws = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        ClientError("connection_lost", "the connection ended before the answer")
                    )

    async def _serve(self, ws: ClientConnection) -> None:
        points = self.sink.resume_points()  # taken together with opened.set(): no subscribe is missed
        self._awaiting = set(points)
        self.opened.set()
        if not self._awaiting:
            self._go_live()
        pinger = asyncio.ensure_future(self._ping())
        subscriber = asyncio.ensure_future(self._subscribe_all(points))
        try:
            while True:
                try:
                    async with asyncio.timeout(self.heartbeat * 2.5):
                        raw = await ws.recv()
                except TimeoutError:
                    raise ClientError(
                        "idle", f"nothing received for {self.heartbeat * 2.5:g} s, not even a pong"
                    ) from None
                frame = decode_frame(raw)
                if frame is not None:
                    await self._on_frame(frame)
        finally:
            for task in (pinger, subscriber):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, ClientError):
                    await task

    async def _subscribe_all(self, points: dict[str, Point]) -> None:
        """One subscribe frame per channel, paced after the first ones to stay under the server's
        frame rate limit (CLIENT_BURST 50, CLIENT_RATE 20/s by default)."""
        for n, (channel, since) in enumerate(points.items()):
            if n >= SUBSCRIBE_BURST:
                await asyncio.sleep(1 / SUBSCRIBE_RATE)
            await self._send(_subscribe_frame(channel, since))

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat)
                await self._send({"type": "ping"})

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            message = message_of(frame)
            if message is not None:
                await self.sink.message(message.channel, message.id, message.data)
        elif kind == "subscribed":
            channel, latest = frame.get("channel"), frame.get("id")
            if isinstance(channel, str) and isinstance(latest, int):
                self.sink.started(channel, latest)
                self._answered(channel)
        elif kind == "reset":
            reset = reset_of(frame)
            if reset is not None:
                await self.sink.reset(reset.channel, reset.id, reset.reason)
        elif kind == "published":
            future = self._pending.get(str(frame.get("ref")))
            if future is not None and not future.done() and isinstance(frame.get("id"), int):
                future.set_result(frame["id"])
        elif kind == "error":
            await self._on_error(frame)

    async def _on_error(self, frame: dict[str, Any]) -> None:
        code, message = str(frame.get("code", "error")), str(frame.get("message", ""))
        channel = frame.get("channel") if isinstance(frame.get("channel"), str) else None
        future = self._pending.get(str(frame.get("ref")))
        if future is not None:
            if not future.done():
                future.set_exception(ClientError(code, message))
            return
        if channel is not None and channel in self._awaiting:
            if code in _TEMPORARY:
                raise ClientError(code, message)  # reconnect, and subscribe again, later
            self._awaiting.discard(channel)
            await self.sink.error(code, message, channel)  # refused for good: the core drops it
            self._answered(channel)
            return
        await self.sink.error(code, message, channel)

    def _answered(self, channel: str) -> None:
        self._awaiting.discard(channel)
        if not self._awaiting:
            self._go_live()

    def _go_live(self) -> None:
        if not self._live:
            self._live = True
            self.sink.live()

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            raise ClientError("connection_lost", "not connected")
        await self._ws.send(encode_json(frame))

    # Calls from the core, while the connection is open.

    # A frame lost with the connection is no loss: the next connection subscribes from the positions.

    async def subscribe(self, channel: str, since: Point) -> None:
        if self.opened.is_set():
            self._awaiting.add(channel)
            with contextlib.suppress(ConnectionClosed, ClientError):
                await self._send(_subscribe_frame(channel, since))

    async def unsubscribe(self, channel: str) -> None:
        self._awaiting.discard(channel)
        if self.opened.is_set():
            with contextlib.suppress(ConnectionClosed, ClientError):
                await self._send({"type": "unsubscribe", "channel": channel})

    async def publish(
        self, channel: str, data: Any, within: float, idempotency_key: str | None = None
    ) -> int:
        """Publish over this connection; the message's id, or ClientError with the server's code."""
        ref = str(next(self._refs))
        frame = {"type": "publish", "channel": channel, "data": data, "ref": ref}
        if idempotency_key is not None:
            frame["idempotency_key"] = idempotency_key
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            try:
                await self._send(frame)
            except ConnectionClosed:
                raise ClientError(
                    "connection_lost", "the connection ended before the publish was sent"
                ) from None
            try:
                return await asyncio.wait_for(future, within)
            except TimeoutError:
                raise ClientError("timeout", f"no answer to the publish within {within:g} s") from None
        finally:
            self._pending.pop(ref, None)

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close(1000, "client closed")


def _subscribe_frame(channel: str, since: Point) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = since
    return frame


def _closed(exc: ConnectionClosed) -> ClientError:
    close = exc.rcvd
    if close is None:
        return ClientError("connection_lost", "the connection dropped without a close frame")
    code = CLOSE_CODES.get(close.code, "connection_lost")
    return ClientError(code, close.reason or f"closed with {close.code}", close.code)
