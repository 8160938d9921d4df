"""A process's counters: plain integers, bumped on the hot path, read by /metrics and /healthz.

The fan-out adds to them once per message, never once per subscriber, and
nothing here allocates, locks or formats: app/metrics.py turns them into
Prometheus metrics only when a scrape asks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Stats"]


@dataclass(slots=True)
class Stats:
    """What one worker (or the ingest process) has done since it started."""

    messages: int = 0  # messages the broker delivered to this process, on subscribed channels
    deliveries: int = 0  # messages handed to local subscribers (one per subscriber)
    # Their envelopes' bytes: counted once per message, as the transports' exact
    # byte counts would cost every delivery a Python attribute update.
    bytes: int = 0
    slow_consumers: int = 0
    resets: int = 0
    published: Counter[str] = field(default_factory=Counter)  # by source: http, websocket, udp, ...

    def health(self) -> dict[str, int]:
        """The counters /healthz shows under ``hub``."""
        return {"messages": self.messages, "slow_consumers": self.slow_consumers, "resets": self.resets}
