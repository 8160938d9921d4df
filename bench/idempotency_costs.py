"""What publish idempotency keys cost Redis: bytes per key held for the window, and time per publish.

`make bench` prints this first. It starts its own redis-server on a free
loopback port, publishes N messages without keys and N with 32-character
keys through the real RedisBroker, and compares Redis's used_memory and the
publish times. Run alone: `python -m bench.idempotency_costs`.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from bench import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(url: str, n: int) -> str:
    import redis.asyncio as aioredis

    sys.path.insert(0, str(ROOT))
    from app.brokers.redis import RedisBroker

    broker = RedisBroker(url, history_size=100, idempotency_window=300)
    client = aioredis.Redis.from_url(url)
    try:
        await broker.connect()
        await broker.publish("sensors.a", b"0", key="warm")

        async def used() -> int:
            return int((await client.info("memory"))["used_memory"])

        async def run(channel: str, keyed: bool) -> tuple[int, float]:
            before, started = await used(), time.perf_counter()
            for i in range(n):
                await broker.publish(channel, b'{"v":%d}' % i, key=uuid.uuid4().hex if keyed else None)
            return await used() - before, (time.perf_counter() - started) / n * 1e6

        plain_bytes, plain_us = await run("sensors.b", False)
        keyed_bytes, keyed_us = await run("sensors.c", True)
        keys = [k async for k in client.scan_iter(match="windsock:sensors.c:idem:*", count=1000)]
        sample = keys[0]
        usage = await client.memory_usage(sample)
        ttl = await client.ttl(sample)
    finally:
        await broker.disconnect()
        await client.aclose()
    per_key = (keyed_bytes - plain_bytes) / n
    return (
        f"idempotency keys ({n:,} publishes each way, 32-character keys, channel 'sensors.c'):\n"
        f"  Redis memory per key: {per_key:.0f} B (used_memory), MEMORY USAGE of one key {usage} B, "
        f"TTL {ttl} s of a 300 s window\n"
        f"  held for the window: {per_key * 100 * 300 / 1e6:.1f} MB at 100 keyed publishes/s, "
        f"{per_key * 1000 * 300 / 1e6:.0f} MB at 1,000/s\n"
        f"  publish round trip, one at a time: {plain_us:.0f} us without a key, {keyed_us:.0f} us with one"
    )


def idempotency_costs(n: int = 20_000) -> str:
    """Start a scratch redis-server, measure, stop it; the figures as printable lines."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            return asyncio.run(_measure(f"redis://127.0.0.1:{port}/0", n))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    print(idempotency_costs())
