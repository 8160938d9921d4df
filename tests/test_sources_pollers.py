"""HTTP pollers against a real local upstream whose answers each test scripts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from app.config import ConfigError
from app.sources.poll_config import apply_selector, load_pollers, parse_selector
from tests.helpers import SSE, WS, eventually, http
from tests.test_sources_demo import hang_up

EXAMPLE = Path(__file__).parent.parent / "sources.example.toml"


@dataclass
class Reply:
    """One scripted answer: a status, a body, and how long to wait before giving it."""

    body: Any = None
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None


@dataclass
class Request:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]


class Upstream:
    """A local HTTP upstream: each request gets the next scripted reply, and the last one repeats."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply({})]
        self.requests: list[Request] = []
        self.port = 0
        self._server: HTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/data"

    def serve(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def tagged(self, header: str) -> list[str]:
        """The value of ``header`` on each request so far, in order."""
        return [r.headers.get(header, "") for r in self.requests]

    def next_reply(self, headers: dict[str, str]) -> Reply:
        self.requests.append(Request(time.monotonic(), headers))
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    async def __aenter__(self) -> Upstream:
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        app = tornado.web.Application([(r"/data", _UpstreamHandler, {"upstream": self})])
        self._server = HTTPServer(app)
        self._server.add_sockets(sockets)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
            await asyncio.wait_for(self._server.close_all_connections(), 5)


class _UpstreamHandler(tornado.web.RequestHandler):
    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.closed = asyncio.Event()

    def on_connection_close(self) -> None:
        self.closed.set()

    async def get(self) -> None:
        reply = self.upstream.next_reply(dict(self.request.headers))
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), reply.delay)
            if self.closed.is_set():
                return  # the poller gave up (its timeout); nobody to answer
        self.set_status(reply.status)
        self.set_header("Content-Type", "application/json")
        self.finish(reply.raw if reply.raw is not None else json.dumps(reply.body).encode())


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A scripted local HTTP upstream on a free port; stopped after the test."""
    async with Upstream() as server:
        yield server


def sources_file(path: Path, *pollers: dict[str, Any]) -> str:
    """Write a TOML sources file declaring ``pollers``; returns its path."""
    lines = []
    for poller in pollers:
        lines.append("[[pollers]]")
        for key, value in poller.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _ok(value: Any) -> Reply:
    return Reply({"reading": {"value": value}})


async def test_poller_publishes_only_changes(upstream: Upstream, make_server: Any, tmp_path: Path) -> None:
    """Upstream serving A, A, B, B, A (then A forever): WebSocket and SSE subscribers see A, B, A."""
    upstream.serve(_ok("A"), _ok("A"), _ok("B"), _ok("B"), _ok("A"))
    path = sources_file(
        tmp_path / "sources.toml",
        {"name": "feed", "url": upstream.url, "channel": "feed", "interval": 0.05, "select": "reading.value"},
    )
    server = await make_server(sources=("pollers",), sources_file=path)
    assert server.sources.leases is None  # one process with the memory broker: no lock
    ws = await WS.connect(server.ws)
    await ws.subscribe("feed", since=0)  # history too, whenever the first fetch happened
    sse = await SSE.connect(f"{server.base}/events?channel=feed", {"Last-Event-ID": "0"})
    await eventually(lambda: len(upstream.requests) >= 10)
    assert [m["data"] for m in await ws.messages(3)] == ["A", "B", "A"]
    assert [m["data"] for m in await sse.messages(3)] == ["A", "B", "A"]
    await ws.no_message()
    [poller] = server.sources.of("pollers")
    assert poller.published == 3 and poller.state == "ok"
    await hang_up(ws, sse)


async def test_selector_and_headers(upstream: Upstream, make_server: Any, tmp_path: Path) -> None:
    """Each poller publishes the part its selector names and sends its configured headers."""
    upstream.serve(
        Reply({"current": {"temperature_2m": 3.5, "wind": 2}, "items": [{"price": 9.5}, {"price": 1}]})
    )
    path = sources_file(
        tmp_path / "sources.toml",
        {
            "name": "t",
            "url": upstream.url,
            "channel": "w.temp",
            "interval": 1,
            "select": "current.temperature_2m",
        },
        {
            "name": "p",
            "url": upstream.url,
            "channel": "p.first",
            "interval": 1,
            "select": "items[0].price",
            "headers": {"X-Api-Key": "k1"},
        },
        {"name": "all", "url": upstream.url, "channel": "everything", "interval": 1},
    )
    server = await make_server(sources=("pollers",), sources_file=path)

    async def latest(channel: str) -> Any:
        _, body, _ = await http("GET", f"{server.base}/api/channels/{channel}")
        return body["latest"] and body["latest"]["data"]

    await eventually(lambda: _all_published(server))
    assert await latest("w.temp") == 3.5
    assert await latest("p.first") == 9.5
    assert (await latest("everything"))["items"][1] == {"price": 1}
    assert upstream.tagged("X-Api-Key").count("k1") == 1
    assert set(upstream.tagged("User-Agent")) == {"Windsock poller"}


def _all_published(server: Any) -> bool:
    return all(p.published == 1 for p in server.sources.of("pollers"))


async def test_failures_back_off_report_status_and_recover(
    upstream: Upstream, make_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Timeouts, non-2xx and bad JSON back off up to the cap, publish one failing status, then recover."""
    caplog.set_level(logging.DEBUG, logger="windsock.poller")
    upstream.serve(
        _ok("A"),
        Reply(status=500),
        Reply(status=503),
        Reply(_ok("late").body, delay=5),  # longer than the poller's timeout
        Reply(raw=b"{not json"),
        Reply({"other": "shape"}),  # the selector finds nothing
        _ok("B"),
    )
    path = sources_file(
        tmp_path / "sources.toml",
        {
            "name": "flaky",
            "url": upstream.url,
            "channel": "flaky",
            "interval": 0.05,
            "timeout": 0.2,
            "max_backoff": 0.3,
            "select": "reading.value",
        },
    )
    server = await make_server(sources=("pollers",), sources_file=path)
    # One connection per channel: WS.subscribe skips frames that arrive before its answer.
    data_ws, status_ws = await WS.connect(server.ws), await WS.connect(server.ws)
    await data_ws.subscribe("flaky", since=0)
    await status_ws.subscribe("flaky.status", since=0)
    data = [m["data"] for m in await data_ws.messages(2, timeout=10)]
    statuses = [m["data"] for m in await status_ws.messages(3, timeout=10)]
    assert data == ["A", "B"]
    ok, failing, recovered = statuses
    assert ok == {
        "source": "flaky",
        "state": "ok",
        "since": ok["since"],
        "error": None,
        "last_success": ok["since"],
    }
    assert failing["state"] == "failing" and failing["error"] == "HTTP 500"
    assert failing["last_success"] == ok["since"] <= failing["since"]
    assert recovered["state"] == "ok" and recovered["error"] is None
    assert recovered["since"] == recovered["last_success"] >= failing["since"]
    await data_ws.no_message()
    await status_ws.no_message()

    # Each failure waits twice as long as the one before (from 2 x interval), up to max_backoff.
    gaps = [b.at - a.at for a, b in zip(upstream.requests[1:6], upstream.requests[2:7], strict=True)]
    for gap, least in zip(gaps, [0.1, 0.2, 0.3, 0.3, 0.3], strict=True):
        assert gap >= least - 0.01, gaps
    assert gaps[-1] < 0.3 + 1.0, f"the backoff must be capped: {gaps}"  # uncapped it would be 1.6 s

    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    for expected in ("HTTP 500", "HTTP 503", "timeout after 0.2 s", "not valid JSON", "no key 'reading'"):
        assert any(expected in line for line in failures), (expected, failures)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert len(warnings) == 1 and "failing: HTTP 500" in warnings[0], warnings
    assert len(recoveries) == 1
    await hang_up(data_ws, status_ws)


async def test_unreachable_upstream_is_failing(make_server: Any, tmp_path: Path) -> None:
    """A refused connection counts as a failure and publishes a failing status with no last success."""
    path = sources_file(
        tmp_path / "sources.toml",
        {
            "name": "gone",
            "url": "http://127.0.0.1:9/",
            "channel": "gone",
            "interval": 0.05,
            "max_backoff": 0.1,
        },
    )
    server = await make_server(sources=("pollers",), sources_file=path)
    ws = await WS.connect(server.ws)
    [status] = [m["data"] for m in await _history(ws, "gone.status", 1)]
    assert status["state"] == "failing" and status["last_success"] is None and status["error"]
    await hang_up(ws)


async def _history(ws: WS, channel: str, n: int) -> list[dict[str, Any]]:
    await ws.subscribe(channel, since=0)
    return await ws.messages(n)


# The sources file.


def test_example_file_parses_and_ships_open_meteo_disabled() -> None:
    """sources.example.toml is valid, and its Open-Meteo poller is off until the user enables it."""
    assert load_pollers(str(EXAMPLE)) == []
    enabled = EXAMPLE.read_text().replace("enabled = false", "enabled = true")
    [weather] = _load_text(enabled)
    assert weather.url.startswith("https://api.open-meteo.com/v1/forecast?")
    assert weather.select == "current" and weather.channel == "weather.oslo"


def _load_text(text: str) -> Any:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(text)
        f.flush()
        return load_pollers(f.name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[poller]]\nname = 'x'", "unknown top-level keys ['poller']"),
        ("[[pollers]]\nname = 'x'\nurl = 'http://h/'\nchannel = 'c'", "'interval' is required"),
        ("[[pollers]]\nname='x'\nurl='ftp://h/'\nchannel='c'\ninterval=1", "must start with http://"),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='a b'\ninterval=1", "channel 'a b'"),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=0", "interval must be a positive"),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=0.01", "at least 0.05"),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=1\nselect='a..b'", "selector"),
        (
            "[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=1\ntimout=2",
            "unknown keys ['timout']",
        ),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=1\nheaders={A=1}", "headers"),
        ("[[pollers]]\nname='x'\nurl='http://h/'\nchannel='c'\ninterval=1\n" * 2, "used twice"),
        ("pollers = [", "not valid TOML"),
        ("pollers = [1]", "must be a [[pollers]] table"),
    ],
)
def test_bad_sources_files_are_refused(text: str, message: str) -> None:
    """A mistake in the sources file stops the start with a message naming it."""
    with pytest.raises(ConfigError, match="SOURCES_FILE=") as caught:
        _load_text(text)
    assert message in str(caught.value)


def test_missing_sources_file() -> None:
    """A sources file that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="No such file"):
        load_pollers("/nonexistent/sources.toml")


def test_selectors() -> None:
    """Selectors name keys with dots and list items with [index], negative ones included."""
    document = {"current": {"temperature_2m": 3.5}, "items": [{"price": 9.5}, {"price": 1}]}
    assert apply_selector(document, parse_selector("current.temperature_2m")) == 3.5
    assert apply_selector(document, parse_selector("items[0].price")) == 9.5
    assert apply_selector(document, parse_selector("items[-1]")) == {"price": 1}
    assert apply_selector(document, parse_selector("")) == document
    for missing in ("nope", "items[2]", "current[0]", "items.price"):
        with pytest.raises(LookupError):
            apply_selector(document, parse_selector(missing))
    for bad in (".a", "a..b", "a.[0]", "a[x]", "a[0]b", "a."):
        with pytest.raises(ValueError, match="cannot read selector"):
            parse_selector(bad)
