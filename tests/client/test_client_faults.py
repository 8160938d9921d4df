"""The client under faults, through nginx: a SIGKILLed or frozen worker, and Redis restarted empty.

Each test prints a ledger (published, received, lost, duplicated, out of
order) as tests/faults/ does. Publishes go straight to a worker that is not
harmed, so a publish is never answered 502 after reaching Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.client import Client, Message, Reset
from tests.client.helpers import Publisher, Recorder, all_received, collect, ledger, post, resets
from tests.conftest import RedisServer
from tests.helpers import UNIT, eventually
from tests.stack.conftest import NativeStack, get_json, start_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """3 workers with a 1 s heartbeat (SSE comments every second), shared by the worker faults."""
    stack = start_stack(tmp_path_factory.mktemp("faults"), workers=3, HEARTBEAT_INTERVAL="1")
    yield stack
    assert stack.stop() == 0, stack.output()


def holder(stack: NativeStack, kind: str) -> int:
    """The port of the one worker that holds a client connection of this kind."""
    ports = [
        p
        for p in stack.worker_ports
        if get_json(f"http://127.0.0.1:{p}/healthz")[1]["connections"].get(kind, 0) > 0
    ]
    assert len(ports) == 1, ports
    return ports[0]


async def until_held(stack: NativeStack, kind: str) -> int:
    await eventually(lambda: _held_once(stack, kind), timeout=10 * UNIT)
    return holder(stack, kind)


def _held_once(stack: NativeStack, kind: str) -> bool:
    with contextlib.suppress(AssertionError, OSError, KeyError):
        holder(stack, kind)
        return True
    return False


async def run_fault(
    stack: NativeStack, transport: str, fault: Any, name: str, rate: float = 100, **options: Any
) -> dict[str, Any]:
    """A client on two channels through nginx; a publisher at ``rate`` msg/s to another worker; ``fault``."""
    channels = [f"f.{uuid.uuid4().hex[:6]}.{n}" for n in range(2)]
    client = Client(stack.base, channels, transport=transport, **options)  # since None: from now on
    recorder = Recorder(client)
    consumer = asyncio.ensure_future(recorder.run())
    try:
        await asyncio.wait_for(recorder.live.wait(), 15 * UNIT)
        victim = await until_held(stack, "websocket" if transport == "websocket" else "sse")
        survivor = next(p for p in stack.worker_ports if p != victim)
        publisher = Publisher(f"http://127.0.0.1:{survivor}", channels, rate)
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(publisher.run(stop))
        await asyncio.sleep(1.0)
        await fault(stack.worker_pid(victim))
        await asyncio.sleep(3.0)
        stop.set()
        await publishing
        await all_received(publisher, recorder)
    finally:
        await client.close()
        await asyncio.wait_for(consumer, 10)
    return ledger(f"{name} ({transport})", publisher, recorder)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_sigkill_of_the_clients_worker_loses_nothing(stack: NativeStack, transport: str) -> None:
    """SIGKILL of the connection's worker at 100 msg/s: reconnect via nginx, every message once, in order."""

    async def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    figures = await run_fault(stack, transport, kill, "worker SIGKILL under 100 msg/s")
    assert figures["published"] >= 200  # 100/s for 4 s, less when the machine is busy
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    assert figures["received"] == figures["published"]
    assert figures["reconnects"] >= 1, "the client must have reconnected"


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_frozen_worker_is_left_after_2_5_heartbeats(stack: NativeStack, transport: str) -> None:
    """SIGSTOP of the worker holding the connection: idle after 2.5 heartbeats, reconnect, nothing lost."""
    stopped: list[int] = []

    async def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    try:
        figures = await run_fault(
            stack, transport, freeze, "worker SIGSTOP", rate=20, heartbeat=1, connect_timeout=3
        )
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    # Every message arrived before SIGCONT, so the client had left the frozen worker.
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    if transport == "websocket":
        assert "idle" in figures["errors"]
    # Over SSE a silent stream is replaced quietly, as windsock.js does: no status change.


@pytest.fixture
def redis_and_stack(tmp_path: Path) -> Iterator[tuple[RedisServer, NativeStack]]:
    """A redis-server this test controls (no persistence), and a 2-worker stack using it."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        stack = start_stack(tmp_path, workers=2, REDIS_URL=redis.url)
        try:
            yield redis, stack
        finally:
            stack.stop()
    finally:
        redis.stop()


async def test_redis_restarted_empty_is_a_reset_the_caller_sees(redis_and_stack: Any) -> None:
    """Redis restarts without its data: both transports' callers get a Reset, then new messages flow."""
    redis, stack = redis_and_stack
    channel = f"r.{uuid.uuid4().hex[:6]}"
    old = [post(stack.base, channel, i) for i in range(3)]
    clients = [Client(stack.base, [channel], since=0, transport=t) for t in ("websocket", "sse")]
    try:
        for client in clients:
            got, _ = await collect(client, 3)
            assert [m.id for m in got] == old
        before = clients[0].positions()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, redis.stop)
        await loop.run_in_executor(None, redis.start)
        healthy = {(200, "ok")}
        await eventually(lambda: worker_states(stack) == healthy, timeout=20 * UNIT)
        for client in clients:
            seen = await until_reset(client)
            assert [r.channel for r in resets(seen)] == [channel], f"{client.transport} saw no reset"
        new = await asyncio.get_running_loop().run_in_executor(None, post, stack.base, channel, "after")
        for client in clients:
            got, _ = await collect(client, 1)
            assert (got[0].id, got[0].data) == (new, "after")
        # A client resuming from before the restart is told too, and gets what is kept now.
        for transport in ("websocket", "sse"):
            async with Client(stack.base, [channel], since=before, transport=transport) as late:
                got, events = await collect(late, 1)
                assert [r.channel for r in resets(events)] == [channel], transport
                assert got[0].id == new
    finally:
        for client in clients:
            await client.close()


def worker_states(stack: NativeStack) -> set[tuple[int, str]]:
    answers = (get_json(f"http://127.0.0.1:{p}/healthz") for p in stack.worker_ports)
    return {(status, body["status"]) for status, body in answers}


async def until_reset(client: Client, timeout: float = 20) -> list[Any]:
    seen: list[Any] = []
    async with asyncio.timeout(timeout * UNIT):
        while not any(isinstance(e, Reset) for e in seen):
            event = await client.__anext__()
            assert not isinstance(event, Message), f"a message before the reset: {event}"
            seen.append(event)
    return seen
