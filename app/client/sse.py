"""The SSE transport: one GET /events stream (httpx, parsed by httpx-sse), resumed with a cursor.

A stream whose every channel starts at "latest" asks the server with ``?since=latest``. A cursor
cannot say "latest", so a stream that also resumes (or starts live) other channels first reads
those channels' newest message with GET /api/channels/NAME, then resumes them after it.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from httpx_sse import EventSource, SSEError

from app.client.errors import ClientError, connect_reason, from_http_answer
from app.client.frames import (
    LATEST,
    Point,
    decode_frame,
    encode_cursor,
    events_url,
    message_of,
    parse_start,
    reset_of,
)
from app.client.httpapi import http_latest
from app.client.session import Reopen, Sink

__all__ = ["SseSession"]


class SseSession:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base: str,
        token: str | None,
        sink: Sink,
        heartbeat: float,
        connect_timeout: float,
    ) -> None:
        self.http = http
        self.base = base
        self.url = events_url(base)
        self.token = token
        self.sink = sink
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self._reopen = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        points = self.sink.resume_points()
        reading = asyncio.ensure_future(self._read(points))
        reopen = asyncio.ensure_future(self._reopen.wait())
        try:
            done, _ = await asyncio.wait({reading, reopen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, reopen):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._stopping:
            return
        if reading not in done:
            raise Reopen
        reading.result()

    async def _read(self, points: dict[str, Point]) -> None:
        if not points:
            self.sink.live()  # nothing to listen to, until a subscribe reopens
            await asyncio.Event().wait()
        latest = [c for c, p in points.items() if p == LATEST]
        if latest and len(latest) < len(points):
            points = await self._read_latest(latest)
        params: list[tuple[str, str | int | float | bool | None]] = [("channel", c) for c in points]
        cursor = encode_cursor({c: p for c, p in points.items() if isinstance(p, int)})
        if cursor:
            params.append(("last_event_id", cursor))
        elif latest:
            params.append(("since", LATEST))  # every channel of the stream: its newest message, then live
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # Idle detection: the heartbeat comments count as reading, so a read
        # that waits 2.5 heartbeats finds a stream that went silent.
        timeout = httpx.Timeout(self.connect_timeout, read=self.heartbeat * 2.5)
        try:
            async with self.http.stream(
                "GET", self.url, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    raise from_http_answer(response.status_code, await response.aread())
                await self._events(EventSource(response), list(points))
        except httpx.ReadTimeout:
            raise ClientError("idle", f"nothing received for {self.heartbeat * 2.5:g} s") from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ClientError("unreachable", f"cannot connect to {self.url}: {connect_reason(exc)}") from None
        except httpx.TransportError as exc:
            raise ClientError("connection_lost", f"the stream broke: {exc or type(exc).__name__}") from None
        except SSEError as exc:
            raise ClientError("bad_answer", str(exc)) from None
        raise ClientError("connection_lost", "the stream ended")

    async def _read_latest(self, channels: list[str]) -> dict[str, Point]:
        """Take each channel's newest message (or, if it keeps none, its start); the new resume points."""
        for channel in channels:
            message = await http_latest(self.http, self.base, channel, self.token, self.connect_timeout)
            if message is None:
                self.sink.started(channel, 0)  # nothing kept yet: the whole history, as it grows
            else:
                self.sink.started(channel, message.id)
                await self.sink.message(channel, message.id, message.data)
        return self.sink.resume_points()

    async def _events(self, source: EventSource, channels: list[str]) -> None:
        first = True
        async for event in source.aiter_sse():
            if first:
                first = False
                # The stream opens with an id and no data: where each channel starts.
                for channel, latest in parse_start(event.id, channels).items():
                    self.sink.started(channel, latest)
                self.sink.live()
            if not event.data:
                continue
            frame = decode_frame(event.data)
            if frame is None:
                continue
            if frame["type"] == "message":
                message = message_of(frame)
                if message is not None:
                    await self.sink.message(message.channel, message.id, message.data)
            elif frame["type"] == "reset":
                reset = reset_of(frame)
                if reset is not None:
                    await self.sink.reset(reset.channel, reset.id, reset.reason)

    # A stream's channels are fixed: any change is a new stream, from the same positions.

    async def subscribe(self, channel: str, since: Point) -> None:
        self._reopen.set()

    async def unsubscribe(self, channel: str) -> None:
        self._reopen.set()

    async def stop(self) -> None:
        self._stopping = True
        self._reopen.set()
