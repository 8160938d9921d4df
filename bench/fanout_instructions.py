"""Instructions per delivery of the hub's fan-out, counted by callgrind: repeatable, whatever else runs.

    python -m bench.fanout_instructions [--base CHECKOUT]

Runs ``Hub._on_message`` for 400 messages to 1,000 subscribers whose
``deliver`` does nothing, under ``valgrind --tool=callgrind``. It subtracts a
run with no messages, which leaves the fan-out alone. With ``--base``, the
same is run on another checkout's app/ (e.g. before a change), for an A/B
that timing noise cannot blur.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import ROOT

MESSAGES, SUBSCRIBERS = 400, 1000

_PROGRAM = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from app.brokers.memory import MemoryBroker
from app.hub import Hub
from app.messages import Message

class Sub:
    __slots__ = ()
    def deliver(self, message): pass
    def subscribed(self, channel, seq, lost): pass
    def reset(self, channel, seq): pass

async def main():
    hub = Hub(MemoryBroker(100))
    for sub in [Sub() for _ in range(int(sys.argv[3]))]:
        await hub.subscribe("c", sub)
    messages = [Message("c", 10**15 + i, b'{"type":"message"}') for i in range(1, int(sys.argv[2]) + 1)]
    for message in messages:
        hub._on_message(message)

asyncio.run(main())
"""


def instructions(root: Path, messages: int) -> int:
    """Instructions callgrind counts for the program on ``root``'s app/ with ``messages`` messages."""
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "fanout.py"
        program.write_text(_PROGRAM)
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                sys.executable,
                str(program),
                str(root),
                str(messages),
                str(SUBSCRIBERS),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed on {root}: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_delivery(root: Path) -> float:
    return (instructions(root, MESSAGES) - instructions(root, 0)) / (MESSAGES * SUBSCRIBERS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_instructions")
    parser.add_argument("--base", default="", help="another checkout to compare with")
    args = parser.parse_args(argv)
    print(f"fan-out, {MESSAGES} messages x {SUBSCRIBERS} subscribers, instructions per delivery (callgrind):")
    print(f"  this checkout: {per_delivery(ROOT):.1f}")
    if args.base:
        print(f"  {args.base}: {per_delivery(Path(args.base)):.1f}")


if __name__ == "__main__":
    main()
