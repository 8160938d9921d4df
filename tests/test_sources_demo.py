"""The built-in demo source: simulated sensors and a ticker, with no network."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import SSE, UNIT, WAIT, WS, eventually

SENSOR_CHANNELS = ("sensors.demo-1", "sensors.demo-2", "sensors.demo-3")


async def hang_up(*clients: WS | SSE) -> None:
    """Close WebSocket and SSE clients and wait until their sockets are closed.

    A WebSocket client closes its socket only when it reads the server's
    close frame, which may sit behind messages still in flight; had the
    test's event loop ended first, the socket would leak.
    """

    async def closed(client: WS | SSE) -> None:
        client.close()
        if isinstance(client, SSE):
            await client.writer.wait_closed()
            return
        while await client.conn.read_message() is not None:
            pass

    await asyncio.wait_for(asyncio.gather(*(closed(client) for client in clients)), WAIT)


async def test_demo_publishes_sensor_readings_and_a_ticker(make_server: Any) -> None:
    """Each demo sensor channel gets readings shaped like UDP ones, and demo.ticker gets prices."""
    server = await make_server(sources=("demo",), demo_rate=50)
    connections = {}
    for channel in (*SENSOR_CHANNELS, "demo.ticker"):
        connections[channel] = ws = await WS.connect(server.ws)
        await ws.subscribe(channel)
    for channel in SENSOR_CHANNELS:
        readings = [m["data"] for m in await connections[channel].messages(10)]
        assert {r["sensor"] for r in readings} == {channel.removeprefix("sensors.")}
        assert all(set(r) == {"sensor", "temperature", "humidity", "ts"} for r in readings)
        assert all(5 <= r["temperature"] <= 35 and 0.2 <= r["humidity"] <= 0.95 for r in readings)
        assert [r["ts"] for r in readings] == sorted(r["ts"] for r in readings)
        assert len({r["temperature"] for r in readings}) > 1, "a random walk moves"
    prices = [m["data"] for m in await connections["demo.ticker"].messages(10)]
    assert all(p["symbol"] == "WSK" and p["price"] > 0 for p in prices)
    assert len({p["price"] for p in prices}) > 1
    await hang_up(*connections.values())


async def test_demo_rate(make_server: Any) -> None:
    """DEMO_RATE sets messages per second per channel: 21 ticks at 20/s span about one second."""
    server = await make_server(sources=("demo",), demo_rate=20)
    ws = await WS.connect(server.ws)
    await ws.subscribe("demo.ticker")
    ticks = [m["data"]["ts"] for m in await ws.messages(21)]
    span = ticks[-1] - ticks[0]
    # Never faster than the rate; slower only on a machine too busy to keep it.
    assert 0.95 <= span <= 1.0 + 1.0 * UNIT, span
    await hang_up(ws)


async def test_demo_runs_once_across_processes_sharing_redis(redis_server: Any, make_server: Any) -> None:
    """With Redis, two processes running the demo publish once: one holds its lease, the other stands by."""
    first = await make_server(redis_url=redis_server.url, sources=("demo",), lease_seconds=1)
    second = await make_server(redis_url=redis_server.url, sources=("demo",), lease_seconds=1)

    def roles() -> list[str]:
        return sorted(s.sources.leases.status()["demo"] for s in (first, second))

    await eventually(lambda: roles() == ["active", "standby"])
    active, standby = (first, second) if first.sources.one("demo").published else (second, first)
    assert standby.sources.one("demo").published == 0
    # A clean stop releases the lease, so the standby takes over without waiting for it to expire.
    await active.sources.stop()
    await eventually(lambda: standby.sources.one("demo").published > 0)
    assert standby.sources.leases.status() == {"demo": "active"}
