"""The demo page in a real headless chromium, over both transports, against real workers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, Tab
from tests.helpers import WAIT, eventually, publish

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "sse"])
LABEL = {"websocket": "WebSocket", "sse": "SSE"}


async def chat_lines(tab: Tab) -> list[str]:
    return await tab.texts("#chat-log li")


async def chart_points(tab: Tab) -> int:
    return int(await tab.page.get_attribute("#chart", "data-points") or 0)


@TRANSPORTS
async def test_page_loads_live_without_errors(make_server: Any, open_tab: Any, transport: str) -> None:
    """The page goes live over the chosen transport, names its worker, and logs no error or failed request."""
    server = await make_server()
    tab = await open_tab(f"{server.base}/?transport={transport}")
    await tab.wait_state("live")
    assert await tab.text("#status") == "Live"
    assert await tab.text("#transport-name") == LABEL[transport]
    await tab.wait_text("#worker", f"via worker {server.settings.worker_name}")
    assert await tab.page.is_checked(f"input[name=transport][value={transport}]")
    await tab.page.wait_for_timeout(300)  # let anything late show up
    tab.assert_clean()


@TRANSPORTS
async def test_messages_published_over_http_appear(make_server: Any, open_tab: Any, transport: str) -> None:
    """Chat, weather, source status and ticker messages published over HTTP show up in the page."""
    server = await make_server()
    tab = await open_tab(f"{server.base}/?transport={transport}")
    await tab.wait_state("live")

    await publish(server.base, "chat.lobby", {"name": "curl", "text": "hello <b>browser</b>"})
    await tab.wait_text("#chat-log", "hello <b>browser</b>")  # shown as text, never as markup
    assert await tab.page.locator("#chat-log b").count() == 0

    await publish(server.base, "weather.oslo", {"temperature": -3.5, "wind": 7})
    await tab.wait_text("#weather-value", "-3.5")
    await publish(server.base, "weather.oslo.status", {"source": "met.no", "state": "ok"})
    await tab.wait_text("#weather-status", "met.no is ok")
    failing = {"source": "met.no", "state": "failing", "since": time.time(), "error": "HTTP 503"}
    await publish(server.base, "weather.oslo.status", {**failing, "last_success": time.time() - 60})
    await tab.wait_text("#weather-status", "Stale")
    assert "HTTP 503" in await tab.text("#weather-status")
    assert await tab.page.get_attribute("#weather-status", "data-state") == "failing"

    await publish(server.base, "demo.ticker", {"symbol": "WSK", "price": 101.25, "ts": time.time()})
    await tab.wait_text("#ticker", "WSK 101.25")
    await publish(server.base, "demo.ticker", {"tick": 7})  # any other shape is shown as JSON
    await tab.wait_text("#ticker", '"tick":7')
    tab.assert_clean()


@TRANSPORTS
async def test_sensor_readings_fill_and_move_table_and_chart(
    make_server: Any, open_tab: Any, transport: str
) -> None:
    """History fills the chart at load; new readings, also on ?sensors= channels, update table and chart."""
    server = await make_server()
    now = time.time()
    for i in range(3):
        reading = {"sensor": "demo-1", "temperature": 20.0 + i, "humidity": 0.5, "ts": now - 30 + i}
        await publish(server.base, "sensors.demo-1", reading)
    tab = await open_tab(f"{server.base}/?transport={transport}&sensors=greenhouse-1")
    await tab.wait_state("live")
    row = "#readings tr[data-channel='sensors.demo-1']"
    await tab.wait_text(row, "22.0 °C")
    assert "50 %" in await tab.text(row)
    await eventually(lambda: _equals(chart_points(tab), 3))
    before = await tab.page.evaluate("document.getElementById('chart').toDataURL()")

    await publish(server.base, "sensors.demo-1", {"temperature": 25.25, "humidity": 0.61, "ts": time.time()})
    await tab.wait_text(row, "25.3 °C")
    assert "61 %" in await tab.text(row)
    await eventually(lambda: _equals(chart_points(tab), 4))
    after = await tab.page.evaluate("document.getElementById('chart').toDataURL()")
    assert after != before

    extra = "#readings tr[data-channel='sensors.greenhouse-1']"
    assert "no data yet" in await tab.text(extra)
    await publish(server.base, "sensors.greenhouse-1", {"temperature": 18, "humidity": 70})
    await tab.wait_text(extra, "18.0 °C")
    assert "70 %" in await tab.text(extra)
    await eventually(lambda: _equals(chart_points(tab), 5))
    tab.assert_clean()


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


@TRANSPORTS
async def test_two_pages_chat(make_server: Any, open_tab: Any, transport: str) -> None:
    """Two pages talk on chat.lobby: each sees the other's message, and its own, exactly once."""
    server = await make_server()
    url = f"{server.base}/?transport={transport}"
    ada, bob = await open_tab(url), await open_tab(url)
    await ada.wait_state("live")
    await bob.wait_state("live")

    await ada.page.fill("#chat-name", "ada")
    await ada.page.fill("#chat-text", "hi bob")
    await ada.page.press("#chat-text", "Enter")  # the keyboard alone is enough
    await bob.wait_text("#chat-log", "ada hi bob")
    await ada.wait_text("#chat-log", "ada hi bob")
    assert await ada.page.input_value("#chat-text") == ""

    await bob.page.fill("#chat-name", "bob")
    await bob.page.fill("#chat-text", "hi ada")
    await bob.page.click("button[type=submit]")
    await ada.wait_text("#chat-log", "bob hi ada")
    await bob.wait_text("#chat-log", "bob hi ada")
    for tab in (ada, bob):
        assert await chat_lines(tab) == ["ada hi bob", "bob hi ada"]
        tab.assert_clean()


@TRANSPORTS
async def test_worker_killed_page_reconnects_without_loss_or_repeat(
    spawn_worker: Callable[..., Any], open_tab: Any, transport: str
) -> None:
    """SIGKILL the page's worker: it shows reconnecting, then live on its restart, and misses nothing."""
    worker = await spawn_worker()
    other = await spawn_worker()  # same Redis: publishes while the first one is dead
    tab = await open_tab(f"{worker.base}/?transport={transport}")
    await tab.wait_state("live")
    await tab.wait_text("#worker", "via worker worker-1")
    await publish(worker.base, "chat.lobby", {"name": "t", "text": "before"})
    await tab.wait_text("#chat-log", "before")
    await tab.record_status()

    worker.kill()
    await tab.wait_state("reconnecting")
    await eventually(lambda: _any_starts(tab.shown(), "Reconnecting in "))
    for text in ("during 1", "during 2"):
        await publish(other.base, "chat.lobby", {"name": "t", "text": text})
    await publish(other.base, "sensors.demo-1", {"temperature": 30.5, "humidity": 0.4})

    restarted = await spawn_worker(port=worker.port, WORKER_ID="worker-3")
    await tab.wait_state("live", timeout=3 * WAIT)
    await tab.wait_text("#chat-log", "during 2")
    await tab.wait_text("#readings tr[data-channel='sensors.demo-1']", "30.5 °C")
    await tab.wait_text("#worker", "via worker worker-3")
    await publish(restarted.base, "chat.lobby", {"name": "t", "text": "after"})
    await tab.wait_text("#chat-log", "after")
    assert await chat_lines(tab) == ["t before", "t during 1", "t during 2", "t after"]
    ids = [
        int(i) for i in await tab.page.locator("#chat-log li").evaluate_all("l => l.map(e => e.dataset.id)")
    ]
    assert ids == sorted(set(ids))
    shown = await tab.shown()
    assert shown[-1] == "Live" and "Connecting…" in shown, shown
    assert tab.page_errors == []


async def _any_starts(texts: Any, prefix: str) -> bool:
    return any(t.startswith(prefix) for t in await texts)


async def test_switching_transport_keeps_place_and_url(make_server: Any, open_tab: Any) -> None:
    """The switch moves from WebSocket to SSE, records it in the URL, and repeats or loses no message."""
    server = await make_server()
    for text in ("one", "two"):
        await publish(server.base, "chat.lobby", {"name": "t", "text": text})
    tab = await open_tab(f"{server.base}/")
    await tab.wait_state("live")
    await tab.wait_text("#chat-log", "two")
    assert await tab.text("#transport-name") == "WebSocket"

    await tab.page.focus("input[name=transport][value=websocket]")
    await tab.page.keyboard.press("ArrowRight")  # radio group: the keyboard switches
    await tab.wait_text("#transport-name", "SSE")
    assert tab.page.url.endswith("/?transport=sse")
    await tab.wait_state("live")
    await publish(server.base, "chat.lobby", {"name": "t", "text": "three"})
    await tab.wait_text("#chat-log", "three")
    assert await chat_lines(tab) == ["t one", "t two", "t three"]

    await tab.page.reload()  # the choice survives a reload
    await tab.wait_state("live")
    assert await tab.text("#transport-name") == "SSE"
    assert await tab.page.is_checked("input[name=transport][value=sse]")
    await tab.wait_text("#chat-log", "three")
    assert tab.page_errors == [] and tab.console_errors == []


async def test_dashboard_screenshot_and_phone_width(make_server: Any, open_tab: Any) -> None:
    """A filled dashboard renders; at 375 px nothing overflows sideways and every input has a label."""
    server = await make_server()
    now = time.time()
    for i in range(60):
        for k, sensor in enumerate(("demo-1", "demo-2", "demo-3")):
            temperature = round(20 + 1.5 * k + 1.2 * math.sin(i / 6 + k), 2)
            reading = {"sensor": sensor, "temperature": temperature, "humidity": 0.5 + 0.05 * k}
            await publish(server.base, f"sensors.{sensor}", {**reading, "ts": now - 240 + 4 * i})
    current = {"time": "2026-11-21T00:45", "interval": 900, "temperature_2m": 3.4, "wind_speed_10m": 5.2}
    await publish(server.base, "weather.oslo", current)  # Open-Meteo's "current", as the poller sends it
    failing = {"source": "met.no", "state": "failing", "since": now - 120, "error": "HTTP 503"}
    await publish(server.base, "weather.oslo.status", {**failing, "last_success": now - 180})
    await publish(server.base, "demo.ticker", {"symbol": "WSK", "price": 100.42, "ts": now})
    for name, text in (("ada", "hello from tab one"), ("bob", "hi! live over SSE here")):
        await publish(server.base, "chat.lobby", {"name": name, "text": text})

    tab = await open_tab(f"{server.base}/?transport=websocket", width=1100, height=1000)
    await tab.wait_state("live")
    await eventually(lambda: _equals(chart_points(tab), 180))
    await tab.wait_text("#worker", "via worker")
    ARTIFACTS.mkdir(exist_ok=True)
    await tab.page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    await tab.page.set_viewport_size({"width": 375, "height": 800})
    await tab.page.wait_for_timeout(100)
    assert await tab.page.evaluate("document.scrollingElement.scrollWidth") <= 375
    await tab.page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    unlabelled = await tab.page.evaluate(
        "[...document.querySelectorAll('input, button')]"
        ".filter(e => !e.labels?.length && !e.textContent.trim()).map(e => e.id || e.name)"
    )
    assert unlabelled == []
    tab.assert_clean()
