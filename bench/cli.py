"""The bench's command line and the run itself: start the servers and load generators, run the groups, report.

bench/__init__.py describes what a run does; `python -m bench --help`
lists the options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time

import bench
from bench import ROOT, log
from bench.driver import Fleet
from bench.launch import NCHAN_MODULE, nginx_workers_for, start_stack, start_targets
from bench.machine import machine_line, split_cores
from bench.phases import selected
from bench.report import write_reports
from bench.runner import Bench
from bench.target import Target


def int_list(text: str) -> list[int]:
    """A comma list of integers, as --steps and --deflate-levels take."""
    return [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(bench.__doc__ or "").split("\n", 1)[0])
    p.add_argument("--out", default=str(ROOT / "artifacts" / "bench"))
    p.add_argument("--targets", default="worker,stack,nchan")
    p.add_argument("--groups", default="", help="comma list of group names (default: all)")
    p.add_argument("--workers", type=int, default=2, help="Windsock workers in the stack")
    p.add_argument(
        "--loadgens",
        type=int,
        default=0,
        help="load-generator processes (default: 2 per load-generator core)",
    )
    p.add_argument("--phase-seconds", type=float, default=5.0)
    p.add_argument("--step-seconds", type=float, default=4.0)
    p.add_argument(
        "--steps",
        type=int_list,
        default=[20, 40, 60, 80, 100, 130, 160, 200, 250, 300],
        help="step-up publish rates (msg/s; x 1,000 subscribers = deliveries/s)",
    )
    p.add_argument("--big", type=int, default=10_000, help="subscribers in the big mixed group")
    p.add_argument(
        "--deflate-levels",
        type=int_list,
        default=[0, 1, 6],
        help="WS_DEFLATE_LEVEL of each worker in the ws-deflate group (0: off)",
    )
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late deliveries")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="tries again of a phase disturbed by other load on the server core",
    )
    p.add_argument(
        "--retry-budget",
        type=float,
        default=270.0,
        help="seconds into the run after which nothing is tried again",
    )
    p.add_argument("--concurrency", type=int, default=100, help="connects in flight per load generator")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--base", default="", help="also run one worker from this checkout as target 'base' (A/B)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the single worker under py-spy; writes profile-worker.txt and its headline",
    )
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server_cores, loadgen_cores, pin = split_cores(args.no_pin)
    machine = machine_line(server_cores, loadgen_cores)
    log(f"bench: {machine}")
    log(f"bench: fd limit {hard}; load average {os.getloadavg()[0]:.2f}")
    if hard < args.big + 500:
        log(f"bench: descriptor limit {hard} is too low for {args.big} subscribers")

    python = sys.executable
    chosen = selected(args)
    targets: list[Target] = []
    run = Bench(args)
    started = time.monotonic()
    try:
        start_targets(targets, args, chosen, pin, run.out)
        # The coordinator (publisher) and load generators share the load-generator cores.
        os.sched_setaffinity(0, set(loadgen_cores))
        run.rig.server_cores = server_cores
        count = args.loadgens or 2 * len(loadgen_cores)
        run.rig.fleet = await Fleet.start(python, count, len(loadgen_cores))
        await run.rig.fleet.each(cmd="ping")
        run.fresh = {t.name: True for t in targets}
        for group in chosen:
            log(f"bench: group {group.name} ({group.subscribers} subscribers: {group.clients})")
            for i, target in enumerate(targets):
                need = nginx_workers_for(group.subscribers)
                if target.name == "stack" and target.nginx_workers != need:
                    log(f"  stack: restarting with {need} nginx worker process(es)")
                    target.stop()
                    targets[i] = target = start_stack(pin, python, args.workers, need)
                    run.fresh[target.name] = True
                if target.name in group.targets:
                    await run.run_group(target, group)
    finally:
        await run.rig.fleet.quit()
        for target in targets:
            target.stop()
        run.jsonl.close()
    await write_reports(run, machine, time.monotonic() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.exists(NCHAN_MODULE) and "nchan" in args.targets:
        log(f"bench: {NCHAN_MODULE} is missing (apt-get install libnginx-mod-nchan); skipping Nchan")
        args.targets = ",".join(t for t in args.targets.split(",") if t != "nchan")
    try:
        import uvloop

        return uvloop.run(amain(args))
    except ImportError:
        return asyncio.run(amain(args))
