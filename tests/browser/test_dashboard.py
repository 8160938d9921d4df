"""The demo page in a real headless chromium, over both transports, through nginx as users reach it.

Every test runs against the native stack that `make run` starts (nginx in
front of supervisord's workers, sharing one redis-server), opened at nginx's
port: the page, its static files, /ws, /events, /healthz and /api all go
through the same nginx configuration as in Docker.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.conftest import ARTIFACTS, Tab
from tests.helpers import UNIT, WAIT, eventually, publish
from tests.stack.conftest import NativeStack, get_json

pytestmark = pytest.mark.stack

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "sse"])
LABEL = {"websocket": "WebSocket", "sse": "SSE"}
SENSOR_ARGS = ["--prefix", "greenhouse", "--sensors", "1", "--count", "1"]


async def chat_lines(tab: Tab) -> list[str]:
    return await tab.texts("#chat-log li")


async def chart_points(tab: Tab) -> int:
    return int(await tab.page.get_attribute("#chart", "data-points") or 0)


def streams_by_worker(stack: NativeStack, transport: str) -> dict[int, int]:
    """How many streams of this transport each worker (by port) holds, from its own /healthz."""
    return {
        port: int(get_json(f"http://127.0.0.1:{port}/healthz")[1]["connections"].get(transport, 0))
        for port in stack.worker_ports
    }


async def held_by(stack: NativeStack, transport: str, counts: list[int]) -> dict[int, int]:
    """Wait until the workers' stream counts, sorted, are ``counts``; return them by port."""
    seen: dict[int, int] = {}

    async def reached() -> bool:
        nonlocal seen
        seen = await asyncio.to_thread(streams_by_worker, stack, transport)
        return sorted(seen.values()) == sorted(counts)

    await eventually(reached)
    return seen


@TRANSPORTS
async def test_page_through_nginx_is_live_within_a_second_with_demo_data_moving(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """Opened at nginx, the page is live within 1 s, demo data moves, and no error or failed request shows."""
    stack = fresh_stack(workers=2, ingest=True)
    tab = await open_tab(f"{stack.base}/?transport={transport}")
    live_after = await tab.first_live()
    print(f"{transport}: live {live_after * 1000:.0f} ms after navigation began")
    assert live_after < 1.0 * UNIT
    assert await tab.text("#transport-name") == LABEL[transport]
    await tab.wait_text("#worker", "via worker ")
    assert (await tab.text("#worker")).removeprefix("via worker ") in stack.worker_names()

    # The ingest process's demo source publishes twice a second: the ticker
    # changes, the demo sensors' rows fill, and the chart gains points.
    row = "#readings tr[data-channel='sensors.demo-1']"
    await tab.wait_text(row, "°C")
    points = await chart_points(tab)
    ticker = await tab.text("#ticker")
    await eventually(lambda: _above(chart_points(tab), points))
    await eventually(lambda: _differs(tab.text("#ticker"), ticker))
    await tab.page.wait_for_timeout(300)  # let anything late show up
    tab.assert_clean()


async def _above(value: Any, floor: int) -> bool:
    return await value > floor


async def _differs(value: Any, old: str) -> bool:
    return await value != old


@TRANSPORTS
async def test_sensor_simulator_reading_appears_through_nginx(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """A reading sent with `python -m app.tools.sensor` to the ingest's UDP port shows in the page's table."""
    stack = fresh_stack(workers=2, ingest=True)
    tab = await open_tab(f"{stack.base}/?transport={transport}&sensors=greenhouse-1")
    await tab.wait_state("live")
    row = "#readings tr[data-channel='sensors.greenhouse-1']"
    assert "no data yet" in await tab.text(row)
    sent = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.tools.sensor", "--port", str(stack.udp_port), *SENSOR_ARGS],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert sent.returncode == 0, sent.stderr
    await tab.wait_text(row, "°C")
    assert "%" in await tab.text(row)
    tab.assert_clean()


@TRANSPORTS
async def test_two_tabs_on_different_workers_chat(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """Two pages, held by different workers behind nginx, each see the other's message and their own once."""
    stack = fresh_stack(workers=2)
    url = f"{stack.base}/?transport={transport}"
    ada = await open_tab(url)
    await ada.wait_state("live")
    await held_by(stack, transport, [1, 0])
    bob = await open_tab(url)
    await bob.wait_state("live")
    await held_by(stack, transport, [1, 1])  # least_conn: the second page went to the other worker

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
async def test_worker_killed_page_reconnects_through_nginx_without_loss_or_repeat(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """SIGKILL the page's worker: it shows reconnecting, is live again via nginx, and misses nothing."""
    stack = fresh_stack(workers=2)
    tab = await open_tab(f"{stack.base}/?transport={transport}")
    await tab.wait_state("live")
    await publish(stack.base, "chat.lobby", {"name": "t", "text": "before"})
    await tab.wait_text("#chat-log", "before")
    held = await held_by(stack, transport, [1, 0])
    [serving] = [port for port, n in held.items() if n == 1]
    [survivor] = [port for port in stack.worker_ports if port != serving]
    await tab.record_status()

    os.kill(stack.worker_pid(serving), signal.SIGKILL)
    await tab.wait_state("reconnecting")
    await eventually(lambda: _any_starts(tab.shown(), "Reconnecting in "))
    # Published in the gap, to the surviving worker itself: a publish sent
    # through nginx on a pooled connection to the dead worker may be
    # answered 502 (README: retry it), which is not what this test is about.
    survivor_base = f"http://127.0.0.1:{survivor}"
    for text in ("during 1", "during 2"):
        await publish(survivor_base, "chat.lobby", {"name": "t", "text": text})
    await publish(survivor_base, "sensors.demo-1", {"temperature": 30.5, "humidity": 0.4})

    await tab.wait_state("live", timeout=3 * WAIT)
    await tab.wait_text("#chat-log", "during 2")
    await tab.wait_text("#readings tr[data-channel='sensors.demo-1']", "30.5 °C")
    await publish(stack.base, "chat.lobby", {"name": "t", "text": "after"})
    await tab.wait_text("#chat-log", "after")
    assert await chat_lines(tab) == ["t before", "t during 1", "t during 2", "t after"]
    ids = [
        int(i) for i in await tab.page.locator("#chat-log li").evaluate_all("l => l.map(e => e.dataset.id)")
    ]
    assert ids == sorted(set(ids))
    shown = await tab.shown()
    assert shown[-1] == "Live" and "Connecting…" in shown, shown
    assert tab.page_errors == []


async def test_chromium_agrees_permessage_deflate_through_nginx(
    fresh_stack: Callable[..., NativeStack], browser: Any
) -> None:
    """With WS_DEFLATE_LEVEL set, Chromium's offer is agreed through nginx, and the page chats compressed."""
    stack = fresh_stack(workers=2, WS_DEFLATE_LEVEL="1")
    context = await browser.new_context()
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    handshakes: list[dict[str, str]] = []
    cdp.on(
        "Network.webSocketHandshakeResponseReceived",
        lambda event: handshakes.append(event["response"]["headers"]),
    )
    tab = Tab(page)
    await page.goto(f"{stack.base}/?transport=websocket")
    await tab.wait_state("live")
    [headers] = handshakes
    agreed = {k.lower(): v for k, v in headers.items()}["sec-websocket-extensions"]
    assert agreed == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    await page.fill("#chat-name", "zip")
    await page.fill("#chat-text", "squeezed " * 20)  # long enough that Chromium compresses it
    await page.press("#chat-text", "Enter")
    await tab.wait_text("#chat-log", "zip squeezed squeezed")
    await publish(stack.base, "chat.lobby", {"name": "curl", "text": "deflated once for all"})
    await tab.wait_text("#chat-log", "deflated once for all")
    tab.assert_clean()


async def _any_starts(texts: Any, prefix: str) -> bool:
    return any(t.startswith(prefix) for t in await texts)


@TRANSPORTS
async def test_messages_published_over_http_appear(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """Chat, weather, source status and ticker messages published over HTTP show up in the page."""
    stack = fresh_stack(workers=2)
    tab = await open_tab(f"{stack.base}/?transport={transport}")
    await tab.wait_state("live")

    await publish(stack.base, "chat.lobby", {"name": "curl", "text": "hello <b>browser</b>"})
    await tab.wait_text("#chat-log", "hello <b>browser</b>")  # shown as text, never as markup
    assert await tab.page.locator("#chat-log b").count() == 0

    await publish(stack.base, "weather.oslo", {"temperature": -3.5, "wind": 7})
    await tab.wait_text("#weather-value", "-3.5")
    await publish(stack.base, "weather.oslo.status", {"source": "met.no", "state": "ok"})
    await tab.wait_text("#weather-status", "met.no is ok")
    failing = {"source": "met.no", "state": "failing", "since": time.time(), "error": "HTTP 503"}
    await publish(stack.base, "weather.oslo.status", {**failing, "last_success": time.time() - 60})
    await tab.wait_text("#weather-status", "Stale")
    assert "HTTP 503" in await tab.text("#weather-status")
    assert await tab.page.get_attribute("#weather-status", "data-state") == "failing"

    await publish(stack.base, "demo.ticker", {"symbol": "WSK", "price": 101.25, "ts": time.time()})
    await tab.wait_text("#ticker", "WSK 101.25")
    await publish(stack.base, "demo.ticker", {"tick": 7})  # any other shape is shown as JSON
    await tab.wait_text("#ticker", '"tick":7')
    tab.assert_clean()


@TRANSPORTS
async def test_sensor_readings_fill_and_move_table_and_chart(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """History fills the chart at load; new readings, also on ?sensors= channels, update table and chart."""
    stack = fresh_stack(workers=2)
    now = time.time()
    for i in range(3):
        reading = {"sensor": "demo-1", "temperature": 20.0 + i, "humidity": 0.5, "ts": now - 30 + i}
        await publish(stack.base, "sensors.demo-1", reading)
    tab = await open_tab(f"{stack.base}/?transport={transport}&sensors=greenhouse-1")
    await tab.wait_state("live")
    row = "#readings tr[data-channel='sensors.demo-1']"
    await tab.wait_text(row, "22.0 °C")
    assert "50 %" in await tab.text(row)
    await eventually(lambda: _equals(chart_points(tab), 3))
    before = await tab.page.evaluate("document.getElementById('chart').toDataURL()")

    await publish(stack.base, "sensors.demo-1", {"temperature": 25.25, "humidity": 0.61, "ts": time.time()})
    await tab.wait_text(row, "25.3 °C")
    assert "61 %" in await tab.text(row)
    await eventually(lambda: _equals(chart_points(tab), 4))
    after = await tab.page.evaluate("document.getElementById('chart').toDataURL()")
    assert after != before

    extra = "#readings tr[data-channel='sensors.greenhouse-1']"
    assert "no data yet" in await tab.text(extra)
    await publish(stack.base, "sensors.greenhouse-1", {"temperature": 18, "humidity": 70})
    await tab.wait_text(extra, "18.0 °C")
    assert "70 %" in await tab.text(extra)
    await eventually(lambda: _equals(chart_points(tab), 5))
    tab.assert_clean()


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_switching_transport_keeps_place_and_url(
    fresh_stack: Callable[..., NativeStack], open_tab: Any
) -> None:
    """The switch moves from WebSocket to SSE, records it in the URL, and repeats or loses no message."""
    stack = fresh_stack(workers=2)
    for text in ("one", "two"):
        await publish(stack.base, "chat.lobby", {"name": "t", "text": text})
    tab = await open_tab(f"{stack.base}/")
    await tab.wait_state("live")
    await tab.wait_text("#chat-log", "two")
    assert await tab.text("#transport-name") == "WebSocket"

    await tab.page.focus("input[name=transport][value=websocket]")
    await tab.page.keyboard.press("ArrowRight")  # radio group: the keyboard switches
    await tab.wait_text("#transport-name", "SSE")
    assert tab.page.url.endswith("/?transport=sse")
    await tab.wait_state("live")
    await publish(stack.base, "chat.lobby", {"name": "t", "text": "three"})
    await tab.wait_text("#chat-log", "three")
    assert await chat_lines(tab) == ["t one", "t two", "t three"]

    await tab.page.reload()  # the choice survives a reload
    await tab.wait_state("live")
    assert await tab.text("#transport-name") == "SSE"
    assert await tab.page.is_checked("input[name=transport][value=sse]")
    await tab.wait_text("#chat-log", "three")
    assert tab.page_errors == [] and tab.console_errors == []


@TRANSPORTS
async def test_dashboard_screenshot_and_phone_width(
    fresh_stack: Callable[..., NativeStack], open_tab: Any, transport: str
) -> None:
    """A filled dashboard renders through nginx; at 375 px nothing overflows and every input has a label."""
    stack = fresh_stack(workers=2)
    now = time.time()
    for i in range(60):
        for k, sensor in enumerate(("demo-1", "demo-2", "demo-3")):
            temperature = round(20 + 1.5 * k + 1.2 * math.sin(i / 6 + k), 2)
            reading = {"sensor": sensor, "temperature": temperature, "humidity": 0.5 + 0.05 * k}
            await publish(stack.base, f"sensors.{sensor}", {**reading, "ts": now - 240 + 4 * i})
    current = {"time": "2026-11-21T00:45", "interval": 900, "temperature_2m": 3.4, "wind_speed_10m": 5.2}
    await publish(stack.base, "weather.oslo", current)  # Open-Meteo's "current", as the poller sends it
    failing = {"source": "met.no", "state": "failing", "since": now - 120, "error": "HTTP 503"}
    await publish(stack.base, "weather.oslo.status", {**failing, "last_success": now - 180})
    await publish(stack.base, "demo.ticker", {"symbol": "WSK", "price": 100.42, "ts": now})
    for name, text in (("ada", "hello from tab one"), ("bob", "hi! live over SSE here")):
        await publish(stack.base, "chat.lobby", {"name": name, "text": text})

    tab = await open_tab(f"{stack.base}/?transport={transport}", width=1100, height=1000)
    await tab.wait_state("live")
    await eventually(lambda: _equals(chart_points(tab), 180))
    await tab.wait_text("#worker", "via worker")
    ARTIFACTS.mkdir(exist_ok=True)
    await tab.page.screenshot(path=str(ARTIFACTS / f"dashboard-{transport}.png"))

    await tab.page.set_viewport_size({"width": 375, "height": 800})
    await tab.page.wait_for_timeout(100)
    assert await tab.page.evaluate("document.scrollingElement.scrollWidth") <= 375
    await tab.page.screenshot(path=str(ARTIFACTS / f"dashboard-phone-{transport}.png"), full_page=True)
    unlabelled = await tab.page.evaluate(
        "[...document.querySelectorAll('input, button')]"
        ".filter(e => !e.labels?.length && !e.textContent.trim()).map(e => e.id || e.name)"
    )
    assert unlabelled == []
    tab.assert_clean()


# Runs before the page's scripts. The page hands each client it makes to
# window.windsock before it connects: record everything that client delivers.
RECORD_DELIVERIES = """
window.delivered = [];
let current;
Object.defineProperty(window, "windsock", {
  configurable: true,
  get: () => current,
  set: (client) => {
    current = client;
    client.on("message", ({ channel, id }) => window.delivered.push({ channel, id }));
  },
});
"""
LATEST_CHANNELS = ("demo.ticker", "weather.oslo", "weather.oslo.status")
HISTORY_CHANNELS = ("sensors.demo-1", "sensors.demo-2", "sensors.demo-3", "chat.lobby")


async def recording_tab(browser: Any, url: str) -> tuple[Tab, list[str], list[str]]:
    """The page at ``url`` with window.delivered recorded; the WebSocket frames it sends, the URLs it asks."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    await context.add_init_script(RECORD_DELIVERIES)
    page = await context.new_page()
    frames: list[str] = []
    urls: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))
    page.on("request", lambda request: urls.append(request.url))
    tab = Tab(page)
    await page.goto(url)
    return tab, frames, urls


async def delivered(tab: Tab) -> dict[str, list[int]]:
    """The ids the page's clients delivered, by channel."""
    result: dict[str, list[int]] = {}
    for item in await tab.page.evaluate("window.delivered"):
        result.setdefault(item["channel"], []).append(item["id"])
    return result


async def publish_card_values(base: str) -> dict[str, list[int]]:
    """Several weather, source status, ticker and chat messages; their ids by channel."""
    ids: dict[str, list[int]] = {}
    for channel, values in [
        ("weather.oslo", [{"temperature": t, "wind": 3} for t in (1.5, 2.5, -4.25)]),
        ("weather.oslo.status", [{"source": "met.no", "state": s} for s in ("failing", "ok")]),
        ("demo.ticker", [{"symbol": "WSK", "price": p} for p in (99.5, 100.75)]),
        ("chat.lobby", [{"name": "t", "text": x} for x in ("one", "two")]),
    ]:
        ids[channel] = [await publish(base, channel, value) for value in values]
    return ids


@TRANSPORTS
async def test_weather_and_ticker_cards_fill_from_the_latest_value_on_load(
    fresh_stack: Callable[..., NativeStack], browser: Any, transport: str
) -> None:
    """With nothing published after load, weather, status and ticker show their newest value, sent alone."""
    stack = fresh_stack(workers=2)  # no ingest process: no demo data, nothing publishes but this test
    ids = await publish_card_values(stack.base)
    tab, frames, urls = await recording_tab(browser, f"{stack.base}/?transport={transport}")
    await tab.wait_state("live")
    await tab.wait_text("#weather-value", "-4.25")
    await tab.wait_text("#weather-status", "met.no is ok")
    await tab.wait_text("#ticker", "WSK 100.75")
    await tab.wait_text("#chat-log", "t two")
    await tab.page.wait_for_timeout(300)  # let anything late show up
    assert await chat_lines(tab) == ["t one", "t two"], "chat still opens with its whole history"
    assert await delivered(tab) == {
        **{channel: [ids[channel][-1]] for channel in LATEST_CHANNELS},
        "chat.lobby": ids["chat.lobby"],
    }
    if transport == "websocket":
        subscribes = [json.loads(f) for f in frames if '"subscribe"' in f]
        assert {f["channel"]: f.get("since") for f in subscribes} == {
            **dict.fromkeys(LATEST_CHANNELS, "latest"),
            **dict.fromkeys(HISTORY_CHANNELS, 0),
        }
    else:
        # A resume cursor cannot say "latest": the newest value is read over HTTP, and the
        # stream resumes after it, so it sends nothing older.
        [stream] = [urlsplit(u) for u in urls if urlsplit(u).path == "/events"]
        cursor = dict(part.split("=") for part in parse_qs(stream.query)["last_event_id"][0].split(","))
        assert cursor == {
            **{channel: str(ids[channel][-1]) for channel in LATEST_CHANNELS},
            **dict.fromkeys(HISTORY_CHANNELS, "0"),
        }
        asked = {urlsplit(u).path for u in urls if urlsplit(u).path.startswith("/api/channels/")}
        assert asked == {f"/api/channels/{channel}" for channel in LATEST_CHANNELS}
    tab.assert_clean()


async def test_switching_transport_after_latest_repeats_nothing(
    fresh_stack: Callable[..., NativeStack], browser: Any
) -> None:
    """After a latest start, the transport switch resumes the cards after their ids: no repeat, no loss."""
    stack = fresh_stack(workers=2)
    ids = await publish_card_values(stack.base)
    tab, _, _ = await recording_tab(browser, f"{stack.base}/?transport=websocket")
    await tab.wait_state("live")
    await tab.wait_text("#ticker", "WSK 100.75")
    await tab.page.click("input[name=transport][value=sse]")
    await tab.wait_text("#transport-name", "SSE")
    await tab.wait_state("live")
    new_ticker = await publish(stack.base, "demo.ticker", {"symbol": "WSK", "price": 102})
    new_weather = await publish(stack.base, "weather.oslo", {"temperature": 8.5, "wind": 1})
    await tab.wait_text("#ticker", "WSK 102")
    await tab.wait_text("#weather-value", "8.5")
    await tab.page.wait_for_timeout(300)
    seen = await delivered(tab)
    assert seen["demo.ticker"] == [ids["demo.ticker"][-1], new_ticker]
    assert seen["weather.oslo"] == [ids["weather.oslo"][-1], new_weather]
    assert seen["weather.oslo.status"] == [ids["weather.oslo.status"][-1]]
    assert seen["chat.lobby"] == ids["chat.lobby"]
    tab.assert_clean()
