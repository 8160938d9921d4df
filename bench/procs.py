"""What a server's processes cost: CPU, run-queue waits, context switches and memory, per component.

A server under test is a tree of processes (nginx, workers, Redis, the
launchers); each is sorted into a component once, so a phase's CPU and
memory can be told apart as nginx's, the workers' and Redis's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil


def component(proc: psutil.Process) -> str:
    """Which part of a server a process is: nginx, worker, redis or other (launchers)."""
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if name.startswith("nginx"):
        return "nginx"
    if name.startswith("redis"):
        return "redis"
    if name.startswith("py-spy"):
        return "profiler"
    if " -m app" in cmd:
        return "worker"
    return "other"


class Tree:
    """A server's processes (found once it is up), with CPU and memory sums per component."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.procs = [root, *root.children(recursive=True)]
        self.kinds = {p.pid: component(p) for p in self.procs}

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far, per component."""
        out: dict[str, float] = {}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                kind = self.kinds[p.pid]
                out[kind] = out.get(kind, 0.0) + t.user + t.system
        return out

    def waited(self) -> float:
        """Seconds the server's processes spent runnable but waiting for a CPU (other load)."""
        return sum(run_queue_wait(p.pid) for p in self.procs if self.kinds[p.pid] != "profiler")

    def switches(self) -> dict[str, int]:
        """Context switches so far, voluntary and involuntary (preempted), summed."""
        out = {"voluntary": 0, "involuntary": 0}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                c = p.num_ctx_switches()
                out["voluntary"] += c.voluntary
                out["involuntary"] += c.involuntary
        return out

    def memory(self) -> dict[str, dict[str, int]]:
        """RSS and PSS in bytes, per component."""
        out: dict[str, dict[str, int]] = {}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                info = p.memory_full_info()
                slot = out.setdefault(self.kinds[p.pid], {"rss": 0, "pss": 0})
                slot["rss"] += info.rss
                slot["pss"] += getattr(info, "pss", info.rss)
        return out


def core_busy(cores: list[int]) -> float:
    """Seconds the given CPUs have been busy (not idle or iowait), from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                values = [int(f) for f in fields]
                busy += sum(values[:8]) - values[3] - values[4]
    return busy / ticks


def run_queue_wait(pid: int) -> float:
    """Seconds a process has waited on a run queue (/proc/PID/schedstat), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def per_conn(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], n: int) -> dict[str, float]:
    """PSS growth per connection in KiB, per component."""
    return {
        k: round((v["pss"] - before.get(k, {"pss": 0})["pss"]) / max(n, 1) / 1024, 2)
        for k, v in after.items()
        if k in ("worker", "nginx", "redis")
    }


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    # The profiler's own cost is not the server's.
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if k != "profiler"}
