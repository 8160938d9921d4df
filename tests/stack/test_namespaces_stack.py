"""Namespaces and idempotency keys the way users reach them: `make run` with a sources file, through nginx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.auth import mint_token
from tests.helpers import WS, http, publish
from tests.stack.conftest import NativeStack, get_json, start_stack
from tests.test_namespaces import replay

pytestmark = pytest.mark.stack

SECRET = "stack-secret-0123456789-abcdefghij"
RULES = """
[[namespaces]]
name = "sensors"
channels = "sensors.*"
history_size = 3

[[namespaces]]
name = "announcements"
channels = "chat.announce"
client_publish = false

[[namespaces]]
name = "public"
channels = "public.*"
token = false
history_size = 2
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """Two workers reading one sources file of namespaces, with subscribe tokens on."""
    tmp = tmp_path_factory.mktemp("namespaces")
    path = tmp / "sources.toml"
    path.write_text(RULES)
    running = start_stack(tmp, workers=2, SOURCES_FILE=str(path), SUBSCRIBE_SECRET=SECRET)
    yield running
    running.stop()


TOKEN = mint_token(SECRET, ["sensors.*", "chat.*"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_each_namespace_keeps_its_history_through_nginx(stack: NativeStack, transport: str) -> None:
    """Through nginx, sensors.* replays its last 3, public.* its last 2 (no token), others all of them."""
    for channel in (f"sensors.{transport}", f"public.{transport}", f"other.{transport}"):
        for n in range(5):
            await publish(stack.base, channel, n)
    assert await replay(stack, transport, f"sensors.{transport}", TOKEN) == [3, 4]
    assert await replay(stack, transport, f"public.{transport}", None) == [4]
    assert await replay(stack, transport, f"other.{transport}", mint_token(SECRET, ["other.*"])) == [
        0,
        1,
        2,
        3,
        4,
    ]


async def test_every_worker_names_the_same_namespace(stack: NativeStack) -> None:
    """GET /api/channels/NAME on each worker, and through nginx, shows the same namespace for a channel."""
    seen = set()
    for base in [stack.base] + [f"http://127.0.0.1:{p}" for p in stack.worker_ports]:
        status, body = get_json(f"{base}/api/channels/public.x")
        assert status == 200, body
        seen.add((body["namespace"]["name"], body["namespace"]["history_size"], body["namespace"]["token"]))
    assert seen == {("public", 2, False)}


async def test_client_publish_and_tokens_follow_the_namespaces_through_nginx(stack: NativeStack) -> None:
    """A tokenless socket reads public.*, is closed 4401 on sensors.*; chat.announce refuses publishes."""
    ws = await WS.connect(stack.ws)
    await ws.subscribe("public.news")
    await ws.send({"type": "subscribe", "channel": "sensors.a"})
    while await asyncio.wait_for(ws.conn.read_message(), 10) is not None:
        pass
    assert (ws.conn.close_code, ws.conn.close_reason) == (4401, "channel sensors.a needs a subscribe token")
    writer = await WS.connect(f"{stack.ws}?token={TOKEN}")
    await writer.send({"type": "publish", "channel": "chat.room", "data": 1, "ref": 1})
    assert (await writer.recv_type("published"))["ref"] == 1
    await writer.send({"type": "publish", "channel": "chat.announce", "data": 2, "ref": 2})
    refused = await writer.recv_type("error")
    assert (refused["code"], refused["ref"]) == ("forbidden", 2)
    writer.close()


async def test_one_key_through_nginx_publishes_once_whichever_worker_answers(stack: NativeStack) -> None:
    """One Idempotency-Key sent 10 times through nginx (both workers answer): one 202, nine duplicates."""
    answers = []
    for _ in range(10):
        status, body, response = await http(
            "POST", f"{stack.base}/api/channels/public.orders", {"n": 1}, {"Idempotency-Key": "o-1"}
        )
        answers.append((status, body["id"], response.headers.get("X-Windsock-Worker")))
    assert sorted(a[0] for a in answers) == [200] * 9 + [202]
    assert len({a[1] for a in answers}) == 1
    print(f"[idempotency] workers that answered: {sorted({str(a[2]) for a in answers})}")
