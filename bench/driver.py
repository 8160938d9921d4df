"""The bench's side of the load generators: one process each, and the fleet of them.

The fleet shares a count of clients out among its processes and merges
what they report, so the rest of the bench talks to it as to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import psutil

from bench import ROOT
from bench.procs import run_queue_wait


class LoadGen:
    """One load-generator process (python -m bench.loadgen), driven over its stdin and stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, python: str) -> LoadGen:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "bench.loadgen",
            # From the checkout's root, where `bench` is importable wherever the bench was started.
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 << 20,
        )
        return cls(proc)

    async def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError("a load generator died")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    async def quit(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Fleet:
    """Every load generator of the run, and the cores they share (with the coordinator)."""

    def __init__(self, loadgens: list[LoadGen] | None = None, cores: int = 1) -> None:
        self.loadgens = loadgens or []
        self.cores = cores

    @classmethod
    async def start(cls, python: str, count: int, cores: int) -> Fleet:
        return cls([await LoadGen.start(python) for _ in range(count)], cores)

    def __len__(self) -> int:
        return len(self.loadgens)

    def share(self, count: int) -> list[int]:
        """``count`` split as evenly as it goes, one number per load generator."""
        share = [count // len(self.loadgens)] * len(self.loadgens)
        for i in range(count % len(self.loadgens)):
            share[i] += 1
        return share

    async def each(self, **command: Any) -> list[dict[str, Any]]:
        """The same command to every load generator at once; their answers."""
        return list(await asyncio.gather(*(lg.call(**command) for lg in self.loadgens)))

    async def connect(self, url: str, kind: str, count: int, concurrency: int) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    lg.call(cmd="connect", url=url, kind=kind, n=n, concurrency=concurrency)
                    for lg, n in zip(self.loadgens, self.share(count), strict=True)
                    if n
                )
            )
        )

    async def pause(self, count: int) -> int:
        """Stop reading on ``count`` clients (slow consumers); how many were paused."""
        answers = await asyncio.gather(
            *(lg.call(cmd="pause", n=n) for lg, n in zip(self.loadgens, self.share(count), strict=True))
        )
        return sum(a["paused"] for a in answers)

    async def stats(self, phase_id: int) -> tuple[int, dict[int, int], int, int, int]:
        """Phase ``phase_id`` over all: (count, merged histogram, max us, open clients, paused clients)."""
        answers = await self.each(cmd="stats", phase=phase_id)
        count = sum(a["count"] for a in answers)
        hist: dict[int, int] = {}
        for a in answers:
            for k, v in a["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        max_us = max(a["max_us"] for a in answers)
        open_ = sum(a["open"] for a in answers)
        paused = sum(a["paused"] for a in answers)
        return count, hist, max_us, open_, paused

    async def wire_bytes(self) -> int:
        """Bytes the load generators' wsz clients have read so far."""
        answers = await self.each(cmd="stats", phase=0)
        return sum(int(a.get("bytes", 0)) for a in answers)

    async def deflated(self) -> int:
        """Clients the server agreed permessage-deflate with."""
        answers = await self.each(cmd="stats", phase=0)
        return sum(int(a["deflated"]) for a in answers)

    def cpu(self) -> float:
        """CPU seconds so far of the load generators and of this process (the publisher runs here)."""
        return sum(lg.cpu() for lg in self.loadgens) + float(psutil.Process().cpu_times().user)

    def waited(self) -> float:
        """Seconds the load generators have waited on a run queue, summed."""
        return sum(run_queue_wait(lg.proc.pid) for lg in self.loadgens)

    async def quit(self) -> None:
        for lg in self.loadgens:
            await lg.quit()
