"""End to end in Docker: `compose up --scale app=3`, scaling, a Redis restart, a killed replica, `down -v`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
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


async def next_ws(ws: WS, timeout: float = 15, stack: ComposeStack | None = None) -> dict[str, Any]:
    """The very next frame, which must be a message (no reset, nothing else)."""
    served_by = ws.conn.headers["X-Windsock-Worker"]
    try:
        frame = await ws.recv(timeout)
    except TimeoutError:
        # Say which worker went quiet, and what it says of itself.
        raise AssertionError(
            f"no frame within {timeout:.0f} s from {served_by}"
            + (f"; its /healthz: {worker_health(stack, served_by)}" if stack is not None else "")
        ) from None
    assert frame is not None, f"closed ({ws.conn.close_code} {ws.conn.close_reason}), served by {served_by}"
    assert frame["type"] == "message", (frame, served_by)
    return frame


def worker_health(stack: ComposeStack, worker: str) -> str:
    """One worker's /healthz, fetched inside its container."""
    host, port = worker.rsplit(":", 1)
    container = next((c for c in stack.containers() if c.hostname == host), None)
    if container is None:
        return f"no running container is {host}"
    status, body = container.healthz([int(port)])[int(port)]
    return f"{status} {json.dumps(body)}"


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


async def test_every_replica_applies_the_sources_files_namespaces(stack: ComposeStack) -> None:
    """SOURCES_FILE's [[namespaces]] reach every replica: every worker names chat.lobby's namespace 'chat'."""
    answers: dict[str, tuple[str, int, bool]] = {}
    for _ in range(20 * len(stack.workers())):
        status, body, response = await http("GET", f"{stack.base}/api/channels/chat.lobby")
        assert status == 200, body
        rules = body["namespace"]
        answers[response.headers["X-Windsock-Worker"]] = (
            rules["name"],
            rules["history_size"],
            rules["client_publish"],
        )
        if len(answers) == len(stack.workers()):
            break
    assert set(answers) == stack.workers(), f"answered: {sorted(answers)}"
    assert set(answers.values()) == {("chat", 50, True)}, answers


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


# Polls the workers' /healthz from inside their container (the host reaches
# containers only through nginx's published port), one JSON line per answer.
_WATCH = """
import json, sys, time, urllib.error, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    for port in sys.argv[2:]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                status, body = r.status, json.load(r)
        except urllib.error.HTTPError as e:
            status, body = e.code, json.load(e)
        except (OSError, ValueError):
            continue
        print(json.dumps([body["worker"], status, body["status"], body["broker"]]), flush=True)
    time.sleep(0.02)
"""


class HealthWatch:
    """Every worker's /healthz, polled closely from inside each app container while it runs."""

    def __init__(self, containers: list[Container], seconds: float = 120) -> None:
        self.seen: list[tuple[str, int, str, dict[str, Any]]] = []
        ports = [str(BASE_PORT + i) for i in range(WORKERS)]
        self.procs = [
            subprocess.Popen(
                ["docker", "exec", c.id, "python", "-u", "-c", _WATCH, str(seconds), *ports],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for c in containers
        ]
        self.readers = [threading.Thread(target=self._read, args=(p,), daemon=True) for p in self.procs]
        for reader in self.readers:
            reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            worker, status, state, broker = json.loads(line)
            self.seen.append((worker, status, state, broker))

    def latest(self) -> dict[str, tuple[int, str, dict[str, Any]]]:
        return {worker: (status, state, broker) for worker, status, state, broker in list(self.seen)}

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        for reader in self.readers:
            reader.join(10)
        for proc in self.procs:
            assert proc.stdout is not None
            proc.stdout.close()


async def test_redis_restart_degrades_health_then_delivery_resumes(stack: ComposeStack) -> None:
    """`compose restart redis`: workers answer 503 degraded, then ok; every subscriber gets the next id."""
    workers = stack.workers()
    sockets, streams = await cover_workers(stack, "e2e.redis", workers)
    before = await publish(stack.base, "e2e.redis", "before")
    for ws in sockets.values():
        assert (await next_ws(ws))["id"] == before
    for sse in streams.values():
        assert (await next_sse(sse))["id"] == before

    watch = HealthWatch(stack.containers())
    try:
        await eventually(lambda: set(watch.latest()) >= workers, timeout=30, interval=0.1)
        reconnects = {worker: broker["reconnects"] for worker, (_, _, broker) in watch.latest().items()}
        await in_thread(lambda: stack.run("restart", "redis", timeout=60))

        def all_recovered() -> bool:
            latest = watch.latest()
            return all(latest[w][0] == 200 and latest[w][2]["reconnects"] > reconnects[w] for w in workers)

        await eventually(all_recovered, timeout=30, interval=0.2)
    finally:
        await in_thread(watch.stop)
    degraded = {worker for worker, status, state, _ in watch.seen if (status, state) == (503, "degraded")}
    assert degraded, "no worker was seen answering 503 degraded while Redis restarted"
    NOTES.append(f"redis restart: {len(degraded)} of {len(workers)} workers seen 503 degraded, then all ok")
    status, body, _ = await http("GET", f"{stack.base}/healthz")
    assert (status, body["status"]) == (200, "ok")

    after = await publish_retrying(stack, "e2e.redis", "after")
    # The history survived in the redis-data volume (append-only file): ids go on from where they were.
    assert after == before + 1
    for ws in sockets.values():
        assert (await next_ws(ws, stack=stack))["id"] == after
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
