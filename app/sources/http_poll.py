"""HTTP pollers: fetch a JSON URL on an interval and publish the selected part when it changes.

Pollers are declared as ``[[pollers]]`` tables in the sources file (TOML; see
sources.example.toml). Each one publishes its data on ``channel`` and its
health on ``<channel>.status``. Failures back off exponentially; the state
change, not every failure, is logged and published.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from app.channels import InvalidChannel, check_channel, is_valid_channel
from app.config import ConfigError
from app.hub import Hub
from app.messages import dumps
from app.sources import Publisher, unix_time

__all__ = ["PollError", "Poller", "PollerConfig", "apply_selector", "load_pollers", "parse_selector"]

log = logging.getLogger("windsock.poller")

Selector = tuple[str | int, ...]


# The selector: "current.temperature_2m", "items[0].price", "[-1]".

_STEP = re.compile(r"(\.?)([^.\[\]]+)|\[(-?\d+)\]")


def parse_selector(text: str) -> Selector:
    """Split a selector into keys (str) and list indexes (int); "" selects the whole document.

    Raises:
        ValueError: the text is not keys joined by dots, each optionally followed by [index].
    """
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        # A key needs a dot before it, except at the start.
        if match is None or (match.group(2) is not None and bool(match.group(1)) != (pos > 0)):
            raise ValueError(f"cannot read selector {text!r} at position {pos}")
        steps.append(match.group(2) if match.group(2) is not None else int(match.group(3)))
        pos = match.end()
    return tuple(steps)


def apply_selector(document: Any, selector: Selector) -> Any:
    """The part of ``document`` that ``selector`` names.

    Raises:
        LookupError: the document has nothing there.
    """
    value = document
    for step in selector:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                raise LookupError(f"no item [{step}]")
        elif not isinstance(value, dict) or step not in value:
            raise LookupError(f"no key {step!r}")
        value = value[step]
    return value


# The sources file.

_KEYS = {"name", "url", "interval", "channel", "headers", "timeout", "select", "max_backoff", "enabled"}
_MIN_INTERVAL = 0.05


@dataclass(frozen=True)
class PollerConfig:
    """One ``[[pollers]]`` table, checked."""

    name: str
    url: str
    channel: str
    interval: float
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    select: str = ""
    max_backoff: float = 300.0

    @property
    def selector(self) -> Selector:
        return parse_selector(self.select)


def load_pollers(path: str) -> list[PollerConfig]:
    """Read the enabled pollers from the TOML sources file at ``path``.

    Raises:
        ConfigError: the file is missing, not TOML, or a poller is unusable; the message says which.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"SOURCES_FILE={path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"SOURCES_FILE={path!r} is not valid TOML: {exc}") from None
    unknown = set(document) - {"pollers"}
    if unknown:
        raise ConfigError(f"SOURCES_FILE={path!r}: unknown top-level keys {sorted(unknown)}")
    tables = document.get("pollers", [])
    if not isinstance(tables, list):
        raise ConfigError(f"SOURCES_FILE={path!r}: 'pollers' must be [[pollers]] tables")
    pollers: list[PollerConfig] = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        where = f"SOURCES_FILE={path!r}: poller #{index + 1}"
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            where += f" ({table['name']!r})"
        try:
            config = _poller(table)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if config is None:
            continue
        if config.name in names:
            raise ConfigError(f"{where}: the name {config.name!r} is used twice")
        names.add(config.name)
        pollers.append(config)
    return pollers


def _poller(table: dict[str, Any]) -> PollerConfig | None:
    """Check one table; None if it is disabled. Raises ValueError naming the bad key."""
    if not isinstance(table, dict):
        raise ValueError("must be a [[pollers]] table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("name", "url", "channel", "interval"):
        if key not in table:
            raise ValueError(f"'{key}' is required")
    name, url, channel = table["name"], table["url"], table["channel"]
    if not is_valid_channel(name):
        raise ValueError(f"name {name!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url {url!r} must start with http:// or https://")
    try:
        check_channel(channel)
        check_channel(f"{channel}.status")
    except InvalidChannel as exc:
        raise ValueError(f"channel {channel!r}: {exc}") from None
    interval = _seconds(table, "interval", None)
    if interval < _MIN_INTERVAL:
        raise ValueError(f"interval must be at least {_MIN_INTERVAL} seconds")
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("headers must be a table of strings, e.g. headers = { Accept = 'application/json' }")
    select = table.get("select", "")
    if not isinstance(select, str):
        raise ValueError("select must be a string such as 'current.temperature_2m'")
    parse_selector(select)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    if not enabled:
        return None
    return PollerConfig(
        name=name,
        url=url,
        channel=channel,
        interval=interval,
        timeout=_seconds(table, "timeout", 10.0),
        headers=dict(headers),
        select=select,
        max_backoff=_seconds(table, "max_backoff", 300.0),
    )


def _seconds(table: dict[str, Any], key: str, default: float | None) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{key} must be a positive number of seconds")
    return float(value)


# Polling.


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
