"""Prometheus metrics the way operators get them: a real Prometheus scraping every worker of the stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.helpers import SSE, WS, http, need_binary, publish
from tests.prometheus import Prometheus
from tests.stack.conftest import NativeStack, start_stack

pytestmark = pytest.mark.stack

WORKERS = 3


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NativeStack, Prometheus]]:
    """A 3-worker native stack, and Debian's Prometheus scraping each worker's /metrics on loopback."""
    need_binary("prometheus")
    tmp = tmp_path_factory.mktemp("metrics")
    stack = start_stack(tmp, workers=WORKERS)
    prometheus = Prometheus(tmp / "prometheus")
    try:
        prometheus.start([f"127.0.0.1:{port}" for port in stack.worker_ports])
        yield stack, prometheus
    finally:
        prometheus.stop()
        stack.stop()


async def test_sums_over_workers_are_exactly_what_happened(scraped: tuple[NativeStack, Prometheus]) -> None:
    """After 20 publishes to 6 subscribers spread by nginx, sum() over the 3 workers gives 20, 120 and 6."""
    stack, prometheus = scraped
    prometheus.wait_for('count(up{job="windsock"} == 1)', WORKERS)
    clients: list[Any] = []
    for i in range(6):
        if i % 2 == 0:
            ws = await WS.connect(f"{stack.ws}?channel=m.count")
            await ws.recv_type("subscribed")
            clients.append(ws)
        else:
            sse = await SSE.connect(f"{stack.base}/events?channel=m.count")
            await sse.preamble()
            clients.append(sse)
    for n in range(20):
        await publish(stack.base, "m.count", {"n": n})
    envelope_bytes = 0
    for client in clients:
        got = await client.messages(20)
        assert len(got) == 20
        # The envelope is compact JSON in this key order: re-encoding gives its very bytes.
        envelope_bytes += sum(len(orjson.dumps(m)) for m in got)
    status, _, _ = await http("POST", f"{stack.base}/api/channels/m.bad", raw=b"{not json")
    assert status == 400
    writer = await WS.connect(stack.ws)
    await writer.send({"type": "publish", "channel": "chat.m", "data": 1, "ref": 1})
    await writer.recv_type("published")
    prometheus.wait_for('sum(windsock_messages_published_total{source="http"})', 20)
    prometheus.wait_for('sum(windsock_messages_published_total{source="websocket"})', 1)
    prometheus.wait_for("sum(windsock_messages_delivered_total)", 120)
    prometheus.wait_for("sum(windsock_bytes_delivered_total)", envelope_bytes)
    prometheus.wait_for('sum(windsock_connections{transport="sse"})', 3)
    prometheus.wait_for('sum(windsock_connections{transport="websocket"})', 4)
    prometheus.wait_for('sum(windsock_errors_total{code="bad_json"})', 1)
    prometheus.wait_for("sum(windsock_broker_up)", WORKERS)
    # Every worker publishes its ops report each second, so each has timed a round trip to Redis.
    prometheus.wait_for("count(windsock_broker_round_trip_seconds > 0)", WORKERS)
    workers = prometheus.query('windsock_connections{transport="sse"}')
    print(f"[metrics] sse connections per worker: {sorted(r['value'][1] for r in workers)}")
    assert len(workers) == WORKERS, "one series per worker: every worker is a target"
    for client in clients:
        client.close()
    writer.close()


async def test_metrics_are_not_served_through_nginx(scraped: tuple[NativeStack, Prometheus]) -> None:
    """GET /metrics through nginx is 404: the counters are for Prometheus on the workers' ports only."""
    stack, _ = scraped
    status, _, _ = await http("GET", f"{stack.base}/metrics")
    assert status == 404
    status, _, response = await http("GET", f"http://127.0.0.1:{stack.worker_ports[0]}/metrics")
    assert status == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert b"windsock_messages_delivered_total" in response.body
