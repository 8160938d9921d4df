"""`make bench`: Windsock side by side with Nchan, over WebSocket and SSE, on loopback.

Starts three servers pinned to the server core(s):
  worker  one Windsock worker, embedded mode (in-memory broker), reached directly;
          for the ws-deflate group, worker-z0, worker-z1, worker-z6 instead: fresh
          workers with WS_DEFLATE_LEVEL=0, 1, 6 (--deflate-levels);
  stack   the full stack of deploy/stack.py: nginx, supervisord, 2 workers, Redis;
  nchan   nginx with Debian's Nchan module (bench/nchan.conf), one worker;
and load-generator processes (bench/loadgen.py) pinned to the other core(s).
For each group of phases it connects the subscribers to each server in turn
(interleaved, so drift on a shared machine hits all three alike), publishes
at fixed rates, and measures delivered msgs/s, loss, latency, server CPU per
delivered message (summed over every server process), memory per
connection and connect rate; in the ws-deflate group also the WebSocket
bytes on the wire per message. Writes artifacts/bench/: results.jsonl (one
JSON object per phase), table.txt, summary.json and bench.png.

Only loopback addresses are used, and every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import BUCKETS, bucket_floor_us
from publisher import MESSAGE_BYTES, Publisher, sensor_message

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
CHANNEL = "bench"
# A phase passes the saturation step-up with no loss and p99 below this.
SATURATION_P99_MS = 200.0
# The load generator is the limit when it used more than this share of its cores.
LOADGEN_LIMIT = 0.75
# A phase is disturbed when other processes used more than this share of the
# server's cores during it.
OTHER_LOAD_LIMIT = 20.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# Processes and their cost.


def component(proc: psutil.Process) -> str:
    """Which part of a server a process is: nginx, worker, redis or other (launchers)."""
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if name.startswith("nginx"):
        return "nginx"
    if name.startswith("redis"):
        return "redis"
    if name.startswith("py-spy"):
        return "profiler"
    if " -m app" in cmd:
        return "worker"
    return "other"


class Tree:
    """A server's processes (found once it is up), with CPU and memory sums per component."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.procs = [root, *root.children(recursive=True)]
        self.kinds = {p.pid: component(p) for p in self.procs}

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far, per component."""
        out: dict[str, float] = {}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                kind = self.kinds[p.pid]
                out[kind] = out.get(kind, 0.0) + t.user + t.system
        return out

    def waited(self) -> float:
        """Seconds the server's processes spent runnable but waiting for a CPU (other load)."""
        return sum(run_queue_wait(p.pid) for p in self.procs if self.kinds[p.pid] != "profiler")

    def switches(self) -> dict[str, int]:
        """Context switches so far, voluntary and involuntary (preempted), summed."""
        out = {"voluntary": 0, "involuntary": 0}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                c = p.num_ctx_switches()
                out["voluntary"] += c.voluntary
                out["involuntary"] += c.involuntary
        return out

    def memory(self) -> dict[str, dict[str, int]]:
        """RSS and PSS in bytes, per component."""
        out: dict[str, dict[str, int]] = {}
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                info = p.memory_full_info()
                slot = out.setdefault(self.kinds[p.pid], {"rss": 0, "pss": 0})
                slot["rss"] += info.rss
                slot["pss"] += getattr(info, "pss", info.rss)
        return out


def core_busy(cores: list[int]) -> float:
    """Seconds the given CPUs have been busy (not idle or iowait), from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                values = [int(f) for f in fields]
                busy += sum(values[:8]) - values[3] - values[4]
    return busy / ticks


def run_queue_wait(pid: int) -> float:
    """Seconds a process has waited on a run queue (/proc/PID/schedstat), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def per_conn(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], n: int) -> dict[str, float]:
    """PSS growth per connection in KiB, per component."""
    return {
        k: round((v["pss"] - before.get(k, {"pss": 0})["pss"]) / max(n, 1) / 1024, 2)
        for k, v in after.items()
        if k in ("worker", "nginx", "redis")
    }


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    # The profiler's own cost is not the server's.
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if k != "profiler"}


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
    target.proc = subprocess.Popen(
        [
            *pin,
            python,
            str(BENCH / "stack_launch.py"),
            "--http-port",
            str(port),
            "--workers",
            str(workers),
            "--app-base-port",
            str(base),
            "--no-ingest",
            "--conn-per-ip",
            "60000",
        ],
        cwd=ROOT,
        env={**server_env(), "BENCH_NGINX_WORKERS": str(nginx_workers)},
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


# Load generators.


class LoadGen:
    """One bench/loadgen.py process, driven over its stdin and stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.pid)
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, python: str) -> LoadGen:
        proc = await asyncio.create_subprocess_exec(
            python,
            str(BENCH / "loadgen.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 << 20,
        )
        return cls(proc)

    async def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        async with self.lock:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError("a load generator died")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    async def quit(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# Phases.


@dataclass
class Phase:
    name: str
    rate: float  # messages published per second
    seconds: float
    slow_percent: float = 0.0


@dataclass
class Group:
    """Subscribers connected once, then phases run over them."""

    name: str
    clients: dict[str, int]  # kind -> count
    phases: list[Phase]
    step_up: bool = False  # stop at the first phase that fails the saturation criteria
    targets: tuple[str, ...] = ("worker", "base", "stack", "nchan")
    body: str = "filler"  # what is published: bench/publisher.py BODIES

    @property
    def subscribers(self) -> int:
        return sum(self.clients.values())


def percentile(hist: dict[int, int], total: int, q: float) -> float:
    """The q-quantile in milliseconds from a merged histogram (bucket lower edges)."""
    if total == 0:
        return float("nan")
    rank = q * total
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_floor_us(index) / 1000
    return bucket_floor_us(BUCKETS - 1) / 1000


@dataclass
class Result:
    target: str
    group: str
    phase: str
    transport: str
    subscribers: int
    connected: int
    slow: int
    offered_msgs: float  # deliveries per second offered (publish rate x fast subscribers)
    publish_rate: float
    published: int
    publish_failed: int
    delivered: int
    delivered_per_s: float
    loss: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_msg: float
    cpu_breakdown_us: dict[str, float]
    server_cpu_percent: float
    # Time the server's processes (summed) and the load generators (averaged)
    # were runnable but waiting for a CPU: other load on a shared machine.
    server_wait_percent: float
    loadgen_wait_percent: float
    # CPU time on the server's cores not used by the server's processes:
    # other load on a shared machine (and softirq work charged to no process).
    other_load_percent: float
    # Context switches of the server's processes per delivered message.
    switches_per_msg: dict[str, float]
    loadgen_cpu_percent: float
    loadgen_limited: bool
    seconds: float
    mem: dict[str, Any] = field(default_factory=dict)
    connect_per_s: float = 0.0
    load_average: float = 0.0
    ok: bool = True
    # WebSocket bytes read per delivered message (frame headers included, TCP/IP
    # headers not), measured by wsz clients only; NaN otherwise.
    wire_bytes_per_msg: float = float("nan")
    deflate_level: int = 0
    deflated_clients: int = 0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.phase_ids = 0
        self.results: list[Result] = []
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = (self.out / "results.jsonl").open("w")
        self.loadgens: list[LoadGen] = []
        self.loadgen_cores = 1
        self.server_cores: list[int] = []
        # Phases are tried again (see run_group) only until then, so the run stays bounded.
        self.retry_until = time.monotonic() + args.retry_budget
        # Targets whose memory has not grown yet (see connect()).
        self.fresh: dict[str, bool] = {}

    async def connect(self, target: Target, group: Group) -> tuple[int, float, dict[str, Any]]:
        """Connect the group's clients across the load generators; returns (connected, rate, memory).

        Memory is the growth of each component's PSS per connection, measured
        kind by kind; it is only meaningful on a fresh server (the first
        group), since a heap that grew before is reused without growing.
        """
        assert target.tree is not None
        seconds = 0.0
        connected = 0
        errors: list[str] = []
        first = self.fresh.pop(target.name, False)
        mem: dict[str, Any] = {"fresh": first, "per_conn_pss_kib": {}, "by_kind": {}}
        start = before = target.tree.memory()
        for kind, count in group.clients.items():
            share = [count // len(self.loadgens)] * len(self.loadgens)
            for i in range(count % len(self.loadgens)):
                share[i] += 1
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    lg.call(
                        cmd="connect", url=target.url(kind), kind=kind, n=n, concurrency=self.args.concurrency
                    )
                    for lg, n in zip(self.loadgens, share, strict=True)
                    if n
                )
            )
            seconds += time.monotonic() - started
            n = sum(a["connected"] for a in answers)
            connected += n
            errors += [e for a in answers for e in a["errors"]]
            await asyncio.sleep(1.0)
            after = target.tree.memory()
            mem["by_kind"][kind] = per_conn(before, after, n)
            before = after
        mem["per_conn_pss_kib"] = per_conn(start, before, connected)
        mem["total_pss_mib"] = {k: round(v["pss"] / 2**20, 1) for k, v in before.items()}
        if errors:
            log(f"    connect errors: {errors[:3]}")
        return connected, connected / seconds if seconds > 0 else 0.0, mem

    async def wire_bytes(self) -> int:
        """Bytes the load generators' wsz clients have read so far."""
        answers = await asyncio.gather(*(lg.call(cmd="stats", phase=0) for lg in self.loadgens))
        return sum(int(a.get("bytes", 0)) for a in answers)

    async def gather_stats(self, phase_id: int) -> tuple[int, dict[int, int], int, int, int]:
        answers = await asyncio.gather(*(lg.call(cmd="stats", phase=phase_id) for lg in self.loadgens))
        count = sum(a["count"] for a in answers)
        hist: dict[int, int] = {}
        for a in answers:
            for k, v in a["hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        max_us = max(a["max_us"] for a in answers)
        open_ = sum(a["open"] for a in answers)
        paused = sum(a["paused"] for a in answers)
        return count, hist, max_us, open_, paused

    async def run_phase(
        self, target: Target, group: Group, phase: Phase, publisher: Publisher, connected: int, slow: int
    ) -> Result:
        assert target.tree is not None
        self.phase_ids += 1
        pid = self.phase_ids
        fast = connected - slow
        bytes0 = await self.wire_bytes() if "wsz" in group.clients else 0
        cpu0 = target.tree.cpu()
        wait0 = target.tree.waited()
        busy0 = core_busy(self.server_cores)
        switches0 = target.tree.switches()
        lgwait0 = sum(run_queue_wait(lg.proc.pid) for lg in self.loadgens)
        lg0 = sum(lg.cpu() for lg in self.loadgens) + psutil.Process().cpu_times().user
        t0 = time.monotonic()
        report = await publisher.run(phase.rate, phase.seconds, pid)
        expected = report.ok * fast
        # Drain: until everything arrived, or nothing more arrives for a while (bounded).
        last_count, last_change = -1, time.monotonic()
        deadline = time.monotonic() + self.args.drain
        while True:
            count, hist, max_us, open_, _ = await self.gather_stats(pid)
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if count >= expected or now - last_change > 0.5 or now > deadline:
                break
            await asyncio.sleep(0.1)
        t1 = last_change if count < expected else now
        seconds = max(t1 - t0, phase.seconds)
        cpu = diff(target.tree.cpu(), cpu0)
        wire = (await self.wire_bytes() - bytes0) if "wsz" in group.clients else 0
        waited = target.tree.waited() - wait0
        busy = core_busy(self.server_cores) - busy0
        switches = {k: v - switches0[k] for k, v in target.tree.switches().items()}
        lg_waited = (sum(run_queue_wait(lg.proc.pid) for lg in self.loadgens) - lgwait0) / len(self.loadgens)
        lg = sum(lg.cpu() for lg in self.loadgens) + psutil.Process().cpu_times().user - lg0
        total_cpu = sum(cpu.values())
        delivered = count
        loss = 1 - delivered / expected if expected else 1.0
        lg_share = lg / (seconds * self.loadgen_cores)
        result = Result(
            target=target.name,
            group=group.name,
            phase=phase.name,
            transport="+".join(k for k in group.clients),
            subscribers=group.subscribers,
            connected=open_,
            slow=slow,
            offered_msgs=phase.rate * fast,
            publish_rate=phase.rate,
            published=report.ok,
            publish_failed=report.failed,
            delivered=delivered,
            delivered_per_s=delivered / seconds,
            loss=max(0.0, loss),
            p50_ms=percentile(hist, count, 0.50),
            p90_ms=percentile(hist, count, 0.90),
            p99_ms=percentile(hist, count, 0.99),
            max_ms=max_us / 1000,
            cpu_us_per_msg=total_cpu / delivered * 1e6 if delivered else float("nan"),
            cpu_breakdown_us={k: round(v / delivered * 1e6, 2) if delivered else 0.0 for k, v in cpu.items()},
            server_cpu_percent=100 * total_cpu / seconds,
            server_wait_percent=100 * waited / seconds,
            other_load_percent=max(0.0, 100 * (busy - total_cpu) / (seconds * len(self.server_cores))),
            switches_per_msg={k: round(v / delivered, 3) if delivered else 0.0 for k, v in switches.items()},
            loadgen_wait_percent=100 * lg_waited / seconds,
            loadgen_cpu_percent=100 * lg_share,
            loadgen_limited=lg_share > LOADGEN_LIMIT,
            seconds=seconds,
            load_average=os.getloadavg()[0],
            wire_bytes_per_msg=wire / count if wire and count else float("nan"),
            deflate_level=target.deflate_level,
        )
        result.ok = result.loss == 0 and result.p99_ms < SATURATION_P99_MS and report.failed == 0
        return result

    async def run_group(self, target: Target, group: Group) -> None:
        log(f"  {target.name}: {group.name}: connecting {group.subscribers} subscribers")
        connected, rate, mem = await self.connect(target, group)
        deflated = 0
        if "wsz" in group.clients:
            answers = await asyncio.gather(*(lg.call(cmd="stats", phase=0) for lg in self.loadgens))
            deflated = sum(int(a["deflated"]) for a in answers)
            log(f"    permessage-deflate agreed with {deflated} of {connected} subscribers")
        if mem["fresh"]:
            log(f"    {connected} connected, {rate:.0f}/s; PSS growth KiB/conn {mem['by_kind']}")
        else:
            log(f"    {connected} connected, {rate:.0f}/s")
        publisher = Publisher("127.0.0.1", target.port, target.pub_path, body=group.body)
        slow = 0
        try:
            for phase in group.phases:
                if phase.slow_percent and not slow:
                    want = round(connected * phase.slow_percent / 100)
                    per = [want // len(self.loadgens)] * len(self.loadgens)
                    for i in range(want % len(self.loadgens)):
                        per[i] += 1
                    answers = await asyncio.gather(
                        *(lg.call(cmd="pause", n=n) for lg, n in zip(self.loadgens, per, strict=True))
                    )
                    slow = sum(a["paused"] for a in answers)
                tries = 0
                while True:
                    tries += 1
                    result = await self.run_phase(target, group, phase, publisher, connected, slow)
                    result.mem = mem
                    result.connect_per_s = rate
                    result.deflated_clients = deflated
                    if result.connected < connected:
                        break
                    # On a shared machine other load takes the server's core now and
                    # then: such a phase is run again while time allows, and a failed
                    # step once more (a stall fails a step as easily as saturation
                    # does). Every try is in results.jsonl.
                    disturbed = result.other_load_percent > OTHER_LOAD_LIMIT and tries <= self.args.retries
                    failed_step = group.step_up and not result.ok and tries == 1
                    if not (disturbed or failed_step) or time.monotonic() > self.retry_until:
                        break
                    log(f"    {phase.name}: trying again ({'disturbed' if disturbed else 'failed'})")
                    result.phase += f"-try{tries}"
                    self.record(result, table=False)
                self.record(result)
                if group.step_up and (not result.ok or result.loadgen_limited):
                    break
                if result.connected < connected - slow:
                    log(f"    only {result.connected} of {connected} subscribers still connected; next group")
                    break
        finally:
            publisher.close()
            await asyncio.gather(*(lg.call(cmd="close") for lg in self.loadgens))
            await asyncio.sleep(0.5)

    def record(self, r: Result, table: bool = True) -> None:
        if table:
            self.results.append(r)
        self.jsonl.write(json.dumps(asdict(r)) + "\n")
        self.jsonl.flush()
        flag = " LOADGEN-LIMITED" if r.loadgen_limited else ""
        log(
            f"    {r.phase:<10} offered {r.offered_msgs:>8.0f}/s delivered {r.delivered_per_s:>8.0f}/s "
            f"loss {r.loss:6.2%} p50 {r.p50_ms:7.2f} p99 {r.p99_ms:7.2f} max {r.max_ms:7.1f} ms "
            f"cpu {r.cpu_us_per_msg:6.2f} us/msg ({r.server_cpu_percent:3.0f}%) "
            f"loadgen {r.loadgen_cpu_percent:3.0f}%{flag} other load {r.other_load_percent:.0f}% "
            f"switches/msg {r.switches_per_msg}"
        )


def selected(args: argparse.Namespace) -> list[Group]:
    """The groups --groups names (all by default), in run order."""
    return [g for g in groups(args) if not args.groups or g.name in args.groups.split(",")]


def groups(args: argparse.Namespace) -> list[Group]:
    d = args.phase_seconds
    step = [Phase(f"step-{r}k", r, args.step_seconds) for r in args.steps]
    half = args.big // 2
    big = args.big // 1000
    return [
        # First, so each server's memory per connection is measured fresh.
        Group(
            f"mixed-{big}k",
            {"ws": half, "sse": args.big - half},
            [Phase(f"{2 * big}k", 2, d), Phase(f"{5 * big}k", 5, d)],
        ),
        Group(
            "ws-1k",
            {"ws": 1000},
            # The slow clients stay paused, so their phase comes last.
            [Phase("20k", 20, d), Phase("50k", 50, d), Phase("20k-slow1%", 20, d, slow_percent=1)],
        ),
        Group("sse-1k", {"sse": 1000}, [Phase("20k", 20, d), Phase("50k", 50, d)]),
        Group("ws-1k-stepup", {"ws": 1000}, step, step_up=True),
        # permessage-deflate: clients that offer it (as Chromium does), typical sensor
        # JSON, one fresh worker per WS_DEFLATE_LEVEL (0: declined, plain frames). These
        # clients inflate in Python, so the rates stay below the load generator's limit.
        Group(
            "ws-deflate",
            {"wsz": 1000},
            [Phase("10k", 10, d), Phase("20k", 20, d)],
            targets=tuple(f"worker-z{level}" for level in args.deflate_levels),
            body="sensor",
        ),
    ]


# Output.


def fmt(value: float, digits: int = 1) -> str:
    if value != value:
        return "-"
    return f"{value:.{digits}f}"


def ratio(ours: float, theirs: float) -> str:
    if not theirs or theirs != theirs or ours != ours:
        return "-"
    return f"{ours / theirs:.2f}x"


def deflate_table(results: list[Result], markdown: bool = False) -> str:
    """The ws-deflate group: each WS_DEFLATE_LEVEL next to level 0 (CPU, memory, bytes on the wire)."""
    rows = [r for r in results if r.group == "ws-deflate"]
    if not rows:
        return ""
    plain = {r.phase: r for r in rows if r.deflate_level == 0}
    head = [
        "WS_DEFLATE_LEVEL",
        "phase",
        "deflated subs",
        "delivered/s",
        "loss",
        "p50 ms",
        "p99 ms",
        "CPU us/delivery",
        "CPU x level 0",
        "KiB/conn",
        "wire B/msg",
        "wire x level 0",
    ]
    body = []
    for r in rows:
        ref = plain.get(r.phase)
        kib = (
            r.mem.get("per_conn_pss_kib", {}).get("worker", float("nan"))
            if r.mem.get("fresh")
            else float("nan")
        )
        body.append(
            [
                str(r.deflate_level),
                r.phase,
                f"{r.deflated_clients}/{r.connected}",
                f"{r.delivered_per_s:,.0f}",
                f"{r.loss:.1%}",
                fmt(r.p50_ms),
                fmt(r.p99_ms),
                fmt(r.cpu_us_per_msg, 2),
                ratio(r.cpu_us_per_msg, ref.cpu_us_per_msg) if ref and r is not ref else "",
                fmt(kib),
                fmt(r.wire_bytes_per_msg),
                ratio(r.wire_bytes_per_msg, ref.wire_bytes_per_msg) if ref and r is not ref else "",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    note = (
        "ws-deflate: 1,000 WebSocket subscribers offering permessage-deflate as Chromium does, "
        "sensor JSON bodies; wire B/msg is what the clients read per message (frame header included, "
        "TCP/IP not); KiB/conn is the worker's PSS growth per connection on a fresh worker"
    )
    return "\n".join([*lines, note])


def deflate_costs(levels: list[int], subscribers: int = 1000, n: int = 2000) -> str:
    """Compression alone, timed in this process on real envelopes of sensor JSON (no server, no noise).

    Windsock deflates each message once, for every subscriber (no context
    takeover). The usual alternative, a compressor per connection keeping its
    context, is timed too: it is paid per delivery, compresses better, and
    holds zlib's state (about 256 KiB at the defaults) per connection.
    """
    import zlib

    sys.path.insert(0, str(ROOT))
    from app.messages import Message, ws_deflated_frame, ws_text_frame

    envelopes = [
        Message.build("sensors.greenhouse-3", 1763683200000001 + i, sensor_message(10**15 + i * 10**8, 1, i))
        for i in range(n)
    ]
    plain = sum(len(ws_text_frame(m.envelope)) for m in envelopes) / n
    lines = [
        f"deflate alone ({n} sensor envelopes, {plain:.0f} B plain frames; {subscribers:,} subscribers):"
    ]
    for level in [lv for lv in levels if lv > 0]:
        started = time.perf_counter()
        size = sum(len(ws_deflated_frame(m.envelope, level)) for m in envelopes)
        shared = (time.perf_counter() - started) / n * 1e6
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        started = time.perf_counter()
        kept = sum(
            len(compressor.compress(m.envelope) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4 for m in envelopes
        )
        own = (time.perf_counter() - started) / n * 1e6
        lines.append(
            f"  level {level}: once per message {shared:.1f} us = {shared / subscribers * 1000:.1f} ns per "
            f"delivery, {size / n:.0f} B frames; a compressor per connection (context kept): "
            f"{own:.1f} us per delivery, {kept / n + 2:.0f} B frames"
        )
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    nchan = {(r.group, r.phase): r for r in results if r.target == "nchan"}
    head = (
        f"{'group':<13} {'phase':<10} {'target':<7} {'subs':>6} {'offered/s':>9} {'deliv/s':>9} "
        f"{'loss':>6} {'p50':>6} {'p90':>6} {'p99':>7} {'max':>7} {'us/msg':>7} {'xNchan':>7} "
        f"{'p99 x':>6} {'KiB/conn':>8} {'conn/s':>6} {'lg%':>4} {'oth%':>4}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        ref = nchan.get((r.group, r.phase))
        kib = r.mem.get("per_conn_pss_kib", {}) if r.mem.get("fresh") else {}
        per_conn = kib.get("worker", kib.get("nginx", float("nan")))
        lines.append(
            f"{r.group:<13} {r.phase:<10} {r.target:<7} {r.connected:>6} {r.offered_msgs:>9.0f} "
            f"{r.delivered_per_s:>9.0f} {r.loss:>6.1%} {fmt(r.p50_ms):>6} {fmt(r.p90_ms):>6} "
            f"{fmt(r.p99_ms):>7} {fmt(r.max_ms):>7} {fmt(r.cpu_us_per_msg, 2):>7} "
            f"{ratio(r.cpu_us_per_msg, ref.cpu_us_per_msg) if ref and r.target != 'nchan' else '':>7} "
            f"{ratio(r.p99_ms, ref.p99_ms) if ref and r.target != 'nchan' else '':>6} "
            f"{fmt(per_conn):>8} {r.connect_per_s:>6.0f} {r.loadgen_cpu_percent:>4.0f} "
            f"{r.other_load_percent:>4.0f}" + (" LG-LIMITED" if r.loadgen_limited else "")
        )
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    """The table for README.md's Performance section: ours next to Nchan's, with ratios."""
    nchan = {(r.group, r.phase): r for r in results if r.target == "nchan"}
    rows = [
        "| group | phase | server | delivered/s | loss | p50 ms | p99 ms | CPU us/msg | CPU x Nchan "
        "| p99 x Nchan | KiB/conn | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = nchan.get((r.group, r.phase))
        ours = r.target != "nchan" and ref is not None
        kib = r.mem.get("per_conn_pss_kib", {}) if r.mem.get("fresh") else {}
        per_conn = kib.get("worker", kib.get("nginx", float("nan")))
        rows.append(
            f"| {r.group} | {r.phase} | {r.target} | {r.delivered_per_s:,.0f} | {r.loss:.1%} "
            f"| {fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(r.cpu_us_per_msg)} "
            f"| {ratio(r.cpu_us_per_msg, ref.cpu_us_per_msg) if ours and ref else ''} "
            f"| {ratio(r.p99_ms, ref.p99_ms) if ours and ref else ''} | {fmt(per_conn)} "
            f"| {r.other_load_percent:.0f}% |"
        )
    return "\n".join(rows)


def saturation(results: list[Result]) -> dict[str, float]:
    best: dict[str, float] = {}
    for r in results:
        if r.group.endswith("stepup") and r.ok:
            best[r.target] = max(best.get(r.target, 0.0), r.delivered_per_s)
    return best


def target_lines(results: list[Result]) -> list[str]:
    """Issue 8's targets, each with the figures that decide it (MET, NOT MET, or not measured)."""
    by = {(r.target, r.group, r.phase): r for r in results}
    big = next((r.group for r in results if r.group.startswith("mixed-")), "mixed-10k")

    def get(target: str, group: str, phase: str) -> Result | None:
        return by.get((target, group, phase))

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    lines = ["targets (issue 8):"]
    w, n = get("worker", "ws-1k", "20k"), get("nchan", "ws-1k", "20k")
    if w:
        ok = w.cpu_us_per_msg <= 12 and w.p99_ms <= 20 and w.loss == 0
        parity = f"; Nchan parity {w.cpu_us_per_msg / n.cpu_us_per_msg:.2f}x" if n else ""
        lines.append(
            f"  1. one worker, 1,000 WebSocket x 20 msg/s: {w.cpu_us_per_msg:.1f} us/msg (<= 12), "
            f"p99 {w.p99_ms:.0f} ms (<= 20){parity}: {verdict(ok)}"
        )
    st = get("stack", "ws-1k", "20k")
    if st and n:
        ratio_ = st.cpu_us_per_msg / n.cpu_us_per_msg
        ok = ratio_ <= 1.5 and st.p99_ms <= 30 and st.loss == 0
        lines.append(
            f"  2. stack (nginx + 2 workers + Redis), 20k deliveries/s: {st.cpu_us_per_msg:.1f} us/msg = "
            f"{ratio_:.2f}x Nchan (<= 1.5x; nginx {st.cpu_breakdown_us.get('nginx', 0):.1f}, workers "
            f"{st.cpu_breakdown_us.get('worker', 0):.1f}, Redis {st.cpu_breakdown_us.get('redis', 0):.1f}), "
            f"p99 {st.p99_ms:.0f} ms (<= 30): {verdict(ok)}"
        )
    sb = next((r for r in results if r.target == "stack" and r.group == big), None)
    if sb:
        held = sb.connected
        kib = sb.mem.get("per_conn_pss_kib", {}).get("worker", float("nan"))
        ok = held >= 10_000 and kib <= 16 and sb.p99_ms < 250 and sb.loss == 0
        lines.append(
            f"  3. {held} WebSocket + SSE subscribers through nginx, broadcast at "
            f"{sb.offered_msgs / 1000:.0f}k deliveries/s: {kib:.1f} KiB/conn in the workers (<= 16), "
            f"p99 {sb.p99_ms:.0f} ms (< 250): {verdict(ok)}"
        )
    for target in ("worker", "stack"):
        ws, sse = get(target, "ws-1k", "20k"), get(target, "sse-1k", "20k")
        if ws and sse:
            ratio_ = sse.cpu_us_per_msg / ws.cpu_us_per_msg
            lines.append(
                f"  4. {target}: SSE {sse.cpu_us_per_msg:.1f} vs WebSocket {ws.cpu_us_per_msg:.1f} us/msg "
                f"at 20k/s = {ratio_:.2f}x (<= 1.2x): {verdict(ratio_ <= 1.2)}"
            )
    for target in ("worker", "stack"):
        fast, slow = get(target, "ws-1k", "20k"), get(target, "ws-1k", "20k-slow1%")
        if fast and slow:
            ok = slow.p99_ms <= max(1.25 * fast.p99_ms, fast.p99_ms + 10) and slow.loss == 0
            lines.append(
                f"  5. {target}: p99 of fast clients with 1% not reading {slow.p99_ms:.0f} ms vs "
                f"{fast.p99_ms:.0f} ms without (no regression: within 1.25x or +10 ms): {verdict(ok)}"
            )
    return lines


def plot(results: list[Result], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tp, ax_cpu) = plt.subplots(1, 3, figsize=(16, 5))
    colors = {"worker": "tab:blue", "stack": "tab:orange", "nchan": "tab:green"}
    for target in ("worker", "stack", "nchan"):
        pts = sorted(
            (r for r in results if r.target == target and r.group == "ws-1k-stepup"),
            key=lambda r: r.offered_msgs,
        )
        if not pts:
            continue
        x = [r.offered_msgs / 1000 for r in pts]
        c = colors[target]
        ax_lat.plot(x, [r.p50_ms for r in pts], "o--", color=c, label=f"{target} p50")
        ax_lat.plot(x, [r.p99_ms for r in pts], "o-", color=c, label=f"{target} p99")
        ax_tp.plot(x, [r.delivered_per_s / 1000 for r in pts], "o-", color=c, label=target)
    top = max((r.offered_msgs / 1000 for r in results), default=1)
    ax_tp.plot([0, top], [0, top], ":", color="grey", label="delivered = offered")
    ax_lat.axhline(SATURATION_P99_MS, color="grey", linestyle=":")
    ax_lat.set(xlabel="offered deliveries/s (thousands), 1,000 WebSocket subscribers", ylabel="latency (ms)")
    ax_lat.set_yscale("log")
    if ax_lat.get_legend_handles_labels()[0]:
        ax_lat.legend(fontsize=7)
    ax_lat.set_title("Latency vs offered load")
    ax_tp.set(xlabel="offered deliveries/s (thousands)", ylabel="delivered/s (thousands)")
    ax_tp.legend(fontsize=7)
    ax_tp.set_title("Throughput vs offered load")
    # CPU per delivered message in the fixed-rate phases.
    fixed = [
        (g, p)
        for g, p in dict.fromkeys((r.group, r.phase) for r in results)
        if "step" not in g and g != "ws-deflate"
    ]
    width = 0.27
    for i, target in enumerate(("worker", "stack", "nchan")):
        by = {(r.group, r.phase): r.cpu_us_per_msg for r in results if r.target == target}
        ax_cpu.bar(
            [j + (i - 1) * width for j in range(len(fixed))],
            [by.get(k, 0) for k in fixed],
            width,
            color=colors[target],
            label=target,
        )
    ax_cpu.set_xticks(range(len(fixed)), [f"{g}\n{p}" for g, p in fixed], fontsize=7)
    ax_cpu.set(ylabel="server CPU us per delivered message")
    ax_cpu.legend(fontsize=7)
    ax_cpu.set_title("Server CPU per delivered message")
    fig.suptitle(f"Windsock vs Nchan ({MESSAGE_BYTES}-byte messages) - {machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def profile_headline(path: Path, top: int = 12) -> str:
    """Summarise py-spy's collapsed stacks: the functions with the most samples, own and inclusive."""
    if not path.exists():
        return f"profile: {path} was not written"
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames and frames[-1].startswith(("select ", "poll ", "_run_once ")) and "base_events" in stack:
            pass
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    if not total:
        return "profile: no samples"
    lines = [f"profile: {total} samples of the single worker (py-spy, 250 Hz); own time:"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    lines.append("inclusive:")
    for name, n in sorted(incl.items(), key=lambda kv: -kv[1])[: top + 6]:
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(lines)


# Main.


def machine_line(server_cores: list[int], loadgen_cores: list[int]) -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; server on core(s) {server_cores}, "
        f"load generator on {loadgen_cores}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", default=str(ROOT / "artifacts" / "bench"))
    p.add_argument("--targets", default="worker,stack,nchan")
    p.add_argument("--groups", default="", help="comma list of group names (default: all)")
    p.add_argument("--workers", type=int, default=2, help="Windsock workers in the stack")
    p.add_argument(
        "--loadgens",
        type=int,
        default=0,
        help="load-generator processes (default: 2 per load-generator core)",
    )
    p.add_argument("--phase-seconds", type=float, default=5.0)
    p.add_argument("--step-seconds", type=float, default=4.0)
    p.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[20, 40, 60, 80, 100, 130, 160, 200, 250, 300],
        help="step-up publish rates (msg/s; x 1,000 subscribers = deliveries/s)",
    )
    p.add_argument("--big", type=int, default=10_000, help="subscribers in the big mixed group")
    p.add_argument(
        "--deflate-levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 1, 6],
        help="WS_DEFLATE_LEVEL of each worker in the ws-deflate group (0: off)",
    )
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late deliveries")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="tries again of a phase disturbed by other load on the server core",
    )
    p.add_argument(
        "--retry-budget",
        type=float,
        default=270.0,
        help="seconds into the run after which nothing is tried again",
    )
    p.add_argument("--concurrency", type=int, default=100, help="connects in flight per load generator")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--base", default="", help="also run one worker from this checkout as target 'base' (A/B)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the single worker under py-spy; writes profile-worker.txt and its headline",
    )
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 and not args.no_pin and shutil.which("taskset"):
        server_cores = cores[:1] if len(cores) < 4 else cores[: len(cores) // 2]
        loadgen_cores = [c for c in cores if c not in server_cores]
        pin = ["taskset", "-c", ",".join(map(str, server_cores))]
    else:
        server_cores = loadgen_cores = cores
        pin = []
        log("bench: not pinning (one core, no taskset, or --no-pin): figures are noisier")
    machine = machine_line(server_cores, loadgen_cores)
    log(f"bench: {machine}")
    log(f"bench: fd limit {hard}; load average {os.getloadavg()[0]:.2f}")
    if hard < args.big + 500:
        log(f"bench: descriptor limit {hard} is too low for {args.big} subscribers")

    python = sys.executable
    # A server is started only if a chosen group runs on it.
    wanted = [t for t in args.targets.split(",") if any(t in g.targets for g in selected(args))]
    if "worker" in args.targets.split(",") and any(g.name == "ws-deflate" for g in selected(args)):
        wanted.append("deflate")
    targets: list[Target] = []
    bench = Bench(args)
    started = time.monotonic()
    try:
        if "worker" in wanted:
            profile = bench.out / "profile-worker.txt" if args.profile else None
            targets.append(start_worker(pin, python, profile))
        if "deflate" in wanted:
            for level in args.deflate_levels:
                targets.append(start_worker(pin, python, name=f"worker-z{level}", deflate_level=level))
        if args.base:
            # A/B: the same worker from another checkout (e.g. before an optimisation).
            targets.append(start_worker(pin, python, root=Path(args.base), name="base"))
        if "stack" in wanted:
            chosen = [g for g in groups(args) if not args.groups or g.name in args.groups.split(",")]
            first = nginx_workers_for(chosen[0].subscribers) if chosen else 1
            targets.append(start_stack(pin, python, args.workers, first))
        if "nchan" in wanted:
            targets.append(start_nchan(pin))
        # The coordinator (publisher) and load generators share the load-generator cores.
        os.sched_setaffinity(0, set(loadgen_cores))
        bench.loadgen_cores = len(loadgen_cores)
        bench.server_cores = server_cores
        count = args.loadgens or 2 * len(loadgen_cores)
        bench.loadgens = [await LoadGen.start(python) for _ in range(count)]
        await asyncio.gather(*(lg.call(cmd="ping") for lg in bench.loadgens))
        bench.fresh = {t.name: True for t in targets}
        chosen = [g for g in groups(args) if not args.groups or g.name in args.groups.split(",")]
        for group in chosen:
            log(f"bench: group {group.name} ({group.subscribers} subscribers: {group.clients})")
            for i, target in enumerate(targets):
                need = nginx_workers_for(group.subscribers)
                if target.name == "stack" and target.nginx_workers != need:
                    log(f"  stack: restarting with {need} nginx worker process(es)")
                    target.stop()
                    targets[i] = target = start_stack(pin, python, args.workers, need)
                    bench.fresh[target.name] = True
                if target.name in group.targets:
                    await bench.run_group(target, group)
    finally:
        for lg in bench.loadgens:
            await lg.quit()
        for target in targets:
            target.stop()
        bench.jsonl.close()
    elapsed = time.monotonic() - started
    text = table(bench.results)
    sat = saturation(bench.results)
    sat_line = "saturation (highest step-up rate with no loss and p99 < 200 ms, WebSocket x1000): "
    sat_line += ", ".join(f"{t} {v / 1000:.0f}k/s" for t, v in sat.items()) or "-"
    footer = (
        f"machine: {machine}\nload average at end: {os.getloadavg()[0]:.2f}; "
        f"run took {elapsed:.0f} s; {MESSAGE_BYTES}-byte messages; KiB/conn is the PSS growth of the "
        f"Windsock workers (nginx for Nchan) per connected subscriber; lg% is the load generator's CPU "
        f"share of its cores (LG-LIMITED above {LOADGEN_LIMIT:.0%}); oth% is the server core's "
        f"busy time not spent in the server's processes (other load; high: that phase is disturbed)"
    )
    goals = "\n".join(target_lines(bench.results))
    deflate = deflate_table(bench.results)
    if deflate:
        deflate += "\n" + deflate_costs(args.deflate_levels)
    print(text)
    if deflate:
        print(deflate)
    print(sat_line)
    print(goals)
    print(footer)
    extra = f"{deflate}\n" if deflate else ""
    (bench.out / "table.txt").write_text(f"{text}\n{extra}{sat_line}\n{goals}\n{footer}\n")
    deflate_md = (
        f"{deflate_table(bench.results, markdown=True)}\n\n{deflate_costs(args.deflate_levels)}\n\n"
        if deflate
        else ""
    )
    (bench.out / "table.md").write_text(
        f"{markdown(bench.results)}\n\n{deflate_md}{sat_line}\n\n{goals}\n\n{footer}\n"
    )
    (bench.out / "summary.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "seconds": elapsed,
                "saturation": sat,
                "results": [asdict(r) for r in bench.results],
            },
            indent=1,
        )
    )
    if args.profile:
        await asyncio.sleep(1)
        headline = profile_headline(bench.out / "profile-worker.txt")
        print(headline)
        (bench.out / "profile-headline.txt").write_text(headline + "\n")
    try:
        plot(bench.results, bench.out / "bench.png", machine)
        print(f"plot: {bench.out / 'bench.png'}")
    except Exception as exc:
        log(f"bench: could not draw the plot: {exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.exists(NCHAN_MODULE) and "nchan" in args.targets:
        log(f"bench: {NCHAN_MODULE} is missing (apt-get install libnginx-mod-nchan); skipping Nchan")
        args.targets = ",".join(t for t in args.targets.split(",") if t != "nchan")
    try:
        import uvloop

        return uvloop.run(amain(args))
    except ImportError:
        return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
