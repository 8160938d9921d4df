"""Tokens and keys: a refreshing token callable rides through expiry; refusals are clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from app.auth import mint_token
from app.client import Client, ClientError, Status, publish
from tests.client.helpers import Publisher, Recorder, all_received, collect, ledger, post
from tests.helpers import UNIT
from tests.readme_blocks import ROOT
from tests.stack.conftest import NativeStack, start_stack

pytestmark = pytest.mark.stack

SECRET = "client-tests-secret-of-32-or-more-bytes"
KEY = "client-tests-publish-key"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """3 workers that need a subscribe token (SUBSCRIBE_SECRET) and a publish key (PUBLISH_KEY)."""
    stack = start_stack(tmp_path_factory.mktemp("auth"), SUBSCRIBE_SECRET=SECRET, PUBLISH_KEY=KEY)
    yield stack
    assert stack.stop() == 0, stack.output()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_token_expiry_with_a_refreshing_callable_loses_nothing(
    stack: NativeStack, transport: Any
) -> None:
    """Tokens valid 1-2 s, minted anew on each reconnect: expiries cost reconnects, never a message."""
    channels = [f"t.{uuid.uuid4().hex[:6]}.{n}" for n in range(2)]
    minted: list[str] = []

    def token() -> str:
        minted.append(mint_token(SECRET, ["t.*"], ttl=2))
        return minted[-1]

    client = Client(stack.base, channels, transport=transport, token=token)
    recorder = Recorder(client)
    consumer = asyncio.ensure_future(recorder.run())
    publisher = Publisher(f"http://127.0.0.1:{stack.worker_ports[0]}", channels, rate=50, key=KEY)
    try:
        await asyncio.wait_for(recorder.live.wait(), 15 * UNIT)
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(publisher.run(stop))
        await asyncio.sleep(6)
        stop.set()
        await publishing
        await all_received(publisher, recorder)
    finally:
        await client.close()
        await asyncio.wait_for(consumer, 10)
    figures = ledger(f"token expiry every 1-2 s ({transport})", publisher, recorder)
    assert figures["published"] >= 150
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0)
    assert figures["reconnects"] >= 2 and len(minted) >= 3, "the callable is asked again on every reconnect"


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_fixed_token_that_is_refused_ends_the_client_with_unauthorized(
    stack: NativeStack, transport: Any
) -> None:
    """A fixed token that is expired (or none at all) cannot be mended: the iteration raises unauthorized."""
    expired = mint_token(SECRET, ["t.*"], ttl=-10)
    for token in (expired, None):
        seen: list[Any] = []
        with pytest.raises(ClientError) as caught:
            await read_all(Client(stack.base, ["t.x"], transport=transport, token=token), seen)
        assert caught.value.code == "unauthorized"
        last = seen[-1]
        assert isinstance(last, Status) and last.status == "closed" and last.error is caught.value


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_latest_with_a_token_reads_the_newest_message(stack: NativeStack, transport: Any) -> None:
    """since {a: "latest", b: 0} with a token: a's newest (SSE: read over HTTP with it), b's history."""
    a, b = f"t.{uuid.uuid4().hex[:6]}.a", f"t.{uuid.uuid4().hex[:6]}.b"
    ids_a = [post(stack.base, a, n, key=KEY) for n in range(3)]
    id_b = post(stack.base, b, "b", key=KEY)
    token = mint_token(SECRET, ["t.*"], ttl=60)
    async with Client(
        stack.base, [a, b], since={a: "latest", b: 0}, transport=transport, token=token
    ) as client:
        got, _ = await collect(client, 2)
        assert sorted((m.channel, m.id) for m in got) == sorted([(a, ids_a[-1]), (b, id_b)])
    seen: list[Any] = []
    with pytest.raises(ClientError) as caught:
        await read_all(Client(stack.base, [a, b], since={a: "latest", b: 0}, transport=transport), seen)
    assert caught.value.code == "unauthorized", "no token: refused, never an unguarded read"


async def read_all(client: Client, into: list[Any]) -> None:
    async with client, asyncio.timeout(15 * UNIT):
        async for event in client:
            into.append(event)


async def test_publish_key_over_http(stack: NativeStack) -> None:
    """publish() with publish_key goes over HTTP with the key; a wrong key is refused with unauthorized."""
    channel = f"t.{uuid.uuid4().hex[:6]}"
    token = mint_token(SECRET, ["t.*"], ttl=60)
    async with Client(stack.base, [channel], since=0, token=token, publish_key=KEY) as client:
        sent = await client.publish(channel, {"k": 1})
        [got], _ = await collect(client, 1)
        assert (got.id, got.data) == (sent, {"k": 1})
    with pytest.raises(ClientError) as caught:
        publish(stack.base, channel, 1, key="wrong")
    assert (caught.value.code, caught.value.status) == ("unauthorized", 401)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PUBLISH_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        env=env,
    )


def test_cli_with_keys_and_tokens(stack: NativeStack) -> None:
    """The CLI: pub needs --key (else exit 1, unauthorized); sub needs --token (else exit 1, unauthorized)."""
    channel = f"t.{uuid.uuid4().hex[:6]}"
    refused = cli("pub", channel, "1", "--url", stack.base)
    assert refused.returncode == 1 and refused.stderr.startswith("windsock: unauthorized: ")
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    done = cli("pub", channel, '{"ok": true}', "--url", stack.base, "--key", KEY)
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)["id"]
    token = mint_token(SECRET, ["t.*"], ttl=60)
    got = cli("sub", channel, "--url", stack.base, "--since", "0", "--count", "1", "--token", token)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"type": "message", "channel": channel, "id": sent, "data": {"ok": True}}
    for transport in ("websocket", "sse"):
        denied = cli("sub", channel, "--url", stack.base, "--transport", transport)
        assert denied.returncode == 1, denied.stderr
        assert denied.stderr.strip().split("\n")[-1].startswith("windsock: unauthorized: ")
        assert "Traceback" not in denied.stderr
    assert post(stack.base, channel, 2, key=KEY) > sent
