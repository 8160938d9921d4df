"""The ingest process (`python -m app ingest`): runs the sources and serves only /healthz and /metrics.

In a deployment the workers run no sources; one or more ingest processes
do, publishing through the same Redis. Leases make each poller run in only
one of them, so running two is safe and gives a standby.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import tornado.web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.config import Settings
from app.metrics import MetricsHandler, WorkerCollector, counter, labelled, registry_for
from app.server import Server, run
from app.transports.common import JsonErrors
from app.web import NotFoundHandler

__all__ = ["Ingest", "run_ingest"]

log = logging.getLogger("windsock.ingest")


class IngestHealthHandler(JsonErrors):
    """200 ``ok`` with each source's counters; 503 ``degraded`` while the broker is unreachable."""

    def initialize(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def get(self) -> None:
        ingest = self.ingest
        healthy = ingest.hub.healthy
        self.set_status(200 if healthy else 503)
        self.set_header("Cache-Control", "no-store")
        self.finish(
            {
                "status": "ok" if healthy else "degraded",
                "role": ingest.role,
                "worker": ingest.settings.worker_name,
                "pid": os.getpid(),
                "broker": ingest.hub.status()["broker"],
                "sources": ingest.sources.status() if ingest.sources is not None else {},
            }
        )


class Ingest(Server):
    """A server whose HTTP side is only /healthz, for supervisor or docker: the sources are its work."""

    role = "ingest"

    def application(self) -> tornado.web.Application:
        registry = registry_for(WorkerCollector(self.hub, self.connections, extra=self.source_metrics))
        return tornado.web.Application(
            [
                (r"/healthz", IngestHealthHandler, {"ingest": self}),
                (r"/metrics", MetricsHandler, {"registry": registry}),
            ],
            default_handler_class=NotFoundHandler,
            errors=self.connections.errors,
        )

    def source_metrics(self) -> Iterator[Metric]:
        """The sources' counters: UDP datagrams by fate, and each poller's state and failures."""
        sources = self.sources
        udp = sources.one("udp") if sources is not None else None
        if udp is not None:
            yield counter("windsock_udp_received", "Datagrams received", udp.received)
            yield counter("windsock_udp_duplicates", "Resent readings not published", udp.duplicates)
            dropped = CounterMetricFamily(
                "windsock_udp_dropped", "Datagrams dropped, by reason", labels=["reason"]
            )
            yield labelled(dropped, dict(udp.dropped))
        pollers = sources.of("pollers") if sources is not None else []
        if pollers:
            up = GaugeMetricFamily(
                "windsock_poller_up", "1 while a poller's last fetch succeeded", labels=["poller"]
            )
            yield labelled(up, {p.config.name: int(p.state == "ok") for p in pollers})
            failed = CounterMetricFamily(
                "windsock_poller_fetch_failures", "Failed fetches", labels=["poller"]
            )
            yield labelled(failed, {p.config.name: p.failed_fetches for p in pollers})


async def run_ingest(settings: Settings) -> None:
    """Run the sources until SIGTERM or SIGINT, then stop cleanly (leases are released)."""
    if not settings.sources:
        log.warning("SOURCES is empty: this ingest process has nothing to run")
    if not settings.redis_url:
        log.warning("no REDIS_URL: what the sources publish stays inside this process")
    await run(settings, Ingest)
