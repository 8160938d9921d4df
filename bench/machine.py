"""The machine the bench runs on: the cores for the servers and the load generators, and a line about it."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
from pathlib import Path

import psutil

from bench import log


def split_cores(no_pin: bool) -> tuple[list[int], list[int], list[str]]:
    """(server cores, load-generator cores, taskset prefix that pins a server to its cores).

    The servers get the first core (half of them from 4 up), the load
    generators the rest; one core, no taskset or --no-pin: all share all.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 and not no_pin and shutil.which("taskset"):
        server_cores = cores[:1] if len(cores) < 4 else cores[: len(cores) // 2]
        loadgen_cores = [c for c in cores if c not in server_cores]
        return server_cores, loadgen_cores, ["taskset", "-c", ",".join(map(str, server_cores))]
    log("bench: not pinning (one core, no taskset, or --no-pin): figures are noisier")
    return cores, cores, []


def machine_line(server_cores: list[int], loadgen_cores: list[int]) -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; server on core(s) {server_cores}, "
        f"load generator on {loadgen_cores}"
    )
