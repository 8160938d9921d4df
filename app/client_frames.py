"""What clients send: WebSocket frames, message ids and 'since', resume cursors, idempotency keys.

Pure functions with no I/O, so they are tested without sockets. Each bad
input is a WindsockError with a code and a message the client can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.channels import InvalidChannel, check_channel
from app.errors import WindsockError
from app.messages import dumps

__all__ = [
    "LATEST",
    "ClientFrame",
    "encode_cursor",
    "parse_client_frame",
    "parse_cursor",
    "parse_id",
    "parse_idempotency_key",
    "parse_since",
]


# Client frames.


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A decoded WebSocket client frame."""

    type: str
    channel: str = ""
    since: int | None = None  # None: live only; LATEST: the newest message, then live
    data: bytes = b"null"
    ref: Any = None
    key: str | None = None  # a publish's idempotency key


_CLIENT_TYPES = {"subscribe", "unsubscribe", "publish", "ping"}


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Decode and validate one client frame.

    Raises:
        WindsockError: ``bad_json``, ``bad_message``, ``unknown_type``,
            ``bad_channel``, ``bad_since`` or ``bad_idempotency_key``, with a
            message for the client, and the frame's ``ref`` when it had one.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WindsockError("bad_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WindsockError("bad_message")
    try:
        return _frame(obj, obj.get("ref"))
    except WindsockError as exc:
        # Echoed in the error frame, so a client can tell which of its frames was refused.
        exc.ref = obj.get("ref")
        raise


def _frame(obj: dict[str, Any], ref: Any) -> ClientFrame:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise WindsockError("bad_message")
    if kind not in _CLIENT_TYPES:
        raise WindsockError(
            "unknown_type", f"unknown type {kind[:64]!r}; expected one of " + ", ".join(sorted(_CLIENT_TYPES))
        )
    if kind == "ping":
        return ClientFrame(kind, ref=ref)
    try:
        channel = check_channel(obj.get("channel"))
    except InvalidChannel as exc:
        raise WindsockError("bad_channel", str(exc)) from None
    if kind == "publish":
        if "data" not in obj:
            raise WindsockError("bad_message", "publish needs a 'data' field")
        key = obj.get("idempotency_key")
        if key is not None:
            key = parse_idempotency_key(key)
        return ClientFrame(kind, channel, data=dumps(obj["data"]), ref=ref, key=key)
    since = obj.get("since")
    return ClientFrame(kind, channel, since=None if since is None else parse_since(since), ref=ref)


# The 'since' that asks for a channel's newest message, then live ones; no id is negative.
LATEST = -1


def parse_since(value: object) -> int:
    """Read a subscribe's ``since``: a message id, or ``"latest"`` (LATEST).

    Raises:
        WindsockError: ``bad_since``.
    """
    if value == "latest":
        return LATEST
    return parse_id(value)


_KEY_MAX = 128


def parse_idempotency_key(value: object) -> str:
    """Check a publish's idempotency key: 1-128 printable ASCII characters, no spaces.

    Raises:
        WindsockError: ``bad_idempotency_key``.
    """
    if (
        isinstance(value, str)
        and 0 < len(value) <= _KEY_MAX
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return value
    raise WindsockError("bad_idempotency_key")


def parse_id(value: object) -> int:
    """Read a message id (an int, or a decimal string as in Last-Event-ID).

    Raises:
        WindsockError: ``bad_since``.
    """
    if isinstance(value, bool):
        raise WindsockError("bad_since")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        result = int(value)
    else:
        raise WindsockError("bad_since")
    if not 0 <= result < 2**63:
        raise WindsockError("bad_since")
    return result


# Resume cursors.


def encode_cursor(positions: dict[str, int]) -> str:
    """Encode the last id seen on each channel as ``a=1,b=2`` ('=' and ',' never occur in names)."""
    return ",".join(f"{channel}={pos}" for channel, pos in positions.items())


def parse_cursor(text: str, channels: Sequence[str]) -> dict[str, int]:
    """Read a Last-Event-ID for a stream over ``channels``.

    A bare id applies to every channel (so ``0`` asks each for its history); a
    cursor names each channel's id. Channels a cursor leaves out start live.

    Raises:
        WindsockError: ``bad_since``.
    """
    text = text.strip()
    if "=" not in text:
        pos = parse_id(text)
        return {channel: pos for channel in channels}
    wanted = set(channels)
    result: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise WindsockError("bad_since", "cursor must look like channel=id,channel=id")
        if name in wanted:
            result[name] = parse_id(value)
    return result
