"""GET /metrics: a process's counters in Prometheus's text format, through prometheus_client.

The hot path only bumps plain integers (app/stats.py and the transports'
byte count); this collector reads them when Prometheus scrapes. Each worker
answers for itself: Prometheus scrapes every worker port (docs/metrics.md),
so ``sum(...)`` over targets gives the cluster's figures, and no answer
through nginx stands for one random worker (nginx does not proxy /metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.hub import Hub
from app.transports.common import Connections, JsonErrors

__all__ = ["MetricsHandler", "WorkerCollector", "counter", "gauge", "labelled", "registry_for"]


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(family: Any, values: dict[str, int]) -> Any:
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class WorkerCollector(Collector):
    """The metrics of one process: its hub's and broker's counters, and its connections."""

    def __init__(
        self,
        hub: Hub,
        connections: Connections,
        extra: Callable[[], Iterator[Metric]] | None = None,
    ) -> None:
        self.hub = hub
        self.connections = connections
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        stats, status = self.hub.stats, self.hub.status()
        broker = status["broker"]
        yield labelled(
            CounterMetricFamily(
                "windsock_messages_published", "Publishes this process made, by source", labels=["source"]
            ),
            {"http": 0, "websocket": 0, **stats.published},
        )
        yield counter(
            "windsock_messages_received", "Messages the broker brought to this process", stats.messages
        )
        yield counter(
            "windsock_messages_delivered",
            "Messages handed to local subscribers, one per subscriber",
            stats.deliveries,
        )
        yield counter(
            "windsock_slow_consumers",
            "Connections dropped because their queue was full",
            stats.slow_consumers,
        )
        yield counter("windsock_resets", "reset notices sent: history lost for a subscriber", stats.resets)
        yield gauge(
            "windsock_broker_up", "1 while the broker can be reached", 1 if broker.get("healthy") else 0
        )
        yield counter(
            "windsock_broker_reconnects", "Times the broker's pub/sub came back", broker.get("reconnects", 0)
        )
        yield gauge(
            "windsock_broker_round_trip_seconds",
            "How long the last publish to the broker took (Redis; 0 for the memory broker)",
            broker.get("round_trip_ms", 0) / 1000,
        )
        yield gauge("windsock_channels", "Channels with local subscribers", status["channels"])
        yield gauge(
            "windsock_subscriptions", "Local subscriptions (connection x channel)", status["subscriptions"]
        )
        connections = self.connections
        yield counter(
            "windsock_rate_limited",
            "WebSocket connections closed for sending too fast",
            connections.rate_limited,
        )
        yield labelled(
            CounterMetricFamily(
                "windsock_errors", "Error answers and error frames, by code", labels=["code"]
            ),
            dict(connections.errors),
        )
        yield labelled(
            GaugeMetricFamily(
                "windsock_connections", "Open client connections, by transport", labels=["transport"]
            ),
            {"websocket": 0, "sse": 0, **connections.counts()},
        )
        yield counter(
            "windsock_bytes_delivered",
            "Envelope bytes handed to local subscribers (frame headers not counted, deflate not subtracted)",
            stats.bytes,
        )
        if self.extra is not None:
            yield from self.extra()


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of this process's collector alone (not the library's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class MetricsHandler(JsonErrors):
    """GET /metrics: the Prometheus text format of one process's registry."""

    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(generate_latest(self.registry))
