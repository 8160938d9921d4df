"""Subscribe tokens: HMAC-SHA256 JWTs naming the channels a client may subscribe to.

A backend mints a token for a user (see README, "Tokens") with claims
``channels`` (a list of globs, e.g. ``["sensors.*", "chat.room-7"]``) and
``exp`` (expiry, Unix time). Clients pass it as ``?token=`` or
``Authorization: Bearer``. PyJWT does the cryptography.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from app.channels import Patterns
from app.errors import WindsockError

__all__ = ["Grant", "mint_token", "verify_token"]

_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Grant:
    """What a verified token allows, and until when."""

    channels: Patterns
    expires: float

    def allows(self, channel: str) -> bool:
        return self.channels.match(channel)


def verify_token(token: str | None, secret: str) -> Grant:
    """Check a token's signature, expiry and claims.

    Raises:
        WindsockError: ``unauthorized`` naming what is wrong (missing,
            expired, forged or malformed), never echoing the token.
    """
    if not token:
        raise WindsockError(
            "unauthorized", "a subscribe token is required (?token= or Authorization: Bearer)"
        )
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], options={"require": ["exp", "channels"]})
    except jwt.ExpiredSignatureError:
        raise WindsockError("unauthorized", "token expired") from None
    except jwt.InvalidSignatureError:
        raise WindsockError("unauthorized", "token signature is invalid") from None
    except jwt.PyJWTError as exc:
        raise WindsockError("unauthorized", f"token rejected: {exc}") from None
    channels = claims["channels"]
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise WindsockError("unauthorized", "token claim 'channels' must be a list of strings")
    return Grant(Patterns(channels), float(claims["exp"]))


def mint_token(secret: str, channels: Iterable[str], ttl: float = 3600, now: float | None = None) -> str:
    """Sign a token for ``channels`` valid for ``ttl`` seconds (what a backend does)."""
    issued = time.time() if now is None else now
    claims = {"channels": list(channels), "iat": int(issued), "exp": int(issued + ttl)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)
