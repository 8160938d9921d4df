"""One client stops reading while 1,000 fast clients stream from the same worker."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import UNIT, WS, Process, RawWS, free_port, http, http_status, parse_frames, wait_until

pytestmark = pytest.mark.stack

FAST = 1000


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[str, int, Process]]:
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "app", "--port", str(port)],
        log=str(tmp_path / "worker.log"),
        env={"SOURCES": "", "MAX_QUEUE_BYTES": "262144", "LOG_LEVEL": "WARNING"},
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(base), timeout=20)
    yield base, port, proc
    proc.stop()


def _up(base: str) -> bool:
    return http_status(base + "/healthz", timeout=1) == 200


async def _measure(base: str, seconds: float, rate: float) -> list[float]:
    """Publish timestamped ticks for ``seconds``; the fast clients record their latencies."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        await http("POST", f"{base}/api/channels/ticks", {"t": time.time()})
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    await asyncio.sleep(0.5)
    return []


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


async def test_slow_consumer_among_1000_fast(worker: tuple[str, int, Process]) -> None:
    """The slow client is dropped with 1013 once its queue is full; fast clients' p99 and memory hold."""
    base, port, proc = worker
    latencies: list[list[float]] = [[], []]
    phase = 0
    clients = [await WS.connect(f"ws://127.0.0.1:{port}/ws?channel=ticks") for _ in range(FAST)]

    async def read(ws: WS) -> None:
        while (raw := await ws.conn.read_message()) is not None:
            message = json.loads(raw)
            if message["type"] == "message":
                latencies[phase].append(time.time() - message["data"]["t"])

    readers = [asyncio.ensure_future(read(ws)) for ws in clients]
    await asyncio.sleep(1)
    await _measure(base, 4, rate=5)
    rss_before = _rss_kib(proc.proc.pid)

    phase = 1
    loop = asyncio.get_running_loop()
    slow = await loop.run_in_executor(
        None, lambda: RawWS("127.0.0.1", port, "/ws?channel=ticks&channel=bulk", rcvbuf=4096)
    )
    bulk = "x" * 60_000
    ticking = asyncio.ensure_future(_measure(base, 6, rate=5))
    dropped_after = None
    for n in range(400):
        await http("POST", f"{base}/api/channels/bulk", {"pad": bulk})
        _, health, _ = await http("GET", f"{base}/healthz")
        if health["hub"]["slow_consumers"]:
            dropped_after = n + 1
            break
        await asyncio.sleep(0.02)
    frames = await loop.run_in_executor(None, slow.read_all, 15)
    await ticking
    rss_after = _rss_kib(proc.proc.pid)
    for ws in clients:
        ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    slow.close()

    closes = [p for op, p in parse_frames(frames) if op == 0x8]
    base_p99, slow_p99 = _p99(latencies[0]), _p99(latencies[1])
    print(
        f"\n[fault] slow consumer among {FAST}: dropped after {dropped_after} bulk messages "
        f"({dropped_after and dropped_after * 60} KB), fast p99 {base_p99:.1f} ms -> {slow_p99:.1f} ms "
        f"({slow_p99 - base_p99:+.1f} ms), deliveries {len(latencies[0])} + {len(latencies[1])}, "
        f"worker RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
    )
    assert dropped_after is not None, "the slow client was never dropped"
    assert closes and int.from_bytes(closes[0][:2], "big") == 1013 and b"slow consumer" in closes[0]
    assert len(latencies[1]) >= FAST * 20, "fast clients stopped receiving"
    # A generous bound: fan-out blocked behind the slow client would stall
    # the fast ones until it is dropped, and they would fall short of the
    # count above. These latencies are this test process's own, parsing
    # 1,000 frames per tick on a shared core: on a quiet 2-core machine its
    # p99 with the slow client came out anywhere from 263 to 1,651 ms, with
    # the code of before and after issue 12 alike, so the bound is 3 s.
    # The fine figure is `make bench`'s job (the 1%-slow-clients phase).
    assert slow_p99 < 3000 * UNIT
    assert rss_after - rss_before < 64 * 1024, "worker memory grew without bound"
