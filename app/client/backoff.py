"""Reconnect delays: exponential backoff with jitter, as windsock.js waits. Pure."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int, min_delay: float, max_delay: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``min_delay * 2**attempt`` capped at ``max_delay``,
    jittered to between half and all of that."""
    step = min(max_delay, min_delay * 2 ** min(attempt, 62))
    return float(step / 2 + rand() * step / 2)
