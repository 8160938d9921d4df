"""python -m app.tools.sensor: the UDP sensor simulator, run as a real process."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

import pytest

from tests.helpers import WAIT, WS, eventually
from tests.test_sources_demo import hang_up


async def run_tool(*args: str) -> tuple[int, str]:
    """Run the simulator to its end without blocking the event loop; returns (exit code, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.tools.sensor", *args, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 4 * WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_simulated_readings_reach_subscribers(make_server: Any) -> None:
    """--sensors 2 --count 10 sends ten well-formed readings, five per sensor channel, none dropped."""
    server = await make_server(sources=("udp",), udp_port=0)
    first, second = await WS.connect(server.ws), await WS.connect(server.ws)
    await first.subscribe("sensors.sim-1")
    await second.subscribe("sensors.sim-2")
    port = str(server.sources.one("udp").port)
    code, stderr = await run_tool("--port", port, "--sensors", "2", "--rate", "50", "--count", "10")
    assert code == 0, stderr
    assert "sent 10 readings from 2 sensors" in stderr
    for ws, name in ((first, "sim-1"), (second, "sim-2")):
        readings = [m["data"] for m in await ws.messages(5)]
        assert all(set(r) == {"sensor", "temperature", "humidity", "ts"} for r in readings)
        assert {r["sensor"] for r in readings} == {name}
    assert server.sources.one("udp").dropped == {}
    await hang_up(first, second)


async def test_token_is_sent_when_given(make_server: Any) -> None:
    """With --token the listener accepts every reading; without it, the listener drops them as bad_token."""
    server = await make_server(sources=("udp",), udp_port=0, udp_token="t0k")
    port = str(server.sources.one("udp").port)
    assert (await run_tool("--port", port, "--rate", "100", "--count", "4", "--token", "t0k"))[0] == 0
    assert (await run_tool("--port", port, "--rate", "100", "--count", "3"))[0] == 0
    udp = server.sources.one("udp")
    await eventually(lambda: udp.published == 4 and server.sources.one("udp").dropped == {"bad_token": 3})


async def test_duration_bounds_the_run() -> None:
    """--duration stops the simulator on time, having sent at the given rate, only to the given address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        port = str(receiver.getsockname()[1])
        started = time.monotonic()
        code, stderr = await run_tool("--port", port, "--sensors", "1", "--rate", "20", "--duration", "0.5")
        took = time.monotonic() - started
        assert code == 0, stderr
        got = []
        while True:
            try:
                got.append(json.loads(receiver.recv(4096)))
            except BlockingIOError:
                break
    assert 0.5 <= took < 0.5 + 2 * WAIT  # start-up included
    assert 5 <= len(got) <= 11, len(got)
    assert f"sent {len(got)} readings" in stderr


@pytest.mark.parametrize("args", [["--rate", "0"], ["--sensors", "-1"], ["--count", "x"]])
async def test_bad_arguments_exit_2(args: list[str]) -> None:
    """Nonsense arguments stop the simulator before it sends anything."""
    code, stderr = await run_tool(*args)
    assert code == 2 and "error:" in stderr
