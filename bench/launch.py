"""Starting the servers under test: single workers, the whole stack (deploy/stack.py) and Nchan.

Each starter returns a Target once its server answers, pinned with the
given taskset prefix; start_targets starts those the chosen groups run on.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import BENCH, ROOT
from bench.phases import Group
from bench.procs import Tree
from bench.target import CHANNEL, Target, free_ports, wait_http

NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


def server_env() -> dict[str, str]:
    return {
        **os.environ,
        "SOURCES": "",
        # One line per request would be measured as delivery cost.
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def start_worker(
    pin: list[str],
    python: str,
    profile: Path | None = None,
    root: Path = ROOT,
    name: str = "worker",
    deflate_level: int = 0,
) -> Target:
    port = free_ports()
    target = Target(
        name,
        f"one Windsock worker, in-memory broker, direct, WS_DEFLATE_LEVEL={deflate_level}",
        port,
        f"/ws?channel={CHANNEL}",
        f"/events?channel={CHANNEL}",
        f"/api/channels/{CHANNEL}",
        deflate_level=deflate_level,
    )
    spy: list[str] = []
    if profile is not None:
        pyspy = str(Path(python).with_name("py-spy"))
        spy = [pyspy, "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", str(profile), "--"]
    target.proc = subprocess.Popen(
        [*pin, *spy, python, "-m", "app", "--port", str(port)],
        cwd=root,
        env={**server_env(), "WS_DEFLATE_LEVEL": str(deflate_level)},
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz", 30, target.proc)
    target.tree = Tree(psutil.Process(target.proc.pid))
    return target


# One nginx worker process holds at most (descriptor limit - a few) / 2
# proxied streams; more need a second worker process, which costs more CPU
# per message than one (more wake-ups, smaller batches per epoll_wait).
def nginx_workers_for(subscribers: int) -> int:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 if 2 * subscribers + 200 <= nofile else 2


def start_stack(pin: list[str], python: str, workers: int, nginx_workers: int = 1) -> Target:
    """deploy/stack.py, exactly as `make run` runs it, with nginx sized for the bench's streams.

    worker_connections counts descriptors, and a proxied stream takes two
    (client and upstream), so `make run`'s default (the descriptor limit
    less 64) falls short of 10,000 streams under a 20,000-descriptor limit,
    which one process cannot hold anyway when that is the hard limit (an
    unprivileged container cannot raise it). So each nginx worker process
    may use the whole limit (--nginx-connections), and a group too big for
    one gets two (--nginx-workers), each holding half.
    """
    port = free_ports()
    base = free_ports(workers)
    while port in range(base, base + workers):
        base = free_ports(workers)
    target = Target(
        "stack",
        f"nginx ({nginx_workers} worker processes) + {workers} Windsock workers + Redis (deploy/stack.py)",
        port,
        f"/ws?channel={CHANNEL}",
        f"/events?channel={CHANNEL}",
        f"/api/channels/{CHANNEL}",
    )
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    target.proc = subprocess.Popen(
        [
            *pin,
            python,
            str(ROOT / "deploy" / "stack.py"),
            "--http-port",
            str(port),
            "--workers",
            str(workers),
            "--app-base-port",
            str(base),
            "--no-ingest",
            "--conn-per-ip",
            "60000",
            "--nginx-workers",
            str(nginx_workers),
            "--nginx-connections",
            str(nofile),
        ],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    target.nginx_workers = nginx_workers
    assert target.proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = target.proc.stdout.readline().decode()
        if not line and target.proc.poll() is not None:
            raise RuntimeError("the stack exited during start-up")
        if "Windsock is up" in line:
            break
    else:
        raise RuntimeError("the stack did not come up")
    # Keep draining its output so it never blocks on a full pipe.
    threading_drain(target.proc.stdout)
    time.sleep(0.5)
    target.tree = Tree(psutil.Process(target.proc.pid))
    return target


def threading_drain(stream: Any) -> None:
    import threading

    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def start_nchan(pin: list[str]) -> Target:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_ports()
    workdir = Path(tempfile.mkdtemp(prefix="windsock-bench-nchan-"))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir()
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    conf = (BENCH / "nchan.conf").read_text()
    for key, value in {
        "{module}": str(NCHAN_MODULE),
        "{nofile}": str(nofile),
        "{dir}": str(workdir),
        "{port}": str(port),
        "{user}": "user root;" if os.geteuid() == 0 else "",
    }.items():
        conf = conf.replace(key, value)
    (workdir / "nginx.conf").write_text(conf)
    target = Target(
        "nchan",
        "nginx 1.22 + Nchan, one worker, memory store",
        port,
        f"/ws?id={CHANNEL}",
        f"/events?id={CHANNEL}",
        f"/pub?id={CHANNEL}",
        workdir=workdir,
    )
    target.proc = subprocess.Popen([*pin, nginx, "-c", str(workdir / "nginx.conf")], start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health", 15, target.proc)
    time.sleep(0.3)
    target.tree = Tree(psutil.Process(target.proc.pid))
    return target


def start_targets(
    targets: list[Target], args: argparse.Namespace, chosen: list[Group], pin: list[str], out: Path
) -> None:
    """Start the servers a chosen group runs on, appending each to ``targets`` once it is up.

    Appended one by one, so that when one fails to start the caller still
    stops those already running.
    """
    python = sys.executable
    names = args.targets.split(",")
    # A server is started only if a chosen group runs on it.
    wanted = [t for t in names if any(t in g.targets for g in chosen)]
    if "worker" in names and any(g.name == "ws-deflate" for g in chosen):
        wanted.append("deflate")
    if "worker" in wanted:
        profile = out / "profile-worker.txt" if args.profile else None
        targets.append(start_worker(pin, python, profile))
    if "deflate" in wanted:
        for level in args.deflate_levels:
            targets.append(start_worker(pin, python, name=f"worker-z{level}", deflate_level=level))
    if args.base:
        # A/B: the same worker from another checkout (e.g. before an optimisation).
        targets.append(start_worker(pin, python, root=Path(args.base), name="base"))
    if "stack" in wanted:
        first = nginx_workers_for(chosen[0].subscribers) if chosen else 1
        targets.append(start_stack(pin, python, args.workers, first))
    if "nchan" in wanted:
        targets.append(start_nchan(pin))
