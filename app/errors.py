"""The error codes clients see, with their HTTP statuses. Documented in README.md."""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

__all__ = ["ERRORS", "WindsockError"]

# code -> (HTTP status, default message)
ERRORS: dict[str, tuple[int, str]] = {
    "bad_json": (400, "body is not valid JSON"),
    "bad_message": (400, "a frame must be a JSON object with a string 'type'"),
    "unknown_type": (400, "unknown message type"),
    "bad_channel": (400, "invalid channel name"),
    "bad_since": (400, "'since' / Last-Event-ID must be a message id (or since: \"latest\")"),
    "bad_idempotency_key": (400, "an idempotency key must be 1-128 printable ASCII characters, no spaces"),
    "too_many_channels": (400, "too many channels on one connection"),
    "too_large": (413, "message is larger than MAX_MESSAGE_BYTES"),
    "rate_limited": (429, "too many frames; slow down"),
    "unauthorized": (401, "missing or wrong credentials"),
    "forbidden": (403, "not allowed"),
    "not_found": (404, "no such resource"),
    "method_not_allowed": (405, "method not allowed here"),
    "broker_unavailable": (503, "the message broker is unreachable; try again"),
    "shutting_down": (503, "this worker is shutting down; reconnect"),
    "too_many_connections": (503, "this worker holds MAX_SSE_CONNECTIONS streams; retry"),
}


class WindsockError(HTTPError):
    """An error a client caused or must know about; it carries a stable ``code``.

    It is an HTTPError so that a handler can simply raise it and Tornado
    answers with its status (the body is written by ``JsonErrors``).
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        status, default = ERRORS[code]
        self.code = code
        self.status = status
        self.message = message or default
        self.ref: Any = None  # the client frame's ref, for the error frame that answers it
        super().__init__(status)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": self.message}
