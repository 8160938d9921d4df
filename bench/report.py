"""A run's outputs: the tables (printed, table.txt, table.md), summary.json, the profile headline, bench.png.

table.txt and table.md hold the same things (the results table, the
ws-deflate table and compression costs if that group ran, the saturation
line, the targets and the footer), as text and as markdown.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict

from bench import log
from bench.deflate_costs import deflate_costs
from bench.goals import goal_lines
from bench.plot import plot
from bench.profiling import profile_headline
from bench.publisher import MESSAGE_BYTES
from bench.results import LOADGEN_LIMIT, SATURATION_P99_MS, Result, saturation
from bench.runner import Bench
from bench.table import deflate_table, table


def saturation_line(results: list[Result]) -> str:
    sat = saturation(results)
    line = (
        f"saturation (highest step-up rate with no loss and p99 < {SATURATION_P99_MS:g} ms, "
        "WebSocket x1000): "
    )
    return line + (", ".join(f"{t} {v / 1000:.0f}k/s" for t, v in sat.items()) or "-")


def footer(machine: str, elapsed: float) -> str:
    return (
        f"machine: {machine}\nload average at end: {os.getloadavg()[0]:.2f}; "
        f"run took {elapsed:.0f} s; {MESSAGE_BYTES}-byte messages; KiB/conn is the PSS growth of the "
        f"Windsock workers (nginx for Nchan) per connected subscriber; lg% is the load generator's CPU "
        f"share of its cores (LG-LIMITED above {LOADGEN_LIMIT:.0%}); oth% is the server core's "
        f"busy time not spent in the server's processes (other load; high: that phase is disturbed)"
    )


def write_tables(bench: Bench, machine: str, elapsed: float) -> None:
    """Print the tables, and write them to table.txt and table.md, and every Result to summary.json."""
    results = bench.results
    sat_line = saturation_line(results)
    foot = footer(machine, elapsed)
    goals = "\n".join(goal_lines(results))
    deflate = deflate_table(results)
    # Timed once, so both files quote the same figures.
    costs = deflate_costs(bench.args.deflate_levels) if deflate else ""
    text = table(results)
    print(text)
    if deflate:
        print(f"{deflate}\n{costs}")
    print(sat_line)
    print(goals)
    print(foot)
    extra = f"{deflate}\n{costs}\n" if deflate else ""
    (bench.out / "table.txt").write_text(f"{text}\n{extra}{sat_line}\n{goals}\n{foot}\n")
    deflate_md = f"{deflate_table(results, markdown=True)}\n\n{costs}\n\n" if deflate else ""
    (bench.out / "table.md").write_text(
        f"{table(results, markdown=True)}\n\n{deflate_md}{sat_line}\n\n{goals}\n\n{foot}\n"
    )
    (bench.out / "summary.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "seconds": elapsed,
                "saturation": saturation(results),
                "results": [asdict(r) for r in results],
            },
            indent=1,
        )
    )


async def write_reports(bench: Bench, machine: str, elapsed: float) -> None:
    """Everything a run leaves in its output directory once its phases are done."""
    write_tables(bench, machine, elapsed)
    if bench.args.profile:
        # py-spy writes its file as the worker it sampled stops (just before): a moment for it to land.
        await asyncio.sleep(1)
        headline = profile_headline(bench.out / "profile-worker.txt")
        print(headline)
        (bench.out / "profile-headline.txt").write_text(headline + "\n")
    try:
        plot(bench.results, bench.out / "bench.png", machine)
        print(f"plot: {bench.out / 'bench.png'}")
    except Exception as exc:
        log(f"bench: could not draw the plot: {exc}")
