"""make_app: the route table, with every dependency handed to handlers through initialize()."""

from __future__ import annotations

import tornado.web
from tornado.web import url

from app.config import Settings
from app.errors import WindsockError
from app.hub import Hub
from app.logs import access_log
from app.metrics import MetricsHandler, WorkerCollector, registry_for
from app.namespaces import Namespaces
from app.transports.common import Connections, JsonErrors
from app.transports.health import HealthHandler
from app.transports.http_api import ChannelHandler
from app.transports.sse import EventsHandler
from app.transports.websocket import WebSocketHandler

__all__ = ["make_app"]


class StaticHandler(JsonErrors, tornado.web.StaticFileHandler):
    """The demo page and its scripts (nginx serves the same files in the stack)."""


class NotFoundHandler(JsonErrors):
    def prepare(self) -> None:
        raise WindsockError("not_found")


def make_app(settings: Settings, hub: Hub, connections: Connections) -> tornado.web.Application:
    """Build the Tornado application for one worker."""
    # The hub's namespaces, so what handlers check and what the hub publishes agree.
    namespaces = hub.namespaces or Namespaces(settings)
    live = {"hub": hub, "config": settings, "connections": connections, "namespaces": namespaces}
    return tornado.web.Application(
        [
            url(r"/healthz", HealthHandler, live),
            url(r"/ws", WebSocketHandler, live),
            url(r"/events", EventsHandler, live),
            url(r"/api/channels/([^/]*)", ChannelHandler, live),
            # Not proxied by nginx: Prometheus scrapes each worker's port (docs/metrics.md).
            url(r"/metrics", MetricsHandler, {"registry": registry_for(WorkerCollector(hub, connections))}),
            url(r"/api/.*", NotFoundHandler),
            url(r"/(.*)", StaticHandler, {"path": settings.static_dir, "default_filename": "index.html"}),
        ],
        default_handler_class=NotFoundHandler,
        websocket_ping_interval=settings.heartbeat_interval,
        websocket_ping_timeout=settings.heartbeat_interval,
        websocket_max_message_size=settings.max_message_bytes,
        compress_response=False,
        worker_name=settings.worker_name,
        log_function=access_log,
        errors=connections.errors,  # error answers are counted by code (JsonErrors)
    )
