"""`make bench`: Windsock side by side with Nchan, over WebSocket and SSE, on loopback.

Starts the servers under test (--targets), pinned to the server core(s):
  worker  one Windsock worker, embedded mode (in-memory broker), reached directly;
          for the ws-deflate group, worker-z0, worker-z1, worker-z6 instead: fresh
          workers with WS_DEFLATE_LEVEL=0, 1, 6 (--deflate-levels); with --profile
          the worker runs under py-spy;
  base    with --base CHECKOUT, the same worker from another checkout (A/B);
  stack   deploy/stack.py, as `make run` runs it: nginx, supervisord, 2 workers
          (--workers), Redis; started with --nginx-workers 2 for a group too big
          for one nginx process's descriptors;
  nchan   nginx with Debian's Nchan module (bench/nchan.conf), one worker;
and load-generator processes (python -m bench.loadgen) pinned to the other
core(s). For each group of phases (bench/phases.py) it connects the
subscribers to each server in turn (interleaved, so drift on a shared
machine hits all alike), publishes at fixed rates, and measures delivered
msgs/s, loss, latency, server CPU per delivered message (summed over every
server process), memory per connection and connect rate; in the ws-deflate
group also the WebSocket bytes on the wire per message. A phase disturbed by
other load on the server core is run again while the time budget allows.
The figures are judged against the targets in bench/goals.py.

Writes artifacts/bench/ (--out): results.jsonl (one JSON object per phase,
every try included), table.txt and table.md (the same tables as text and as
markdown, with the saturation line and the targets), summary.json and
bench.png; with --profile also profile-worker.txt and profile-headline.txt.

Only loopback addresses are used, and every phase is bounded in time.
Run it as `make bench`, `python bench/run.py` or `python -m bench`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def log(text: str) -> None:
    """Progress for the person watching: on stderr, so stdout holds only the results."""
    print(text, file=sys.stderr, flush=True)
