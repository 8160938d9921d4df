"""End to end through the real native stack: nginx -> supervisord's workers -> redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest

from tests.helpers import SSE, WS, eventually, http, publish, wait_until
from tests.stack.conftest import get_json

pytestmark = pytest.mark.stack


async def _cover_all_workers(stack: Any, channel: str) -> tuple[dict[str, WS], dict[str, SSE]]:
    """Open WebSocket and SSE connections through nginx until every worker holds one of each."""
    names = stack.worker_names()
    sockets: dict[str, WS] = {}
    streams: dict[str, SSE] = {}
    extra: list[WS | SSE] = []
    # Extras stay open until the end: nginx balances by open connections.
    for _ in range(40):
        if len(sockets) == len(names) and len(streams) == len(names):
            break
        ws = await WS.connect(f"{stack.ws}?channel={channel}")
        await ws.recv_type("subscribed")
        extra.append(sockets.setdefault(ws.conn.headers["X-Windsock-Worker"], ws))
        sse = await SSE.connect(f"{stack.base}/events?channel={channel}")
        extra.append(streams.setdefault(sse.headers["x-windsock-worker"], sse))
    for conn in extra:
        if conn not in sockets.values() and conn not in streams.values():
            conn.close()
    assert set(sockets) == set(streams) == names, "nginx did not spread connections over every worker"
    return sockets, streams


async def test_websocket_upgrade_through_nginx(native_stack: Any) -> None:
    """The WebSocket upgrade succeeds through nginx and messages flow both ways."""
    ws = await WS.connect(native_stack.ws)
    await ws.subscribe("chat.e2e")
    await ws.send({"type": "publish", "channel": "chat.e2e", "data": "via nginx"})
    [message] = await ws.messages(1)
    assert message["data"] == "via nginx"
    ws.close()


async def test_browser_origin_is_same_origin_through_nginx(native_stack: Any) -> None:
    """A page's own Origin opens /ws and /events through nginx; a foreign Origin gets 403 on both."""
    own = {"Origin": native_stack.base}
    ws = await WS.connect(HTTPRequest(f"{native_stack.ws}?channel=origin", headers=own))
    await ws.recv_type("subscribed")
    ws.close()
    sse = await SSE.connect(f"{native_stack.base}/events?channel=origin", own)
    assert sse.status == 200, sse.body
    sse.close()

    foreign = {"Origin": "http://evil.example"}
    with pytest.raises(HTTPClientError) as refused:
        await WS.connect(HTTPRequest(native_stack.ws, headers=foreign))
    assert refused.value.code == 403
    sse = await SSE.connect(f"{native_stack.base}/events?channel=origin", foreign)
    assert (sse.status, sse.json()["code"]) == (403, "forbidden")
    sse.close()


async def test_origin_behind_a_tls_proxy_through_nginx(native_stack: Any) -> None:
    """Behind a TLS proxy that forwards its scheme and host, the public https origin is same-origin."""
    behind = {
        "Origin": "https://stream.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "stream.example",
    }
    ws = await WS.connect(HTTPRequest(f"{native_stack.ws}?channel=tls", headers=behind))
    await ws.recv_type("subscribed")
    ws.close()
    sse = await SSE.connect(f"{native_stack.base}/events?channel=tls", behind)
    assert sse.status == 200, sse.body
    sse.close()
    # The same proxy relaying another site's page is still refused.
    with pytest.raises(HTTPClientError) as refused:
        await WS.connect(HTTPRequest(native_stack.ws, headers={**behind, "Origin": "https://evil.example"}))
    assert refused.value.code == 403


async def test_oversize_publish_through_nginx_is_always_413(native_stack: Any) -> None:
    """A body over MAX_MESSAGE_BYTES gets 413 too_large through nginx every time, never a 502 to retry."""
    big = "x" * 70_000  # MAX_MESSAGE_BYTES is 65536; nginx's own limit is 1 MiB
    answers = [
        (status, body and body["code"])
        for status, body, _ in [
            await http("POST", f"{native_stack.base}/api/channels/oversize", big) for _ in range(30)
        ]
    ]
    assert answers == [(413, "too_large")] * 30
    status, state = get_json(f"{native_stack.base}/api/channels/oversize")
    assert status == 200 and state["history"] == 0  # nothing was published


async def test_publish_reaches_subscribers_on_every_worker(native_stack: Any) -> None:
    """One HTTP publish reaches WebSocket and SSE subscribers that nginx placed on every worker."""
    sockets, streams = await _cover_all_workers(native_stack, "fanout")
    msg_id = await publish(native_stack.base, "fanout", {"to": "everyone"})
    for ws in sockets.values():
        assert (await ws.messages(1))[0]["id"] == msg_id
    for sse in streams.values():
        assert (await sse.messages(1))[0]["id"] == msg_id
    for ws in sockets.values():
        ws.close()
    for sse in streams.values():
        sse.close()


async def test_sse_is_not_buffered_by_nginx(native_stack: Any) -> None:
    """An SSE event arrives through nginx well under a second after its publish."""
    sse = await SSE.connect(f"{native_stack.base}/events?channel=latency")
    assert sse.headers.get("x-accel-buffering") is None or sse.status == 200
    delays = []
    for n in range(5):
        started = time.monotonic()
        await publish(native_stack.base, "latency", n)
        [event] = await sse.messages(1, timeout=2)
        delays.append(time.monotonic() - started)
        assert event["data"] == n
    print(f"SSE publish->event through nginx: max {max(delays) * 1000:.1f} ms")
    assert max(delays) < 1.0
    sse.close()


async def test_last_event_id_resume_across_workers(native_stack: Any) -> None:
    """A stream resumed with Last-Event-ID on a different worker gets exactly the missed messages."""
    url = f"{native_stack.base}/events?channel=resume"
    first = await SSE.connect(url)
    served_by = first.headers["x-windsock-worker"]
    await publish(native_stack.base, "resume", 0)
    [seen] = await first.messages(1)
    first.close()
    for n in range(1, 4):
        await publish(native_stack.base, "resume", n)
    for _ in range(30):
        again = await SSE.connect(url, {"Last-Event-ID": str(seen["id"])})
        if again.headers["x-windsock-worker"] != served_by:
            break
        again.close()
    assert again.headers["x-windsock-worker"] != served_by
    await publish(native_stack.base, "resume", 4)
    assert [m["data"] for m in await again.messages(4)] == [1, 2, 3, 4]
    again.close()


async def test_killed_worker_is_restarted_and_traffic_continues(native_stack: Any) -> None:
    """SIGKILL of a worker: supervisor restarts it; new connections through nginx all succeed meanwhile."""
    port = native_stack.worker_ports[0]
    old_pid = native_stack.worker_pid(port)
    os.kill(old_pid, signal.SIGKILL)
    refused = []
    for n in range(30):
        ws = await WS.connect(native_stack.ws)  # a new connection: nginx skips the dead worker
        await ws.subscribe("kill-test")
        ws.close()
        status, body, _ = await http("POST", f"{native_stack.base}/api/channels/kill-test", n)
        if status != 202:
            refused.append((status, body))
    # A publish already sent on a pooled connection to the dead worker is
    # not replayed by nginx (POST is not idempotent): it gets a clear,
    # retryable JSON error, and only while pooled connections to it remain.
    assert all(
        r == (502, {"type": "error", "code": "no_worker", "message": "no worker answered; retry shortly"})
        for r in refused
    ), refused
    assert len(refused) <= 3

    def restarted() -> bool:
        try:
            return native_stack.worker_pid(port) != old_pid
        except (OSError, AssertionError):
            return False

    await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(restarted, timeout=20))
    status, body = get_json(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and body["status"] == "ok"


async def test_stopping_closes_websockets_with_1001_and_leaves_no_process(fresh_stack: Any) -> None:
    """SIGTERM to `make run`: WebSockets close with 1001 through nginx, and every process is gone."""
    stack = fresh_stack(workers=2)
    pids = {stack.worker_pid(port) for port in stack.worker_ports}
    sockets = []
    for _ in range(4):
        ws = await WS.connect(stack.ws)
        await ws.subscribe("bye")
        sockets.append(ws)
    stack.proc.send_signal(signal.SIGTERM)
    for ws in sockets:
        assert await asyncio.wait_for(ws.conn.read_message(), 30) is None
        assert ws.conn.close_code == 1001
    code = await asyncio.get_running_loop().run_in_executor(None, stack.proc.wait, 60)
    assert code == 0, stack.output()
    children = _descendants_alive(pids)
    assert not children, f"left behind: {children}"
    await eventually(lambda: _port_closed(stack.http_port))


def _descendants_alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.add(pid)
        except ProcessLookupError:
            pass
    return alive


def _port_closed(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
