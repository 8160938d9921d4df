"""GET /events: the Server-Sent Events transport, for EventSource.

A stream over one channel uses message ids as ``id:``; a stream over several
uses a cursor naming each channel's last id, so Last-Event-ID resumes all of
them without gaps or duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamBufferFullError, StreamClosedError

from app.auth import verify_token
from app.client_frames import LATEST, encode_cursor, parse_cursor, parse_since
from app.errors import WindsockError
from app.messages import Message, encode_reset, http_chunk, sse_comment, sse_event
from app.transports.common import CoreHandler, token_from
from app.transports.stream import Coalescing
from app.transports.tornado_compat import chunked_output, release_response, write_now

__all__ = ["EventsHandler"]

log = logging.getLogger("windsock.sse")

_HEARTBEAT = sse_comment("ping")


class EventsHandler(CoreHandler, Coalescing):
    """One EventSource client."""

    kind = "sse"

    def setup(self) -> None:
        self._turns = self.connections.write_turns
        self.channels: list[str] = []
        self.since: dict[str, int] = {}
        self.positions: dict[str, int] = {}
        # Until the stream starts: replayed and live messages, and reset events.
        self.held: list[Message | bytes] | None = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        assert isinstance(self.request.connection, HTTP1Connection)
        self.http = self.request.connection
        self.chunked = False

    async def get(self) -> None:
        channels = self.stream_channels()
        if not channels:
            raise WindsockError("bad_channel", "give at least one ?channel=")
        if self.connections.count(self.kind) >= self.config.max_sse_connections:
            raise WindsockError("too_many_connections")
        guarded = [c for c in channels if self.namespaces(c).token] if self.config.subscribe_secret else []
        if guarded:
            grant = verify_token(token_from(self), self.config.subscribe_secret)
            refused = [c for c in guarded if not grant.allows(c)]
            if refused:
                raise WindsockError("forbidden", f"token does not allow channel {refused[0]}")
            # The stream ends when the token does; EventSource reconnects
            # with the same URL and gets 401 until the page mints a new one.
            loop = asyncio.get_running_loop()
            expiry = loop.call_later(max(0.0, grant.expires - time.time()), self._end)
            self.done.add_done_callback(lambda _: expiry.cancel())
        last_id = self.request.headers.get("Last-Event-ID") or self.get_argument("last_event_id", "")
        if last_id:
            self.since = parse_cursor(last_id, channels)
        elif (since := self.get_argument("since", "")) != "":
            # A first connection's start; EventSource's reconnects send Last-Event-ID instead.
            start = parse_since(since)
            self.since = {channel: start for channel in channels}

        self.channels = channels
        subscribed: list[str] = []
        try:
            for channel in channels:
                subscribed.append(channel)
                await self.hub.subscribe(channel, self, self.since.get(channel))
            self._start()
            self.connections.add(self)
            await self.done
        finally:
            for channel in subscribed:
                self.hub.unsubscribe(channel, self)
            self.connections.discard(self)

    def _start(self) -> None:
        """Send the headers, the reconnect delay, the starting cursor and what was held."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        # nginx must not buffer the stream, and nothing may cache it.
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")
        self.write(b"retry: %d\n" % self.config.sse_retry_ms)
        # An event with an id but no data sets EventSource's lastEventId
        # without firing: a client that drops before any message still
        # resumes from here instead of missing what came in between.
        # The cursor is where the stream starts, on every channel: what was
        # held is framed only now, so that each event's cursor names every
        # channel too (a channel a cursor leaves out would resume live).
        self.write(b"id: %s\n\n" % self._cursor().encode())
        held, self.held = self.held or [], None
        many = len(self.channels) > 1
        for item in held:
            if isinstance(item, bytes):
                self.write(item)
                continue
            self.positions[item.channel] = item.id
            self.write(sse_event(item.envelope, self._cursor()) if many else item.sse_event)
        self.flush()
        # Known once the headers are written: HTTP/1.1 chunks, or (HTTP/1.0) none.
        self.chunked = chunked_output(self.http)
        # Only now: the headers and the replay above may exceed the queue.
        self.http.stream.max_write_buffer_size = self.config.max_queue_bytes
        release_response(self)

    def _cursor(self) -> str:
        if len(self.channels) == 1:
            return str(next(iter(self.positions.values())))
        return encode_cursor(self.positions)

    # The hub's Subscriber interface.

    def deliver(self, message: Message) -> None:
        if self.held is not None:
            self.held.append(message)
            return
        self.positions[message.channel] = message.id
        if len(self.channels) > 1:
            self._write(sse_event(message.envelope, self._cursor()))
        else:
            # The same bytes for every subscriber, framed once per message.
            self._coalesce(message.sse_chunk if self.chunked else message.sse_event)

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        since = self.since.get(channel)
        # After a loss the replay starts from the oldest kept message, so the
        # position to resume from until then is "everything" (0).
        self.positions[channel] = 0 if lost else (seq if since is None or since == LATEST else since)
        if lost:
            self.reset(channel, seq)

    def reset(self, channel: str, seq: int) -> None:
        self._write(sse_event(encode_reset(channel, seq)))

    # Writing.

    def _write(self, chunk: bytes) -> None:
        if self.held is not None:
            self.held.append(chunk)
            return
        self._coalesce(http_chunk(chunk) if self.chunked else chunk)

    def _emit(self, data: bytes) -> None:
        """Write ``data``, already framed for the connection, once the stream has started."""
        if self.done.done():
            return
        try:
            # Straight to the socket (app.transports.stream), skipping
            # RequestHandler's buffer and its flush per message, and the
            # futures of HTTP1Connection.write and IOStream.write.
            write_now(self.http.stream, data)
        except StreamBufferFullError:
            self.hub.slow_consumer()
            log.info("dropping slow SSE consumer %s: outgoing queue full", self.request.remote_ip)
            # The client is not reading, so nothing more can reach it: abort.
            self.http.stream.close()
            self._end()
        except StreamClosedError:
            self._end()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # Lifecycle.

    def heartbeat(self) -> None:
        self._write(_HEARTBEAT)

    def shutdown(self) -> None:
        # Ending the response makes EventSource reconnect, through nginx, to
        # a worker that is not shutting down.
        self._end()

    def on_connection_close(self) -> None:
        self._end()
