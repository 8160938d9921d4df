"""Factory fixtures: real redis-server processes and in-process Windsock workers on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings, load_settings
from app.server import Server
from tests.helpers import OPEN_SOCKETS, Process, eventually, free_port, need_binary, wait_until


def pytest_configure(config: pytest.Config) -> None:
    # The tests press Ctrl-C on subprocesses (the CLI, the README's curl and
    # make commands). A shell without job control starts a background job
    # with SIGINT ignored, and an ignored signal stays ignored across exec:
    # run that way (a CI runner's `make test &`), every child would shrug
    # Ctrl-C off. A handler, unlike SIG_IGN, is reset to the default on exec.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class RedisServer:
    """A real redis-server on a loopback port, with its data in a temp dir."""

    def __init__(self, directory: Path, port: int | None = None, persist: bool = False) -> None:
        self.binary = need_binary("redis-server")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persist = persist
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str, ready: bool = True) -> None:
        """Start it with ``extra`` options; unless ``ready`` is False, wait until it answers PONG."""
        # persist: every write reaches the append-only file, so a restart keeps history.
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        self.process = Process(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *aof,
                "--dir",
                str(self.dir),
                "--protected-mode",
                "no",
                *extra,
            ],
            log=str(self.dir / "redis.log"),
        )
        if ready:
            wait_until(self.ping, timeout=10)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so a leaked socket fails the test that leaked it."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
async def close_client_sockets() -> AsyncIterator[None]:
    """Close every WebSocket and SSE client a test opened, whatever the test did."""
    yield
    # A WebSocket close waits for the server's close frame (Tornado gives it
    # 5 s) and only then closes the socket. The test's event loop ends right
    # after this fixture, so wait here, briefly, and then close what is left:
    # a socket still waiting when the loop ends is collected unclosed later,
    # and its ResourceWarning would fail some other test.
    streams = []
    writers = []
    while OPEN_SOCKETS:
        client = OPEN_SOCKETS.pop()
        if isinstance(client, asyncio.StreamWriter):
            writers.append(client)
        elif client.protocol is not None:
            streams.append(client.protocol.stream)
        client.close()
    with contextlib.suppress(AssertionError):  # not answered in time: closed below all the same
        await eventually(lambda: all(s.closed() for s in streams), timeout=2, interval=0.01)
    for stream in streams:
        stream.close()
    for writer in writers:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test alone may stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings with test-friendly values and a Redis key prefix unique to this test."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "port": 0,
            "redis_prefix": prefix,
            "unsubscribe_grace": 0.2,
            "worker_id": "",
            "sources": (),
        }
        values.update(overrides)
        return load_settings(environ={}, **values)

    return build


@pytest.fixture
async def make_server(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process workers; every one is stopped after the test."""
    servers: list[Server] = []

    async def start(**overrides: Any) -> Server:
        server = Server(make_settings(**overrides))
        await server.start()
        server.base = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
        server.ws = f"ws://127.0.0.1:{server.port}/ws"  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, make_server: Callable[..., Any]) -> Any:
    """One worker, once with each broker."""
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        return await make_server(redis_url=redis.url)
    return await make_server()
