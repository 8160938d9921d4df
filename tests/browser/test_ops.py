"""The ops page in headless chromium, through nginx: every worker's report, connections and rates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import Tab
from tests.helpers import WS, eventually, publish
from tests.stack.conftest import NativeStack

pytestmark = pytest.mark.stack


async def _number(tab: Tab, selector: str) -> float:
    return float(await tab.text(selector))


async def test_ops_page_shows_every_worker_its_connections_and_rates(
    fresh_stack: Callable[..., NativeStack], open_tab: Any
) -> None:
    """/ops.html through nginx: both workers report, 3 more sockets show, and publishing shows in and out."""
    stack = fresh_stack(workers=2)
    tab = await open_tab(f"{stack.base}/ops.html")
    await tab.wait_text("#workers", "2")
    states = await tab.page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.state)")
    assert states == ["up", "up"], states
    names = await tab.page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.worker)")
    assert set(names) == stack.worker_names()
    sockets = [await WS.connect(f"{stack.ws}?channel=ops.t") for _ in range(3)]
    for ws in sockets:
        await ws.recv_type("subscribed")
    # The page's own WebSocket counts too.
    await tab.wait_text("#total-connections", "4")

    async def publishing() -> None:
        for n in range(60):
            await publish(stack.base, "ops.t", n)
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(publishing())
    try:

        async def moving() -> bool:
            return await _number(tab, "#total-in") > 0 and await _number(tab, "#total-out") > 0

        await eventually(moving, timeout=15)
    finally:
        await task
    assert int(await tab.page.get_attribute("#chart", "data-points") or 0) > 0
    for ws in sockets:
        ws.close()
    tab.assert_clean()
