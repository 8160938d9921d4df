"""What the bench runs: groups of subscribers, and the phases (publish rates) run over each.

Every group runs on every target its ``targets`` names, in the order
listed here; --groups picks some of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass
class Phase:
    name: str
    rate: float  # messages published per second
    seconds: float
    slow_percent: float = 0.0


@dataclass
class Group:
    """Subscribers connected once, then phases run over them."""

    name: str
    clients: dict[str, int]  # kind -> count
    phases: list[Phase]
    step_up: bool = False  # stop at the first phase that fails the saturation criteria
    targets: tuple[str, ...] = ("worker", "base", "stack", "nchan")
    body: str = "filler"  # what is published: bench/publisher.py BODIES

    @property
    def subscribers(self) -> int:
        return sum(self.clients.values())


def selected(args: argparse.Namespace) -> list[Group]:
    """The groups --groups names (all by default), in run order."""
    return [g for g in groups(args) if not args.groups or g.name in args.groups.split(",")]


def groups(args: argparse.Namespace) -> list[Group]:
    d = args.phase_seconds
    step = [Phase(f"step-{r}k", r, args.step_seconds) for r in args.steps]
    half = args.big // 2
    big = args.big // 1000
    return [
        # First, so each server's memory per connection is measured fresh.
        Group(
            f"mixed-{big}k",
            {"ws": half, "sse": args.big - half},
            [Phase(f"{2 * big}k", 2, d), Phase(f"{5 * big}k", 5, d)],
        ),
        Group(
            "ws-1k",
            {"ws": 1000},
            # The slow clients stay paused, so their phase comes last.
            [Phase("20k", 20, d), Phase("50k", 50, d), Phase("20k-slow1%", 20, d, slow_percent=1)],
        ),
        Group("sse-1k", {"sse": 1000}, [Phase("20k", 20, d), Phase("50k", 50, d)]),
        Group("ws-1k-stepup", {"ws": 1000}, step, step_up=True),
        # permessage-deflate: clients that offer it (as Chromium does), typical sensor
        # JSON, one fresh worker per WS_DEFLATE_LEVEL (0: declined, plain frames). These
        # clients inflate in Python, so the rates stay below the load generator's limit.
        Group(
            "ws-deflate",
            {"wsz": 1000},
            [Phase("10k", 10, d), Phase("20k", 20, d)],
            targets=tuple(f"worker-z{level}" for level in args.deflate_levels),
            body="sensor",
        ),
    ]
