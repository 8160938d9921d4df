"""Docker, secure by default: compose publishes on 127.0.0.1 only; exposed with no key, the app refuses.

Cheap on purpose: `compose config` needs no container, and the refusal
starts only the app (and, with `run`, the ingest) of a fresh project, with
no dependency, no nginx and no published port; the images are the suite's
cached ones. Teardown removes every container, network and volume of the
project.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.conftest import (
    ROOT,
    ComposeStack,
    base_images,
    compose_command,
    engine_or_skip,
    free_udp_port,
    remove_superseded,
    run,
)
from tests.helpers import UNIT, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# What a developer's shell or .env may set that would change what is tested.
CLEARED = {"HTTP_BIND", "UDP_BIND", "HTTP_PORT", "UDP_PORT", "PUBLISH_KEY", "UDP_TOKEN", "OPEN_PUBLISH"}


def _project(tmp: Path, **env: str) -> ComposeStack:
    """A fresh compose project (not started), read with an empty env file."""
    compose = compose_command()
    assert compose is not None
    project = f"windsock-secure-{uuid.uuid4().hex[:8]}"
    env_file = tmp / "empty.env"
    env_file.write_text("")
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ.update(COMPOSE_PROJECT_NAME=project, WINDSOCK_TAG="e2e", **env)
    return ComposeStack(
        project, [*compose, "--env-file", str(env_file), "-p", project], environ, 0, 0, tmp / "compose.log"
    )


def _host_ips(ports: list[Any]) -> list[tuple[str, str]]:
    """(host address, container port/protocol) of each published port, in either compose's format."""
    found = []
    for port in ports:
        if isinstance(port, str):  # v1.29: "127.0.0.1:80:80/tcp"
            host_ip, _published, target = port.rsplit(":", 2)
            found.append((host_ip, target if "/" in target else f"{target}/tcp"))
        else:  # v2: {host_ip, published, target, protocol}
            found.append((port.get("host_ip", "0.0.0.0"), f"{port['target']}/{port.get('protocol', 'tcp')}"))
    return found


def _config(stack: ComposeStack) -> dict[str, Any]:
    return yaml.safe_load(stack.run("config", timeout=60))["services"]


def test_default_config_publishes_nginx_and_udp_on_loopback_only(tmp_path: Path) -> None:
    """With nothing set, `compose config` publishes nginx (80) and UDP (9999) on 127.0.0.1 only."""
    engine_or_skip()
    services = _config(_project(tmp_path))
    assert _host_ips(services["nginx"]["ports"]) == [("127.0.0.1", "80/tcp")]
    assert _host_ips(services["ingest"]["ports"]) == [("127.0.0.1", "9999/udp")]
    assert "ports" not in services["app"] and "ports" not in services["redis"]
    assert services["app"]["environment"]["HTTP_BIND"] == "127.0.0.1"
    assert services["ingest"]["environment"]["UDP_BIND"] == "127.0.0.1"
    assert services["app"]["environment"]["OPEN_PUBLISH"] == "false"
    # The knob works, and the app and ingest get the same address nginx and UDP are published on.
    exposed = _config(_project(tmp_path, HTTP_BIND="0.0.0.0", UDP_BIND="0.0.0.0"))
    assert _host_ips(exposed["nginx"]["ports"]) == [("0.0.0.0", "80/tcp")]
    assert _host_ips(exposed["ingest"]["ports"]) == [("0.0.0.0", "9999/udp")]
    assert exposed["app"]["environment"]["HTTP_BIND"] == "0.0.0.0"
    assert exposed["ingest"]["environment"]["UDP_BIND"] == "0.0.0.0"


@pytest.fixture(scope="module")
def refusing_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """A fresh project exposed on 0.0.0.0 with no PUBLISH_KEY or UDP_TOKEN, image built; removed after."""
    engine_or_skip()
    images = base_images()
    stack = _project(
        tmp_path_factory.mktemp("secure"),
        **images,
        HTTP_BIND="0.0.0.0",
        HTTP_PORT=str(free_port()),
        UDP_BIND="0.0.0.0",
        UDP_PORT=str(free_udp_port()),
        WORKERS="2",
    )
    try:
        stack.run("build", "app", timeout=900)  # the app and ingest services share this image
        remove_superseded()
        yield stack
    finally:
        try:
            stack.down(timeout=180)
        finally:
            stack.sweep()
        left = stack.leftovers()
        assert not any(left.values()), f"left behind: {left}"


def test_exposed_app_without_key_refuses_to_start(refusing_project: ComposeStack) -> None:
    """`compose up` with HTTP_BIND=0.0.0.0 and no PUBLISH_KEY: the app container exits 2, its log says why."""
    stack = refusing_project
    # Only the app: nothing is published, and nginx never binds 0.0.0.0.
    stack.run("up", "-d", "--no-deps", "app", timeout=300)
    (container,) = stack.containers("app", running=False)
    deadline = time.monotonic() + 60 * UNIT
    while True:
        state = json.loads(run(["docker", "inspect", container.id], 30))[0]["State"]
        # It exits at once; its restart policy then restarts it, to exit again.
        if state["ExitCode"] == 2 or state["Status"] in {"exited", "restarting"}:
            break
        assert time.monotonic() < deadline, f"the app container is still {state['Status']}"
        time.sleep(0.5)
    assert state["ExitCode"] == 2, state
    assert not state["Health"] or state["Health"]["Status"] != "healthy", state
    logs = run(["docker", "logs", container.id], 30)
    line = (
        "windsock: HTTP_BIND='0.0.0.0' is reachable from other machines and PUBLISH_KEY is empty, so "
        "anyone could publish: set PUBLISH_KEY, or bind 127.0.0.1, or set OPEN_PUBLISH=true to allow it"
    )
    assert line in logs.splitlines(), logs
    assert set(logs.strip().splitlines()) == {line}, logs  # that line alone: supervisord never started


def test_exposed_ingest_without_udp_token_refuses_to_start(refusing_project: ComposeStack) -> None:
    """The ingest service with UDP_BIND=0.0.0.0 and no UDP_TOKEN exits 2 with one line naming both."""
    stack = refusing_project
    # `run` publishes no port; the service's environment is the one `up` would give it.
    done = subprocess.run(
        [*stack.compose, "run", "--rm", "--no-deps", "-T", "ingest"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180 * UNIT,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert (
        "windsock: UDP_BIND='0.0.0.0' is reachable from other machines and UDP_TOKEN is empty, so "
        "anyone could publish: set UDP_TOKEN, or bind 127.0.0.1, or set OPEN_PUBLISH=true to allow it"
    ) in (done.stdout + done.stderr).splitlines(), (done.stdout, done.stderr)
