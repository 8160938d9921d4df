"""What one phase measured (a Result), the limits that judge it, and figures read off many results.

results.jsonl and summary.json hold Results as JSON objects, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.loadgen.stats import BUCKETS, bucket_floor_us

# A phase passes the saturation step-up with no loss and p99 below this.
SATURATION_P99_MS = 200.0
# The load generator is the limit when it used more than this share of its cores.
LOADGEN_LIMIT = 0.75
# A phase is disturbed when other processes used more than this share of the
# server's cores during it.
OTHER_LOAD_LIMIT = 20.0


@dataclass
class Result:
    target: str
    group: str
    phase: str
    transport: str
    subscribers: int
    connected: int
    slow: int
    offered_msgs: float  # deliveries per second offered (publish rate x fast subscribers)
    publish_rate: float
    published: int
    publish_failed: int
    delivered: int
    delivered_per_s: float
    loss: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_msg: float
    cpu_breakdown_us: dict[str, float]
    server_cpu_percent: float
    # Time the server's processes (summed) and the load generators (averaged)
    # were runnable but waiting for a CPU: other load on a shared machine.
    server_wait_percent: float
    loadgen_wait_percent: float
    # CPU time on the server's cores not used by the server's processes:
    # other load on a shared machine (and softirq work charged to no process).
    other_load_percent: float
    # Context switches of the server's processes per delivered message.
    switches_per_msg: dict[str, float]
    loadgen_cpu_percent: float
    loadgen_limited: bool
    seconds: float
    mem: dict[str, Any] = field(default_factory=dict)
    connect_per_s: float = 0.0
    load_average: float = 0.0
    ok: bool = True
    # WebSocket bytes read per delivered message (frame headers included, TCP/IP
    # headers not), measured by wsz clients only; NaN otherwise.
    wire_bytes_per_msg: float = float("nan")
    deflate_level: int = 0
    deflated_clients: int = 0


def percentile(hist: dict[int, int], total: int, q: float) -> float:
    """The q-quantile in milliseconds from a merged histogram (bucket lower edges)."""
    if total == 0:
        return float("nan")
    rank = q * total
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_floor_us(index) / 1000
    return bucket_floor_us(BUCKETS - 1) / 1000


def saturation(results: list[Result]) -> dict[str, float]:
    """Per target, the most delivered/s of a step-up phase that passed (ok)."""
    best: dict[str, float] = {}
    for r in results:
        if r.group.endswith("stepup") and r.ok:
            best[r.target] = max(best.get(r.target, 0.0), r.delivered_per_s)
    return best
