"""Channel namespaces: per-family rules for history, skip-unchanged, client publish and tokens.

The sources file (SOURCES_FILE) may hold ``[[namespaces]]`` tables beside its
``[[pollers]]``: one file says both where data comes from and how its
channels behave. Each table names channel globs and the rules for them; the
first table whose globs match a channel wins, and a channel no table
matches (or a key a table leaves out) follows the global settings, so a
deployment without namespaces behaves exactly as before. Pure: reading and
checking a file, and matching names. A mistake is a ConfigError naming the
namespace and the key, raised at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.channels import Patterns, is_valid_channel
from app.config import ConfigError, Settings
from app.sources_file import read_tables, where

__all__ = ["DEFAULT", "Namespace", "Namespaces", "load_namespaces"]

DEFAULT = "default"

_KEYS = {"name", "channels", "history_size", "history_ttl", "skip_unchanged", "client_publish", "token"}
# The same bounds as HISTORY_SIZE and HISTORY_TTL.
_MAX_HISTORY = 100_000
# Channel names resolved to rules are remembered, up to this many, so the
# globs are matched once per channel, not once per publish.
_CACHE = 10_000


@dataclass(frozen=True, slots=True)
class Namespace:
    """The rules that apply to one channel."""

    name: str
    history_size: int
    history_ttl: int
    skip_unchanged: bool
    client_publish: bool
    token: bool

    def publish_options(self, skip_unchanged: bool) -> dict[str, Any]:
        """What ``Broker.publish`` needs of these rules, for a publish that asked ``skip_unchanged``."""
        return {
            "skip_unchanged": skip_unchanged or self.skip_unchanged,
            "history_size": self.history_size,
            "history_ttl": self.history_ttl,
        }

    def describe(self) -> dict[str, Any]:
        """The rules as GET /api/channels/NAME shows them."""
        return {
            "name": self.name,
            "history_size": self.history_size,
            "history_ttl": self.history_ttl,
            "skip_unchanged": self.skip_unchanged,
            "client_publish": self.client_publish,
            "token": self.token,
        }


@dataclass(frozen=True, slots=True)
class _Table:
    """One checked ``[[namespaces]]`` table; None means 'as the global settings say'."""

    name: str
    channels: Patterns
    history_size: int | None
    history_ttl: int | None
    skip_unchanged: bool | None
    client_publish: bool | None
    token: bool | None


class Namespaces:
    """Resolves a channel name to its Namespace: the first matching table, else the global settings."""

    def __init__(self, settings: Settings, tables: Sequence[_Table] = ()) -> None:
        self._tables = tuple(tables)
        self._size = settings.history_size
        self._ttl = settings.history_ttl
        self._skip = Patterns(settings.skip_unchanged)
        self._publish = Patterns(settings.client_publish)
        self._token = bool(settings.subscribe_secret)
        self._cache: dict[str, Namespace] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Namespaces:
        """The namespaces of SOURCES_FILE, if one is set.

        Raises:
            ConfigError: the file is unreadable or a table is wrong; the message says which.
        """
        tables = load_namespaces(settings.sources_file) if settings.sources_file else []
        for table in tables:
            if table.token and not settings.subscribe_secret:
                raise ConfigError(
                    f"SOURCES_FILE={settings.sources_file!r}: namespace {table.name!r} sets token = true, "
                    "but SUBSCRIBE_SECRET is empty, so no token could ever be verified"
                )
        return cls(settings, tables)

    @property
    def any_public(self) -> bool:
        """Whether some channels may be read without a token although SUBSCRIBE_SECRET is set."""
        return self._token and any(t.token is False for t in self._tables)

    def __call__(self, channel: str) -> Namespace:
        found = self._cache.get(channel)
        if found is None:
            if len(self._cache) >= _CACHE:
                self._cache.clear()  # publishers naming ever new channels must not grow this
            found = self._cache[channel] = self._resolve(channel)
        return found

    def _resolve(self, channel: str) -> Namespace:
        for table in self._tables:
            if table.channels.match(channel):
                return Namespace(
                    table.name,
                    self._size if table.history_size is None else table.history_size,
                    self._ttl if table.history_ttl is None else table.history_ttl,
                    self._skip.match(channel) if table.skip_unchanged is None else table.skip_unchanged,
                    self._publish.match(channel) if table.client_publish is None else table.client_publish,
                    self._token if table.token is None else table.token,
                )
        skip, publish = self._skip.match(channel), self._publish.match(channel)
        return Namespace(DEFAULT, self._size, self._ttl, skip, publish, self._token)


def load_namespaces(path: str) -> list[_Table]:
    """Read the ``[[namespaces]]`` tables of the TOML file at ``path``, in order.

    Raises:
        ConfigError: the file is missing, not TOML, or a table is unusable; the message says which.
    """
    checked: list[_Table] = []
    for index, table in enumerate(read_tables(path, "namespaces")):
        named = where(path, "namespace", index, table)
        try:
            checked.append(_table(table))
        except ValueError as exc:
            raise ConfigError(f"{named}: {exc}") from None
        if checked[-1].name in {t.name for t in checked[:-1]} | {DEFAULT}:
            raise ConfigError(f"{named}: the name {checked[-1].name!r} is taken")
    return checked


def _table(table: Any) -> _Table:
    """Check one table. Raises ValueError naming the bad key."""
    if not isinstance(table, dict):
        raise ValueError("must be a [[namespaces]] table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("name", "channels"):
        if key not in table:
            raise ValueError(f"'{key}' is required")
    name, channels = table["name"], table["channels"]
    if not is_valid_channel(name):
        raise ValueError(f"name {name!r} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    if isinstance(channels, str):
        channels = [channels]
    if not channels or not isinstance(channels, list) or not all(isinstance(g, str) and g for g in channels):
        raise ValueError("channels must be a glob or a list of globs, e.g. channels = ['sensors.*']")
    return _Table(
        name=name,
        channels=Patterns(channels),
        history_size=_int(table, "history_size", 1, _MAX_HISTORY),
        history_ttl=_int(table, "history_ttl", 0, None),
        skip_unchanged=_bool(table, "skip_unchanged"),
        client_publish=_bool(table, "client_publish"),
        token=_bool(table, "token"),
    )


def _int(table: dict[str, Any], key: str, lo: int, hi: int | None) -> int | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise ValueError(f"{key} must be a whole number {bound}, not {value!r}")
    return value


def _bool(table: dict[str, Any], key: str) -> bool | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value
