"""What the client tries again after, and the token it tries with."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from app.client.errors import ClientError

__all__ = ["Token", "current_token", "is_fatal"]

# A token, or a callable (sync or async) that gives the current one.
Token = str | Callable[[], str | Awaitable[str | None] | None] | None

# Errors that another attempt cannot mend: the client stops and raises them.
_FATAL = {
    "bad_channel",
    "bad_since",
    "bad_json",
    "bad_message",
    "unknown_type",
    "too_many_channels",
    "not_found",
    "method_not_allowed",
    "bad_answer",
}
# Refusals a fresh token may mend: fatal only with a token that never changes.
_AUTH = {"unauthorized", "forbidden"}


def is_fatal(error: ClientError, token_renews: bool) -> bool:
    """Whether ``error`` ends the client rather than a connection (``token_renews``: a token callable)."""
    if error.code in _AUTH:
        return not token_renews
    return error.code in _FATAL


async def current_token(token: Token) -> str | None:
    """The token to connect with now: ``token`` itself, or what its callable gives."""
    if not callable(token):
        return token
    try:
        value = token()
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        raise ClientError("token_error", f"the token callable failed: {exc!r}") from None
    return value or None
