"""The native stack (`make run`): nginx + supervisord + redis-server on free loopback ports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, need_binary

ROOT = Path(__file__).resolve().parents[2]


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the open response: close it, or its socket leaks
            return exc.code, json.load(exc)


@dataclass
class NativeStack:
    """A running `deploy/stack.py`; ports and helpers for the tests."""

    proc: subprocess.Popen[bytes]
    http_port: int
    worker_ports: list[int]
    ingest_port: int
    udp_port: int
    log: Path
    supervisor_dir: Path | None = None
    pids_seen: set[int] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws"

    def worker_pid(self, port: int) -> int:
        status, body = get_json(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, body
        return int(body["pid"])

    def worker_names(self) -> set[str]:
        return {get_json(f"http://127.0.0.1:{p}/healthz")[1]["worker"] for p in self.worker_ports}

    def supervisorctl(self, *args: str) -> str:
        assert self.supervisor_dir is not None
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisorctl",
                "-s",
                f"unix://{self.supervisor_dir}/supervisor.sock",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout + result.stderr

    def nginx_pid(self) -> int:
        assert self.supervisor_dir is not None
        return int((self.supervisor_dir / "nginx" / "nginx.pid").read_text())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_stack(tmp: Path, workers: int = 3, ingest: bool = False, **env: str) -> NativeStack:
    """Start `python deploy/stack.py` as `make run` does and wait for its ready line."""
    for name in ("nginx", "redis-server"):
        need_binary(name)
    http_port, ingest_port, udp_port = free_port(), free_port(), free_port()
    # Worker ports are base + n: find a base with `workers` free ports after it.
    base = _free_range(workers)
    log = tmp / "stack.log"
    args = [
        sys.executable,
        str(ROOT / "deploy" / "stack.py"),
        "--http-port",
        str(http_port),
        "--workers",
        str(workers),
        "--app-base-port",
        str(base),
        "--ingest-port",
        str(ingest_port),
        "--udp-port",
        str(udp_port),
    ]
    if not ingest:
        args.append("--no-ingest")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**_environ(), "LOG_LEVEL": "WARNING", **env},
        )
    stack = NativeStack(proc, http_port, [base + i for i in range(workers)], ingest_port, udp_port, log)
    deadline = time.monotonic() + 90
    while "Control the workers with" not in stack.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise AssertionError(f"stack did not start:\n{stack.output()}")
        time.sleep(0.1)
    stack.supervisor_dir = Path(stack.output().split("unix://", 1)[1].split("/supervisor.sock")[0])
    return stack


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _free_range(n: int) -> int:
    import random
    import socket

    # Below the ephemeral range (32768+), where client sockets never land: a
    # busy machine's outgoing connections cannot take a worker's port.
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(10_000, 30_000)
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)  # closed below even if bind fails
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@pytest.fixture(scope="module")
def native_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """One native stack with 3 workers for the module's tests."""
    stack = start_stack(tmp_path_factory.mktemp("stack"))
    yield stack
    assert stack.stop() == 0, stack.output()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Callable[..., NativeStack]]:
    """Start a stack that this test alone controls (and may stop)."""
    stacks: list[NativeStack] = []

    def start(**kwargs: Any) -> NativeStack:
        stack = start_stack(tmp_path, **kwargs)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.stop()
