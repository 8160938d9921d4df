"""The sources file (SOURCES_FILE): its TOML read once per caller, and its top level checked.

It holds two kinds of tables: ``[[pollers]]`` (app/sources/poll_config.py)
and ``[[namespaces]]`` (app/namespaces.py). Each module checks its own
tables; this one reads the file and hands each its list, with the words
that name a table in an error.
"""

from __future__ import annotations

import tomllib
from typing import Any

from app.config import ConfigError

__all__ = ["KINDS", "read_tables", "where"]

KINDS = ("pollers", "namespaces")


def read_tables(path: str, kind: str) -> list[Any]:
    """The ``[[kind]]`` tables of the file at ``path``, in order (not yet checked).

    Raises:
        ConfigError: the file is missing or not TOML, has a top-level key
            other than KINDS, or ``kind`` is not a list of tables.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"SOURCES_FILE={path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"SOURCES_FILE={path!r} is not valid TOML: {exc}") from None
    unknown = set(document) - set(KINDS)
    if unknown:
        raise ConfigError(f"SOURCES_FILE={path!r}: unknown top-level keys {sorted(unknown)}")
    tables = document.get(kind, [])
    if not isinstance(tables, list):
        raise ConfigError(f"SOURCES_FILE={path!r}: '{kind}' must be [[{kind}]] tables")
    return tables


def where(path: str, noun: str, index: int, table: Any) -> str:
    """How an error names a table: ``SOURCES_FILE='f.toml': poller #2 ('oslo')``."""
    text = f"SOURCES_FILE={path!r}: {noun} #{index + 1}"
    if isinstance(table, dict) and isinstance(table.get("name"), str):
        text += f" ({table['name']!r})"
    return text
