"""A server under test (a Target): where to subscribe and publish, its processes, and how to stop it.

Also the two things every launcher needs: a free port below the ephemeral
range, and waiting for a server's health URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Tree

CHANNEL = "bench"


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def free_ports(n: int = 1) -> int:
    """The first of ``n`` consecutive free ports below the ephemeral range.

    Servers listen there because a port in the ephemeral range may be taken,
    by the time a worker binds it, as the source port of one of the tens of
    thousands of connections a run makes.
    """
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 32000 - n)
        socks = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port range")


@dataclass
class Target:
    """A server under test: how to subscribe and publish, and its processes."""

    name: str
    description: str
    port: int
    ws_path: str
    sse_path: str
    pub_path: str
    proc: subprocess.Popen[bytes] | None = None
    tree: Tree | None = None
    workdir: Path | None = None
    nginx_workers: int = 0
    deflate_level: int = 0  # WS_DEFLATE_LEVEL of its workers

    def url(self, kind: str) -> str:
        ws = kind in ("ws", "wsz")
        path = self.ws_path if ws else self.sse_path
        scheme = "ws" if ws else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None and self.tree is not None:
            # Under a profiler, stop the worker itself so the profiler writes its output.
            for p in self.tree.procs[1:]:
                if self.tree.kinds[p.pid] == "worker" and self.tree.kinds[proc.pid] == "profiler":
                    p.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if self.name == "nchan" else signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
