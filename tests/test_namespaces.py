"""Channel namespaces: the file's checks, first match wins, and each rule over WebSocket and SSE."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from app.auth import mint_token
from app.config import ConfigError, load_settings
from app.namespaces import Namespaces
from tests.helpers import SSE, WS, eventually, http, publish

SECRET = "test-secret-0123456789-abcdefghij"

# First match wins: chat.announce is read-only although chat.* allows client publishing.
RULES = """
[[namespaces]]
name = "sensors"
channels = ["sensors.*"]
history_size = 3
history_ttl = 3600

[[namespaces]]
name = "announcements"
channels = "chat.announce"
client_publish = false
history_size = 2

[[namespaces]]
name = "chat"
channels = ["chat.*", "room.*"]
history_size = 50
client_publish = true

[[namespaces]]
name = "tickers"
channels = "ticker.*"
history_size = 1
skip_unchanged = true

[[namespaces]]
name = "public"
channels = "public.*"
token = false
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return str(path)


def namespaces(tmp_path: Path, text: str = RULES, **settings: Any) -> Namespaces:
    return Namespaces.from_settings(load_settings(environ={}, sources_file=write(tmp_path, text), **settings))


# The file, read and checked: pure.


def test_first_match_wins_and_unset_keys_follow_the_settings(tmp_path: Path) -> None:
    """A channel gets its first matching table's rules; left-out keys and the unmatched follow settings."""
    rules = namespaces(tmp_path, history_size=7, history_ttl=99, skip_unchanged=("weather.*",))
    assert rules("sensors.a").describe() == {
        "name": "sensors",
        "history_size": 3,
        "history_ttl": 3600,
        "skip_unchanged": False,
        "client_publish": False,
        "token": False,
    }
    assert (rules("chat.announce").name, rules("chat.announce").client_publish) == ("announcements", False)
    assert (rules("chat.room").name, rules("chat.room").client_publish, rules("room.x").name) == (
        "chat",
        True,
        "chat",
    )
    assert rules("chat.room").history_ttl == 99  # left out: HISTORY_TTL
    other = rules("weather.oslo")
    assert (other.name, other.history_size, other.skip_unchanged, other.client_publish) == (
        "default",
        7,
        True,
        False,
    )
    assert rules("chat.x.default-glob").name == "chat"


def test_no_file_means_todays_settings(tmp_path: Path) -> None:
    """Without SOURCES_FILE every channel is in 'default', with HISTORY_SIZE, CLIENT_PUBLISH and the rest."""
    rules = Namespaces.from_settings(load_settings(environ={}, history_size=5, subscribe_secret=SECRET))
    chat, other = rules("chat.x"), rules("sensors.a")
    assert (chat.name, chat.history_size, chat.client_publish, chat.token) == ("default", 5, True, True)
    assert (other.client_publish, other.token, rules.any_public) == (False, True, False)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[namespaces]]\nchannels = 'a.*'", "namespace #1: 'name' is required"),
        ("[[namespaces]]\nname = 'a'", "namespace #1 ('a'): 'channels' is required"),
        ("[[namespaces]]\nname = 'a'\nchannels = []", "channels must be a glob or a list of globs"),
        ("[[namespaces]]\nname = 'a b'\nchannels = 'a.*'", "name 'a b' must be"),
        ("[[namespaces]]\nname = 'a'\nchannels = 'a.*'\nhistory = 3", "unknown keys ['history']"),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\nhistory_size = 0",
            "history_size must be a whole number",
        ),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\nhistory_size = 1.5",
            "history_size must be a whole number",
        ),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\nhistory_ttl = -1",
            "history_ttl must be a whole number",
        ),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\nskip_unchanged = 'yes'",
            "skip_unchanged must be true or false",
        ),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\n[[namespaces]]\nname = 'a'\nchannels = 'b'",
            "#2 ('a'): the name 'a' is taken",
        ),
        ("[[namespaces]]\nname = 'default'\nchannels = 'a.*'", "the name 'default' is taken"),
        ("namespaces = 3", "'namespaces' must be [[namespaces]] tables"),
        ("[[channels]]\nname = 'a'", "unknown top-level keys ['channels']"),
        ("[[namespaces]\n", "is not valid TOML"),
        (
            "[[namespaces]]\nname = 'a'\nchannels = 'a.*'\ntoken = true",
            "token = true, but SUBSCRIBE_SECRET is empty",
        ),
    ],
)
def test_a_mistake_is_one_clear_error(tmp_path: Path, text: str, says: str) -> None:
    """Each kind of mistake in a [[namespaces]] table is a ConfigError naming the table and the key."""
    with pytest.raises(ConfigError) as caught:
        namespaces(tmp_path, text)
    assert str(caught.value).startswith("SOURCES_FILE=") and says in str(caught.value), caught.value


def test_a_mistake_stops_the_worker_at_start_with_one_line(tmp_path: Path) -> None:
    """`python -m app` with a bad namespace exits 2 and prints one line naming it, before serving anything."""
    path = write(tmp_path, "[[namespaces]]\nname = 'tick'\nchannels = 'ticker.*'\nhistory_size = 'all'")
    for command in (["--check"], ["--port", "0", "--sources", ""]):
        done = subprocess.run(
            [sys.executable, "-m", "app", "--sources-file", path, *command],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, done
        assert done.stderr.startswith("windsock: SOURCES_FILE=") and done.stderr.count("\n") == 1, done.stderr
        assert "namespace #1 ('tick'): history_size must be a whole number" in done.stderr


# Each rule against a real worker, over both transports and both brokers.


@pytest.fixture(params=["memory", "redis"])
async def worker(request: pytest.FixtureRequest, make_server: Any, tmp_path: Path) -> Any:
    """A worker with RULES, on each broker."""
    extra = {"redis_url": request.getfixturevalue("redis_server").url} if request.param == "redis" else {}
    return await make_server(sources_file=write(tmp_path, RULES), **extra)


async def replay(server: Any, transport: str, channel: str, token: str | None = None) -> list[Any]:
    """The data a subscriber resuming from 0 gets on ``transport``, up to a marker published just before.

    ``server`` is a worker or a stack: anything with ``base`` and ``ws`` URLs.
    """
    marker = await publish(server.base, channel, "end")
    query = f"?token={token}&" if token else "?"
    got: list[Any] = []
    if transport == "ws":
        ws = await WS.connect(server.ws + query.rstrip("?&"))
        await ws.subscribe(channel, since=0)
        while (message := await ws.recv_type("message"))["id"] != marker:
            got.append(message["data"])
        ws.close()
    else:
        sse = await SSE.connect(f"{server.base}/events{query}channel={channel}", {"Last-Event-ID": "0"})
        assert sse.status == 200, sse.body
        while (event := await sse.event())["data"].get("id") != marker:
            if event["data"].get("type") == "message":
                got.append(event["data"]["data"])
        sse.close()
    return got


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_history_size_is_the_namespaces(worker: Any, transport: str) -> None:
    """sensors.* keeps 3 messages, chat.announce 2, an unmatched channel HISTORY_SIZE: a replay shows each."""
    for channel in ("sensors.t", "chat.announce", "other.t"):
        for n in range(6):
            await publish(worker.base, channel, n)
    # The marker is the last message kept, so the replays hold size - 1 of the six.
    assert await replay(worker, transport, "sensors.t") == [4, 5]
    assert await replay(worker, transport, "chat.announce") == [5]
    assert await replay(worker, transport, "other.t") == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_skip_unchanged_is_the_namespaces(worker: Any, transport: str) -> None:
    """ticker.* skips a publish equal to the latest without being asked; other channels publish repeats."""
    status, body, _ = await http("POST", f"{worker.base}/api/channels/ticker.x", 1)
    assert status == 202
    status, body, _ = await http("POST", f"{worker.base}/api/channels/ticker.x", 1)
    assert status == 200 and body["skipped"] is True
    await publish(worker.base, "chat.x", 1)
    await publish(worker.base, "chat.x", 1)
    assert await replay(worker, transport, "chat.x") == [1, 1]
    assert await replay(worker, transport, "ticker.x") == []  # history_size 1: only the marker is kept


async def test_client_publish_is_the_namespaces(worker: Any) -> None:
    """WebSocket clients may publish to chat.* and room.*, not to chat.announce (first match) or sensors.*."""
    ws = await WS.connect(worker.ws)
    for ref, channel in enumerate(("chat.room", "room.7", "chat.announce", "sensors.a")):
        await ws.send({"type": "publish", "channel": channel, "data": ref, "ref": ref})
        answer = await ws.recv()
        assert answer["type"] == ("published" if ref < 2 else "error"), answer
        if ref >= 2:
            assert (answer["code"], answer["ref"]) == ("forbidden", ref)


async def test_get_shows_the_namespace(worker: Any) -> None:
    """GET /api/channels/NAME names the namespace that applies and its rules."""
    _, body, _ = await http("GET", f"{worker.base}/api/channels/chat.announce")
    assert body["namespace"] == {
        "name": "announcements",
        "history_size": 2,
        "history_ttl": 86_400,
        "skip_unchanged": False,
        "client_publish": False,
        "token": False,
    }
    _, body, _ = await http("GET", f"{worker.base}/api/channels/nothing.here")
    assert body["namespace"]["name"] == "default"


async def test_history_ttl_is_the_namespaces(tmp_path: Path, make_server: Any, redis_server: Any) -> None:
    """A namespace's history_ttl: Redis keys expire by it; both brokers forget the channel after it."""
    text = RULES + '\n[[namespaces]]\nname = "brief"\nchannels = "brief.*"\nhistory_ttl = 1\n'
    shared = await make_server(sources_file=write(tmp_path, text), redis_url=redis_server.url)
    await publish(shared.base, "sensors.ttl", 1)
    client = redis.Redis.from_url(redis_server.url)
    try:
        prefix = shared.settings.redis_prefix
        assert 3500 < client.ttl(f"{prefix}:sensors.ttl:hist") <= 3600
    finally:
        client.close()
    for server in (shared, await make_server(sources_file=write(tmp_path, text))):
        await publish(server.base, "brief.x", 1)
        await publish(server.base, "other.x", 1)

        async def forgotten(server: Any = server) -> bool:
            _, body, _ = await http("GET", f"{server.base}/api/channels/brief.x")
            return bool(body["history"] == 0)

        await eventually(forgotten, timeout=10, interval=0.3)
        _, body, _ = await http("GET", f"{server.base}/api/channels/other.x")
        assert body["history"] == 1  # HISTORY_TTL, a day


async def _closed(ws: WS) -> tuple[int | None, str | None]:
    while await asyncio.wait_for(ws.conn.read_message(), 5) is not None:
        pass
    return ws.conn.close_code, ws.conn.close_reason


async def test_token_false_opens_a_namespace_while_the_rest_need_one(
    tmp_path: Path, make_server: Any
) -> None:
    """With SUBSCRIBE_SECRET set, public.* needs no token on WS, SSE and GET; other channels still do."""
    server = await make_server(sources_file=write(tmp_path, RULES), subscribe_secret=SECRET)
    ws = await WS.connect(server.ws)
    await ws.subscribe("public.news")
    sse = await SSE.connect(f"{server.base}/events?channel=public.news")
    assert sse.status == 200
    await sse.preamble()
    await publish(server.base, "public.news", "hello")
    assert (await ws.messages(1))[0]["data"] == "hello"
    assert (await sse.messages(1))[0]["data"] == "hello"
    status, _, _ = await http("GET", f"{server.base}/api/channels/public.news")
    assert status == 200
    # The same connection asking for a guarded channel is closed 4401.
    await ws.send({"type": "subscribe", "channel": "sensors.a"})
    assert await _closed(ws) == (4401, "channel sensors.a needs a subscribe token")
    refused = await SSE.connect(f"{server.base}/events?channel=public.news&channel=sensors.a")
    assert refused.status == 401 and refused.json()["code"] == "unauthorized"
    status, body, _ = await http("GET", f"{server.base}/api/channels/sensors.a")
    assert status == 401, body
    # A token still opens what it names.
    token = mint_token(SECRET, ["sensors.*"])
    ws = await WS.connect(f"{server.ws}?token={token}")
    await ws.subscribe("sensors.a")
    await ws.subscribe("public.news")
    sse = await SSE.connect(f"{server.base}/events?channel=sensors.a&channel=public.news&token={token}")
    assert sse.status == 200
    sse.close()
    ws.close()
