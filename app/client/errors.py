"""The one exception the client raises: a stable ``code`` (the server's error codes, and a few of its own)."""

from __future__ import annotations

import json

__all__ = ["ClientError", "from_http_answer"]

# Codes the client adds to the server's (docs/api.md, "Error codes").
LOCAL_CODES = {
    "bad_url": "the URL is not an http(s):// or ws(s):// address",
    "unreachable": "no connection could be made to the server",
    "connection_lost": "the connection ended",
    "idle": "nothing was received for 2.5 heartbeats",
    "timeout": "no answer in time",
    "bad_answer": "the server's answer is not what Windsock sends",
    "token_error": "the token callable failed",
    "closed": "the client is closed",
}

# What a close code of the WebSocket means, as an error code.
CLOSE_CODES = {
    1001: "going_away",
    1008: "rate_limited",
    1009: "too_large",
    1011: "internal_error",
    1013: "slow_consumer",
    4401: "unauthorized",
    4403: "forbidden",
}

# An HTTP status with a body that is not Windsock's JSON (a proxy's own page).
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


class ClientError(Exception):
    """A failure with a stable ``code``; ``status`` is the HTTP status or WebSocket close code, if any."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.message = message or LOCAL_CODES.get(code, code)
        self.status = status
        super().__init__(code, self.message)

    def __str__(self) -> str:
        suffix = f" (HTTP {self.status})" if self.status is not None and self.status < 1000 else ""
        if self.status is not None and self.status >= 1000:
            suffix = f" (close {self.status})"
        return f"{self.code}: {self.message}{suffix}"


def from_http_answer(status: int, body: bytes | str) -> ClientError:
    """The error an HTTP error answer stands for: its JSON ``code`` when it has one."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("code"), str):
        message = answer.get("message")
        return ClientError(answer["code"], message if isinstance(message, str) else None, status)
    code = _STATUS_CODES.get(status, "no_worker" if status in (502, 504) else f"http_{status}")
    return ClientError(code, f"the server answered HTTP {status}", status)


def connect_reason(exc: BaseException) -> str:
    """Why a connection could not be made, in a few words: the OS's reason, from the exception's chain."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, TimeoutError):
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__
