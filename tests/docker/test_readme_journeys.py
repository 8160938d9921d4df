"""The README's journeys in Docker: `docker compose up` as written, then its curl, nc, sensor, scale commands.

The project is new (and its image tag too, so the first `up` builds, as it
does for a newcomer); only hosts and ports are substituted: nginx and the UDP
port are published on free ports of 127.0.0.1. The commands run through bash
as written; `docker compose` is replaced by the `docker-compose` the README
offers beside it where Compose v2 is missing.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.docker.conftest import (
    ComposeStack,
    base_images,
    compose_command,
    engine_or_skip,
    free_udp_port,
    remove_superseded,
    run,
)
from tests.helpers import UNIT, free_port
from tests.journeys import (
    Running,
    check,
    get,
    healthz_workers,
    publish_and_stream,
    shell_env,
    simulator_journey,
    start,
    udp_journey,
)
from tests.readme_blocks import Command, alternative, command_text, manual_command, opens

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PUBLISH = 'curl -X POST localhost:8888/api/channels/demo -d \'{"hello": "world"}\''
STREAM = "curl -N 'localhost:8888/events?channel=demo&last_event_id=0'"
NC = (
    'echo -n \'{"sensor": "greenhouse-1", "temperature": 21.4, "humidity": 0.56}\' | nc -u -w0 127.0.0.1 9999'
)
NC_LATEST = "curl localhost:8080/api/channels/sensors.greenhouse-1"
SENSOR = "python -m app.tools.sensor --host 127.0.0.1 --port 9999 --sensors 5 --rate 10 --count 100"
SENSOR_LATEST = "curl localhost:8080/api/channels/sensors.sim-1"
WORKERS = 4  # the compose file's default, which the README states


@dataclass
class Project:
    """The compose project the README's commands run in, and what the test substituted."""

    stack: ComposeStack
    env: dict[str, str]
    values: dict[str, str]
    v2: bool
    up: Running | None = None

    def as_written(self, command: Command) -> str:
        """The command, or the `docker-compose` form its comment gives where Compose v2 is missing."""
        text = command_text(command)
        if text.startswith("docker compose") and not self.v2:
            other = alternative(command)
            assert other and other.startswith("docker-compose"), f"{text!r} offers no docker-compose form"
            return other
        return text

    def replicas(self) -> list[str]:
        return sorted(c.hostname for c in self.stack.containers())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A fresh compose project for the README's commands; everything it made is removed afterwards."""
    engine_or_skip()
    images = base_images()
    compose = compose_command()
    assert compose is not None
    suffix = uuid.uuid4().hex[:8]
    name = f"windsock-readme-{suffix}"
    http_port, udp_port = free_port(), free_udp_port()
    env = shell_env(
        **images,
        COMPOSE_PROJECT_NAME=name,
        WINDSOCK_TAG=f"readme-{suffix}",
        HTTP_BIND="127.0.0.1",
        HTTP_PORT=str(http_port),
        UDP_BIND="127.0.0.1",
        UDP_PORT=str(udp_port),
        # The compose file's own defaults, stated so a developer's .env cannot change them.
        WORKERS=str(WORKERS),
        PUBLISH_KEY="",
        UDP_TOKEN="",
        ALLOWED_ORIGINS="",
        SOURCES="udp,demo,pollers",
        SOURCES_FILE="",
    )
    stack = ComposeStack(
        name,
        [*compose, "-p", name],
        env,
        http_port,
        udp_port,
        tmp_path_factory.mktemp("readme") / "compose.log",
    )
    values = {"localhost": "127.0.0.1", "8888": str(http_port), "8080": str(http_port), "9999": str(udp_port)}
    made = Project(stack, env, values, v2=compose == ["docker", "compose"])
    try:
        yield made
    finally:
        try:
            if made.up is not None:
                made.up.stop()
            stack.down(timeout=180)
        finally:
            stack.sweep()
            for image in ("windsock-app", "windsock-nginx"):
                run(["docker", "rmi", f"{image}:readme-{suffix}"], 60, check=False)
            remove_superseded()  # the build stages, as the e2e suite does: only the newest is kept
        left = stack.leftovers()
        assert not any(left.values()), f"left behind: {left}"


def wait_for(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout * UNIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout * UNIT:.0f} s"
        time.sleep(0.5)


def test_docker_compose_up_serves_the_page(project: Project) -> None:
    """`docker compose up` builds and starts the stack in the foreground; the page opens, 4 workers answer."""
    command = manual_command("docker compose up")
    project.up = start(command, project.values, project.env, text=project.as_written(command))
    [url] = opens(command)
    page = url.replace("http://localhost/", f"http://127.0.0.1:{project.stack.http_port}/")
    base = page.rstrip("/")
    project.up.until(lambda: _status(page) == 200, f"{page} answering 200", timeout=800)
    status, body, headers = get(page)
    assert status == 200 and "<html" in body.lower() and headers["Content-Type"].startswith("text/html")
    [replica] = project.replicas()
    assert {w.rsplit(":", 1)[0] for w in healthz_workers(base, 60)} == {replica}
    wait_for(lambda: len(healthz_workers(base, 40)) == WORKERS, f"{WORKERS} workers answering", 60)
    for service in ("redis", "ingest", "nginx"):
        assert len(project.stack.containers(service)) == 1, service


def _status(url: str) -> int:
    try:
        return get(url, timeout=3)[0]
    except OSError:
        return 0


def test_curl_publish_and_stream_through_nginx(project: Project) -> None:
    """The README's curl publish and `curl -N` stream work through the published nginx port."""
    publish_and_stream(manual_command(PUBLISH), manual_command(STREAM), project.values)


def test_nc_datagram_to_the_published_udp_port(project: Project) -> None:
    """`nc -u` to the published UDP port: the reading becomes sensors.greenhouse-1's latest message."""
    nc, latest = manual_command(NC), manual_command(NC_LATEST)
    # UDP may drop a datagram while Docker's port mapping settles; a reader would send it again.
    for attempt in range(10):
        try:
            udp_journey(nc, latest, project.values, timeout=3)
            return
        except AssertionError:
            if attempt == 9:
                raise


def test_sensor_simulator_against_the_published_udp_port(project: Project) -> None:
    """The simulator's 100 readings reach the ingest container; sensors.sim-1 holds its 20."""
    simulator_journey(manual_command(SENSOR), manual_command(SENSOR_LATEST), project.values)


def test_scale_up_then_make_scale(project: Project) -> None:
    """`docker compose up -d --scale app=2` adds a replica; `make scale N=3` a third; every worker answers."""
    base = f"http://127.0.0.1:{project.stack.http_port}"
    scale = manual_command("docker compose up -d --scale app=2")
    check(scale, project.values, project.env, timeout=600, text=project.as_written(scale))
    assert len(project.replicas()) == 2
    rendered = project.stack.run("exec", "-T", "nginx", "cat", "/etc/nginx/conf.d/windsock.conf")
    if " resolve" in rendered:  # nginx 1.27.3 or later finds the new replica by DNS
        wait_for(lambda: len(healthz_workers(base, 40)) == 2 * WORKERS, "the new replica via nginx", 60)

    check(manual_command("make scale N=3"), project.values, project.env, timeout=600)
    assert len(project.replicas()) == 3
    want = {f"{host}:{8001 + n}" for host in project.replicas() for n in range(WORKERS)}
    seen: set[str] = set()

    def all_answered() -> bool:
        seen.update(healthz_workers(base, 30))
        return seen >= want

    wait_for(all_answered, f"all {len(want)} workers of 3 replicas via nginx", 90)


def test_ctrl_c_stops_docker_compose_up(project: Project) -> None:
    """Ctrl-C ends the foreground `docker compose up`, which stops the project's containers."""
    assert project.up is not None
    project.up.ctrl_c(timeout=180)
    running = subprocess.run(
        ["docker", "ps", "-q", *project.stack.label_filter()], capture_output=True, text=True, timeout=60
    )
    assert running.stdout.split() == [], project.up.printed()[-3000:]
