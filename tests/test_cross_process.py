"""Two worker processes, one redis-server: a publish anywhere reaches subscribers everywhere."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SSE, WS, Process, free_port, http, http_status, publish, wait_until


def _healthy(port: int) -> bool:
    return http_status(f"http://127.0.0.1:{port}/healthz", timeout=1) == 200


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start `python -m app` processes; all are stopped after the test."""
    procs: list[Process] = []

    def spawn(**env: str) -> int:
        port = free_port()
        proc = Process(
            [sys.executable, "-m", "app", "--port", str(port)],
            # No sources: two workers would both want UDP port 9999 (tests/test_ingest.py runs them).
            env={"SOURCES": "", **env, "LOG_LEVEL": "WARNING"},
            log=str(tmp_path / f"worker-{port}.log"),
        )
        procs.append(proc)
        wait_until(lambda: _healthy(port) or proc.proc.poll() is not None, timeout=20)
        assert proc.proc.poll() is None, proc.output()
        return port

    yield spawn
    for proc in procs:
        assert proc.stop() == 0, proc.output()


async def test_publish_on_one_process_reaches_subscribers_on_another(
    redis_server: Any, spawn_worker: Any
) -> None:
    """A message published on worker A reaches WebSocket and SSE subscribers on worker B."""
    env = {"REDIS_URL": redis_server.url, "REDIS_PREFIX": f"x-{uuid.uuid4().hex[:8]}"}
    a, b = spawn_worker(**env), spawn_worker(**env)
    ws = await WS.connect(f"ws://127.0.0.1:{b}/ws?channel=shared")
    await ws.recv_type("subscribed")
    sse = await SSE.connect(f"http://127.0.0.1:{b}/events?channel=shared")
    msg_id = await publish(f"http://127.0.0.1:{a}", "shared", {"from": "a"})
    [via_ws] = await ws.messages(1)
    [via_sse] = await sse.messages(1)
    assert via_ws == via_sse == {"type": "message", "channel": "shared", "id": msg_id, "data": {"from": "a"}}
    ws.close()
    sse.close()


async def test_resume_on_another_process(redis_server: Any, spawn_worker: Any) -> None:
    """A client that read on A and resumes on B with Last-Event-ID gets the gap exactly once."""
    env = {"REDIS_URL": redis_server.url, "REDIS_PREFIX": f"x-{uuid.uuid4().hex[:8]}"}
    a, b = spawn_worker(**env), spawn_worker(**env)
    sse = await SSE.connect(f"http://127.0.0.1:{a}/events?channel=r")
    await publish(f"http://127.0.0.1:{a}", "r", 0)
    [seen] = await sse.messages(1)
    sse.close()
    for n in range(1, 4):
        await publish(f"http://127.0.0.1:{a}", "r", n)
    resumed = await SSE.connect(f"http://127.0.0.1:{b}/events?channel=r", {"Last-Event-ID": str(seen["id"])})
    await publish(f"http://127.0.0.1:{b}", "r", 4)
    assert [m["data"] for m in await resumed.messages(4)] == [1, 2, 3, 4]
    resumed.close()
    _, state, _ = await http("GET", f"http://127.0.0.1:{b}/api/channels/r")
    assert state["history"] == 5


async def test_embedded_mode_needs_nothing_else(spawn_worker: Any) -> None:
    """python -m app with no settings serves the page, publishes and streams with the memory broker."""
    port = spawn_worker()
    base = f"http://127.0.0.1:{port}"
    status, _, page = await http("GET", base + "/")
    assert status == 200 and b"<html" in page.body
    _, health, _ = await http("GET", base + "/healthz")
    assert health["broker"] == {"healthy": True}
    ws = await WS.connect(f"ws://127.0.0.1:{port}/ws?channel=solo")
    await ws.recv_type("subscribed")
    await publish(base, "solo", "ok")
    assert (await ws.messages(1))[0]["data"] == "ok"
    ws.close()
