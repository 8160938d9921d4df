"""A thin synchronous facade for scripts that do not use asyncio: ``for event in subscribe(...)``.

Each call runs the asyncio Client on an event loop of its own, in the
calling thread, only while the caller waits for the next event. In a
program that already runs an event loop (a Jupyter notebook), use Client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Literal

import httpx

from app.client.core import DEFAULT_URL, Client
from app.client.frames import Event, Since, check_channels, normalize_url
from app.client.httpapi import check_answer, publish_request, transport_error
from app.client.retry import Token

__all__ = ["publish", "publish_answer", "subscribe"]


def subscribe(
    url: str,
    *channels: str,
    since: Since = None,
    transport: Literal["websocket", "sse"] = "websocket",
    token: Token = None,
    **options: Any,
) -> Iterator[Event]:
    """Every event of ``channels``, as ``async for`` on a Client gives them; closes when the loop ends."""
    client = Client(url, channels, since=since, transport=transport, token=token, **options)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.__aenter__())
        while True:
            try:
                event = loop.run_until_complete(client.__anext__())
            except StopAsyncIteration:
                return
            yield event
    finally:
        try:
            loop.run_until_complete(client.close())
        finally:
            loop.close()


def publish(
    url: str,
    channel: str,
    data: Any,
    key: str | None = None,
    timeout: float = 10.0,
    idempotency_key: str | None = None,
) -> int:
    """Publish over HTTP (``key``: the PUBLISH_KEY); the id, or ClientError with the server's code.

    Retried with the same ``idempotency_key``, a publish whose answer was lost is published once.
    """
    answer = publish_answer(url, channel, data, key, timeout, idempotency_key)
    return int(answer["id"])


def publish_answer(
    url: str,
    channel: str,
    data: Any,
    key: str | None = None,
    timeout: float = 10.0,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Publish over HTTP; the whole answer: ``{"id", "channel"}``, and ``"skipped"`` or ``"duplicate"``."""
    [channel] = check_channels([channel])
    base = normalize_url(url or DEFAULT_URL)
    target, body, headers = publish_request(base, channel, data, key, idempotency_key)
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as http:
            response = http.post(target, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise transport_error(target, exc) from None
    return check_answer(response)
