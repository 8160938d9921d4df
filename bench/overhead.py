"""The fan-out's own Python cost per delivery, without the kernel: a micro-benchmark.

Runs one Windsock worker in this process with 1,000 real subscribers (held
by a bench.loadgen process), then replaces each subscriber socket's
send() with a C no-op (``len``) and times the hub delivering messages, one
per event-loop turn. What remains is the interpreter's share of a
delivery, which ``make bench`` cannot separate from send() and from noise
on a shared machine. Used for the before/after figures of fan-out
optimisations: run it from two checkouts (``--root``) and compare.

    .venv/bin/python bench/overhead.py [--kind ws|sse] [--root CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import types
from pathlib import Path

BENCH = Path(__file__).resolve().parent


async def measure(kind: str, subscribers: int, messages: int, rounds: int) -> list[float]:
    from app.config import load_settings
    from app.messages import Message
    from app.server import Server

    server = Server(load_settings({}, sources=(), port=0, log_level="WARNING"))
    port = await server.start()
    loadgen = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        cwd=BENCH.parent,  # where the package `bench` is importable
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert loadgen.stdin is not None
    assert loadgen.stdout is not None
    path = "/ws?channel=bench" if kind == "ws" else "/events?channel=bench"
    scheme = "ws" if kind == "ws" else "http"
    command = {"cmd": "connect", "url": f"{scheme}://127.0.0.1:{port}{path}", "kind": kind, "n": subscribers}
    loadgen.stdin.write((json.dumps(command) + "\n").encode())
    await loadgen.stdin.drain()
    answer = json.loads(await loadgen.stdout.readline())
    if answer.get("connected") != subscribers:
        raise SystemExit(f"overhead: connecting failed: {answer}")
    await asyncio.sleep(0.5)
    no_op = types.SimpleNamespace(send=len)  # send() that "sends" everything, in C
    real = []
    for conn in list(server.connections._open):
        stream = conn.ws_connection.stream if kind == "ws" else conn.http.stream  # type: ignore[attr-defined]
        real.append((stream, stream.socket))
        stream.socket = no_op
    body = b'{"t":1,"p":1,"s":1,"x":"' + b"x" * 70 + b'"}'
    results = []
    gc.disable()
    for r in range(rounds):
        batch = [Message.build("bench", 10**9 + r * messages + i, body) for i in range(messages)]
        started = time.perf_counter()
        for message in batch:
            server.hub._on_message(message)
            await asyncio.sleep(0)  # one message per loop turn: nothing to coalesce
        results.append((time.perf_counter() - started) / (messages * subscribers) * 1e9)
    for stream, sock in real:
        stream.socket = sock
    loadgen.kill()
    await loadgen.wait()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kind", choices=["ws", "sse"], default="ws")
    parser.add_argument("--root", default=str(BENCH.parent), help="checkout whose app/ to measure")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = asyncio.run(measure(args.kind, args.subscribers, args.messages, args.rounds))
    print(
        f"{args.kind}: Python cost per delivery, send() excluded: "
        f"min {min(results):.0f} ns, median {sorted(results)[len(results) // 2]:.0f} ns ({args.root})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
