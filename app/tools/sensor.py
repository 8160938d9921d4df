"""python -m app.tools.sensor: simulated sensors that send readings over UDP, for demos, load and tests.

Each sensor is the demo source's model (temperature and humidity as random
walks), so simulated readings look like real ones. The tool sends only to
``--host``/``--port`` and always stops, after ``--count`` datagrams or
``--duration`` seconds (60 if neither is given).
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import time
from collections.abc import Callable

from app.messages import dumps
from app.sources.demo import SensorModel

__all__ = ["main"]


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` above zero."""

    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.tools.sensor",
        description="Send simulated sensor readings to Windsock's UDP listener.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="where to send (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9999, help="UDP port of the listener (default: 9999)")
    parser.add_argument("--sensors", type=_positive(int), default=5, help="how many sensors (default: 5)")
    parser.add_argument(
        "--rate", type=_positive(float), default=1.0, help="readings per second per sensor (default: 1)"
    )
    parser.add_argument("--count", type=_positive(int), help="stop after this many datagrams in all")
    parser.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    parser.add_argument("--token", default="", help="the listener's UDP_TOKEN, if it has one")
    parser.add_argument("--prefix", default="sim", help="sensors are named PREFIX-1, PREFIX-2, ...")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable readings")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    duration = args.duration if args.duration is not None or args.count is not None else 60.0
    rng = random.Random(args.seed)
    sensors = [SensorModel(f"{args.prefix}-{n}", rng) for n in range(1, args.sensors + 1)]
    # Spread the datagrams evenly, instead of a burst of one per sensor each tick.
    gap = 1.0 / (args.rate * len(sensors))
    try:
        family, kind, proto, _, address = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    except OSError as exc:
        print(f"sensor: cannot resolve {args.host}: {exc}", file=sys.stderr)
        return 1
    sent = 0
    start = time.monotonic()
    with socket.socket(family, kind, proto) as sock:
        while args.count is None or sent < args.count:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            reading = sensors[sent % len(sensors)].reading()
            if args.token:
                reading["token"] = args.token
            try:
                sock.sendto(dumps(reading), address)
            except OSError as exc:
                print(f"sensor: cannot send to {args.host}:{args.port}: {exc}", file=sys.stderr)
                return 1
            sent += 1
            time.sleep(max(0.0, start + sent * gap - time.monotonic()))
    elapsed = time.monotonic() - start
    print(
        f"sent {sent} readings from {len(sensors)} sensors to {args.host}:{args.port} in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
