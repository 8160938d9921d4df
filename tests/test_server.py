"""A worker's shutdown: publishes in progress get their real answer; new ones are refused clearly."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from tests.helpers import http


async def test_shutdown_answers_publishes_in_progress(own_redis: Any, make_server: Any) -> None:
    """A publish in flight when SIGTERM comes is answered 202 (never cut to a 502); new ones get 503."""
    server = await make_server(redis_url=own_redis.url)
    url = f"{server.base}/api/channels/deploy"
    assert (await http("POST", url, 0))[0] == 202
    # Like nginx's pooled upstream connections: open before the stop, used after.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    pid = own_redis.process.proc.pid
    os.kill(pid, signal.SIGSTOP)  # Redis hangs: the next publish stays in progress
    try:
        in_flight = asyncio.ensure_future(http("POST", url, {"n": 1}))
        await asyncio.sleep(0.3)
        assert server.connections.requests == 1
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.3)
        writer.write(b"POST /api/channels/deploy HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 503"), head
        body = await asyncio.wait_for(reader.read(200), 5)
        assert b'"shutting_down"' in body
    finally:
        writer.close()
        os.kill(pid, signal.SIGCONT)
    status, body, _ = await in_flight
    assert status == 202, (status, body)
    await stopping
