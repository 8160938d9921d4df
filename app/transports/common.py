"""What every transport shares: JSON error bodies, the origin rule, the open-connection registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import tornado.httputil
import tornado.web
from tornado.ioloop import PeriodicCallback

from app.channels import InvalidChannel, check_channel
from app.errors import ERRORS, WindsockError
from app.transports.stream import WriteTurns
from app.transports.tornado_compat import status_reason

if TYPE_CHECKING:
    from app.config import Settings
    from app.hub import Hub
    from app.namespaces import Namespaces

__all__ = [
    "Connection",
    "Connections",
    "CoreHandler",
    "JsonErrors",
    "channels_from_query",
    "origin_allowed",
    "public_host",
    "token_from",
]

_CODE_BY_STATUS = {status: code for code, (status, _) in reversed(ERRORS.items())}


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Apply the cross-origin rule for /ws and /events.

    No Origin header means a non-browser client, which cross-site hijacking
    cannot involve. With an allow-list the origin must be on it; without one
    its host must equal ``host``, port included: the public host the browser
    asked for (see ``public_host``).
    """
    if origin is None:
        return True
    origin = origin.lower().rstrip("/")
    if allowed:
        return "*" in allowed or origin in {a.lower().rstrip("/") for a in allowed}
    return urlsplit(origin).netloc == (host or "").lower()


def public_host(headers: tornado.httputil.HTTPHeaders) -> str | None:
    """The host a browser addressed: X-Forwarded-Host's first entry where a proxy set one, else Host.

    Behind a TLS-terminating proxy that rewrites Host, only X-Forwarded-Host
    still names the page's origin. A browser cannot set that header itself, so
    trusting it cannot let a cross-site page through.
    """
    forwarded = headers.get("X-Forwarded-Host", "").split(",", 1)[0].strip()
    return forwarded or headers.get("Host")


class JsonErrors(tornado.web.RequestHandler):
    """Answers every error with ``{"type": "error", "code": ..., "message": ...}``, never a traceback."""

    def set_default_headers(self) -> None:
        # Behind nginx, this is how a client or an operator tells which worker
        # answered (the WebSocket handshake carries it too).
        worker = self.application.settings.get("worker_name")
        if worker:
            self.set_header("X-Windsock-Worker", worker)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, WindsockError):
            body = exc.as_dict()
        else:
            code = _CODE_BY_STATUS.get(status_code, "internal_error")
            body = {"type": "error", "code": code, "message": status_reason(self)}
        errors = self.application.settings.get("errors")
        if errors is not None:
            errors[body["code"]] += 1
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def check_origin_header(self, allowed: tuple[str, ...]) -> None:
        """Raise 403 ``forbidden`` if the request comes from a browser origin not allowed."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, public_host(self.request.headers), allowed):
            raise WindsockError("forbidden", f"origin {origin[:200]!r} is not allowed")


class CoreHandler(JsonErrors):
    """A handler of the core: initialize() stores the hub, the settings and this process's connections.

    Subclasses set up their per-request state in ``setup``, so the
    dependencies are received in one place.
    """

    def initialize(
        self, hub: Hub, config: Settings, connections: Connections, namespaces: Namespaces
    ) -> None:
        self.hub = hub
        self.config = config
        self.connections = connections
        self.namespaces = namespaces
        self.setup()

    def setup(self) -> None:
        """Per-request state, for subclasses; called at the end of initialize()."""

    def stream_channels(self) -> list[str]:
        """The checks before a stream opens: not draining, an allowed origin, valid ``?channel=`` names.

        Raises:
            WindsockError: ``shutting_down``, ``forbidden``, ``bad_channel`` or ``too_many_channels``.
        """
        if self.connections.draining:
            raise WindsockError("shutting_down")
        self.check_origin_header(self.config.allowed_origins)
        return channels_from_query(self, self.config.max_channels)


class Connection(Protocol):
    kind: str

    def heartbeat(self) -> None: ...

    def shutdown(self) -> None: ...


class Connections:
    """The open client connections of this process: heartbeats, counts, and the drain on shutdown."""

    def __init__(self, heartbeat_interval: float) -> None:
        self.write_turns = WriteTurns()
        self._open: set[Connection] = set()
        self._counts: dict[str, int] = {}
        self._beat = PeriodicCallback(self._heartbeat, heartbeat_interval * 1000)
        self.draining = False
        self._emptied = asyncio.Event()
        # Publishes being handled: a worker must not close their connections
        # mid-request, or a publish Redis accepted is answered with a 502.
        self.requests = 0
        self._no_requests = asyncio.Event()
        # For /metrics: error answers and frames by code, and rate-limit closes.
        self.errors: Counter[str] = Counter()
        self.rate_limited = 0

    def start(self) -> None:
        self._beat.start()

    def add(self, conn: Connection) -> None:
        if conn not in self._open:
            self._open.add(conn)
            self._counts[conn.kind] = self._counts.get(conn.kind, 0) + 1

    def discard(self, conn: Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._counts[conn.kind] -= 1
        if not self._open:
            self._emptied.set()

    def begin_request(self) -> None:
        self.requests += 1

    def end_request(self) -> None:
        self.requests -= 1
        if not self.requests:
            self._no_requests.set()

    async def finish_requests(self, seconds: float) -> int:
        """Wait up to ``seconds`` for requests in progress; return how many remain."""
        if self.requests:
            self._no_requests.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_requests.wait(), seconds)
        return self.requests

    def count(self, kind: str) -> int:
        return self._counts.get(kind, 0)

    def counts(self) -> dict[str, int]:
        return {kind: n for kind, n in self._counts.items() if n}

    def _heartbeat(self) -> None:
        for conn in list(self._open):
            conn.heartbeat()

    async def drain(self, seconds: float) -> int:
        """Ask every connection to leave, wait up to ``seconds``; return how many remain."""
        self.draining = True
        self._beat.stop()
        for conn in list(self._open):
            conn.shutdown()
        if self._open:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), seconds)
        return len(self._open)


def token_from(handler: tornado.web.RequestHandler) -> str | None:
    """The subscribe token: ``?token=`` (browsers cannot set WebSocket headers) or a bearer header."""
    token = handler.get_argument("token", None)
    if token:
        return token
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def channels_from_query(handler: tornado.web.RequestHandler, limit: int) -> list[str]:
    """Read ``?channel=`` (repeatable) into a de-duplicated list, or raise 400."""
    names = list(dict.fromkeys(handler.get_arguments("channel")))
    if len(names) > limit:
        raise WindsockError("too_many_channels", f"at most {limit} channels")
    try:
        return [check_channel(name) for name in names]
    except InvalidChannel as exc:
        raise WindsockError("bad_channel", str(exc)) from None
