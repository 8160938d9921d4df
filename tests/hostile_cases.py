"""Hostile WebSocket input, as cases run both straight at a worker and through nginx.

Each case sends something that breaks the protocol and returns what the
server answered; the suites check the answer, and that a bystander on the
same server still gets its messages.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.helpers import WAIT, RawWS

# Any JSON value, small: what the fuzz suites put inside frames, bodies and datagrams.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@dataclass
class Target:
    host: str
    port: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws(self, path: str = "/ws", **kwargs: object) -> RawWS:
        return RawWS(self.host, self.port, path, **kwargs)  # type: ignore[arg-type]

    def publish(self, channel: str, data: object) -> int:
        request = urllib.request.Request(
            f"{self.base}/api/channels/{channel}", json.dumps(data).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return int(json.load(response)["id"])


def _closed_with(target: Target, send: Callable[[RawWS], None]) -> tuple[int, str] | None:
    ws = target.ws()
    assert ws.status == 101, ws.head
    try:
        send(ws)
        return ws.close_frame()
    finally:
        ws.close()


# (name, what to send, the close code expected, a word of the reason)
FRAME_CASES: list[tuple[str, Callable[[RawWS], None], int, str]] = [
    ("unmasked frame", lambda ws: ws.send_frame(0x1, b'{"type":"ping"}', masked=False), 1002, "masked"),
    ("fragmented control frame", lambda ws: ws.send_frame(0x9, b"x", fin=False), 1002, "protocol"),
    ("reserved bits", lambda ws: ws.send_frame(0x1, b"{}", rsv=0b011), 1002, "protocol"),
    ("continuation with nothing to continue", lambda ws: ws.send_frame(0x0, b"x"), 1002, "protocol"),
    ("control frame over 125 bytes", lambda ws: ws.send_frame(0x9, b"x" * 130), 1002, "protocol"),
    ("unknown opcode", lambda ws: ws.send_frame(0x3, b"x"), 1002, "protocol"),
    ("invalid UTF-8 in a text frame", lambda ws: ws.send_frame(0x1, b"\xff\xfe\xfd"), 1007, "UTF-8"),
    ("declared length over the limit", lambda ws: ws.send_frame(0x1, b"", declared=10**9), 1009, "too big"),
]


def frame_case(target: Target, send: Callable[[RawWS], None]) -> tuple[int, str] | None:
    return _closed_with(target, send)


def handshake(target: Target, headers: list[str]) -> tuple[int, dict[str, str], bytes]:
    """Send a raw handshake; return (status, headers, body start)."""
    with socket.create_connection((target.host, target.port), timeout=WAIT) as s:
        s.sendall(
            (
                "\r\n".join(["GET /ws HTTP/1.1", f"Host: {target.host}:{target.port}", *headers]) + "\r\n\r\n"
            ).encode()
        )
        data = b""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parsed = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), parsed, body


UPGRADE = ["Upgrade: websocket", "Connection: Upgrade"]
KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE_CASES: list[tuple[str, list[str], int]] = [
    ("wrong version", [*UPGRADE, KEY, "Sec-WebSocket-Version: 8"], 426),
    ("missing key", [*UPGRADE, "Sec-WebSocket-Version: 13"], 400),
    ("no upgrade header", ["Connection: keep-alive", KEY, "Sec-WebSocket-Version: 13"], 400),
]


class Bystander:
    """A well-behaved subscriber that must keep receiving whatever others do."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.ws = target.ws("/ws?channel=bystander")
        assert self.ws.next_json()["type"] == "subscribed"

    def still_served(self) -> bool:
        msg_id = self.target.publish("bystander", "still here")
        while True:
            frame = self.ws.next_json()
            if frame.get("type") == "message":
                return bool(frame["id"] == msg_id and frame["data"] == "still here")

    def close(self) -> None:
        self.ws.close()
