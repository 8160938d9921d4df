"""POST/GET /api/channels/NAME, and JSON errors for every bad request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import WS, http, publish


async def test_publish_answers_202_with_the_id(server: Any) -> None:
    """A JSON body is published as data; the answer carries the id and channel."""
    status, body, _ = await http("POST", f"{server.base}/api/channels/t.1", {"v": [1, 2]})
    assert status == 202 and body["channel"] == "t.1" and isinstance(body["id"], int)


async def test_get_channel_state(server: Any) -> None:
    """GET answers the latest message, the history length, local subscribers and the namespace."""
    status, body, _ = await http("GET", f"{server.base}/api/channels/empty")
    assert status == 200 and body.pop("namespace")["name"] == "default"
    assert body == {"channel": "empty", "latest": None, "history": 0, "subscribers": 0}
    ws = await WS.connect(server.ws)
    await ws.subscribe("state")
    await publish(server.base, "state", 1)
    last = await publish(server.base, "state", {"x": 2})
    _, body, _ = await http("GET", f"{server.base}/api/channels/state")
    assert body["latest"] == {"type": "message", "channel": "state", "id": last, "data": {"x": 2}}
    assert (body["history"], body["subscribers"]) == (2, 1)
    ws.close()


async def test_skip_unchanged(server: Any) -> None:
    """?skip_unchanged=1 does not publish data equal to the latest; subscribers see it once."""
    ws = await WS.connect(server.ws)
    await ws.subscribe("temp")
    url = f"{server.base}/api/channels/temp?skip_unchanged=1"
    s1, b1, _ = await http("POST", url, {"c": 20})
    s2, b2, _ = await http("POST", url, {"c": 20})
    s3, _, _ = await http("POST", url, {"c": 21})
    assert (s1, s2, s3) == (202, 200, 202) and b2 == {"id": b1["id"], "channel": "temp", "skipped": True}
    assert [m["data"] for m in await ws.messages(2)] == [{"c": 20}, {"c": 21}]
    ws.close()


async def test_skip_unchanged_by_setting(make_server: Any) -> None:
    """Channels matching SKIP_UNCHANGED skip repeats without the query flag."""
    server = await make_server(skip_unchanged=("weather.*",))
    _, first, _ = await http("POST", f"{server.base}/api/channels/weather.oslo", 5)
    status, again, _ = await http("POST", f"{server.base}/api/channels/weather.oslo", 5)
    assert status == 200 and again["skipped"] and again["id"] == first["id"]


@pytest.mark.parametrize(
    ("path", "raw", "status", "code"),
    [
        ("/api/channels/ok", b"{broken", 400, "bad_json"),
        ("/api/channels/ok", b"", 400, "bad_json"),
        ("/api/channels/ok", b"\xff\xfe", 400, "bad_json"),
        ("/api/channels/ok", b'{"a": NaN}', 400, "bad_json"),
        ("/api/channels/ok", b"[" * 5000 + b"]" * 5000, 400, "bad_json"),
        ("/api/channels/bad%20name", b"1", 400, "bad_channel"),
        ("/api/channels/%C3%A9", b"1", 400, "bad_channel"),
        ("/api/channels/" + "x" * 10_000, b"1", 400, "bad_channel"),
        ("/api/channels/", b"1", 400, "bad_channel"),
        ("/api/channels/../etc/passwd", b"1", 404, "not_found"),
        ("/api/nothing", b"1", 404, "not_found"),
    ],
)
async def test_bad_publishes_get_json_errors(
    server: Any, path: str, raw: bytes, status: int, code: str
) -> None:
    """Every bad publish answers its status with a JSON error body, and the worker keeps serving."""
    got, body, response = await http("POST", server.base + path, raw=raw)
    assert (got, body["code"]) == (status, code)
    assert body["type"] == "error" and body["message"]
    assert response.headers["Content-Type"].startswith("application/json")
    assert b"Traceback" not in response.body
    assert await publish(server.base, "after", 1) > 0


async def test_oversize_body_is_413(make_server: Any) -> None:
    """A body over MAX_MESSAGE_BYTES answers 413 with a JSON error, by header and by actual size."""
    server = await make_server(max_message_bytes=1000)
    status, body, _ = await http("POST", f"{server.base}/api/channels/big", raw=b'"' + b"x" * 5000 + b'"')
    assert (status, body["code"]) == (413, "too_large")


async def test_publish_key(make_server: Any) -> None:
    """With PUBLISH_KEY set, publishing needs the bearer key: 401 otherwise."""
    server = await make_server(publish_key="s3cret")
    url = f"{server.base}/api/channels/locked"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        status, body, _ = await http("POST", url, 1, headers)
        assert (status, body["code"]) == (401, "unauthorized")
    status, _, _ = await http("POST", url, 1, {"Authorization": "Bearer s3cret"})
    assert status == 202


async def test_index_page_is_served(server: Any) -> None:
    """GET / serves the demo page."""
    status, _, response = await http("GET", server.base + "/")
    assert status == 200 and b"Windsock" in response.body


async def test_health_ok(server: Any) -> None:
    """GET /healthz answers 200 ok with this worker's name and the broker state."""
    status, body, response = await http("GET", server.base + "/healthz")
    assert status == 200 and body["status"] == "ok"
    assert body["worker"].endswith(f":{server.port}") and body["broker"]["healthy"] is True
    assert response.headers["X-Windsock-Worker"] == body["worker"]
