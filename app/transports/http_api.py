"""/api/channels/NAME: publish over HTTP (POST) and read a channel's state (GET)."""

from __future__ import annotations

import hmac

import orjson
import tornado.web

from app.auth import verify_token
from app.channels import InvalidChannel, check_channel
from app.client_frames import parse_idempotency_key
from app.errors import WindsockError
from app.messages import dumps
from app.transports.common import CoreHandler, token_from
from app.transports.tornado_compat import set_max_body_size

__all__ = ["ChannelHandler"]

_TRUE = {"1", "true", "yes"}


# Over-size bodies up to this are read (and dropped) before the 413; it is
# nginx's client_max_body_size, so nothing nginx passes on is refused unread.
_DRAIN_LIMIT = 1024 * 1024


@tornado.web.stream_request_body
class ChannelHandler(CoreHandler):
    """POST publishes the JSON body as ``data``; GET answers the latest message and counts."""

    def setup(self) -> None:
        self.body = bytearray()
        self.too_large = False
        self.counted = False

    def prepare(self) -> None:
        try:
            self.channel = check_channel(self.path_args[0])
        except InvalidChannel as exc:
            raise WindsockError("bad_channel", str(exc)) from None
        if self.request.method != "POST":
            self._authorize_read()
            return
        if self.connections.draining:
            # Refused before anything is published, so a retry elsewhere
            # cannot publish the same data twice.
            raise WindsockError("shutting_down")
        self._authorize()
        limit = self.config.max_message_bytes
        declared = self.request.headers.get("Content-Length", "0")
        assert self.request.connection is not None
        drain = max(_DRAIN_LIMIT, limit + 1)
        if declared.isdigit() and int(declared) > drain:
            raise WindsockError("too_large", f"body is larger than {limit} bytes")
        # An over-size body up to the drain limit is read and dropped, never
        # buffered, and refused once read (in post). Refused unread, the
        # connection is closed under a proxy still sending the body: nginx
        # then answers 502 no_worker (retry!) instead of this 413.
        set_max_body_size(self.request.connection, drain)
        self.too_large = declared.isdigit() and int(declared) > limit
        self.connections.begin_request()
        self.counted = True

    def _authorize(self) -> None:
        key = self.config.publish_key
        if not key:
            return
        given = self.request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise WindsockError("unauthorized", "publishing needs 'Authorization: Bearer <PUBLISH_KEY>'")

    def _authorize_read(self) -> None:
        """Reading a channel's latest message needs what subscribing needs (its namespace's token rule)."""
        secret = self.config.subscribe_secret
        if not secret or not self.namespaces(self.channel).token:
            return
        token = token_from(self)
        key = self.config.publish_key
        if key and token and hmac.compare_digest(token.encode(), key.encode()):
            return  # the publisher's key reads too
        if not verify_token(token, secret).allows(self.channel):
            raise WindsockError("forbidden", f"token does not allow channel {self.channel}")

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        self._uncount()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.connections.end_request()

    def data_received(self, chunk: bytes) -> None:
        if self.too_large:
            return  # drained, not kept
        self.body += chunk
        if len(self.body) > self.config.max_message_bytes:
            self.too_large = True
            self.body = bytearray()

    async def post(self, name: str) -> None:
        if self.too_large:
            raise WindsockError("too_large", f"body is larger than {self.config.max_message_bytes} bytes")
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise WindsockError("bad_json", f"body is not valid JSON: {exc}") from None
        skip = self.get_argument("skip_unchanged", "").lower() in _TRUE
        key = self.request.headers.get("Idempotency-Key")
        if key is not None:
            key = parse_idempotency_key(key)
        result = await self.hub.publish(self.channel, dumps(data), skip_unchanged=skip, key=key)
        if result.duplicate:
            # 200, not 202: nothing new was accepted, and the id is the first publish's.
            self.finish({"id": result.id, "channel": self.channel, "duplicate": True})
        elif result.skipped:
            self.finish({"id": result.id, "channel": self.channel, "skipped": True})
        else:
            self.set_status(202)
            self.finish({"id": result.id, "channel": self.channel})

    async def get(self, name: str) -> None:
        history = await self.hub.history(self.channel)
        latest = history.messages[-1] if history.messages else None
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        # The latest envelope is spliced in as stored: no decode and re-encode.
        self.finish(
            b'{"channel":"%s","latest":%s,"history":%d,"subscribers":%d,"namespace":%s}'
            % (
                self.channel.encode(),
                latest.envelope if latest else b"null",
                len(history.messages),
                self.hub.subscriber_count(self.channel),
                dumps(self.namespaces(self.channel).describe()),
            )
        )
