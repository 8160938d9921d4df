"""The UDP sensor listener: one JSON object per datagram, published to a channel chosen by rule.

Datagrams are parsed in the protocol callback and queued; one task publishes
them in arrival order. The queue is bounded, so a flood costs dropped
datagrams, never memory or a blocked event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson

from app.channels import InvalidChannel, check_channel
from app.client_frames import parse_idempotency_key
from app.config import ConfigError, Settings
from app.errors import WindsockError
from app.hub import Hub
from app.messages import dumps
from app.sources.base import Publisher, Throttle, held_back, stop_tasks, unix_time

if TYPE_CHECKING:
    from app.sources.registry import Sources

__all__ = ["BadDatagram", "UdpListener", "parse_datagram", "start"]

log = logging.getLogger("windsock.udp")

# Readings waiting for the broker. Past this the listener drops ("overload")
# rather than let a flood or a slow broker grow memory without bound.
_QUEUE = 1024
# Bad datagrams are logged at most this often per sender address.
_LOG_INTERVAL = 60.0


class BadDatagram(ValueError):
    """A datagram that cannot be published; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_datagram(
    raw: bytes, *, token: str = "", max_bytes: int = 8192, received: float = 0.0
) -> tuple[str, bytes, str | None]:
    """Turn one datagram into (channel, encoded data, idempotency key), stamped with ``received`` as ``ts``.

    The channel is the ``channel`` field if present, else ``sensors.<sensor>``
    if there is a ``sensor`` field, else ``sensors``. The ``channel``,
    ``token`` and ``idempotency_key`` fields are routing, not data, and are
    stripped. A sensor that sends a reading again (UDP gives no delivery
    receipt) sends it with the same ``idempotency_key``, so it is published once.

    Raises:
        BadDatagram: reason ``too_large``, ``not_utf8``, ``bad_json``,
            ``not_object``, ``bad_token``, ``bad_key`` or ``bad_channel``.
    """
    if len(raw) > max_bytes:
        raise BadDatagram("too_large", f"{len(raw)} bytes is over UDP_MAX_BYTES={max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadDatagram("not_utf8", "not UTF-8") from None
    try:
        reading: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadDatagram("bad_json", f"not JSON: {exc}") from None
    if not isinstance(reading, dict):
        raise BadDatagram("not_object", f"a JSON {type(reading).__name__}, not an object")
    sent = reading.pop("token", None)
    if token and not (isinstance(sent, str) and hmac.compare_digest(sent.encode(), token.encode())):
        raise BadDatagram("bad_token", "missing or wrong token")
    key = reading.pop("idempotency_key", None)
    if key is not None:
        try:
            key = parse_idempotency_key(key)
        except WindsockError as exc:
            raise BadDatagram("bad_key", exc.message) from None
    reading["ts"] = received
    return _channel(reading), dumps(reading), key


def _channel(reading: dict[str, Any]) -> str:
    try:
        if "channel" in reading:
            return check_channel(reading.pop("channel"))
        sensor = reading.get("sensor")
        if sensor is None:
            return "sensors"
        if not isinstance(sensor, str):
            raise InvalidChannel("'sensor' must be a string")
        return check_channel(f"sensors.{sensor}")
    except InvalidChannel as exc:
        raise BadDatagram("bad_channel", str(exc)) from None


class UdpListener(asyncio.DatagramProtocol):
    """Receives sensor datagrams and publishes the good ones; counts the bad ones by reason."""

    def __init__(self, publish: Publisher, *, token: str = "", max_bytes: int = 8192) -> None:
        self.port = 0
        self.received = 0
        self.published = 0
        self.duplicates = 0  # readings sent again under an idempotency key already published
        self.dropped: Counter[str] = Counter()
        self._publish = publish
        self._token = token
        self._max_bytes = max_bytes
        self._throttle = Throttle(_LOG_INTERVAL)
        self._queue: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue(_QUEUE)
        self._transport: asyncio.DatagramTransport | None = None
        self._sender: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind ``host:port`` (0: any free port, see ``self.port``) and start publishing."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._sender = asyncio.create_task(self._send(), name="udp-publisher")
        log.info("listening for sensor datagrams on udp://%s:%d", host, self.port)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._sender is not None:
            await stop_tasks([self._sender], 2.0)

    def status(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "received": self.received,
            "published": self.published,
            "duplicates": self.duplicates,
            "dropped": dict(self.dropped),
            "publish_errors": self._publish.errors,
        }

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        try:
            reading = parse_datagram(data, token=self._token, max_bytes=self._max_bytes, received=unix_time())
            self._queue.put_nowait(reading)
        except BadDatagram as exc:
            self._drop(exc.reason, str(exc), addr)
        except asyncio.QueueFull:
            self._drop("overload", "the broker is not keeping up", addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and the like: nothing to do with the datagrams we get.
        log.debug("udp socket error: %s", exc)

    def _drop(self, reason: str, detail: str, addr: Any) -> None:
        self.dropped[reason] += 1
        host = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        held = self._throttle(host)
        if held is not None:
            log.warning("dropped a datagram from %s: %s: %s%s", host, reason, detail[:200], held_back(held))

    async def _send(self) -> None:
        while True:
            channel, data, key = await self._queue.get()
            result = await self._publish(channel, data, key=key)
            if result is not None and result.duplicate:
                self.duplicates += 1
            elif result is not None:
                self.published += 1


async def start(settings: Settings, hub: Hub, sources: Sources) -> None:
    """The ``udp`` source: listen for sensor datagrams on UDP_HOST:UDP_PORT.

    Raises:
        ConfigError: the port cannot be bound.
    """
    udp = UdpListener(Publisher(hub, "udp"), token=settings.udp_token, max_bytes=settings.udp_max_bytes)
    try:
        await udp.start(settings.udp_host, settings.udp_port)
    except OSError as exc:
        raise ConfigError(
            f"UDP_PORT={settings.udp_port}: cannot listen on {settings.udp_host}: {exc.strerror}"
        ) from None
    sources.add("udp", udp, stop=udp.stop)
