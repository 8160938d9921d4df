"""End to end in Docker: `compose up --scale app=3`, scaling, a Redis restart, a killed replica, `down -v`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from typing import Any

import pytest

from tests.docker.conftest import (
    BASE_PORT,
    NOTES,
    ROOT,
    TIMINGS,
    WORKERS,
    ComposeStack,
    Container,
    Inbox,
    cover_workers,
    in_thread,
    run,
)
from tests.helpers import SSE, WS, eventually, http, publish

# One stack for the module, used in file order; building it counts in the first
# test. Redis is restarted before the kill: on nginx without `resolve` the
# killed replica's addresses stay in the upstream, and every new request then
# waits out proxy_connect_timeout on them (README, "Docker: what is verified").
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


async def health_workers(stack: ComposeStack, want: set[str], attempts: int) -> dict[str, dict[str, Any]]:
    """GET /healthz through nginx until every wanted worker has answered; each one's last answer."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        status, body, response = await http("GET", f"{stack.base}/healthz")
        assert status == 200, (status, body)
        assert body["status"] == "ok", body
        assert response.headers["X-Windsock-Worker"] == body["worker"]
        seen[body["worker"]] = body
        if set(seen) >= want:
            break
    return seen


async def next_ws(ws: WS, timeout: float = 15) -> dict[str, Any]:
    """The very next frame, which must be a message (no reset, nothing else)."""
    frame = await ws.recv(timeout)
    served_by = ws.conn.headers["X-Windsock-Worker"]
    assert frame is not None, f"closed ({ws.conn.close_code} {ws.conn.close_reason}), served by {served_by}"
    assert frame["type"] == "message", (frame, served_by)
    return frame


async def next_sse(sse: SSE, timeout: float = 15) -> dict[str, Any]:
    """The very next event, which must be a message (no reset)."""
    event = await sse.event(timeout)
    assert event["data"]["type"] == "message", event
    return event["data"]


async def publish_retrying(
    stack: ComposeStack,
    channel: str,
    data: Any,
    retry: tuple[str, ...] = ("broker_unavailable",),
    timeout: float = 30,
) -> int:
    """Publish through nginx, retrying on the given error codes (never on anything else); the id."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = await http("POST", f"{stack.base}/api/channels/{channel}", data)
        if status == 202:
            return int(body["id"])
        assert body is not None and body.get("code") in retry, (status, body)
        assert time.monotonic() < deadline, f"publishing kept failing for {timeout:.0f} s: {body}"
        await asyncio.sleep(0.2)


def app_hostnames(containers: list[Container]) -> dict[str, Container]:
    return {c.hostname: c for c in containers}


async def test_page_and_health_from_every_replica_and_worker(stack: ComposeStack) -> None:
    """`up --build --scale app=3`: nginx serves the page; /healthz answers from 3 replicas x 2 workers."""
    status, _, response = await http("GET", f"{stack.base}/")
    assert status == 200
    assert response.headers["Content-Type"].startswith("text/html") and b"Windsock" in response.body
    containers = stack.containers()
    assert len(containers) == 3, containers
    assert (
        len(stack.containers("redis"))
        == len(stack.containers("ingest"))
        == len(stack.containers("nginx"))
        == 1
    )
    want = stack.workers()
    assert len(want) == 3 * WORKERS
    seen = await health_workers(stack, want, attempts=30 * len(want))
    assert set(seen) == want, f"answered: {sorted(seen)}; expected every worker: {sorted(want)}"
    for name, body in seen.items():
        host, port = name.rsplit(":", 1)
        assert host in app_hostnames(containers) and BASE_PORT <= int(port) < BASE_PORT + WORKERS
        assert body["broker"]["kind"] == "redis" and body["broker"]["healthy"] is True


async def test_publish_and_udp_reach_subscribers_on_every_replica(stack: ComposeStack) -> None:
    """An HTTP publish and a UDP sensor datagram reach WebSocket and SSE subscribers on all 3 replicas."""
    workers = stack.workers()
    sockets, streams = await cover_workers(stack, "e2e.fanout", workers)
    assert {name.rsplit(":", 1)[0] for name in sockets} == {c.hostname for c in stack.containers()}
    msg_id = await publish(stack.base, "e2e.fanout", {"to": "everyone"})
    for ws in sockets.values():
        assert (await next_ws(ws))["id"] == msg_id
    for sse in streams.values():
        assert (await next_sse(sse))["id"] == msg_id

    sockets, streams = await cover_workers(stack, "sensors.e2e", workers)
    datagram = json.dumps({"sensor": "e2e", "temperature": 20}).encode()
    first: dict[str, Any] | None = None
    probe = next(iter(sockets.values()))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        # UDP may drop a datagram (while the port mapping settles): resend until one arrives.
        for _ in range(10):
            udp.sendto(datagram, ("127.0.0.1", stack.udp_port))
            try:
                first = await next_ws(probe, timeout=2)
                break
            except TimeoutError:
                continue
    assert first is not None, f"no datagram sent to udp://127.0.0.1:{stack.udp_port} was published"
    assert first["channel"] == "sensors.e2e"
    assert first["data"]["temperature"] == 20 and first["data"]["sensor"] == "e2e"
    for ws in sockets.values():
        if ws is not probe:
            assert (await next_ws(ws))["id"] == first["id"]
    for sse in streams.values():
        assert (await next_sse(sse))["id"] == first["id"]


async def test_make_scale_to_5_new_replicas_get_traffic(stack: ComposeStack) -> None:
    """`make scale N=5`: new replicas answer via nginx within 15 s; open streams survive the reload."""
    nginx_version = stack.run("exec", "-T", "nginx", "nginx", "-v").strip()
    rendered = stack.run("exec", "-T", "nginx", "cat", "/etc/nginx/conf.d/windsock.conf")
    path = "server ... resolve" if " resolve" in rendered else "make scale's reload (windsock-reload)"
    NOTES.append(f"scaling: {nginx_version}; new replicas joined through {path}")
    old = {c.hostname for c in stack.containers()}
    ws = await WS.connect(stack.ws)
    await ws.subscribe("e2e.scale")
    sse = await SSE.connect(f"{stack.base}/events?channel=e2e.scale")

    started = time.monotonic()
    compose = " ".join(stack.compose)
    make = ["make", "-s", "-C", str(ROOT), "scale", "N=5", f"COMPOSE={compose}"]
    await in_thread(lambda: run(make, 180, stack.env))
    scaled = time.monotonic()
    containers = stack.containers()
    assert len(containers) == 5, containers
    new = {c.hostname for c in containers} - old
    assert len(new) == 2
    want = {f"{host}:{BASE_PORT + i}" for host in new for i in range(WORKERS)}
    seen: set[str] = set()

    async def new_workers_answer() -> bool:
        _, body, _ = await http("GET", f"{stack.base}/healthz")
        if body and body.get("status") == "ok":
            seen.add(body["worker"])
        return seen >= want

    # The budget starts once the replicas exist: how long `make scale` itself
    # takes (compose creating containers) depends on the machine's load.
    await eventually(new_workers_answer, timeout=15, interval=0.05)
    answered = time.monotonic()
    TIMINGS["scale-up 3 -> 5 (make scale N=5)"] = (
        f"the command took {scaled - started:.1f} s; every new worker answered through nginx "
        f"{answered - scaled:.1f} s after it returned ({answered - started:.1f} s in all)"
    )

    # A stream opened after the scale can land on a new replica and gets live messages there.
    fresh: WS | None = None
    for _ in range(40):
        candidate = await WS.connect(stack.ws)
        if candidate.conn.headers["X-Windsock-Worker"] in want:
            fresh = candidate
            break
    assert fresh is not None, "no new WebSocket landed on a new replica"
    await fresh.subscribe("e2e.scale")
    msg_id = await publish(stack.base, "e2e.scale", "after scale")
    # The streams opened before the reload were not dropped by it.
    assert (await next_ws(ws))["id"] == msg_id
    assert (await next_sse(sse))["id"] == msg_id
    assert (await next_ws(fresh))["id"] == msg_id


async def _get_health(ip: str, port: int) -> tuple[int, dict[str, Any]]:
    """GET /healthz from one worker directly, on the project's own network."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def test_redis_restart_degrades_health_then_delivery_resumes(stack: ComposeStack) -> None:
    """`compose restart redis`: workers answer 503 degraded, then ok; every subscriber gets the next id."""
    containers = stack.containers()
    workers = stack.workers()
    sockets, streams = await cover_workers(stack, "e2e.redis", workers)
    before = await publish(stack.base, "e2e.redis", "before")
    for ws in sockets.values():
        assert (await next_ws(ws))["id"] == before
    for sse in streams.values():
        assert (await next_sse(sse))["id"] == before

    targets = [(c.ip, BASE_PORT + i) for c in containers for i in range(WORKERS)]
    reconnects = {t: (await _get_health(*t))[1]["broker"]["reconnects"] for t in targets}
    seen: list[tuple[tuple[str, int], int, str]] = []
    done = asyncio.Event()

    async def poll(target: tuple[str, int]) -> None:
        # The outage lasts as long as Redis takes to restart: poll each worker closely.
        while not done.is_set():
            try:
                status, body = await _get_health(*target)
                seen.append((target, status, body["status"]))
            except (OSError, TimeoutError, ValueError, IndexError):
                pass
            await asyncio.sleep(0.02)

    pollers = [asyncio.create_task(poll(t)) for t in targets]
    try:
        await asyncio.sleep(0.3)
        await in_thread(lambda: stack.run("restart", "redis", timeout=60))

        async def all_recovered() -> bool:
            for target in targets:
                status, body = await _get_health(*target)
                if status != 200 or body["broker"]["reconnects"] <= reconnects[target]:
                    return False
            return True

        await eventually(all_recovered, timeout=30, interval=0.2)
    finally:
        done.set()
        await asyncio.gather(*pollers)
    degraded = {target for target, status, state in seen if (status, state) == (503, "degraded")}
    assert degraded, "no worker was seen answering 503 degraded while Redis restarted"
    NOTES.append(f"redis restart: {len(degraded)} of {len(targets)} workers seen 503 degraded, then all ok")
    status, body, _ = await http("GET", f"{stack.base}/healthz")
    assert (status, body["status"]) == (200, "ok")

    after = await publish_retrying(stack, "e2e.redis", "after")
    # The history survived in the redis-data volume (append-only file): ids go on from where they were.
    assert after == before + 1
    for ws in sockets.values():
        assert (await next_ws(ws))["id"] == after
    for sse in streams.values():
        assert (await next_sse(sse))["id"] == after


async def test_killed_replica_subscribers_resume_elsewhere_others_unaffected(stack: ComposeStack) -> None:
    """`docker kill` of a replica: its subscribers reconnect via nginx, resume by id; others see no gap."""
    containers = stack.containers()
    victim = containers[0]
    doomed = victim.workers()
    sockets, streams = await cover_workers(stack, "e2e.kill", stack.workers())
    ws_boxes = {name: Inbox(ws) for name, ws in sockets.items()}
    sse_boxes = {name: Inbox(sse) for name, sse in streams.items()}
    first = await publish(stack.base, "e2e.kill", 0)
    for box in [*ws_boxes.values(), *sse_boxes.values()]:
        assert await box.ids(1) == [first]

    run(["docker", "kill", victim.id], 60)
    # The replica died before these were sent, so a 502 no_worker (a pooled
    # connection to it) means not received: retrying cannot duplicate.
    ids = [await publish_retrying(stack, "e2e.kill", n, retry=("no_worker",)) for n in range(1, 4)]
    assert ids == [first + 1, first + 2, first + 3]

    # On the killed replica: each stream ends, reconnects through nginx, resumes by id.
    resumed: list[Inbox] = []
    for name in doomed:
        old_ws, old_sse = ws_boxes.pop(name), sse_boxes.pop(name)
        await old_ws.ends()
        await old_sse.ends()
        assert old_ws.items == old_sse.items == []
        ws = await WS.connect(stack.ws)
        assert ws.conn.headers["X-Windsock-Worker"] not in doomed
        await ws.subscribe("e2e.kill", since=first)
        resumed.append(Inbox(ws))
        last_event_id = old_sse.client.last_event_id  # type: ignore[union-attr]
        assert last_event_id == str(first)
        sse = await SSE.connect(f"{stack.base}/events?channel=e2e.kill", {"Last-Event-ID": last_event_id})
        assert sse.status == 200 and sse.headers["x-windsock-worker"] not in doomed
        resumed.append(Inbox(sse))
    last = await publish_retrying(stack, "e2e.kill", 4, retry=("no_worker",))
    expected = [*ids, last]
    for box in resumed:
        assert await box.ids(len(expected)) == expected
    # Everywhere else: the same connections, never closed, every message in order.
    others = [*ws_boxes.values(), *sse_boxes.values()]
    assert len(others) == 2 * (len(containers) - 1) * WORKERS
    for box in others:
        assert await box.ids(len(expected)) == expected
        assert not box.closed
    killed = json.loads(run(["docker", "inspect", victim.id], 30))[0]["State"]
    NOTES.append(
        f"kill: {victim.name} exited {killed['ExitCode']}; subscribers of its {len(doomed)} workers resumed"
    )


def test_down_v_leaves_nothing(stack: ComposeStack) -> None:
    """`down -v` removes every container, network and volume of the project."""
    assert stack.leftovers()["volumes"], "the redis-data volume should exist before down -v"
    took = stack.down()
    TIMINGS["down -v"] = f"{took:.1f} s"
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    for args in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        listed = subprocess.run(["docker", *args], capture_output=True, check=True).stdout.decode()
        assert stack.project not in listed, listed
