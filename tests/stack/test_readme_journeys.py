"""The README's journeys, natively: each command run through bash as written, hosts and ports substituted.

`make run`, `make serve` and `WORKERS=8 make run` are run literally (their
ports come from the variables the README names); the commands of the
examples then run against them. tests/test_readme_blocks.py fails when a sh
block of the manual holds a command that no journey test runs.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, need_binary
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
from tests.readme_blocks import Command, expected, manual_command, opens
from tests.stack.conftest import _free_range

pytestmark = pytest.mark.stack

# The commands the native and the Docker journeys share (tests/journeys.py runs them).
PUBLISH = 'curl -X POST localhost:8888/api/channels/demo -d \'{"hello": "world"}\''
STREAM = "curl -N 'localhost:8888/events?channel=demo&last_event_id=0'"
NC = (
    'echo -n \'{"sensor": "greenhouse-1", "temperature": 21.4, "humidity": 0.56}\' | nc -u -w0 127.0.0.1 9999'
)
NC_LATEST = "curl localhost:8080/api/channels/sensors.greenhouse-1"
SENSOR = "python -m app.tools.sensor --host 127.0.0.1 --port 9999 --sensors 5 --rate 10 --count 100"
SENSOR_LATEST = "curl localhost:8080/api/channels/sensors.sim-1"
IDEMPOTENT_RETRY = (
    "for try in 1 2; do curl -s -X POST localhost:8080/api/channels/orders "
    "-H 'Idempotency-Key: order-1234' -d '{\"total\": 12.5}'; echo; done"
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MadeRun:
    """A `make run` (or `WORKERS=N make run`) started as the README says, on free ports."""

    running: Running
    values: dict[str, str]  # README host/port -> this run's
    http_port: int
    worker_ports: list[int]
    ingest_port: int
    udp_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stack_dir(self) -> str:
        """The temp dir the stack printed (its supervisor socket lives there)."""
        line = next(line for line in self.running.out if "unix://" in line)
        return line.split("unix://", 1)[1].split("/supervisor.sock")[0]


def make_run(command: Command, workers: int) -> MadeRun:
    """Start a README `make run` command, free ports in HTTP_PORT, APP_BASE_PORT, UDP_PORT, INGEST_PORT."""
    for name in ("nginx", "redis-server", "make"):
        need_binary(name)
    http_port, ingest_port, udp_port, base = free_port(), free_port(), free_udp_port(), _free_range(workers)
    env = shell_env(
        HTTP_PORT=str(http_port),
        APP_BASE_PORT=str(base),
        UDP_PORT=str(udp_port),
        INGEST_PORT=str(ingest_port),
    )
    values = {
        "localhost": "127.0.0.1",
        "8080": str(http_port),
        "8888": str(http_port),
        "8001": str(base),
        f"800{workers}" if workers < 10 else f"80{workers}": str(base + workers - 1),
        "9999": str(udp_port),
    }
    running = start(command, values, env)
    run = MadeRun(running, values, http_port, [base + i for i in range(workers)], ingest_port, udp_port)
    try:
        # Under pytest-timeout's 120 s, so a stack that never comes up fails
        # with what it printed rather than a bare timeout.
        running.expect(expected(command, values), timeout=90)
        running.until(lambda: any("unix://" in line for line in running.out), "the supervisor socket line")
    except BaseException:
        running.stop()
        raise
    return run


def processes_of(stack_dir: str) -> list[str]:
    """Processes whose command line or environment names the stack's temp dir (nginx, redis, workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if stack_dir in cmdline or stack_dir in environ:
            found.append(f"{pid}: {cmdline}")
    return found


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def assert_stops_on_ctrl_c(run: MadeRun) -> None:
    """Ctrl-C ends `make run`, and no process of the stack is left, nor any port held."""
    stack_dir = run.stack_dir()
    run.running.ctrl_c(timeout=90)
    assert processes_of(stack_dir) == []
    ports = [run.http_port, run.ingest_port, *run.worker_ports]
    assert [p for p in ports if not refuses(p)] == []


@pytest.fixture(scope="module")
def made_run() -> Iterator[MadeRun]:
    """The README's `make run`, with its ports substituted, for the module's journeys."""
    run = make_run(manual_command("make run"), workers=4)
    yield run
    run.running.stop()


def test_make_run_starts_the_stack_it_describes(made_run: MadeRun) -> None:
    """`make run` prints its ready line, serves the page via nginx, runs 4 workers and the ingest process."""
    status, body, _ = get(f"{made_run.base}/")
    assert status == 200 and "<html" in body.lower()
    for port in made_run.worker_ports:
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert len(healthz_workers(made_run.base, 80)) == 4
    status, body, _ = get(f"http://127.0.0.1:{made_run.ingest_port}/healthz")
    assert status == 200 and json.loads(body)["role"] == "ingest"


def test_curl_publish_and_stream_through_make_run(made_run: MadeRun) -> None:
    """The README's curl publish answers with the id; its `curl -N` stream shows the message, via nginx."""
    publish_and_stream(manual_command(PUBLISH), manual_command(STREAM), made_run.values)


def test_nc_datagram_becomes_the_channels_latest(made_run: MadeRun) -> None:
    """`nc -u` sends the README's sensor datagram; the channel's latest message is that reading, with ts."""
    udp_journey(manual_command(NC), manual_command(NC_LATEST), made_run.values)


def test_sensor_simulator_sends_its_count(made_run: MadeRun) -> None:
    """The simulator sends 100 readings from 5 sensors and says so; sensors.sim-1 then holds its 20."""
    simulator_journey(manual_command(SENSOR), manual_command(SENSOR_LATEST), made_run.values)


def test_a_retry_under_the_same_key_publishes_once(made_run: MadeRun) -> None:
    """The docs' two tries with one Idempotency-Key: 202, then the same id marked duplicate; one kept."""
    out = check(manual_command(IDEMPOTENT_RETRY), made_run.values, shell_env())
    first, second = (json.loads(line) for line in out.splitlines() if line.strip())
    assert "duplicate" not in first and second == {**first, "duplicate": True}
    status, body, _ = get(f"{made_run.base}/api/channels/orders")
    assert status == 200 and json.loads(body)["history"] == 1


def test_ctrl_c_stops_make_run_and_leaves_nothing(made_run: MadeRun) -> None:
    """Ctrl-C stops `make run`: no nginx, redis-server, supervisord or worker is left, no port held."""
    assert_stops_on_ctrl_c(made_run)


def test_stack_help_lists_every_setting_the_readme_names() -> None:
    """`python deploy/stack.py --help` lists each variable the README says make run takes, with its flag."""
    out = check(manual_command("python deploy/stack.py --help"), {}, shell_env())
    for name in (
        "HTTP_PORT",
        "WORKERS",
        "APP_BASE_PORT",
        "REDIS_PORT",
        "REDIS_URL",
        "UDP_PORT",
        "INGEST_PORT",
    ):
        assert name in out, name
    for flag in ("--http-port", "--workers", "--app-base-port", "--redis-port", "--redis-url", "--udp-port"):
        assert flag in out, flag
    assert "--ingest-port" in out and "--conn-per-ip" in out and "CONN_PER_IP" in out


def test_workers_8_make_run_runs_8_workers() -> None:
    """`WORKERS=8 make run` prints 8 workers on 8001-8008, all 8 answer via nginx, and Ctrl-C stops it all."""
    run = make_run(manual_command("WORKERS=8 make run"), workers=8)
    try:
        assert len(healthz_workers(run.base, 200)) == 8
        assert_stops_on_ctrl_c(run)
    finally:
        run.running.stop()


def make_serve(command: Command) -> tuple[Running, dict[str, str]]:
    """Start the README's `make serve` command on free ports (PORT, and UDP_PORT for its sensor listener)."""
    need_binary("make")
    port, udp = free_port(), free_udp_port()
    values = {"localhost": "127.0.0.1", "8888": str(port), "9999": str(udp)}
    running = start(command, values, shell_env(PORT=str(port), UDP_PORT=str(udp)))
    try:
        running.until(lambda: not refuses(port), f"make serve listening on {port}", timeout=60)
    except BaseException:
        running.stop()
        raise
    return running, values


def test_make_serve_serves_the_page_and_the_curl_journey() -> None:
    """`make serve` serves the page the README opens, and the README's curl publish and stream work on it."""
    serve = manual_command("make serve")
    running, values = make_serve(serve)
    try:
        [url] = opens(serve)
        status, body, _ = get(re.sub(r"localhost:8888", f"127.0.0.1:{values['8888']}", url))
        assert status == 200 and "<html" in body.lower()
        publish_and_stream(manual_command(PUBLISH), manual_command(STREAM), values)
        running.ctrl_c(timeout=30)
    finally:
        running.stop()


def test_subscribe_token_journey() -> None:
    """With SUBSCRIBE_SECRET a stream without token is refused; the token tool mints one that opens it."""
    running, values = make_serve(
        manual_command("SUBSCRIBE_SECRET=change-me-to-32-or-more-random-bytes make serve")
    )
    env = shell_env()
    try:
        check(manual_command("curl 'localhost:8888/events?channel=sensors.demo-1'"), values, env)
        token = check(
            manual_command(
                "python -m app.tools.token --secret change-me-to-32-or-more-random-bytes "
                "--channel 'sensors.*' --ttl 3600"
            ),
            values,
            env,
        ).strip()
        assert get(f"http://127.0.0.1:{values['8888']}/api/channels/sensors.demo-1?token={token}")[0] == 200
        stream_cmd = manual_command(
            'curl -N "localhost:8888/events?channel=sensors.demo-1&token=$(python -m app.tools.token '
            "--secret change-me-to-32-or-more-random-bytes --channel 'sensors.*')\""
        )
        stream = start(stream_cmd, values, env)
        try:
            stream.expect(expected(stream_cmd, values), timeout=30)
        finally:
            stream.stop()
        running.ctrl_c(timeout=30)
    finally:
        running.stop()
