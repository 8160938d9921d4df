"""The sources file's ``[[pollers]]`` tables, and the selectors that pick the part of a document to publish.

Pure: reading and checking a file, parsing and applying selectors. A mistake
is a ConfigError that names the poller and the key, raised at start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.channels import InvalidChannel, check_channel, is_valid_channel
from app.config import ConfigError
from app.sources_file import read_tables, where

__all__ = ["PollerConfig", "Selector", "apply_selector", "load_pollers", "parse_selector"]

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
    pollers: list[PollerConfig] = []
    names: set[str] = set()
    for index, table in enumerate(read_tables(path, "pollers")):
        named = where(path, "poller", index, table)
        try:
            config = _poller(table)
        except ValueError as exc:
            raise ConfigError(f"{named}: {exc}") from None
        if config is None:
            continue
        if config.name in names:
            raise ConfigError(f"{named}: the name {config.name!r} is used twice")
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
