"""GET /healthz: is this worker able to deliver, and who is it."""

from __future__ import annotations

import os

from app.transports.common import CoreHandler

__all__ = ["HealthHandler"]


class HealthHandler(CoreHandler):
    """200 with status ``ok``; 503 while the broker is unreachable or the worker drains."""

    def get(self) -> None:
        healthy = self.hub.healthy
        status = "draining" if self.connections.draining else ("ok" if healthy else "degraded")
        hub = self.hub.status()
        self.set_status(200 if status == "ok" else 503)
        self.set_header("Cache-Control", "no-store")
        self.finish(
            {
                "status": status,
                "worker": self.config.worker_name,
                "pid": os.getpid(),
                "broker": hub.pop("broker"),
                "hub": hub,
                "connections": self.connections.counts(),
            }
        )
