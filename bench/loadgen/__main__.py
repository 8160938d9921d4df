"""The load generator's command loop: JSON commands on stdin, one JSON answer each on stdout.

Run as ``python -m bench.loadgen`` from the checkout's root; the commands
are listed in bench/loadgen/__init__.py.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from bench.loadgen.clients import CLIENTS
from bench.loadgen.sse import connect_sse
from bench.loadgen.stats import STATS
from bench.loadgen.ws import connect_ws, connect_wsz


async def connect_many(url: str, kind: str, n: int, concurrency: int) -> dict[str, Any]:
    connect = {"ws": connect_ws, "wsz": connect_wsz, "sse": connect_sse}[kind]
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                await connect(url)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    return {
        "connected": n - len(errors),
        "failed": len(errors),
        "errors": sorted(set(errors))[:3],
        "seconds": time.monotonic() - started,
        "open": CLIENTS.open,
        "deflated": CLIENTS.deflated,
    }


def pause(n: int) -> int:
    done = 0
    for transport in CLIENTS.all_transports()[CLIENTS.paused : CLIENTS.paused + n]:
        transport.pause_reading()
        done += 1
    CLIENTS.paused += done
    return done


async def close_all() -> dict[str, Any]:
    for transport in CLIENTS.ws:
        transport.disconnect()
    for transport in CLIENTS.wsz:
        transport.close()
    for sse in CLIENTS.sse:
        sse.close()
    CLIENTS.wsz.clear()
    CLIENTS.ws.clear()
    CLIENTS.sse.clear()
    CLIENTS.paused = 0
    deadline = time.monotonic() + 10
    while CLIENTS.open > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)
    return {"open": CLIENTS.open}


async def handle(command: dict[str, Any]) -> dict[str, Any]:
    cmd = command["cmd"]
    if cmd == "connect":
        url, kind, n = command["url"], command["kind"], command["n"]
        return await connect_many(url, kind, n, command.get("concurrency", 100))
    if cmd == "pause":
        return {"paused": pause(command["n"])}
    if cmd == "stats":
        report = STATS.report(command["phase"])
        counts = {"open": CLIENTS.open, "paused": CLIENTS.paused, "deflated": CLIENTS.deflated}
        return {**report, **counts, "bytes": CLIENTS.wire_bytes}
    if cmd == "close":
        return await close_all()
    if cmd == "ping":
        return {"pong": True}
    raise ValueError(f"unknown command {cmd!r}")


async def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            answer = await handle(command)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    await close_all()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
