"""HTTP calls besides the stream, with httpx: POST /api/channels/NAME (publishing with a PUBLISH_KEY),
and GET /api/channels/NAME (a channel's newest message, for an SSE stream that cannot ask "latest")."""

from __future__ import annotations

import json
from typing import Any

import httpx

from app.client.errors import ClientError, connect_reason, from_http_answer
from app.client.frames import Message, encode_json, message_of, publish_url

__all__ = ["check_answer", "http_latest", "http_publish", "publish_request"]


def publish_request(
    base: str, channel: str, data: Any, key: str | None, idempotency_key: str | None = None
) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of a publish; ClientError ``bad_json`` for data that is not JSON."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return publish_url(base, channel), encode_json(data).encode(), headers


def _json_answer(response: httpx.Response) -> Any:
    """The decoded body of a good answer (None if it is not JSON); ClientError with the server's code."""
    if response.status_code >= 400:
        raise from_http_answer(response.status_code, response.content)
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def check_answer(response: httpx.Response) -> dict[str, Any]:
    """The answer of a publish as a dict; ClientError with the server's code for an error answer."""
    answer = _json_answer(response)
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), int):
        raise ClientError(
            "bad_answer", f"not a publish answer: {response.text[:200]!r}", response.status_code
        )
    return answer


def transport_error(url: str, exc: httpx.TransportError) -> ClientError:
    if isinstance(exc, httpx.TimeoutException):
        return ClientError("timeout", f"no answer from {url} in time")
    if isinstance(exc, httpx.ConnectError):
        return ClientError("unreachable", f"cannot connect to {url}: {connect_reason(exc)}")
    return ClientError("connection_lost", f"{url}: {exc or type(exc).__name__}")


async def http_publish(
    http: httpx.AsyncClient,
    base: str,
    channel: str,
    data: Any,
    key: str | None,
    within: float = 10,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Publish over HTTP; the server's answer, ``{"id", "channel"}`` (and ``"skipped"``, ``"duplicate"``)."""
    url, body, headers = publish_request(base, channel, data, key, idempotency_key)
    try:
        response = await http.post(url, content=body, headers=headers, timeout=within)
    except httpx.TransportError as exc:
        raise transport_error(url, exc) from None
    return check_answer(response)


async def http_latest(
    http: httpx.AsyncClient, base: str, channel: str, token: str | None, within: float = 10
) -> Message | None:
    """The channel's newest retained message (None if it keeps none); ClientError with the server's code."""
    url = publish_url(base, channel)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await http.get(url, headers=headers, timeout=within)
    except httpx.TransportError as exc:
        raise transport_error(url, exc) from None
    answer = _json_answer(response)
    if not isinstance(answer, dict) or "latest" not in answer:
        raise ClientError("bad_answer", f"not a channel's state: {response.text[:200]!r}")
    latest = answer["latest"]
    message = message_of(latest) if isinstance(latest, dict) else None
    if latest is not None and (message is None or message.channel != channel):
        raise ClientError("bad_answer", f"not a message of {channel}: {str(latest)[:200]!r}")
    return message
