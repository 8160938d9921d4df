"""Per-phase delivery counts and latency histograms, shared by the load generator and the bench.

The load generator fills them; the bench merges the histograms of every
load-generator process and reads percentiles off the bucket edges.
"""

from __future__ import annotations

import re
import time
from typing import Any

# The timestamp (CLOCK_MONOTONIC, ns, when the publish was scheduled) and the
# phase number, as the publisher writes them at the start of each message.
STAMP = re.compile(rb'"t":(\d+),"p":(\d+)')

# Latency histogram: 20 us buckets up to 20 ms, then 2 ms buckets up to 60 s.
FINE_US, FINE_STEP, COARSE_STEP = 20_000, 20, 2_000
BUCKETS = FINE_US // FINE_STEP + 60_000_000 // COARSE_STEP


def bucket(lat_us: int) -> int:
    if lat_us < FINE_US:
        return lat_us // FINE_STEP if lat_us > 0 else 0
    return min(BUCKETS - 1, FINE_US // FINE_STEP + (lat_us - FINE_US) // COARSE_STEP)


def bucket_floor_us(index: int) -> int:
    """The lower edge of a bucket, in microseconds (for percentiles)."""
    fine = FINE_US // FINE_STEP
    if index < fine:
        return index * FINE_STEP
    return FINE_US + (index - fine) * COARSE_STEP


class Stats:
    """Per-phase delivery counts and latency histograms for this process."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.hists: dict[int, dict[int, int]] = {}
        self.maxima: dict[int, int] = {}

    def record(self, phase: int, sent_ns: int, now_ns: int) -> None:
        lat_us = (now_ns - sent_ns) // 1000
        counts = self.counts
        counts[phase] = counts.get(phase, 0) + 1
        hist = self.hists.get(phase)
        if hist is None:
            hist = self.hists[phase] = {}
            self.maxima[phase] = 0
        b = bucket(lat_us)
        hist[b] = hist.get(b, 0) + 1
        if lat_us > self.maxima[phase]:
            self.maxima[phase] = lat_us

    def scan(self, data: bytes) -> None:
        """Record every message stamp found in ``data`` (one frame, or a stretch of SSE stream)."""
        now = time.monotonic_ns()
        for m in STAMP.finditer(data):
            self.record(int(m.group(2)), int(m.group(1)), now)

    def report(self, phase: int) -> dict[str, Any]:
        return {
            "count": self.counts.get(phase, 0),
            "hist": self.hists.get(phase, {}),
            "max_us": self.maxima.get(phase, 0),
        }


STATS = Stats()
