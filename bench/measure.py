"""Measuring one phase: publish at its rate, wait for the deliveries, and turn the counters into a Result.

Every cost is the difference of a counter read just before the publishing
starts and just after the last delivery (or the drain's end): the server's
CPU per component, its run-queue waits and context switches, the busy time
of the server's cores, and the load generators' CPU and waits.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from bench.driver import Fleet
from bench.phases import Group, Phase
from bench.procs import core_busy, diff
from bench.publisher import Publisher
from bench.results import LOADGEN_LIMIT, SATURATION_P99_MS, Result, percentile
from bench.target import Target


@dataclass
class Rig:
    """What measuring needs besides the target: the load generators and the cores of the server."""

    fleet: Fleet = field(default_factory=Fleet)
    server_cores: list[int] = field(default_factory=list)
    drain: float = 5.0  # seconds to wait for late deliveries


async def measure_phase(
    rig: Rig,
    target: Target,
    group: Group,
    phase: Phase,
    publisher: Publisher,
    pid: int,
    connected: int,
    slow: int,
) -> Result:
    """Run ``phase`` (``pid`` in its messages) on ``connected`` subscribers, ``slow`` of them paused."""
    assert target.tree is not None
    fleet = rig.fleet
    fast = connected - slow
    bytes0 = await fleet.wire_bytes() if "wsz" in group.clients else 0
    cpu0 = target.tree.cpu()
    wait0 = target.tree.waited()
    busy0 = core_busy(rig.server_cores)
    switches0 = target.tree.switches()
    lgwait0 = fleet.waited()
    lg0 = fleet.cpu()
    t0 = time.monotonic()
    report = await publisher.run(phase.rate, phase.seconds, pid)
    expected = report.ok * fast
    # Drain: until everything arrived, or nothing more arrives for a while (bounded).
    last_count, last_change = -1, time.monotonic()
    deadline = time.monotonic() + rig.drain
    while True:
        count, hist, max_us, open_, _ = await fleet.stats(pid)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        if count >= expected or now - last_change > 0.5 or now > deadline:
            break
        await asyncio.sleep(0.1)
    t1 = last_change if count < expected else now
    seconds = max(t1 - t0, phase.seconds)
    cpu = diff(target.tree.cpu(), cpu0)
    wire = (await fleet.wire_bytes() - bytes0) if "wsz" in group.clients else 0
    waited = target.tree.waited() - wait0
    busy = core_busy(rig.server_cores) - busy0
    switches = {k: v - switches0[k] for k, v in target.tree.switches().items()}
    lg_waited = (fleet.waited() - lgwait0) / len(fleet)
    lg = fleet.cpu() - lg0
    total_cpu = sum(cpu.values())
    delivered = count
    loss = 1 - delivered / expected if expected else 1.0
    lg_share = lg / (seconds * fleet.cores)
    result = Result(
        target=target.name,
        group=group.name,
        phase=phase.name,
        transport="+".join(k for k in group.clients),
        subscribers=group.subscribers,
        connected=open_,
        slow=slow,
        offered_msgs=phase.rate * fast,
        publish_rate=phase.rate,
        published=report.ok,
        publish_failed=report.failed,
        delivered=delivered,
        delivered_per_s=delivered / seconds,
        loss=max(0.0, loss),
        p50_ms=percentile(hist, count, 0.50),
        p90_ms=percentile(hist, count, 0.90),
        p99_ms=percentile(hist, count, 0.99),
        max_ms=max_us / 1000,
        cpu_us_per_msg=total_cpu / delivered * 1e6 if delivered else float("nan"),
        cpu_breakdown_us={k: round(v / delivered * 1e6, 2) if delivered else 0.0 for k, v in cpu.items()},
        server_cpu_percent=100 * total_cpu / seconds,
        server_wait_percent=100 * waited / seconds,
        other_load_percent=max(0.0, 100 * (busy - total_cpu) / (seconds * len(rig.server_cores))),
        switches_per_msg={k: round(v / delivered, 3) if delivered else 0.0 for k, v in switches.items()},
        loadgen_wait_percent=100 * lg_waited / seconds,
        loadgen_cpu_percent=100 * lg_share,
        loadgen_limited=lg_share > LOADGEN_LIMIT,
        seconds=seconds,
        load_average=os.getloadavg()[0],
        wire_bytes_per_msg=wire / count if wire and count else float("nan"),
        deflate_level=target.deflate_level,
    )
    result.ok = result.loss == 0 and result.p99_ms < SATURATION_P99_MS and report.failed == 0
    return result
