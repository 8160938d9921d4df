"""The demo source: simulated sensors and a ticker, so a fresh `python -m app` shows live data.

It needs no network. The sensor model is shared with the UDP simulator
(``python -m app.tools.sensor``), so demo readings and simulated datagrams
look alike.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.hub import Hub
from app.messages import dumps
from app.sources.base import Publisher, unix_time

if TYPE_CHECKING:
    from app.sources.registry import Sources

__all__ = ["DEMO_SENSORS", "TICKER", "DemoSource", "SensorModel", "start"]

DEMO_SENSORS = ("demo-1", "demo-2", "demo-3")
TICKER = "demo.ticker"


def _walk(rng: random.Random, value: float, step: float, lo: float, hi: float) -> float:
    """One random-walk step that is reflected back inside [lo, hi]."""
    value += rng.gauss(0.0, step)
    if value < lo:
        value = 2 * lo - value
    elif value > hi:
        value = 2 * hi - value
    return min(max(value, lo), hi)


class SensorModel:
    """A greenhouse sensor: temperature (degrees C) and relative humidity (0-1) as bounded random walks."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self._rng = rng
        self._temperature = rng.uniform(18.0, 24.0)
        self._humidity = rng.uniform(0.45, 0.65)

    def reading(self) -> dict[str, Any]:
        """The next reading, as a sensor would send it (the receiver stamps the time)."""
        self._temperature = _walk(self._rng, self._temperature, 0.1, 5.0, 35.0)
        self._humidity = _walk(self._rng, self._humidity, 0.005, 0.2, 0.95)
        return {
            "sensor": self.name,
            "temperature": round(self._temperature, 2),
            "humidity": round(self._humidity, 3),
        }


class DemoSource:
    """Publishes one reading per demo sensor and one ticker price, ``rate`` times a second."""

    def __init__(self, publish: Publisher, rate: float, rng: random.Random | None = None) -> None:
        self._publish = publish
        self._period = 1.0 / rate
        self._rng = rng or random.Random()
        self._sensors = [SensorModel(name, self._rng) for name in DEMO_SENSORS]
        self._price = 100.0
        self.published = 0

    def status(self) -> dict[str, Any]:
        return {"published": self.published, "publish_errors": self._publish.errors}

    async def run(self) -> None:
        """Publish until cancelled, at a steady rate that does not drift with publish latency."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            ts = unix_time()
            for sensor in self._sensors:
                await self._send(f"sensors.{sensor.name}", {**sensor.reading(), "ts": ts})
            # A geometric walk: prices move by percentages and never go negative.
            self._price = round(self._price * (1.0 + self._rng.gauss(0.0, 0.002)), 2)
            await self._send(TICKER, {"symbol": "WSK", "price": self._price, "ts": ts})
            next_at += self._period
            delay = next_at - loop.time()
            if delay < 0:
                # Behind (a slow broker): carry on from now rather than burst to catch up.
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    async def _send(self, channel: str, data: dict[str, Any]) -> None:
        if await self._publish(channel, dumps(data)) is not None:
            self.published += 1


async def start(settings: Settings, hub: Hub, sources: Sources) -> None:
    """The ``demo`` source: simulated sensors and a ticker at DEMO_RATE."""
    demo = DemoSource(Publisher(hub, "demo"), settings.demo_rate)
    sources.add("demo", demo)
    sources.spawn("demo", demo.run)
