"""The live ops view's data: every process publishes its own counters on the ops channel each second.

The counters are the ones /metrics exports (app/stats.py and the
connections'), sent as they are: the page (app/static/ops.js) keeps each
worker's latest report and turns counter deltas into rates itself, so no
second aggregation is written here. A report that cannot be published (the
broker is away) is skipped; the page shows that worker as silent.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from tornado.ioloop import PeriodicCallback

from app.errors import WindsockError
from app.hub import Hub
from app.messages import dumps
from app.transports.common import Connections

__all__ = ["OPS_CHANNEL", "OpsReporter"]

OPS_CHANNEL = "windsock.ops"

log = logging.getLogger("windsock.ops")


class OpsReporter:
    """Publishes ``snapshot()`` on OPS_CHANNEL every ``interval`` seconds."""

    def __init__(self, hub: Hub, connections: Connections, worker: str, role: str, interval: float) -> None:
        self.hub = hub
        self.connections = connections
        self.worker = worker
        self.role = role
        self._timer = PeriodicCallback(self._report, interval * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def snapshot(self) -> dict[str, Any]:
        """This process's counters now, as the ops page reads them."""
        stats = self.hub.stats
        return {
            "worker": self.worker,
            "role": self.role,
            "pid": os.getpid(),
            "t": round(time.time(), 3),
            "broker_up": self.hub.healthy,
            "connections": self.connections.counts(),
            # The reports themselves are left out of what came in.
            "published": sum(n for source, n in stats.published.items() if source != "ops"),
            "received": stats.messages,
            "delivered": stats.deliveries,
            "bytes": stats.bytes,
            "slow_consumers": stats.slow_consumers,
            "resets": stats.resets,
        }

    async def _report(self) -> None:
        try:
            await self.hub.publish(OPS_CHANNEL, dumps(self.snapshot()), source="ops")
        except WindsockError as exc:
            log.debug("ops report not published: %s", exc)
