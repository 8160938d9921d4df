"""`python -m app ingest` and embedded `python -m app` as real processes: sources, health, leases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from app.sources.base import stop_tasks
from tests.helpers import UNIT, WS, Process, eventually, free_port, http
from tests.test_sources_demo import hang_up
from tests.test_sources_pollers import Reply, Upstream, sources_file

LEASE = 1.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Spawned:
    """A Windsock process started by the test, and its HTTP port."""

    process: Process
    port: int

    async def health(self) -> dict[str, Any] | None:
        try:
            response = await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{self.port}/healthz", raise_error=False, request_timeout=2
            )
        except OSError:
            return None
        return json.loads(response.body) if response.code == 200 else None


Spawn = Callable[..., Awaitable[Spawned]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start `python -m app [COMMAND]` processes; each is stopped after the test (SIGTERM: exit 0)."""
    started: list[Process] = []

    async def start(*command: str, **env: str) -> Spawned:
        port = free_port()
        process = Process(
            [sys.executable, "-m", "app", *command, "--port", str(port)],
            env=env,
            log=str(tmp_path / f"{'-'.join(command) or 'serve'}-{port}.log"),
        )
        started.append(process)
        spawned = Spawned(process, port)

        async def up() -> bool:
            return process.proc.poll() is not None or await spawned.health() is not None

        await eventually(up, timeout=20)
        assert process.proc.poll() is None, process.output()
        return spawned

    yield start
    for process in started:
        killed = process.proc.poll() == -signal.SIGKILL
        assert killed or process.stop() == 0, process.output()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A scripted local HTTP upstream on a free port; stopped after the test."""
    async with Upstream() as server:
        yield server


def _send(port: int, reading: dict[str, Any]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps(reading).encode(), ("127.0.0.1", port))


async def test_ingest_process_feeds_the_workers(
    redis_server: Any, make_server: Any, spawn: Spawn, upstream: Upstream, tmp_path: Path
) -> None:
    """An ingest process runs UDP, demo and a poller; a worker sharing its Redis streams all three."""
    prefix = f"ingest-{uuid.uuid4().hex[:8]}"
    worker = await make_server(redis_url=redis_server.url, redis_prefix=prefix)
    upstream.serve(Reply({"v": 1}))
    path = sources_file(
        tmp_path / "sources.toml", {"name": "feed", "url": upstream.url, "channel": "feed", "interval": 0.1}
    )
    ingest = await spawn(
        "ingest",
        REDIS_URL=redis_server.url,
        REDIS_PREFIX=prefix,
        UDP_PORT="0",
        SOURCES_FILE=path,
        DEMO_RATE="20",
    )
    health = await ingest.health()
    assert health is not None and health["status"] == "ok" and health["role"] == "ingest"
    assert set(health["sources"]) == {"udp", "demo", "pollers", "leases"}
    sensor, ticker, feed = [await WS.connect(worker.ws) for _ in range(3)]
    await sensor.subscribe("sensors.z1")
    await ticker.subscribe("demo.ticker")
    await feed.subscribe("feed", since=0)
    _send(health["sources"]["udp"]["port"], {"sensor": "z1", "lux": 300})
    assert (await sensor.messages(1))[0]["data"]["lux"] == 300
    assert (await ticker.messages(1))[0]["data"]["symbol"] == "WSK"
    assert (await feed.messages(1))[0]["data"] == {"v": 1}
    status, body, _ = await http("GET", f"http://127.0.0.1:{ingest.port}/api/channels/feed")
    assert (status, body["code"]) == (404, "not_found")  # an ingest process serves /healthz only
    await hang_up(sensor, ticker, feed)


async def test_embedded_process_runs_all_three_sources(
    spawn: Spawn, upstream: Upstream, tmp_path: Path
) -> None:
    """Plain `python -m app` runs UDP, the demo (on by default) and pollers in its own process."""
    upstream.serve(Reply({"v": "embedded"}))
    path = sources_file(
        tmp_path / "sources.toml", {"name": "feed", "url": upstream.url, "channel": "feed", "interval": 0.1}
    )
    udp_port = free_udp_port()
    worker = await spawn(UDP_PORT=str(udp_port), SOURCES_FILE=path)
    sensor, ticker, feed = [await WS.connect(f"ws://127.0.0.1:{worker.port}/ws") for _ in range(3)]
    await sensor.subscribe("sensors.e1")
    await ticker.subscribe("demo.ticker")
    await feed.subscribe("feed", since=0)
    _send(udp_port, {"sensor": "e1", "ok": True})
    assert (await sensor.messages(1))[0]["data"]["ok"] is True
    assert (await ticker.messages(1))[0]["data"]["price"] > 0
    assert (await feed.messages(1))[0]["data"] == {"v": "embedded"}
    await hang_up(sensor, ticker, feed)


async def _two_ingest_processes(
    spawn: Spawn, redis_url: str, upstream: Upstream, tmp_path: Path, lease: float
) -> tuple[str, dict[str, Spawned], str]:
    """Start ingest processes a and b on one poller; return the active one's tag, both, and the prefix."""
    prefix = f"lease-{uuid.uuid4().hex[:8]}"
    processes = {}
    for tag in ("a", "b"):
        path = sources_file(
            tmp_path / f"sources-{tag}.toml",
            # Same poller (same name, same lease); the header tells the upstream who asked.
            {
                "name": "feed",
                "url": upstream.url,
                "channel": "feed",
                "interval": 0.05,
                "headers": {"X-Ingest": tag},
            },
        )
        processes[tag] = await spawn(
            "ingest",
            REDIS_URL=redis_url,
            REDIS_PREFIX=prefix,
            SOURCES="pollers",
            SOURCES_FILE=path,
            LEASE_SECONDS=str(lease),
        )
    await eventually(lambda: len(upstream.requests) >= 5)
    return upstream.tagged("X-Ingest")[0], processes, prefix


async def test_one_active_poller_across_ingest_processes_and_handover_on_sigkill(
    redis_server: Any, make_server: Any, spawn: Spawn, upstream: Upstream, tmp_path: Path
) -> None:
    """Two ingest processes: one polls; killed, the other takes over within the lease and repeats nothing."""
    upstream.serve(Reply({"v": 1}))
    active, processes, prefix = await _two_ingest_processes(
        spawn, redis_server.url, upstream, tmp_path, LEASE
    )
    standby = "b" if active == "a" else "a"
    # Over two leases of polling: a standby that wrongly polled would show by now.
    await eventually(lambda: len(upstream.requests) >= 40, timeout=10)
    assert set(upstream.tagged("X-Ingest")) == {active}
    roles = {tag: (await p.health() or {}).get("sources", {}).get("leases") for tag, p in processes.items()}
    assert roles == {active: {"poller:feed": "active"}, standby: {"poller:feed": "standby"}}

    killed_at = time.monotonic()
    processes[active].process.stop(signal.SIGKILL)
    await eventually(lambda: standby in upstream.tagged("X-Ingest"), timeout=LEASE + 5 * UNIT)
    first = next(r for r in upstream.requests if r.headers.get("X-Ingest") == standby)
    handover = first.at - killed_at
    print(f"handover after SIGKILL: {handover:.2f} s (lease {LEASE} s)")
    assert handover <= LEASE + 1.0 * UNIT, handover

    # The new poller carries on: no repeat of the data or of the "ok" status.
    await eventually(lambda: upstream.tagged("X-Ingest").count(standby) >= 5)
    reader = await make_server(redis_url=redis_server.url, redis_prefix=prefix)
    for channel in ("feed", "feed.status"):
        _, body, _ = await http("GET", f"{reader.base}/api/channels/{channel}")
        assert body["history"] == 1, (channel, body)


async def test_sigterm_releases_the_lease_for_an_immediate_handover(
    redis_server: Any, spawn: Spawn, upstream: Upstream, tmp_path: Path
) -> None:
    """SIGTERM: the ingest process exits 0 and releases its lease, so the standby takes over at once."""
    lease = 4.0
    upstream.serve(Reply({"v": 1}))
    active, processes, _ = await _two_ingest_processes(spawn, redis_server.url, upstream, tmp_path, lease)
    standby = "b" if active == "a" else "a"
    stopped_at = time.monotonic()
    assert processes[active].process.stop() == 0, processes[active].process.output()
    await eventually(lambda: standby in upstream.tagged("X-Ingest"), timeout=lease + 5 * UNIT)
    first = next(r for r in upstream.requests if r.headers.get("X-Ingest") == standby)
    handover = first.at - stopped_at
    print(f"handover after SIGTERM: {handover:.2f} s (lease {lease} s)")
    # Had the lease merely expired, this would take at least two thirds of it.
    assert handover < lease / 2, handover


def test_bad_sources_file_or_busy_udp_port_exit_2_with_one_line(tmp_path: Path) -> None:
    """A missing sources file or a UDP port in use stops `python -m app ingest` with exit 2 and one line."""
    missing = subprocess.run(
        [sys.executable, "-m", "app", "ingest", "--sources-file", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("windsock: SOURCES_FILE=") and missing.stderr.count("\n") == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "ingest",
                "--port",
                "0",
                "--sources",
                "udp",
                "--udp-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "LOG_LEVEL": "ERROR"},
        )
    assert taken.returncode == 2, taken.stderr
    assert (
        taken.stderr.startswith(f"windsock: UDP_PORT={port}: cannot listen") and taken.stderr.count("\n") == 1
    )


async def test_stop_tasks_cancels_until_a_task_really_stops() -> None:
    """A task that swallows a cancel (as redis-py's wait_for can on 3.11) is cancelled until it ends."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_tasks([task], 2.0) == set()
    assert task.cancelled() and swallowed == 1


async def test_ingest_metrics_count_datagrams_by_fate(make_settings: Any) -> None:
    """The ingest process's /metrics: datagrams received, dropped by reason, resent; publishes by source."""
    from prometheus_client.parser import text_string_to_metric_families

    from app.ingest import Ingest

    ingest = Ingest(make_settings(sources=("udp",), udp_port=0))
    await ingest.start()
    try:
        udp = ingest.sources.one("udp") if ingest.sources is not None else None
        assert udp is not None
        reading = {"sensor": "m", "v": 1, "idempotency_key": "r-1"}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for raw in (b"{", b"[1]", json.dumps(reading).encode(), json.dumps(reading).encode()):
                sock.sendto(raw, ("127.0.0.1", udp.port))
        await eventually(lambda: udp.published + udp.duplicates == 2)
        _, _, response = await http("GET", f"http://127.0.0.1:{ingest.port}/metrics")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.body.decode())
            for s in family.samples
        }
        assert samples[("windsock_udp_received_total", ())] == 4
        assert samples[("windsock_udp_dropped_total", (("reason", "bad_json"),))] == 1
        assert samples[("windsock_udp_dropped_total", (("reason", "not_object"),))] == 1
        assert samples[("windsock_udp_duplicates_total", ())] == 1
        assert samples[("windsock_messages_published_total", (("source", "udp"),))] == 1
    finally:
        await ingest.stop()
