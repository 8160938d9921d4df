"""Browser fixtures: Debian's chromium driven by Playwright, tabs that record errors, worker processes.

Playwright's bundled browsers are never used (no download): the tests launch
/usr/bin/chromium. Without chromium, or without Playwright, the tests are
skipped outside CI and fail in CI, like every other missing binary.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.helpers import Process, eventually, free_port, need_binary
from tests.stack.conftest import fresh_stack  # noqa: F401  (the native stack, for tests through nginx)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _need_playwright() -> Any:
    try:
        from playwright import async_api
    except ImportError:
        message = "playwright is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return async_api


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium for this test (launching one takes well under a second)."""
    executable = need_binary("chromium")
    async_api = _need_playwright()
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Tab:
    """One page in its own browser context, with everything that went wrong in it recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed_requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed_requests.append(f"{r.url} {r.failure}"))

    async def text(self, selector: str) -> str:
        return str(await self.page.inner_text(selector))

    async def texts(self, selector: str) -> list[str]:
        return list(await self.page.locator(selector).all_inner_texts())

    async def state(self) -> str | None:
        return await self.page.get_attribute("#status", "data-state")

    async def wait_state(self, state: str, timeout: float | None = None) -> None:
        async def reached() -> bool:
            return await self.state() == state

        await eventually(reached, **({"timeout": timeout} if timeout else {}))

    async def wait_text(self, selector: str, fragment: str) -> None:
        async def shown() -> bool:
            return fragment in await self.text(selector)

        await eventually(shown)

    async def record_status(self) -> None:
        """Keep every text the status pill shows from now on in window.shown."""
        await self.page.evaluate(
            """() => {
                const node = document.getElementById("status");
                window.shown = [node.textContent];
                new MutationObserver(() => window.shown.push(node.textContent))
                    .observe(node, {childList: true, characterData: true, subtree: true});
            }"""
        )

    async def shown(self) -> list[str]:
        return list(await self.page.evaluate("window.shown"))

    async def first_live(self) -> float:
        """Seconds from the start of navigation until the page first showed live."""
        await self.wait_state("live")

        async def clocked() -> bool:
            return await self.page.evaluate("window.firstLive") is not None

        await eventually(clocked)
        return float(await self.page.evaluate("window.firstLive")) / 1000

    def assert_clean(self) -> None:
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], self.console_errors
        assert self.failed_requests == [], self.failed_requests


# Runs before the page's own scripts: the moment (ms since navigation
# started) the status pill first reads live, in window.firstLive.
LIVE_CLOCK = """
window.firstLive = null;
const clock = setInterval(() => {
  if (document.getElementById("status")?.dataset.state === "live") {
    window.firstLive = performance.now();
    clearInterval(clock);
  }
}, 5);
"""


@pytest.fixture
def open_tab(browser: Any) -> Callable[..., Any]:
    """Open a URL in a fresh context (own storage, like another browser), 1100 px wide unless told."""

    async def open_(url: str, width: int = 1100, height: int = 900) -> Tab:
        context = await browser.new_context(viewport={"width": width, "height": height})
        await context.add_init_script(LIVE_CLOCK)
        page = await context.new_page()
        tab = Tab(page)
        await page.goto(url)
        return tab

    return open_


class Worker:
    """A Windsock worker in a child process (python -m app), so a test can SIGKILL or SIGSTOP it."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.process = Process([sys.executable, "-m", "app", "--port", str(port)], env=env, log=str(log))

    async def ready(self) -> None:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as answer:
                    return bool(answer.status == 200)
            except urllib.error.HTTPError as exc:
                exc.close()
                return False
            except OSError:
                return self.process.proc.poll() is not None  # exited: fail below, not by timeout

        await eventually(lambda: asyncio.to_thread(healthy))
        assert self.process.proc.poll() is None, self.process.output()

    def kill(self) -> None:
        self.process.stop(signal.SIGKILL)

    def pause(self) -> None:
        self.process.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a stopped process cannot act on SIGTERM
        self.process.stop()


@pytest.fixture
def spawn_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start workers as processes sharing one Redis and one key prefix; all stopped after the test."""
    workers: list[Worker] = []
    prefix = f"browser-{uuid.uuid4().hex[:12]}"

    async def spawn(port: int | None = None, **env: str) -> Worker:
        port = port or free_port()
        settings = {
            "SOURCES": "",
            "REDIS_URL": redis_server.url,
            "REDIS_PREFIX": prefix,
            "WORKER_ID": f"worker-{len(workers) + 1}",
            "SHUTDOWN_TIMEOUT": "1",
            "UNSUBSCRIBE_GRACE": "0.2",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        worker = Worker(port, settings, tmp_path / f"worker-{len(workers) + 1}.log")
        workers.append(worker)
        await worker.ready()
        return worker

    yield spawn
    for worker in workers:
        worker.stop()
