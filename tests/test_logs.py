"""LOG_FORMAT=json and the access log: one JSON object per line, request ids, no tokens in logs."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest

from app.auth import mint_token
from app.logs import JsonFormatter, redact
from tests.helpers import WS, free_port, http, http_status
from tests.stack.conftest import start_stack

ROOT = Path(__file__).resolve().parents[1]
SECRET = "log-secret-0123456789-abcdefghijkl"


def test_a_record_is_one_json_object_with_its_fields() -> None:
    """JsonFormatter writes time, level, worker, logger, event, the caller's fields and a traceback."""
    record = logging.LogRecord("windsock.x", logging.WARNING, __file__, 1, "lost %d", (3,), None)
    record.channel = "a"
    line = JsonFormatter("w1").format(record)
    entry = json.loads(line)
    assert "\n" not in line and entry["time"].endswith("Z")
    assert {k: entry[k] for k in ("level", "worker", "logger", "event", "channel")} == {
        "level": "WARNING",
        "worker": "w1",
        "logger": "windsock.x",
        "event": "lost 3",
        "channel": "a",
    }
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter("w1").format(record))["error"]


@pytest.mark.parametrize(
    ("uri", "logged"),
    [
        ("/ws?channel=a&token=eyJ.secret.sig", "/ws?channel=a&token=REDACTED"),
        ("/events?token=x", "/events?token=REDACTED"),
        ("/api/channels/a", "/api/channels/a"),
        ("/events?channel=a&channel=b", "/events?channel=a&channel=b"),
    ],
)
def test_tokens_never_reach_the_access_log(uri: str, logged: str) -> None:
    """A token in a query string is replaced before the URI is logged; the rest stays."""
    assert redact(uri) == logged


def _entries(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object; return them."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def _json_worker(port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(port), "--sources", "", "--log-format", "json"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "SUBSCRIBE_SECRET": SECRET},
        )


async def test_a_json_worker_logs_connections_and_publishes_with_request_ids(tmp_path: Path) -> None:
    """`--log-format json`: every line is JSON; a WS upgrade and a publish carry their request ids."""
    port = free_port()
    log = tmp_path / "worker.log"
    proc = _json_worker(port, log)
    try:
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{port}/healthz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        token = mint_token(SECRET, ["a"])
        ws = await WS.connect(
            HTTPRequest(
                f"ws://127.0.0.1:{port}/ws?channel=a&token={token}", headers={"X-Request-ID": "rid-ws"}
            )
        )
        await ws.recv_type("subscribed")
        status, _, _ = await http(
            "POST", f"http://127.0.0.1:{port}/api/channels/a", 1, {"X-Request-ID": "rid-pub"}
        )
        assert status == 202
        ws.close()
    finally:
        proc.terminate()
        proc.wait(30)
    entries = _entries(log.read_text())
    access = {e.get("request_id"): e for e in entries if e["logger"] == "windsock.access"}
    assert access["rid-ws"]["status"] == 101 and access["rid-ws"]["path"].startswith(
        "/ws?channel=a&token=REDACTED"
    )
    assert access["rid-pub"]["status"] == 202 and access["rid-pub"]["method"] == "POST"
    assert all(e["worker"] == f"{entries[0]['worker']}" and e["level"] for e in entries)
    assert token not in log.read_text()


async def test_nginx_passes_its_request_id_to_the_workers_log(tmp_path: Path) -> None:
    """Through the native stack's nginx, a publish's log line on the worker carries nginx's $request_id."""
    stack = start_stack(tmp_path, workers=1, LOG_LEVEL="INFO", LOG_FORMAT="json")
    try:
        status, _, _ = await http("POST", f"{stack.base}/api/channels/logged", {"v": 1})
        assert status == 202
        deadline = time.monotonic() + 10
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            lines = [line for line in stack.log.read_text().splitlines() if line.startswith("{")]
            found = [
                e
                for e in map(json.loads, lines)
                if e.get("logger") == "windsock.access" and e.get("path") == "/api/channels/logged"
            ]
            await asyncio.sleep(0.1)
        assert found, stack.log.read_text()[-2000:]
        request_id = found[0]["request_id"]
        assert isinstance(request_id, str) and len(request_id) == 32 and int(request_id, 16) >= 0
    finally:
        stack.stop()
