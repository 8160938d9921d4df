"""The native stack with its ingest process: UDP readings reach subscribers on every worker."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.stack.conftest import NativeStack, get_json, start_stack
from tests.stack.test_native_stack import _cover_all_workers

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack_with_ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """`make run` as users run it: 2 workers plus the ingest program, on free ports."""
    stack = start_stack(tmp_path_factory.mktemp("ingest-stack"), workers=2, ingest=True)
    yield stack
    assert stack.stop() == 0, stack.output()


async def test_udp_reading_reaches_subscribers_on_every_worker(stack_with_ingest: NativeStack) -> None:
    """A sensor datagram sent to the ingest process reaches WebSocket and SSE subscribers on all workers."""
    sockets, streams = await _cover_all_workers(stack_with_ingest, "sensors.e2e")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b'{"sensor": "e2e", "temperature": 20.5}', ("127.0.0.1", stack_with_ingest.udp_port))
    for ws in sockets.values():
        [message] = await ws.messages(1)
        assert message["channel"] == "sensors.e2e" and message["data"]["temperature"] == 20.5
        assert isinstance(message["data"]["ts"], float)
    for sse in streams.values():
        assert (await sse.messages(1))[0]["data"]["sensor"] == "e2e"


def test_ingest_process_is_healthy_and_demo_data_flows(stack_with_ingest: NativeStack) -> None:
    """The ingest program answers /healthz and its demo source publishes into the stack."""
    status, body = get_json(f"http://127.0.0.1:{stack_with_ingest.ingest_port}/healthz")
    assert status == 200 and body["status"] == "ok", body
    status, state = get_json(f"{stack_with_ingest.base}/api/channels/sensors.demo-1")
    assert status == 200 and state["history"] >= 1, state
