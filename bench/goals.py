"""The bench's targets (goals): what Windsock should reach, as a table of thresholds, and verdicts.

GOALS lists them in order, each with a name and its thresholds; the
judge of each reads the phases it is about from a run's Results and says
MET or NOT MET with the figures that decide it. A target whose phases did
not run (other --groups, or no Nchan) is left out. To change a target,
change its thresholds here: the lines in table.txt quote them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import Result


class Run:
    """A run's Results, found by target, group and phase."""

    def __init__(self, results: list[Result]) -> None:
        self.results = results
        self.by = {(r.target, r.group, r.phase): r for r in results}
        # The big mixed group is named after --big (mixed-10k by default).
        self.big = next((r.group for r in results if r.group.startswith("mixed-")), "mixed-10k")

    def get(self, target: str, group: str, phase: str) -> Result | None:
        return self.by.get((target, group, phase))


Limits = dict[str, float]


@dataclass(frozen=True)
class Goal:
    """A named target: its thresholds, and the judge that reads a run against them."""

    name: str
    limits: Limits
    judge: Callable[[Run, Limits], list[str]]  # one line per server it is about, none if not measured


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def one_worker(run: Run, lim: Limits) -> list[str]:
    w, n = run.get("worker", "ws-1k", "20k"), run.get("nchan", "ws-1k", "20k")
    if not w:
        return []
    ok = w.cpu_us_per_msg <= lim["us_per_msg"] and w.p99_ms <= lim["p99_ms"] and w.loss == 0
    parity = f"; Nchan parity {w.cpu_us_per_msg / n.cpu_us_per_msg:.2f}x" if n else ""
    return [
        f"one worker, 1,000 WebSocket x 20 msg/s: {w.cpu_us_per_msg:.1f} us/msg (<= {lim['us_per_msg']:g}), "
        f"p99 {w.p99_ms:.0f} ms (<= {lim['p99_ms']:g}){parity}: {verdict(ok)}"
    ]


def stack_vs_nchan(run: Run, lim: Limits) -> list[str]:
    st, n = run.get("stack", "ws-1k", "20k"), run.get("nchan", "ws-1k", "20k")
    if not (st and n):
        return []
    ratio_ = st.cpu_us_per_msg / n.cpu_us_per_msg
    ok = ratio_ <= lim["x_nchan"] and st.p99_ms <= lim["p99_ms"] and st.loss == 0
    cpu = st.cpu_breakdown_us
    return [
        f"stack (nginx + 2 workers + Redis), 20k deliveries/s: {st.cpu_us_per_msg:.1f} us/msg = "
        f"{ratio_:.2f}x Nchan (<= {lim['x_nchan']:g}x; nginx {cpu.get('nginx', 0):.1f}, workers "
        f"{cpu.get('worker', 0):.1f}, Redis {cpu.get('redis', 0):.1f}), "
        f"p99 {st.p99_ms:.0f} ms (<= {lim['p99_ms']:g}): {verdict(ok)}"
    ]


def big_group(run: Run, lim: Limits) -> list[str]:
    sb = next((r for r in run.results if r.target == "stack" and r.group == run.big), None)
    if not sb:
        return []
    held = sb.connected
    kib = sb.mem.get("per_conn_pss_kib", {}).get("worker", float("nan"))
    ok = (
        held >= lim["subscribers"]
        and kib <= lim["kib_per_conn"]
        and sb.p99_ms < lim["p99_ms"]
        and sb.loss == 0
    )
    return [
        f"{held} WebSocket + SSE subscribers through nginx, broadcast at "
        f"{sb.offered_msgs / 1000:.0f}k deliveries/s: {kib:.1f} KiB/conn in the workers "
        f"(<= {lim['kib_per_conn']:g}), p99 {sb.p99_ms:.0f} ms (< {lim['p99_ms']:g}): {verdict(ok)}"
    ]


def sse_vs_ws(run: Run, lim: Limits) -> list[str]:
    lines = []
    for target in ("worker", "stack"):
        ws, sse = run.get(target, "ws-1k", "20k"), run.get(target, "sse-1k", "20k")
        if ws and sse:
            ratio_ = sse.cpu_us_per_msg / ws.cpu_us_per_msg
            lines.append(
                f"{target}: SSE {sse.cpu_us_per_msg:.1f} vs WebSocket {ws.cpu_us_per_msg:.1f} us/msg "
                f"at 20k/s = {ratio_:.2f}x (<= {lim['x_ws']:g}x): {verdict(ratio_ <= lim['x_ws'])}"
            )
    return lines


def slow_clients(run: Run, lim: Limits) -> list[str]:
    lines = []
    for target in ("worker", "stack"):
        fast, slow = run.get(target, "ws-1k", "20k"), run.get(target, "ws-1k", "20k-slow1%")
        if fast and slow:
            bound = max(lim["p99_x"] * fast.p99_ms, fast.p99_ms + lim["p99_plus_ms"])
            ok = slow.p99_ms <= bound and slow.loss == 0
            lines.append(
                f"{target}: p99 of fast clients with 1% not reading {slow.p99_ms:.0f} ms vs "
                f"{fast.p99_ms:.0f} ms without (no regression: within {lim['p99_x']:g}x or "
                f"+{lim['p99_plus_ms']:g} ms): {verdict(ok)}"
            )
    return lines


# The targets, in the order table.txt numbers them (under "targets:").
GOALS = (
    # One worker's CPU and p99 at 20k deliveries/s; Nchan parity is the stretch.
    Goal("one-worker", {"us_per_msg": 12, "p99_ms": 20}, one_worker),
    # The whole stack (every message crosses nginx) against Nchan's CPU.
    Goal("stack-vs-nchan", {"x_nchan": 1.5, "p99_ms": 30}, stack_vs_nchan),
    # The big mixed group held through nginx: memory per connection and broadcast p99.
    Goal("big-group", {"subscribers": 10_000, "kib_per_conn": 16, "p99_ms": 250}, big_group),
    Goal("sse-vs-websocket", {"x_ws": 1.2}, sse_vs_ws),
    # 1% of clients not reading must not slow the others down.
    Goal("slow-clients", {"p99_x": 1.25, "p99_plus_ms": 10}, slow_clients),
)


def goal_lines(results: list[Result]) -> list[str]:
    """Each target's verdict line(s), numbered, under a heading."""
    run = Run(results)
    lines = ["targets:"]
    for number, goal in enumerate(GOALS, 1):
        lines += [f"  {number}. {line}" for line in goal.judge(run, goal.limits)]
    return lines
