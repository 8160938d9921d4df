"""HTTP pollers: fetch a JSON URL on an interval and publish the selected part when it changes.

Pollers are declared as ``[[pollers]]`` tables in the sources file (TOML; see
sources.example.toml). Each one publishes its data on ``channel`` and its
health on ``<channel>.status``. Failures back off exponentially; the state
change, not every failure, is logged and published.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from app.config import Settings
from app.hub import Hub
from app.messages import dumps
from app.sources.base import Publisher, unix_time
from app.sources.poll_config import PollerConfig, apply_selector, load_pollers

if TYPE_CHECKING:
    from app.sources.registry import Sources

__all__ = ["PollError", "Poller", "check", "start"]

log = logging.getLogger("windsock.poller")


class PollError(Exception):
    """The upstream did not give us data: the text is what the status message says."""


class Poller:
    """Fetches one source on its interval and publishes its data and its status."""

    def __init__(self, config: PollerConfig, publish: Publisher, hub: Hub, max_bytes: int = 65536) -> None:
        self.config = config
        self.status_channel = f"{config.channel}.status"
        self.state = "starting"  # then "ok" or "failing"
        self.fetches = 0
        self.published = 0
        self.failures = 0  # in a row
        self.failed_fetches = 0  # in all, for /metrics
        self._publish = publish
        self._hub = hub
        self._max_bytes = max_bytes
        self._selector = config.selector
        self._last: bytes | None = None
        self._last_success: float | None = None
        self._previous: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._status_sent = True

    def status(self) -> dict[str, Any]:
        """Facts for /healthz."""
        return {
            "name": self.config.name,
            "channel": self.config.channel,
            "state": self.state,
            "fetches": self.fetches,
            "published": self.published,
            "failures": self.failures,
            "last_success": self._last_success,
        }

    async def run(self) -> None:
        """Poll until cancelled: every ``interval`` from a fetch's start, or the backoff after a failure."""
        await self._restore()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                delay = await self.poll_once()
            except Exception:
                # A bug must cost one round, never the poller.
                log.exception("poller %s: unexpected error", self.config.name)
                self.failures += 1
                self.failed_fetches += 1
                delay = self._delay()
            if not self.failures:
                delay = started + delay - loop.time()  # a steady rate, whatever the fetch took
            await asyncio.sleep(max(0.0, delay))

    async def poll_once(self) -> float:
        """Fetch once and publish what changed; returns the seconds to wait before the next fetch."""
        self.fetches += 1
        try:
            data = await self._fetch()
        except PollError as exc:
            self.failures += 1
            self.failed_fetches += 1
            log.debug("poller %s: %s (failure %d in a row)", self.config.name, exc, self.failures)
            self._enter("failing", str(exc))
        else:
            self.failures = 0
            self._last_success = unix_time()
            self._enter("ok", None)
            # Compared here so subscribers never get a repeat; skip_unchanged
            # also covers the first fetch after a takeover, which has no _last.
            if data != self._last:
                result = await self._publish(self.config.channel, data, skip_unchanged=True)
                if result is not None:
                    self._last = data
                    if not result.skipped:
                        self.published += 1
        if not self._status_sent and self._status is not None:
            result = await self._publish(self.status_channel, dumps(self._status), skip_unchanged=True)
            self._status_sent = result is not None
        return self._delay()

    def _delay(self) -> float:
        interval = self.config.interval
        if not self.failures:
            return interval
        return max(interval, min(self.config.max_backoff, interval * 2.0 ** min(self.failures, 30)))

    async def _fetch(self) -> bytes:
        config = self.config
        request = HTTPRequest(
            config.url,
            headers={"Accept": "application/json", **config.headers},
            connect_timeout=config.timeout,
            request_timeout=config.timeout,
            user_agent="Windsock poller",
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPTimeoutError:
            raise PollError(f"timeout after {config.timeout:g} s") from None
        except Exception as exc:  # refused connections, DNS and TLS errors: all mean "failing"
            raise PollError(str(exc) or type(exc).__name__) from None
        if not 200 <= response.code < 300:
            raise PollError(f"HTTP {response.code}")
        try:
            document = orjson.loads(response.body or b"")
        except orjson.JSONDecodeError:
            raise PollError("the response is not valid JSON") from None
        try:
            data = dumps(apply_selector(document, self._selector))
        except LookupError as exc:
            raise PollError(f"select {config.select!r}: {exc}") from None
        if len(data) > self._max_bytes:
            raise PollError(f"the selected data is {len(data)} bytes, over MAX_MESSAGE_BYTES")
        return data

    def _enter(self, state: str, error: str | None) -> None:
        """Record the outcome of a fetch; a change of state is logged and its status message queued."""
        if state == self.state:
            return
        name = self.config.name
        if state == "failing":
            backoff = self.config.max_backoff
            log.warning("poller %s is failing: %s; backing off up to %g s", name, error, backoff)
        elif self.state == "failing":
            log.info("poller %s recovered", name)
        self.state = state
        previous = self._previous
        self._previous = None
        if previous is not None and previous["state"] == state:
            # The same spell as the process we took over from reported: keep its 'since'.
            self._status = previous
            return
        self._status = {
            "source": name,
            "state": state,
            "since": self._last_success if state == "ok" else unix_time(),
            "error": error,
            "last_success": self._last_success,
        }
        self._status_sent = False

    async def _restore(self) -> None:
        """Carry on from the status another process published: a takeover keeps 'since', 'last_success'."""
        try:
            latest = await self._hub.latest(self.status_channel)
        except Exception as exc:  # best effort: without it the poller merely starts afresh
            log.debug("poller %s: no previous status (%s)", self.config.name, exc)
            return
        previous = None if latest is None else latest.data()
        if (
            isinstance(previous, dict)
            and previous.get("source") == self.config.name
            and previous.get("state") in {"ok", "failing"}
        ):
            self._previous = previous
            last_success = previous.get("last_success")
            if isinstance(last_success, int | float):
                self._last_success = float(last_success)


def check(settings: Settings) -> None:
    """Read the sources file now, so a mistake in it stops the program at start.

    Raises:
        ConfigError: the file is missing or declares something unusable; the message says what.
    """
    if settings.sources_file:
        load_pollers(settings.sources_file)


async def start(settings: Settings, hub: Hub, sources: Sources) -> None:
    """The ``pollers`` source: every ``[[pollers]]`` table of SOURCES_FILE, each on its own interval."""
    if not settings.sources_file:
        return
    for config in load_pollers(settings.sources_file):
        poller = Poller(
            config, Publisher(hub, f"poller {config.name}"), hub, max_bytes=settings.max_message_bytes
        )
        sources.add("pollers", poller, many=True)
        sources.spawn(f"poller:{config.name}", poller.run)
