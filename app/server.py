"""Lifecycle of one worker: start, serve, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from app.brokers import make_broker
from app.config import Settings
from app.hub import Hub
from app.namespaces import Namespaces
from app.ops import OpsReporter
from app.sources import Sources, start_sources
from app.transports.common import Connections
from app.web import make_app

__all__ = ["Server", "run"]

log = logging.getLogger("windsock.server")


class Server:
    """One Windsock worker: broker, hub, HTTP server, and the sources in SOURCES."""

    role = "worker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub(
            make_broker(settings),
            grace=settings.unsubscribe_grace,
            namespaces=Namespaces.from_settings(settings),
        )
        self.connections = Connections(settings.heartbeat_interval)
        self.http: HTTPServer | None = None
        self.sources: Sources | None = None
        self.ops: OpsReporter | None = None
        self.port = settings.port

    async def start(self) -> int:
        """Connect the broker and start listening; returns the bound port."""
        await self.hub.start()
        self.connections.start()
        sockets = bind_sockets(self.settings.port, self.settings.host, family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        # Built after binding, so a worker started on port 0 names its real port.
        self.settings = dataclasses.replace(self.settings, port=self.port)
        app = self.application()
        # xheaders: behind nginx, X-Real-IP / X-Forwarded-Proto are the truth.
        # idle_connection_timeout also bounds how long request headers may
        # take, which is what ends slowloris-style half-open requests.
        self.http = HTTPServer(app, xheaders=True, idle_connection_timeout=self.settings.header_timeout)
        self.http.add_sockets(sockets)
        log.info(
            "%s %s listening on http://%s:%d (broker %s)",
            self.role,
            self.settings.worker_name,
            self.settings.host,
            self.port,
            self.settings.broker_url.split("://")[0],
        )
        if self.settings.sources:
            self.sources = await start_sources(self.settings, self.hub)
        if self.settings.ops_interval:
            self.ops = OpsReporter(
                self.hub, self.connections, self.settings.worker_name, self.role, self.settings.ops_interval
            )
            self.ops.start()
        return self.port

    def application(self) -> tornado.web.Application:
        """The routes this process serves."""
        return make_app(self.settings, self.hub, self.connections)

    async def stop(self) -> None:
        """Stop the sources, stop accepting, ask clients to go elsewhere, wait for them, then close."""
        if self.ops is not None:
            self.ops.stop()
        if self.sources is not None:
            # First, so a standby ingest process can take the leases while we drain.
            await self.sources.stop()
        if self.http is not None:
            self.http.stop()
        left = await self.connections.drain(self.settings.shutdown_timeout)
        if left:
            log.warning(
                "%d connections still open after %.1f s; closing them", left, self.settings.shutdown_timeout
            )
        # Publishes still in progress finish before their connections close:
        # closing first would answer 502 to a publish Redis already took.
        busy = await self.connections.finish_requests(self.settings.shutdown_timeout)
        if busy:
            log.warning("%d publishes still in progress after %.1f s", busy, self.settings.shutdown_timeout)
        if self.http is not None:
            await asyncio.wait_for(self.http.close_all_connections(), 2.0)
        await self.hub.stop()


async def stop_requested() -> None:
    """Return on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run(settings: Settings, kind: type[Server] = Server) -> None:
    """Serve until SIGTERM or SIGINT, then drain; also stop what started if starting fails."""
    server = kind(settings)
    try:
        await server.start()
        await stop_requested()
        log.info("draining %s", server.connections.counts() or "no connections")
    finally:
        await server.stop()
