"""Brokers carry messages between processes; the URL scheme picks one."""

from __future__ import annotations

from app.brokers.base import Broker, History, PublishResult
from app.config import Settings

__all__ = ["Broker", "History", "PublishResult", "make_broker"]


def make_broker(settings: Settings) -> Broker:
    """Build the broker named by ``settings.broker_url`` (``memory://`` or ``redis://``).

    Backends are imported lazily so the embedded mode never imports redis.
    """
    scheme = settings.broker_url.split("://", 1)[0]
    if scheme == "memory":
        from app.brokers.memory import MemoryBroker

        return MemoryBroker(settings.history_size, settings.history_ttl, settings.idempotency_window)
    from app.brokers.redis import RedisBroker

    return RedisBroker(
        settings.broker_url,
        prefix=settings.redis_prefix,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
        idempotency_window=settings.idempotency_window,
    )
