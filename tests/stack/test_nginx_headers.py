"""What nginx sends the workers, route by route: the real template before an upstream that echoes headers.

The upstream is a tiny HTTP server that answers every request with the
headers it received, as JSON. nginx runs the template exactly as `make run`
renders it (deploy/stack.py), so a location that loses an inherited
`proxy_set_header` fails here, not in a user's browser.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploy.stack import TEMPLATE, native_values, write_nginx_config
from tests.helpers import free_port, need_binary, wait_until

pytestmark = pytest.mark.stack

# Every proxied route, with a request that reaches the upstream.
ROUTES = ["/ws", "/events?channel=a", "/api/channels/a", "/healthz"]


class _Echo(BaseHTTPRequestHandler):
    """Answers any request with {"path": ..., "headers": {lower-case name: value}}."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """An upstream on a loopback port that echoes every request's headers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def nginx_port(tmp_path_factory: pytest.TempPathFactory, echo_port: int) -> Iterator[int]:
    """nginx running the real template (rendered as `make run` renders it) in front of the echo upstream."""
    nginx = need_binary("nginx")
    port = free_port()
    directory = tmp_path_factory.mktemp("nginx-headers")
    main = write_nginx_config(directory, native_values(port, [echo_port], conn_per_ip=100))
    with open(directory / "err.log", "wb") as log:
        proc = subprocess.Popen([nginx, "-c", str(main)], stdout=subprocess.DEVNULL, stderr=log)
    try:

        def up() -> bool:
            try:
                return _get(port, "/nginx-health")[0] == 200
            except OSError:
                return False

        wait_until(up, timeout=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body.startswith(b"{") else body
    finally:
        conn.close()


def _received(port: int, path: str, **extra: str) -> dict[str, str]:
    """The headers the upstream got for a browser-like request to path through nginx."""
    headers = {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}", **extra}
    if path == "/ws":
        headers |= {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
    status, body = _get(port, path, headers)
    assert status == 200, (path, status, body)
    assert body["path"] == path
    return dict(body["headers"])


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_gets_the_full_header_set(nginx_port: int, path: str) -> None:
    """Each proxied route passes Host, Origin, X-Real-IP and every X-Forwarded-* header on to the worker."""
    got = _received(nginx_port, path)
    assert got["host"] == f"127.0.0.1:{nginx_port}", got
    assert got["origin"] == f"http://127.0.0.1:{nginx_port}", got
    assert got["x-real-ip"] == "127.0.0.1", got
    assert got["x-forwarded-for"] == "127.0.0.1", got
    assert got["x-forwarded-proto"] == "http", got
    assert got["x-forwarded-host"] == f"127.0.0.1:{nginx_port}", got


def test_websocket_route_gets_the_upgrade(nginx_port: int) -> None:
    """/ws passes the client's Upgrade on, with Connection: upgrade and the WebSocket key."""
    got = _received(nginx_port, "/ws")
    assert got["upgrade"] == "websocket", got
    assert got["connection"].lower() == "upgrade", got
    assert got["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ==", got


@pytest.mark.parametrize("path", [r for r in ROUTES if r != "/ws"])
def test_other_routes_keep_upstream_connections_alive(nginx_port: int, path: str) -> None:
    """A request that does not ask to upgrade reaches the worker with no Upgrade and no Connection: close."""
    got = _received(nginx_port, path)
    assert "upgrade" not in got, got
    assert got.get("connection", "") == "", got  # nginx's default would be "close": no keep-alive


@pytest.mark.parametrize("path", ROUTES)
def test_tls_proxy_in_front_keeps_its_scheme_and_host(nginx_port: int, path: str) -> None:
    """Behind a TLS-terminating proxy, the forwarded scheme and public host reach the worker unchanged."""
    got = _received(
        nginx_port,
        path,
        Origin="https://stream.example",
        **{
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "stream.example",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    assert got["x-forwarded-proto"] == "https", got
    assert got["x-forwarded-host"] == "stream.example", got
    assert got["x-forwarded-for"] == "203.0.113.9, 127.0.0.1", got
    assert got["origin"] == "https://stream.example", got


def test_no_location_sets_headers_of_its_own() -> None:
    """The template sets proxy headers once, at server level: no location block can drop the inherited set."""
    text = re.sub(r"#.*", "", TEMPLATE.read_text())
    depth, in_location, offenders = 0, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"\s*location\b", line):
            in_location = depth + 1
        if in_location and depth >= in_location - 1 and "proxy_set_header" in line:
            offenders.append(number)
        depth += line.count("{") - line.count("}")
        if in_location and depth < in_location:
            in_location = 0
    assert offenders == [], f"proxy_set_header inside a location, template lines {offenders}"


def test_template_path_is_the_one_docker_uses() -> None:
    """The template tested here is the file nginx/Dockerfile copies into the image."""
    dockerfile = (Path(TEMPLATE).parents[1] / "Dockerfile").read_text()
    assert f"COPY nginx/templates/{TEMPLATE.name} " in dockerfile
