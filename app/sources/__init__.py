"""Ingest sources: live data entering Windsock from UDP sensors, HTTP pollers and the demo.

Every source publishes through the hub, exactly like the HTTP publish API,
so every subscriber on every worker sees its data.

- ``registry``: the kinds by name, started from SOURCES and stopped together;
- ``base``: what every source shares (publishing that never raises, a log
  throttle, time stamps, stopping tasks);
- ``udp``, ``demo``, ``http_poll`` (with ``poll_config``): the kinds;
- ``lease``: one active poller or demo per deployment, through Redis.

Modules inside the package import each other, never this file.
"""

from __future__ import annotations

from app.sources.registry import Sources, check_sources, start_sources

__all__ = ["Sources", "check_sources", "start_sources"]
