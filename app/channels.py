"""Channel names and channel patterns. Pure functions, no I/O."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

__all__ = ["MAX_NAME", "InvalidChannel", "Patterns", "check_channel", "is_valid_channel"]

MAX_NAME = 128

# Only characters that need no escaping in JSON, URLs, Redis keys or SSE
# fields, so a name can be spliced into any of them as it is.
_NAME = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_NAME}}}")


class InvalidChannel(ValueError):
    """A channel name breaks the naming rule."""


def is_valid_channel(name: object) -> bool:
    """Tell whether ``name`` is 1-128 characters of ``[A-Za-z0-9_.:-]``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_channel(name: object) -> str:
    """Return ``name`` if it is a valid channel name.

    Raises:
        InvalidChannel: with a message a client can act on.
    """
    if is_valid_channel(name):
        assert isinstance(name, str)
        return name
    if not isinstance(name, str) or not name:
        raise InvalidChannel("channel name is missing")
    if len(name) > MAX_NAME:
        raise InvalidChannel(f"channel name is longer than {MAX_NAME} characters")
    raise InvalidChannel("channel name may only contain A-Z a-z 0-9 _ . : -")


class Patterns:
    """A set of shell-style globs (``chat.*``) matched against channel names."""

    def __init__(self, globs: Iterable[str]) -> None:
        self.globs = tuple(globs)
        joined = "|".join(fnmatch.translate(g) for g in self.globs)
        self._regex = re.compile(joined) if joined else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def match(self, channel: str) -> bool:
        """Tell whether ``channel`` matches any of the globs."""
        return self._regex is not None and self._regex.match(channel) is not None
