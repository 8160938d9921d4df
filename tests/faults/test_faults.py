"""Faults against the real native stack, each printing published / delivered / lost / duplicated.

Subscribers connect through nginx (half WebSocket, half SSE) and resume by
id whenever they are disconnected; the publisher goes through nginx too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from tests.conftest import RedisServer
from tests.faults.harness import run_scenario
from tests.helpers import eventually, http
from tests.stack.conftest import NativeStack, get_json, start_stack

pytestmark = pytest.mark.stack


@pytest.fixture
def redis_and_stack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RedisServer, NativeStack]]:
    """A redis-server this test controls, and a 2-worker stack using it."""
    redis = RedisServer(tmp_path / "redis", persist=getattr(request, "param", False))
    redis.start()
    try:  # Redis is stopped even if the stack fails to start
        stack = start_stack(tmp_path, workers=2, REDIS_URL=redis.url)
        yield redis, stack
        stack.stop()
    finally:
        redis.stop()


def _worker_states(stack: NativeStack) -> set[tuple[int, str]]:
    return {
        (status, body["status"])
        for status, body in (get_json(f"http://127.0.0.1:{p}/healthz") for p in stack.worker_ports)
    }


async def _redis_outage(redis: RedisServer, stack: NativeStack, seconds: float) -> dict[str, float]:
    """Stop Redis for ``seconds``; check the workers' behaviour meanwhile; return timings."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, redis.stop)
    await eventually(lambda: _worker_states(stack) == {(503, "degraded")}, timeout=10)
    started = time.monotonic()
    status, body, _ = await http("POST", f"{stack.base}/api/channels/probe", 1)
    refused_in = time.monotonic() - started
    assert (status, body["code"]) == (503, "broker_unavailable")
    assert refused_in < 3, "a publish during the outage must answer at once"
    await asyncio.sleep(seconds)
    await loop.run_in_executor(None, redis.start)
    back = time.monotonic()
    await eventually(lambda: _worker_states(stack) == {(200, "ok")}, timeout=10)
    return {"refused_in_s": round(refused_in, 2), "healthy_again_s": round(time.monotonic() - back, 2)}


@pytest.mark.parametrize("redis_and_stack", [True], indirect=True, ids=["history-kept"])
async def test_redis_stops_for_5s_and_returns(redis_and_stack: Any) -> None:
    """Redis away 5 s: degraded, 503 publishes, clients stay; back: delivery resumes, nothing lost."""
    redis, stack = redis_and_stack
    timings: dict[str, float] = {}

    async def fault() -> None:
        timings.update(await _redis_outage(redis, stack, 5))

    ledger = await run_scenario(stack.base, "f.outage", clients=40, rate=50, fault=fault)
    figures = ledger.report(f"redis down 5 s, history kept {timings}")
    assert figures["published"] > 100
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    assert figures["reconnects"] == 0, "clients must stay connected through a Redis outage"
    assert timings["healthy_again_s"] < 5


async def test_redis_restarts_empty(redis_and_stack: Any) -> None:
    """Redis comes back empty: every subscriber is told with a reset, and delivery resumes."""
    redis, stack = redis_and_stack
    timings: dict[str, float] = {}

    async def fault() -> None:
        timings.update(await _redis_outage(redis, stack, 2))

    ledger = await run_scenario(stack.base, "f.empty", clients=20, rate=50, fault=fault)
    figures = ledger.report(f"redis restarted empty {timings}")
    assert figures["resets"] == 20, "each subscriber must be told its history is gone"
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)


@pytest.fixture
def three_workers(tmp_path: Path) -> Iterator[NativeStack]:
    stack = start_stack(tmp_path, workers=3)
    yield stack
    stack.stop()


async def test_worker_sigkill_with_200_clients(three_workers: NativeStack) -> None:
    """SIGKILL of a worker under 200 streaming clients: they resume elsewhere, losing nothing, once."""
    stack = three_workers
    port = stack.worker_ports[0]

    async def fault() -> None:
        pid = stack.worker_pid(port)
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: _pid_changed(stack, port, pid), timeout=20)

    ledger = await run_scenario(stack.base, "f.kill", clients=200, rate=50, fault=fault)
    # Unkeyed, for comparison with the runs below. The publisher is rarely
    # inside the killed worker at the kill (a publish lasts a few ms of its
    # 20, and least_conn may send it to another worker): refused is usually {}.
    figures = ledger.report("worker SIGKILL, 200 clients")
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    assert figures["reconnects"] > 0, "the killed worker's clients must have reconnected"


@pytest.fixture
def redis_and_three_workers(tmp_path: Path) -> Iterator[tuple[RedisServer, NativeStack]]:
    """A redis-server that takes DEBUG from loopback, and a 3-worker stack using it."""
    redis = RedisServer(tmp_path / "redis")
    redis.start("--enable-debug-command", "local")
    try:  # Redis is stopped even if the stack fails to start
        stack = start_stack(tmp_path, workers=3, REDIS_URL=redis.url)
        yield redis, stack
        stack.stop()
    finally:
        redis.stop()


# Under the workers' Redis socket timeout (2 s), so no worker gives up on a
# command Redis holds meanwhile; long enough for a 50 msg/s publisher to send one.
_REDIS_ASLEEP_S = 1.0


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
async def test_worker_sigkill_inside_a_publish(redis_and_three_workers: Any, keyed: bool) -> None:
    """SIGKILL inside a publish Redis still runs: retrying its 502 publishes once if keyed, else twice."""
    redis, stack = redis_and_three_workers
    killed: dict[str, int] = {}

    async def fault() -> None:
        killed.update(await _kill_worker_mid_publish(redis, stack))

    clients, kind = 200, "keyed" if keyed else "unkeyed"
    ledger = await run_scenario(stack.base, f"f.kill.{kind}", clients, rate=50, fault=fault, keyed=keyed)
    figures = ledger.report(f"worker SIGKILL inside a publish, {kind} publisher, {clients} clients {killed}")
    # The kill cut a publish nginx had passed on, and nginx never resends a
    # POST it has sent: the publisher got that 502, and retried it.
    assert figures["refused"].get(502, 0) >= 1 and figures["retried"] >= 1, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["out_of_order"] == 0, figures
    assert figures["reconnects"] > 0, "the killed worker's clients must have reconnected"
    if keyed:
        assert figures["duplicated_payloads"] == 0, figures
        assert ledger.unconfirmed() == [], "every delivered id must have been confirmed to the publisher"
    else:
        # The control: the fault does publish without answering, and an
        # unkeyed retry publishes that payload again, to every subscriber.
        assert figures["duplicated_payloads"] == clients, figures
        assert len(ledger.unconfirmed()) == 1, figures


async def _kill_worker_mid_publish(redis: RedisServer, stack: NativeStack) -> dict[str, int]:
    """SIGKILL the worker whose publish is waiting on Redis, held in DEBUG SLEEP; wait for its successor.

    Redis runs the dead worker's queued publish when it wakes: a publish that
    happened, but whose answer (a 502 instead of a 202) says nothing of it.
    """
    pids = {stack.worker_pid(port): port for port in stack.worker_ports}
    client = redis_py.Redis.from_url(redis.url)
    try:
        # The listeners' pub/sub connections may send a PING meanwhile: not a publish.
        listening = {c["addr"] for c in client.client_list() if "P" in c["flags"]}
        loop = asyncio.get_running_loop()
        asleep = loop.run_in_executor(None, client.execute_command, "DEBUG", "SLEEP", _REDIS_ASLEEP_S)
        try:
            deadline = time.monotonic() + _REDIS_ASLEEP_S * 0.8
            pid = None
            while pid is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
                pid = _waiting_on_redis(redis.port, set(pids), listening)
            assert pid is not None, "no worker's publish was seen waiting on Redis"
            os.kill(pid, signal.SIGKILL)
        finally:
            await asleep
    finally:
        client.close()
    await eventually(lambda: _pid_changed(stack, pids[pid], pid), timeout=20)
    return {"killed_port": pids[pid]}


def _waiting_on_redis(redis_port: int, pids: set[int], listening: set[str]) -> int | None:
    """The pid among ``pids`` with a command sent to Redis and not yet read by it, if any (Linux /proc)."""
    sockets = []  # (local port, remote port, receive queue, inode) of every IPv4 TCP socket
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues, inode = fields[1], fields[2], fields[4], fields[9]
        sockets.append((int(local[-4:], 16), int(remote[-4:], 16), int(queues.split(":")[1], 16), inode))
    unread = {
        remote
        for local, remote, queued, _ in sockets
        if local == redis_port and queued and f"127.0.0.1:{remote}" not in listening
    }
    inodes = {inode for local, remote, _, inode in sockets if remote == redis_port and local in unread}
    for pid in pids:
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fd) in {f"socket:[{i}]" for i in inodes} for fd in fds.iterdir()):
                return pid
    return None


def _pid_changed(stack: NativeStack, port: int, pid: int) -> bool:
    try:
        return stack.worker_pid(port) != pid
    except (OSError, AssertionError, ValueError):
        return False


async def test_rolling_restart_under_100_msgs(three_workers: NativeStack) -> None:
    """supervisorctl restart of each worker in turn at 100 msg/s: zero lost, zero duplicated."""
    stack = three_workers
    loop = asyncio.get_running_loop()

    async def fault() -> None:
        for n in range(3):
            out = await loop.run_in_executor(None, stack.supervisorctl, "restart", f"app:app_{n:02d}")
            assert "started" in out, out

    ledger = await run_scenario(stack.base, "f.rolling", clients=60, rate=100, fault=fault)
    figures = ledger.report("rolling restart of 3 workers at 100 msg/s")
    assert figures["published"] > 200
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)


async def test_nginx_reload_under_load(three_workers: NativeStack) -> None:
    """nginx reloads (SIGHUP) under load: existing streams survive, nothing lost or repeated."""
    stack = three_workers

    async def fault() -> None:
        for _ in range(2):
            os.kill(stack.nginx_pid(), signal.SIGHUP)
            await asyncio.sleep(1)

    ledger = await run_scenario(stack.base, "f.reload", clients=60, rate=50, fault=fault)
    figures = ledger.report("nginx reload x2")
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    assert figures["reconnects"] == 0, "a reload must not cut existing streams"
