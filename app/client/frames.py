"""What the client sends and receives, as values: events, frames, cursors and URLs. Pure, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from app.channels import InvalidChannel, check_channel
from app.client.errors import ClientError

__all__ = [
    "LATEST",
    "Event",
    "Latest",
    "Message",
    "Point",
    "Reset",
    "ServerError",
    "Since",
    "Start",
    "Status",
    "check_channels",
    "decode_frame",
    "encode_cursor",
    "encode_json",
    "events_url",
    "normalize_url",
    "parse_start",
    "publish_url",
    "since_for",
    "ws_url",
]

Latest = Literal["latest"]
LATEST: Latest = "latest"  # a channel's newest retained message first, then live ones
Start = int | Latest  # where a channel starts: after an id, or at its newest message
Point = Start | None  # where a connection (re)subscribes a channel; None: from now on
Since = Start | Mapping[str, Start] | None
StatusName = Literal["connecting", "live", "reconnecting", "closed"]


@dataclass(frozen=True)
class Message:
    """A message delivered on a channel: its id and its data."""

    channel: str
    id: int
    data: Any
    type: Literal["message"] = "message"

    def envelope(self) -> dict[str, Any]:
        """The server's envelope for it: ``{"type": "message", "channel", "id", "data"}``."""
        return {"type": "message", "channel": self.channel, "id": self.id, "data": self.data}


@dataclass(frozen=True)
class Reset:
    """Messages of ``channel`` that were to be resumed are no longer in history; what is kept follows."""

    channel: str
    id: int
    reason: str
    type: Literal["reset"] = "reset"

    def envelope(self) -> dict[str, Any]:
        return {"type": "reset", "channel": self.channel, "id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class Status:
    """The connection's state changed. ``error`` says why a reconnect is needed, ``retry_in`` when."""

    status: StatusName
    transport: str
    attempt: int = 0
    retry_in: float = 0.0
    error: ClientError | None = None
    type: Literal["status"] = "status"


@dataclass(frozen=True)
class ServerError:
    """An error frame the server sent that no call of ours was waiting for (a refused subscribe, say)."""

    code: str
    message: str
    channel: str | None = None
    type: Literal["error"] = "error"


Event = Message | Reset | Status | ServerError


def check_channels(channels: Iterable[str]) -> list[str]:
    """The channel names, de-duplicated in order; ClientError ``bad_channel`` for an invalid one."""
    result: list[str] = []
    for name in channels:
        try:
            check_channel(name)
        except InvalidChannel as exc:
            raise ClientError("bad_channel", f"{name!r}: {exc}") from None
        if name not in result:
            result.append(name)
    return result


def _check_start(value: object, what: str) -> Start:
    if value == LATEST:
        return LATEST
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClientError("bad_since", f"{what} must be an id (an integer >= 0) or 'latest', not {value!r}")
    return value


def since_for(channels: Iterable[str], since: Since) -> dict[str, Start]:
    """Where each channel starts: ``since`` applied to ``channels``. A channel left out starts live."""
    if since is None:
        return {}
    if isinstance(since, Mapping):
        return {c: _check_start(since[c], f"since[{c!r}]") for c in channels if c in since}
    pos = _check_start(since, "since")
    return dict.fromkeys(channels, pos)


def encode_cursor(positions: Mapping[str, int]) -> str:
    """An SSE Last-Event-ID naming each channel's id: ``a=17,b=42``."""
    return ",".join(f"{channel}={pos}" for channel, pos in positions.items())


def parse_start(text: str, channels: Iterable[str]) -> dict[str, int]:
    """The starting position an SSE stream's first ``id:`` names: a bare id (one channel) or a cursor."""
    text = text.strip()
    names = list(channels)
    try:
        if "=" not in text:
            return dict.fromkeys(names, int(text)) if text else {}
        result = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            if name in names:
                result[name] = int(value)
        return result
    except ValueError:
        raise ClientError("bad_answer", f"the stream's id is not a cursor: {text[:80]!r}") from None


def decode_frame(text: str | bytes) -> dict[str, Any] | None:
    """A server frame (WebSocket text or SSE data) as a dict with a string ``type``; None if it is not one."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if isinstance(frame, dict) and isinstance(frame.get("type"), str):
        return frame
    return None


def message_of(frame: Mapping[str, Any]) -> Message | None:
    """The Message a ``message`` frame holds, or None if the frame is malformed."""
    channel, id_ = frame.get("channel"), frame.get("id")
    if not isinstance(channel, str) or isinstance(id_, bool) or not isinstance(id_, int):
        return None
    return Message(channel, id_, frame.get("data"))


def reset_of(frame: Mapping[str, Any]) -> Reset | None:
    channel, id_ = frame.get("channel"), frame.get("id")
    if not isinstance(channel, str) or isinstance(id_, bool) or not isinstance(id_, int):
        return None
    reason = frame.get("reason")
    return Reset(channel, id_, reason if isinstance(reason, str) else "")


def encode_json(data: Any) -> str:
    """JSON as the server accepts it (no NaN or Infinity); ClientError ``bad_json`` otherwise."""
    try:
        return json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ClientError("bad_json", f"data is not JSON: {exc}") from None


def normalize_url(url: str) -> str:
    """The server's base URL as http(s)://host[:port][/prefix], without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise ClientError("bad_url", f"{url!r}: {exc}") from None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        raise ClientError("bad_url", f"{url!r}: give http://host:port or https://host (ws:// works too)")
    if parts.query or parts.fragment:
        raise ClientError("bad_url", f"{url!r}: the base URL takes no query or fragment")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def ws_url(base: str) -> str:
    """``/ws`` under the base URL, as ws:// or wss://."""
    return "ws" + base[len("http") :] + "/ws"


def events_url(base: str) -> str:
    return base + "/events"


def publish_url(base: str, channel: str) -> str:
    """``POST /api/channels/NAME`` (channel names need no escaping, but are escaped all the same)."""
    return f"{base}/api/channels/{quote(channel, safe='')}"
