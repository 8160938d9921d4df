"""RFC 6455 strictness cases, run both straight at a worker and through nginx.

Close codes (section 7.4), UTF-8 checks at the fragment that breaks them
(section 8.1), and the closing handshake after a violation: the client keeps
sending, and must still read the server's close frame, never a TCP reset.
"""

from __future__ import annotations

import json
import time

from tests.helpers import WAIT, RawWS, client_frame, parse_frames
from tests.hostile_cases import Target

# The codes a peer may not send (RFC 6455 section 7.4; 1012-1014 are IANA-registered since).
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999]


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """One client frame as bytes, so that many can go out in one send."""
    return client_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def read_close(ws: RawWS, timeout: float = WAIT) -> tuple[int | None, str, str]:
    """Read until the server's close frame: (code, reason, how the read ended).

    The end is "close" when the close frame arrived, else "eof", "reset"
    (the server's kernel sent a TCP RST: whatever was unread is destroyed)
    or "timeout".
    """
    ws.sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    data = ws.buffer
    while True:
        for opcode, payload in parse_frames(data):
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return code, payload[2:].decode(errors="replace"), "close"
        if time.monotonic() > deadline:
            return None, "", "timeout"
        try:
            chunk = ws.sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return None, "", "reset"
        if not chunk:
            return None, "", "eof"
        data += chunk


def read_end(ws: RawWS, timeout: float = WAIT) -> str:
    """After the close frame, read on until the TCP connection ends: "eof", "reset" or "timeout"."""
    ws.sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = ws.sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "eof"
    return "timeout"


def send_all(ws: RawWS, data: bytes) -> bool:
    """Send, reporting False if the server already reset the connection."""
    try:
        ws.sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


# What the client does wrong, and the close code it must get. Every case is
# followed by more frames from the client, as a client that has not yet read
# the close frame sends them (the worker must discard, not act on, them).
# Not here: frames after the client's own close (say with an invalid code).
# The worker answers that close and half-closes at once, as RFC 6455
# section 7.1.1 asks, so nginx then closes its side, and resets a client
# that sends on after its own close.
PING = frame(0x1, b'{"type":"ping"}')
VIOLATIONS: list[tuple[str, bytes, int]] = [
    ("unmasked frame", frame(0x1, b'{"type":"ping"}', masked=False), 1002),
    ("reserved bits", frame(0x1, b"{}", rsv=0b011), 1002),
    ("unknown opcode", frame(0x3, b"x"), 1002),
    ("invalid UTF-8", frame(0x1, b"\xff\xfe\xfd"), 1007),
    ("message over the limit", frame(0x1, b"x" * 2000), 1009),
    ("rate limit", PING * 25, 1008),  # the worker's CLIENT_BURST is 20
]


def violation_then_more(target: Target, violation: bytes, sends: int = 40) -> tuple[int | None, str, str]:
    """Send ``violation``, then 5 frames at a time in ``sends`` writes 2 ms apart, then read.

    The later writes reach the worker after it has written its close frame,
    as a client's frames do when it has not read the close yet. On reading
    the close the client answers it, as a client does. Returns (close code
    read, how the read ended, how the TCP connection ended: "reset" if any
    write or read met a TCP RST).
    """
    ws = target.ws()
    assert ws.status == 101, ws.head
    reset = False
    try:
        reset = not send_all(ws, violation)
        for _ in range(sends):
            if reset or not send_all(ws, PING * 5):
                reset = True
                break
            time.sleep(0.002)
        code, _, ended = read_close(ws)
        if ended != "close":
            return code, ended, "reset" if reset else ended
        reset = not send_all(ws, frame(0x8, close_payload(code or 1000))) or reset
        end = read_end(ws)
        return code, ended, "reset" if reset else end
    finally:
        ws.close()


def repeated_violation(target: Target, violation: bytes, rounds: int) -> list[tuple[int | None, str, str]]:
    return [violation_then_more(target, violation) for _ in range(rounds)]


def close_reply(target: Target, payload: bytes) -> tuple[int | None, str, str]:
    """Close with ``payload``; return the server's (code, reason, how the read ended)."""
    ws = target.ws()
    assert ws.status == 101, ws.head
    try:
        ws.sock.sendall(frame(0x8, payload))
        return read_close(ws)
    finally:
        ws.close()


def fragments_without_end(
    target: Target, fragments: list[bytes], wait: float = 2.0
) -> tuple[int | None, str, str]:
    """Send a text message's first fragments, never its last; return the answer within ``wait``."""
    ws = target.ws()
    assert ws.status == 101, ws.head
    try:
        data = frame(0x1, fragments[0], fin=False) + b"".join(frame(0x0, f, fin=False) for f in fragments[1:])
        ws.sock.sendall(data)
        return read_close(ws, timeout=wait)
    finally:
        ws.close()


def fragmented_message(
    target: Target, fragments: list[bytes]
) -> tuple[int | None, str, str] | dict[str, object]:
    """Send a whole fragmented text message: the JSON reply, or the close (code, reason, end)."""
    ws = target.ws()
    assert ws.status == 101, ws.head
    try:
        data = frame(0x1, fragments[0], fin=len(fragments) == 1)
        for i, f in enumerate(fragments[1:], 2):
            data += frame(0x0, f, fin=i == len(fragments))
        ws.sock.sendall(data)
        ws.sock.settimeout(WAIT)
        while True:
            for opcode, payload in parse_frames(ws.buffer):
                if opcode == 0x1:
                    reply: dict[str, object] = json.loads(payload)
                    return reply
                if opcode == 0x8:
                    return read_close(ws)
            chunk = ws.sock.recv(65536)
            if not chunk:
                return None, "", "eof"
            ws.buffer += chunk
    finally:
        ws.close()


def keeps_sending_while_closed(target: Target, violation: bytes, seconds: float = 0.5) -> tuple[str, str]:
    """Send ``violation``, then frames for ``seconds`` without reading; then read.

    Returns (how the close frame read ended, how the TCP connection ended):
    the client never answers the close, so the worker ends the connection
    after its timeout, with a FIN, not a reset.
    """
    ws = target.ws()
    assert ws.status == 101, ws.head
    try:
        ws.sock.sendall(violation)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not send_all(ws, PING * 20):
                return "reset", "reset"
            time.sleep(0.01)
        _, _, ended = read_close(ws)
        return ended, read_end(ws, timeout=WAIT * 2) if ended == "close" else ended
    finally:
        ws.close()
