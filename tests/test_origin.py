"""The cross-origin rule for /ws and /events, as pure functions: no sockets."""

from __future__ import annotations

import pytest
from tornado.httputil import HTTPHeaders

from app.transports.common import origin_allowed, public_host


def test_no_origin_is_a_program_and_allowed() -> None:
    """A request without Origin (not a browser) passes whatever the host."""
    assert origin_allowed(None, "a.example", ())


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://Stream.Example/", "stream.example", True),  # case and a trailing slash do not matter
        ("http://127.0.0.1:8080", "127.0.0.1:8081", False),  # the port is part of the origin
        ("http://evil.example", "stream.example", False),
        ("null", "stream.example", False),  # sandboxed frames and file:// pages
        ("http://stream.example", None, False),
    ],
)
def test_same_origin_means_same_host_and_port(origin: str, host: str | None, allowed: bool) -> None:
    """Without an allow-list, the Origin's host and port must equal the public host."""
    assert origin_allowed(origin, host, ()) is allowed


def test_allow_list_replaces_same_origin() -> None:
    """With ALLOWED_ORIGINS, only the listed origins pass (or any, with *), same-origin or not."""
    allowed = ("https://app.example",)
    assert origin_allowed("https://APP.example", "x", allowed)
    assert not origin_allowed("https://x", "x", allowed)
    assert origin_allowed("https://anything", "x", ("*",))


def test_public_host_prefers_the_forwarded_host() -> None:
    """A proxy's X-Forwarded-Host (its first entry) names the browser's host; else Host does."""
    assert public_host(HTTPHeaders({"Host": "windsock"})) == "windsock"
    forwarded = HTTPHeaders({"Host": "windsock", "X-Forwarded-Host": "stream.example, inner:8080"})
    assert public_host(forwarded) == "stream.example"
    assert public_host(HTTPHeaders({"Host": "h", "X-Forwarded-Host": " "})) == "h"
    assert public_host(HTTPHeaders()) is None
