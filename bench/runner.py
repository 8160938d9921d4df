"""Running groups on a target: connect the subscribers, run each phase (again when disturbed), record it.

A Bench is one run: its output directory, results.jsonl, the Results that
make the tables, and the rig (load generators, cores) phases are measured
with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import log
from bench.measure import Rig, measure_phase
from bench.phases import Group
from bench.procs import per_conn
from bench.publisher import Publisher
from bench.results import OTHER_LOAD_LIMIT, Result
from bench.target import Target


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.phase_ids = 0
        self.results: list[Result] = []
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = (self.out / "results.jsonl").open("w")
        self.rig = Rig(drain=args.drain)
        # Phases are tried again (see run_group) only until then, so the run stays bounded.
        self.retry_until = time.monotonic() + args.retry_budget
        # Targets whose memory has not grown yet (see connect()).
        self.fresh: dict[str, bool] = {}

    async def connect(self, target: Target, group: Group) -> tuple[int, float, dict[str, Any]]:
        """Connect the group's clients across the load generators; returns (connected, rate, memory).

        Memory is the growth of each component's PSS per connection, measured
        kind by kind; it is only meaningful on a fresh server (the first
        group), since a heap that grew before is reused without growing.
        """
        assert target.tree is not None
        seconds = 0.0
        connected = 0
        errors: list[str] = []
        first = self.fresh.pop(target.name, False)
        mem: dict[str, Any] = {"fresh": first, "per_conn_pss_kib": {}, "by_kind": {}}
        start = before = target.tree.memory()
        for kind, count in group.clients.items():
            started = time.monotonic()
            answers = await self.rig.fleet.connect(target.url(kind), kind, count, self.args.concurrency)
            seconds += time.monotonic() - started
            n = sum(a["connected"] for a in answers)
            connected += n
            errors += [e for a in answers for e in a["errors"]]
            await asyncio.sleep(1.0)
            after = target.tree.memory()
            mem["by_kind"][kind] = per_conn(before, after, n)
            before = after
        mem["per_conn_pss_kib"] = per_conn(start, before, connected)
        mem["total_pss_mib"] = {k: round(v["pss"] / 2**20, 1) for k, v in before.items()}
        if errors:
            log(f"    connect errors: {errors[:3]}")
        return connected, connected / seconds if seconds > 0 else 0.0, mem

    async def run_group(self, target: Target, group: Group) -> None:
        log(f"  {target.name}: {group.name}: connecting {group.subscribers} subscribers")
        connected, rate, mem = await self.connect(target, group)
        deflated = 0
        if "wsz" in group.clients:
            deflated = await self.rig.fleet.deflated()
            log(f"    permessage-deflate agreed with {deflated} of {connected} subscribers")
        if mem["fresh"]:
            log(f"    {connected} connected, {rate:.0f}/s; PSS growth KiB/conn {mem['by_kind']}")
        else:
            log(f"    {connected} connected, {rate:.0f}/s")
        publisher = Publisher("127.0.0.1", target.port, target.pub_path, body=group.body)
        slow = 0
        try:
            for phase in group.phases:
                if phase.slow_percent and not slow:
                    slow = await self.rig.fleet.pause(round(connected * phase.slow_percent / 100))
                tries = 0
                while True:
                    tries += 1
                    self.phase_ids += 1
                    result = await measure_phase(
                        self.rig, target, group, phase, publisher, self.phase_ids, connected, slow
                    )
                    result.mem = mem
                    result.connect_per_s = rate
                    result.deflated_clients = deflated
                    if result.connected < connected:
                        break
                    # On a shared machine other load takes the server's core now and
                    # then: such a phase is run again while time allows, and a failed
                    # step once more (a stall fails a step as easily as saturation
                    # does). Every try is in results.jsonl.
                    disturbed = result.other_load_percent > OTHER_LOAD_LIMIT and tries <= self.args.retries
                    failed_step = group.step_up and not result.ok and tries == 1
                    if not (disturbed or failed_step) or time.monotonic() > self.retry_until:
                        break
                    log(f"    {phase.name}: trying again ({'disturbed' if disturbed else 'failed'})")
                    result.phase += f"-try{tries}"
                    self.record(result, table=False)
                self.record(result)
                if group.step_up and (not result.ok or result.loadgen_limited):
                    break
                if result.connected < connected - slow:
                    log(f"    only {result.connected} of {connected} subscribers still connected; next group")
                    break
        finally:
            publisher.close()
            await self.rig.fleet.each(cmd="close")
            await asyncio.sleep(0.5)

    def record(self, r: Result, table: bool = True) -> None:
        """Write a Result to results.jsonl and the log; ``table``: it is also a row of the tables."""
        if table:
            self.results.append(r)
        self.jsonl.write(json.dumps(asdict(r)) + "\n")
        self.jsonl.flush()
        flag = " LOADGEN-LIMITED" if r.loadgen_limited else ""
        log(
            f"    {r.phase:<10} offered {r.offered_msgs:>8.0f}/s delivered {r.delivered_per_s:>8.0f}/s "
            f"loss {r.loss:6.2%} p50 {r.p50_ms:7.2f} p99 {r.p99_ms:7.2f} max {r.max_ms:7.1f} ms "
            f"cpu {r.cpu_us_per_msg:6.2f} us/msg ({r.server_cpu_percent:3.0f}%) "
            f"loadgen {r.loadgen_cpu_percent:3.0f}%{flag} other load {r.other_load_percent:.0f}% "
            f"switches/msg {r.switches_per_msg}"
        )
