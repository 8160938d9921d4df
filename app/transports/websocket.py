"""GET /ws: the WebSocket transport. Translates client frames to hub calls and messages to frames."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import tornado.websocket
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketProtocol13

from app.auth import Grant, verify_token
from app.client_frames import ClientFrame, parse_client_frame
from app.errors import WindsockError
from app.limits import TokenBucket
from app.messages import Message, dumps, encode_reset, ws_text_frame
from app.transports.common import CoreHandler, token_from
from app.transports.stream import Coalescing
from app.transports.tornado_compat import protocol_params, release_response, write_now
from app.transports.ws_frames import CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, CLOSE_TRY_AGAIN_LATER
from app.transports.ws_protocol import StrictProtocol

__all__ = ["WebSocketHandler"]

log = logging.getLogger("windsock.websocket")

# Windsock's own close codes (the 4000s are for applications, RFC 6455 section 7.4.2).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


class WebSocketHandler(CoreHandler, Coalescing, tornado.websocket.WebSocketHandler):
    """One WebSocket client: its subscriptions, and a bounded outgoing buffer."""

    kind = "websocket"
    deflate = 0  # the zlib level of permessage-deflate, once agreed with this client

    def setup(self) -> None:
        config = self.config
        self._turns = self.connections.write_turns
        self.channels: set[str] = set()
        self.grant: Grant | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.bucket = TokenBucket(config.client_rate, config.client_burst)
        self._ping_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong = False

    # Handshake.

    def prepare(self) -> None:
        # Checked before the upgrade so a refusal is a plain HTTP answer with
        # a JSON body, which proxies and browsers both report clearly.
        self.query_channels = self.stream_channels()

    def check_origin(self, origin: str) -> bool:
        return True  # already checked in prepare()

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None  # Tornado answers 426 with the supported version
        # No compression options: StrictProtocol agrees permessage-deflate itself.
        params = protocol_params(self.ping_interval, self.ping_timeout, self.max_message_size)
        protocol = StrictProtocol(self, False, params)
        if self.config.ws_deflate_level:  # else the class default: no per-connection attribute
            protocol.deflate_offered = self.config.ws_deflate_level
        return protocol

    async def open(self) -> None:
        assert self.ws_connection is not None
        assert self.ws_connection.stream is not None
        # A write beyond this raises StreamBufferFullError instead of growing
        # memory without bound behind a client that stopped reading.
        self.ws_connection.stream.max_write_buffer_size = self.config.max_queue_bytes
        if isinstance(self.ws_connection, StrictProtocol) and self.ws_connection.deflate_level:
            self.deflate = self.ws_connection.deflate_level
        self.connections.add(self)
        self._ping_after(self._ping_every())
        release_response(self)
        if self.config.subscribe_secret and not self._authenticate():
            return
        for channel in self.query_channels:
            if not await self._guarded(ClientFrame("subscribe", channel)):
                return

    def _authenticate(self) -> bool:
        """Verify the subscribe token; close 4401 with the reason if it is not good."""
        token = token_from(self)
        if not token and self.namespaces.any_public:
            return True  # public channels only: each subscribe checks its namespace's rule
        try:
            self.grant = verify_token(token, self.config.subscribe_secret)
        except WindsockError as exc:
            self.close(CLOSE_UNAUTHORIZED, exc.message)
            return False
        # Browsers cannot see why a handshake failed, so the refusal is a
        # close code after the upgrade; expiry ends the connection likewise.
        delay = max(0.0, self.grant.expires - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.close, CLOSE_UNAUTHORIZED, "token expired"
        )
        return True

    async def _guarded(self, frame: ClientFrame) -> bool:
        """Subscribe, answering errors with an error frame; False once the connection is closed."""
        try:
            await self._subscribe(frame)
        except WindsockError as exc:
            self.connections.errors[exc.code] += 1
            self._send({**exc.as_dict(), "channel": frame.channel})
        return self.ws_connection is not None and not self.ws_connection.is_closing()

    # Client frames.

    async def on_message(self, message: str | bytes) -> None:
        if not self.bucket.allow():
            self.connections.rate_limited += 1
            self.connections.errors["rate_limited"] += 1
            self._send(WindsockError("rate_limited").as_dict())
            self.close(CLOSE_POLICY_VIOLATION, "rate limit exceeded")
            return
        frame: ClientFrame | None = None
        try:
            frame = parse_client_frame(message)
            if frame.type == "subscribe":
                await self._subscribe(frame)
            elif frame.type == "unsubscribe":
                self._unsubscribe(frame)
            elif frame.type == "publish":
                await self._publish(frame)
            else:
                self._send({"type": "pong", "ref": frame.ref})
        except WindsockError as exc:
            self.connections.errors[exc.code] += 1
            reply: dict[str, Any] = exc.as_dict()
            if frame is not None:
                reply.update(channel=frame.channel or None, ref=frame.ref)
            else:
                reply.update(ref=exc.ref)
            self._send(reply)

    async def _subscribe(self, frame: ClientFrame) -> None:
        channel = frame.channel
        if self.config.subscribe_secret and self.namespaces(channel).token:
            if self.grant is None:
                self.close(CLOSE_UNAUTHORIZED, f"channel {channel} needs a subscribe token")
                return
            if not self.grant.allows(channel):
                # Nothing is delivered to a client that asks beyond its token.
                self.close(CLOSE_FORBIDDEN, f"token does not allow channel {channel}")
                return
        if channel in self.channels:
            # A repeated subscribe is a request to resume from a new position.
            self.hub.unsubscribe(channel, self)
        elif len(self.channels) >= self.config.max_channels:
            raise WindsockError("too_many_channels", f"at most {self.config.max_channels} channels")
        self.channels.add(channel)
        try:
            await self.hub.subscribe(channel, self, frame.since)
        except WindsockError:
            self.channels.discard(channel)
            raise

    def _unsubscribe(self, frame: ClientFrame) -> None:
        if frame.channel in self.channels:
            self.channels.discard(frame.channel)
            self.hub.unsubscribe(frame.channel, self)
        self._send({"type": "unsubscribed", "channel": frame.channel, "ref": frame.ref})

    async def _publish(self, frame: ClientFrame) -> None:
        if not self.namespaces(frame.channel).client_publish:
            raise WindsockError("forbidden", f"clients may not publish to {frame.channel!r}")
        result = await self.hub.publish(frame.channel, frame.data, key=frame.key, source="websocket")
        reply = {"type": "published", "channel": frame.channel, "id": result.id, "ref": frame.ref}
        if result.duplicate:
            reply["duplicate"] = True
        self._send(reply)

    # The hub's Subscriber interface.

    def deliver(self, message: Message) -> None:
        # = self._write(), one call less per subscriber
        self._coalesce(message.ws_deflated(self.deflate) if self.deflate else message.ws_frame)

    def subscribed(self, channel: str, seq: int, lost: bool) -> None:
        self._send({"type": "subscribed", "channel": channel, "id": seq})
        if lost:
            self.reset(channel, seq)

    def reset(self, channel: str, seq: int) -> None:
        self._write(ws_text_frame(encode_reset(channel, seq)))

    # Writing. Frames are built once per message and written as bytes to the
    # stream, bypassing write_message's per-client encoding and, when nothing
    # is queued, IOStream.write's per-call overhead; several in one loop turn
    # are joined into one write (app.transports.stream).

    def _send(self, obj: dict[str, Any]) -> None:
        # Optional fields are left out rather than sent as null.
        obj = {key: value for key, value in obj.items() if value is not None}
        self._write(ws_text_frame(dumps(obj)))

    def _write(self, frame: bytes) -> None:
        self._coalesce(frame)

    def _emit(self, frame: bytes) -> None:
        conn = self.ws_connection
        # conn.is_closing() without its two calls, as this runs for every
        # subscriber; a closed stream makes write_now raise StreamClosedError.
        if conn is None or conn.stream is None or conn.client_terminated or conn.server_terminated:
            return
        try:
            write_now(conn.stream, frame)
        except StreamBufferFullError:
            self._overflow()
        except StreamClosedError:
            pass

    def _overflow(self) -> None:
        self.hub.slow_consumer()
        log.info("dropping slow consumer %s: outgoing queue full", self.request.remote_ip)
        conn = self.ws_connection
        assert conn is not None
        assert conn.stream is not None
        # Let the close frame queue behind the backlog; the connection ends
        # if the client has not read it and answered within
        # StrictProtocol.close_timeout + linger_timeout.
        conn.stream.max_write_buffer_size = None
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer: outgoing queue full")

    # Lifecycle.

    def heartbeat(self) -> None:
        pass  # pinged on its own timer (below), so pings do not come in one burst

    # Keep-alive pings, as Tornado's websocket_ping_interval/timeout do, but on
    # a timer per connection instead of Tornado's ping task (a Task and its
    # coroutine frames): about 1.3 KiB less per connection.

    @property
    def ping_interval(self) -> float | None:
        return None  # turns Tornado's ping task off; see _ping

    def _ping_every(self) -> float:
        return float(self.settings.get("websocket_ping_interval") or 0)

    def _ping_after(self, delay: float) -> None:
        if delay > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(delay, self._ping)

    def _ping(self) -> None:
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        conn.write_ping(b"")
        interval = self._ping_every()
        timeout = self.ping_timeout
        if timeout is None or timeout > interval:
            timeout = interval
        if timeout <= 0:
            self._ping_after(interval)  # no timeout: ping only
            return
        self._awaiting_pong = True
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(timeout, self._check_pong, interval - timeout)

    def _check_pong(self, rest: float) -> None:
        if self._awaiting_pong:
            self.close(reason="ping timed out")  # as Tornado's own ping task does
            return
        if rest > 0:
            self._ping_after(rest)
        else:
            self._ping()

    def on_pong(self, data: bytes) -> None:
        self._awaiting_pong = False

    def shutdown(self) -> None:
        self.close(CLOSE_GOING_AWAY, "going away")

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames deferred to the end of this loop turn go out before the close
        # frame (an error reply before its 1008, say), not dropped after it.
        self._flush_deferred()
        super().close(code, reason)

    def on_close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        for channel in self.channels:
            self.hub.unsubscribe(channel, self)
        self.channels.clear()
        self.connections.discard(self)
