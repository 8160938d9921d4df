"""Supervisor event listener: stop supervisord when a program becomes FATAL.

FATAL means supervisor gave up restarting a program that keeps crashing.
Stopping supervisord makes that visible (the container exits and is
restarted by its policy; `make run` stops) instead of leaving a process
that looks healthy with a worker missing.
"""

from __future__ import annotations

import os
import signal
import sys

from supervisor import childutils


def main() -> None:
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        if headers["eventname"] == "PROCESS_STATE_FATAL":
            process, _ = childutils.eventdata(payload + "\n")
            print(
                f"fatal.py: {process.get('processname')} keeps crashing; stopping supervisord",
                file=sys.stderr,
                flush=True,
            )
            os.kill(os.getppid(), signal.SIGTERM)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
