"""Hostile UDP datagrams: Hypothesis on the datagram rule, and a garbage flood at a real socket."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.channels import is_valid_channel
from app.sources.udp import BadDatagram, parse_datagram
from tests.helpers import WS, eventually
from tests.hostile_cases import json_values

REASONS = {"too_large", "not_utf8", "bad_json", "not_object", "bad_token", "bad_key", "bad_channel"}

_json = json_values
_datagram = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "sensor": _json | st.text(max_size=140),
            "channel": _json | st.text(max_size=140),
            "token": _json,
            "idempotency_key": _json | st.text(max_size=140),
            "temperature": _json,
        },
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None)
@given(raw=_datagram, token=st.sampled_from(["", "s3cret"]))
def test_any_datagram_is_published_or_dropped_with_a_reason(raw: bytes, token: str) -> None:
    """Every datagram yields a valid channel and a JSON object stamped 'ts', or a BadDatagram reason."""
    try:
        channel, data, _ = parse_datagram(raw, token=token, max_bytes=256, received=1.5)
    except BadDatagram as exc:
        assert exc.reason in REASONS and str(exc)
        return
    assert is_valid_channel(channel)
    reading = orjson.loads(data)
    assert isinstance(reading, dict) and reading["ts"] == 1.5
    assert "token" not in reading and "channel" not in reading and "idempotency_key" not in reading


async def test_garbage_flood_never_stops_the_listener(make_server: Any) -> None:
    """2,000 random datagrams are dropped and counted; a good one sent after still reaches subscribers."""
    server = await make_server(sources=("udp",), udp_port=0)
    ws = await WS.connect(server.ws + "?channel=sensors.after-flood")
    await ws.recv_type("subscribed")
    udp = server.sources.one("udp")
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(2000):
            sock.sendto(rng.randbytes(rng.randrange(0, 600)), ("127.0.0.1", udp.port))
            if n % 100 == 99:
                await asyncio.sleep(0.01)  # UDP is lossy: let the kernel buffer drain
        await eventually(lambda: udp.received >= 1900)
        sock.sendto(b'{"sensor": "after-flood", "t": 1}', ("127.0.0.1", udp.port))
    [message] = await ws.messages(1)
    assert message["data"]["t"] == 1
    assert udp.published >= 1
    assert sum(udp.dropped.values()) >= 1900 and set(udp.dropped) <= REASONS | {"overload"}
    print(f"\nUDP flood: received={udp.received}, dropped={dict(udp.dropped)}, published={udp.published}")
