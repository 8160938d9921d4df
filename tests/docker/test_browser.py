"""The dashboard in headless chromium on the host, through the compose stack's published nginx port.

This is the path `docker compose up` users take: a browser at nginx, nginx
in its container, the workers in three app replicas sharing Redis. Both
transports; two tabs on different replicas chat.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Tab
from tests.docker.conftest import WORKERS, ComposeStack, in_thread
from tests.helpers import UNIT, eventually

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "sse"])
LABEL = {"websocket": "WebSocket", "sse": "SSE"}


def streams_by_replica(stack: ComposeStack, transport: str) -> dict[str, int]:
    """How many streams of this transport each app replica (by container name) holds."""
    counts = {}
    for container in stack.containers("app"):
        answers = container.healthz()
        assert all(status == 200 for status, _ in answers.values()), answers
        counts[container.name] = sum(
            int(body["connections"].get(transport, 0)) for _, body in answers.values()
        )
    return counts


async def replica_of(stack: ComposeStack, transport: str, before: dict[str, int]) -> str:
    """The replica that holds one more stream than before (the page just opened)."""
    found: list[str] = []

    async def one_more() -> bool:
        now = await in_thread(streams_by_replica, stack, transport)
        found[:] = [name for name, n in now.items() if n == before.get(name, 0) + 1]
        return sum(now.values()) == sum(before.values()) + 1 and len(found) == 1

    await eventually(one_more, timeout=30 * UNIT)
    return found[0]


@TRANSPORTS
async def test_page_through_compose_nginx_is_live_without_errors(
    stack: ComposeStack, open_tab: Any, transport: str
) -> None:
    """At the published nginx port the page is live, demo data moves, and nothing fails to load."""
    tab = await open_tab(f"{stack.base}/?transport={transport}")
    live_after = await tab.first_live()
    print(f"docker {transport}: live {live_after * 1000:.0f} ms after navigation began")
    assert live_after < 1.0 * UNIT
    assert await tab.text("#transport-name") == LABEL[transport]
    await tab.wait_text("#worker", "via worker ")
    await tab.wait_text("#readings tr[data-channel='sensors.demo-1']", "°C")  # the ingest's demo source
    ticker = await tab.text("#ticker")

    async def moved() -> bool:
        return await tab.text("#ticker") != ticker

    await eventually(moved)
    await tab.page.wait_for_timeout(300)  # let anything late show up
    tab.assert_clean()


@TRANSPORTS
async def test_two_tabs_on_different_replicas_chat(
    stack: ComposeStack, open_tab: Any, transport: str
) -> None:
    """Two pages held by different app replicas each see the other's chat message, and their own, once."""
    url = f"{stack.base}/?transport={transport}"
    before = await in_thread(streams_by_replica, stack, transport)
    ada = await open_tab(url)
    await ada.wait_state("live")
    ada_replica = await replica_of(stack, transport, before)
    # nginx balances by open connections over 3 x WORKERS workers: open pages
    # until one lands on another replica (the others stay open meanwhile).
    others: list[Tab] = []
    for _ in range(3 * WORKERS):
        counts = await in_thread(streams_by_replica, stack, transport)
        bob = await open_tab(url)
        await bob.wait_state("live")
        if await replica_of(stack, transport, counts) != ada_replica:
            break
        others.append(bob)
    else:
        raise AssertionError("nginx never placed a page on a second replica")
    await ada.page.fill("#chat-name", "ada")
    await ada.page.fill("#chat-text", f"hi bob over {transport}")
    await ada.page.press("#chat-text", "Enter")
    await bob.page.fill("#chat-name", "bob")
    await bob.wait_text("#chat-log", f"ada hi bob over {transport}")
    await bob.page.fill("#chat-text", f"hi ada over {transport}")
    await bob.page.press("#chat-text", "Enter")
    await ada.wait_text("#chat-log", f"bob hi ada over {transport}")
    for tab in (ada, bob):
        lines = await tab.texts("#chat-log li")
        mine = [line for line in lines if line.endswith(f"over {transport}")]
        assert mine == [f"ada hi bob over {transport}", f"bob hi ada over {transport}"], lines
        tab.assert_clean()
