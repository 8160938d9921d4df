"""The Docker stack for the end-to-end suite: `compose up -d --build --scale app=3` on a fresh project.

Base images come from tests/docker/build-base-images.sh: the official images
where they can be had, else local stand-ins built from Debian packages. The
project name is new for every run, and teardown removes every container,
network and volume carrying its label, whatever the tests did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import browser, open_tab  # noqa: F401  (chromium, for test_browser.py)
from tests.helpers import SSE, WS, free_port, http_status

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKERS = 2
BASE_PORT = 8001

# Figures printed at the end of the run (pytest_terminal_summary below).
TIMINGS: dict[str, str] = {}
NOTES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS or NOTES:
        terminalreporter.section("Docker end to end")
        for name, value in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {value}")
        for note in NOTES:
            terminalreporter.write_line(note)


# Lines of the stack's logs worth showing with a failure: the workers log at
# WARNING (Redis lost and back, refills, resets), and Redis says what it did.
_TELLING = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|redis[-_]1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test on the compose stack shows what its containers logged, since CI keeps no files."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when != "call" or not report.failed or not isinstance(stack, ComposeStack):
        return
    logs = stack.run("logs", "--no-color", "--timestamps", "--tail", "2000", timeout=60, check=False)
    telling = [line for line in logs.splitlines() if _TELLING.search(line)]
    report.sections.append(("compose logs (warnings, errors, redis; last 150)", "\n".join(telling[-150:])))


def run(args: list[str], timeout: float, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a command to completion, bounded in time; its combined output, or a failure that shows it."""
    try:
        done = subprocess.run(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{shlex.join(args)} did not finish in {timeout:.0f} s:\n{exc.output!r}"
        ) from None
    output = done.stdout.decode(errors="replace")
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {done.returncode}:\n{output}")
    return output


def engine_or_skip() -> None:
    """Skip, saying why, where there is no Docker engine or no Compose tool."""
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed: no Docker engine to run the stack on")
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["docker info failed"]
        pytest.skip(f"no Docker engine answers `docker info`: {reason[0]}")
    if compose_command() is None:
        pytest.skip("neither `docker compose` (v2) nor `docker-compose` (v1.29) is installed")


def compose_command() -> list[str] | None:
    """Compose v2 if present (what users mostly type), else Debian's docker-compose v1.29."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dangling_images() -> set[str]:
    return set(run(["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true"], 60).split())


def remove_superseded() -> None:
    """Remove the untagged leftovers of earlier app and nginx builds.

    A rebuild leaves the previous app and nginx images untagged, and the
    previous build stage of deploy/Dockerfile (its `pip install /src` step)
    too. The newest build stage stays: it is the next build's cache.
    """
    stages = []
    for image in dangling_images():
        try:
            inspected = json.loads(run(["docker", "image", "inspect", image], 30))[0]
        except (AssertionError, ValueError, IndexError):
            continue  # gone meanwhile
        cmd = json.dumps((inspected.get("Config") or {}).get("Cmd"))
        made_by = json.dumps((inspected.get("ContainerConfig") or {}).get("Cmd"))
        if "supervisord" in cmd or "daemon off;" in cmd:
            run(["docker", "rmi", image], 60, check=False)
        elif "pip install /src" in made_by:
            stages.append((inspected.get("Created", ""), image))
    for _, image in sorted(stages)[:-1]:
        run(["docker", "rmi", image], 60, check=False)


@dataclass
class Container:
    id: str
    name: str
    hostname: str
    ip: str
    service: str
    number: int

    def workers(self) -> set[str]:
        """The names its workers report: hostname:port."""
        return {f"{self.hostname}:{BASE_PORT + i}" for i in range(WORKERS)}

    def healthz(self, ports: list[int] | None = None) -> dict[int, tuple[int, Any]]:
        """Each worker's /healthz as (status, body), fetched inside this container (0 and the error: none).

        From inside, because the host may reach containers only through
        ports published on 127.0.0.1, and the workers' are not published.
        """
        wanted = ports if ports is not None else [BASE_PORT + i for i in range(WORKERS)]
        output = run(
            ["docker", "exec", self.id, "python", "-c", _HEALTHZ, *map(str, wanted)], 60, check=False
        )
        try:
            return {int(port): (status, body) for port, (status, body) in json.loads(output).items()}
        except ValueError:
            return {port: (0, output.strip()) for port in wanted}


# Run by `python -c` inside an app container: each port's /healthz, as JSON.
_HEALTHZ = """
import json, sys, urllib.error, urllib.request
answers = {}
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            answers[port] = [r.status, json.load(r)]
    except urllib.error.HTTPError as e:
        answers[port] = [e.code, json.load(e)]
    except Exception as e:
        answers[port] = [0, repr(e)]
print(json.dumps(answers))
"""


@dataclass
class ComposeStack:
    """A running compose project and the means to drive it."""

    project: str
    compose: list[str]
    env: dict[str, str]
    http_port: int
    udp_port: int
    logs: Path
    down_done: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws"

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run([*self.compose, *args], timeout, self.env, check)

    def label_filter(self, kind: str = "project") -> list[str]:
        return ["--filter", f"label=com.docker.compose.{kind}={self.project}"]

    def containers(self, service: str = "app", running: bool = True) -> list[Container]:
        args = [
            "docker",
            "ps",
            "-q",
            *self.label_filter(),
            "--filter",
            f"label=com.docker.compose.service={service}",
        ]
        if not running:
            args.append("-a")
        ids = run(args, 30).split()
        if not ids:
            return []
        found = json.loads(run(["docker", "inspect", *ids], 30))
        result = []
        for item in found:
            networks = item["NetworkSettings"]["Networks"]
            ip = next(iter(networks.values()))["IPAddress"] if networks else ""
            labels = item["Config"]["Labels"]
            result.append(
                Container(
                    item["Id"],
                    item["Name"].lstrip("/"),
                    item["Config"]["Hostname"],
                    ip,
                    service,
                    int(labels.get("com.docker.compose.container-number", "0")),
                )
            )
        return sorted(result, key=lambda c: c.number)

    def workers(self) -> set[str]:
        return {name for c in self.containers() for name in c.workers()}

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes that still carry the project's label."""
        return {
            "containers": run(["docker", "ps", "-aq", *self.label_filter()], 30).split(),
            "networks": run(["docker", "network", "ls", "-q", *self.label_filter("project")], 30).split(),
            "volumes": run(["docker", "volume", "ls", "-q", *self.label_filter("project")], 30).split(),
        }

    def save_logs(self) -> None:
        with open(self.logs, "a") as out:
            out.write(self.run("logs", "--no-color", "--timestamps", timeout=60, check=False))

    def down(self, timeout: float = 120) -> float:
        """`down -v`; returns how long it took."""
        self.save_logs()
        started = time.monotonic()
        self.run("down", "-v", "--remove-orphans", timeout=timeout)
        self.down_done = True
        return time.monotonic() - started

    def sweep(self) -> None:
        """Remove whatever is left of the project, by label, even after a failed `down`."""
        left = self.leftovers()
        if left["containers"]:
            run(["docker", "rm", "-f", "-v", *left["containers"]], 60, check=False)
        if left["networks"]:
            run(["docker", "network", "rm", *left["networks"]], 60, check=False)
        if left["volumes"]:
            run(["docker", "volume", "rm", "-f", *left["volumes"]], 60, check=False)


def base_images() -> dict[str, str]:
    """PYTHON_IMAGE, NGINX_IMAGE and REDIS_IMAGE from build-base-images.sh (official or stand-ins)."""
    started = time.monotonic()
    output = run(["bash", str(HERE / "build-base-images.sh")], 1800)
    images = dict(
        line.split("=", 1) for line in output.splitlines() if line.split("=", 1)[0].endswith("_IMAGE")
    )
    TIMINGS["base images (build-base-images.sh)"] = f"{time.monotonic() - started:.1f} s " + ", ".join(
        f"{k}={v}" for k, v in sorted(images.items())
    )
    assert set(images) == {"PYTHON_IMAGE", "NGINX_IMAGE", "REDIS_IMAGE"}, output
    return images


def wait_first_byte(url: str, timeout: float) -> float:
    """Poll until GET url answers 200; the moment it did."""

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        status = http_status(url, timeout=5)
        if status == 200:
            return time.monotonic()
        last = RuntimeError(f"status {status}" if status else "no answer")
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s (last error: {last})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """`compose up -d --build --scale app=3` on a fresh project; torn down completely afterwards."""
    engine_or_skip()
    images = base_images()
    compose = compose_command()
    assert compose is not None
    project = f"windsock-e2e-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("docker")
    # An empty env file: a developer's own .env must not change what is tested.
    env_file = tmp / "empty.env"
    env_file.write_text("")
    env = {
        **os.environ,
        **images,
        "COMPOSE_PROJECT_NAME": project,
        "WINDSOCK_TAG": "e2e",
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "UDP_BIND": "127.0.0.1",
        "UDP_PORT": str(free_udp_port()),
        "WORKERS": str(WORKERS),
        "LOG_LEVEL": "WARNING",
        # The sources file the image ships, as .env.example says: its
        # namespaces reach every container (test_compose_stack checks them).
        "SOURCES_FILE": "/app/sources.example.toml",
        # Publishing and sensors open, whatever the developer's shell exports.
        "PUBLISH_KEY": "",
        "UDP_TOKEN": "",
    }
    stack = ComposeStack(
        project,
        [*compose, "--env-file", str(env_file), "-p", project],
        env,
        int(env["HTTP_PORT"]),
        int(env["UDP_PORT"]),
        tmp / "compose.log",
    )
    NOTES.append(f"compose: {shlex.join(compose)}; project {project}; logs in {stack.logs}")
    try:
        started = time.monotonic()
        output = stack.run("up", "-d", "--build", "--scale", "app=3", timeout=900)
        up_done = time.monotonic()
        stack.logs.write_text(output)
        first_byte = wait_first_byte(f"{stack.base}/", 120)
        TIMINGS["compose up -d --build --scale app=3"] = f"{up_done - started:.1f} s (image builds included)"
        TIMINGS["first byte of / through nginx"] = (
            f"{first_byte - started:.1f} s after `up` began, {first_byte - up_done:.1f} s after it returned"
        )
        remove_superseded()
        yield stack
    finally:
        try:
            if not stack.down_done:
                stack.down(timeout=180)
        finally:
            stack.sweep()
        left = stack.leftovers()
        assert not any(left.values()), f"left behind: {left}"


# Clients spread over every worker.


async def cover_workers(
    stack: ComposeStack, channel: str, workers: set[str], limit: int | None = None
) -> tuple[dict[str, WS], dict[str, SSE]]:
    """Open WebSocket and SSE subscribers through nginx until every named worker holds one of each."""
    sockets: dict[str, WS] = {}
    streams: dict[str, SSE] = {}
    extra: list[WS | SSE] = []
    # Extras stay open until the end: nginx balances by open connections.
    for _ in range(limit or 8 * len(workers)):
        if set(sockets) >= workers and set(streams) >= workers:
            break
        if not set(sockets) >= workers:
            ws = await WS.connect(f"{stack.ws}?channel={channel}")
            await ws.recv_type("subscribed")
            sockets.setdefault(ws.conn.headers["X-Windsock-Worker"], ws)
            extra.append(ws)
        if not set(streams) >= workers:
            sse = await SSE.connect(f"{stack.base}/events?channel={channel}")
            assert sse.status == 200, sse.body
            streams.setdefault(sse.headers["x-windsock-worker"], sse)
            extra.append(sse)
    for conn in extra:
        if conn not in sockets.values() and conn not in streams.values():
            conn.close()
    assert set(sockets) >= workers and set(streams) >= workers, (
        f"nginx did not spread connections over every worker: ws {sorted(sockets)}, "
        f"sse {sorted(streams)}, wanted {sorted(workers)}"
    )
    return sockets, streams


class Inbox:
    """Reads one subscriber all the time, as a browser does, and keeps what arrives.

    A Tornado client that is not read stops answering the server's pings
    (its read queue holds one message), and the worker then closes it after
    HEARTBEAT_INTERVAL: a test that waits must keep reading.
    """

    def __init__(self, client: WS | SSE) -> None:
        self.client = client
        self.items: list[dict[str, Any]] = []
        self.closed = False
        self.task = asyncio.create_task(self._read())
        INBOXES.append(self)

    async def _read(self) -> None:
        try:
            while True:
                if isinstance(self.client, WS):
                    frame = await self.client.conn.read_message()
                    if frame is None:
                        break
                    self.items.append(json.loads(frame))
                else:
                    event = await self.client.event(timeout=3600)
                    self.items.append(event["data"])
        except (EOFError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed = True

    @property
    def served_by(self) -> str:
        if isinstance(self.client, WS):
            return self.client.conn.headers["X-Windsock-Worker"]
        return self.client.headers["x-windsock-worker"]

    async def take(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The next n items, which must all be messages (no reset, no error), within the timeout."""
        deadline = time.monotonic() + timeout
        while len(self.items) < n:
            assert not self.closed, f"closed after {self.items}, served by {self.served_by}"
            assert time.monotonic() < deadline, f"only {self.items} in {timeout:.0f} s from {self.served_by}"
            await asyncio.sleep(0.02)
        taken = self.items[:n]
        del self.items[:n]
        assert all(item["type"] == "message" for item in taken), (taken, self.served_by)
        return taken

    async def ids(self, n: int, timeout: float = 30) -> list[int]:
        return [int(item["id"]) for item in await self.take(n, timeout)]

    async def ends(self, timeout: float = 30) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)

    def stop(self) -> None:
        self.task.cancel()


INBOXES: list[Inbox] = []


@pytest.fixture(autouse=True)
async def stop_inboxes() -> AsyncIterator[None]:
    """Stop every Inbox reader a test started."""
    yield
    while INBOXES:
        box = INBOXES.pop()
        box.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await box.task


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
