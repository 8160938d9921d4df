"""Run the whole Windsock stack natively, in the foreground: `make run`.

Starts redis-server (unless REDIS_URL is given), supervisord with WORKERS
workers and the ingest process, and nginx, from the same files the
containers use (deploy/supervisord.conf, nginx/templates/*.template),
rendered into a temporary directory. Ctrl-C or SIGTERM stops everything, in
an order that lets workers drain their clients first, and leaves no process
behind. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx" / "templates" / "windsock.conf.template"
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"
STATIC = ROOT / "app" / "static"

# The native main config; the template holds everything that matters and is
# shared with Docker, this only places nginx's files in the temp directory.
NGINX_MAIN = """\
daemon off;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log stderr warn;
{user}
events {{
    worker_connections {connections};
}}
http {{
    include {mime_types};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nodelay on;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/windsock.conf;
}}
"""


def render(template: str, values: dict[str, str]) -> str:
    """Substitute ``${NAME}`` for the given names only, as envsubst with a variable list does."""
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def native_values(http_port: int, ports: list[int], conn_per_ip: int) -> dict[str, str]:
    """Template values for `make run`: workers on loopback ports, no DNS resolver."""
    servers = "".join(f"    server 127.0.0.1:{port} max_fails=0;\n" for port in ports)
    return {
        "NGINX_PORT": f"127.0.0.1:{http_port}",
        "WINDSOCK_UPSTREAM": servers,
        "WINDSOCK_RESOLVER": "# (native: upstreams are fixed loopback ports)",
        "WINDSOCK_STATIC": str(STATIC),
        "WINDSOCK_CONN_PER_IP": str(conn_per_ip),
    }


def binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        sys.exit(f"stack: {name} is not installed (Debian: apt-get install {name}; see README)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_connections(nofile: int) -> int:
    """`make run`'s worker_connections: every descriptor but a few, within nginx's usual range."""
    # worker_connections already counts both sides of a proxied
    # stream (client and upstream), so it may use every descriptor.
    return max(1024, min(65536, nofile - 64))


def write_nginx_config(
    directory: Path, values: dict[str, str], *, workers: int = 1, connections: int = 0
) -> Path:
    """Render the template and the native main config; return the main config's path.

    ``workers`` nginx worker processes, each with ``connections``
    worker_connections (0: nginx_connections() of the descriptor limit).
    """
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "windsock.conf").write_text(render(TEMPLATE.read_text(), values))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    main = directory / "nginx.conf"
    main.write_text(
        NGINX_MAIN.format(
            dir=directory,
            # As root, nginx would switch its workers to 'nobody', who may not
            # read the checkout or write the temp dirs; this is a dev launcher.
            user="user root;" if os.geteuid() == 0 else "",
            mime_types="/etc/nginx/mime.types",
            nofile=nofile,
            workers=workers,
            connections=connections or nginx_connections(nofile),
        )
    )
    return main


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code == 503  # answering, just degraded: the process is up
    except OSError:
        return False


class Stack:
    """The stack's processes, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="windsock-stack-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = [args.app_base_port + i for i in range(args.workers)]

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        # Own session: Ctrl-C reaches only this launcher, which stops the
        # children in order (workers first, so clients get 1001 via nginx).
        self.procs[name] = subprocess.Popen(argv, env=env, start_new_session=True)

    def environ(self, redis_url: str) -> dict[str, str]:
        """The environment of supervisord, and so of the workers and the ingest."""
        args = self.args
        return {
            **os.environ,
            "WORKERS": str(args.workers),
            "APP_BASE_PORT": str(args.app_base_port),
            "PYTHON": sys.executable,
            "SUPERVISOR_DIR": str(self.dir),
            "RUN_INGEST": "true" if args.ingest else "false",
            "INGEST_PORT": str(args.ingest_port),
            "REDIS_URL": redis_url,
            "UDP_PORT": str(args.udp_port),
            "HOST": "127.0.0.1",
            # nginx binds 127.0.0.1 here whatever a shell exports for compose;
            # the UDP listener is reached on UDP_HOST itself.
            "HTTP_BIND": "127.0.0.1",
            "UDP_BIND": "",
            "PYTHONUNBUFFERED": "1",
        }

    def preflight(self, env: dict[str, str]) -> None:
        """Check the settings as the workers and the ingest get them: a refusal is one line, at once.

        Otherwise supervisord would retry the refusing program for seconds
        before giving up on it.
        """
        worker_env = {**env, "SOURCES": "", "PORT": str(self.ports[0])}
        checks = [("worker", [sys.executable, "-m", "app", "--check"], worker_env)]
        if self.args.ingest:
            ingest_env = {**env, "PORT": str(self.args.ingest_port)}
            checks.append(("ingest", [sys.executable, "-m", "app", "ingest", "--check"], ingest_env))
        running = [
            (name, subprocess.Popen(argv, env=e, cwd=ROOT, stderr=subprocess.PIPE, text=True))
            for name, argv, e in checks
        ]
        refusals = []
        for name, proc in running:
            _, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                refusals.append(f"the {name} would not start: {err.strip()}")
        if refusals:
            raise RuntimeError("; ".join(refusals))

    def start(self) -> str:
        args = self.args
        # The settings are checked before anything starts (the URL's form is all that counts).
        self.preflight(self.environ(args.redis_url or "redis://127.0.0.1:6379/0"))
        redis_url = args.redis_url
        if not redis_url:
            redis_port = args.redis_port or free_port()
            (self.dir / "redis").mkdir()
            self.spawn(
                "redis",
                [
                    binary("redis-server"),
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir / "redis"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                ],
            )
            redis_url = f"redis://127.0.0.1:{redis_port}/0"

        env = self.environ(redis_url)
        self.spawn(
            "supervisord",
            [
                sys.executable,
                "-m",
                "supervisor.supervisord",
                "-c",
                str(SUPERVISORD_CONF),
            ],
            env,
        )

        main = write_nginx_config(
            self.dir / "nginx",
            native_values(args.http_port, self.ports, args.conn_per_ip),
            workers=args.nginx_workers,
            connections=args.nginx_connections,
        )
        nginx = binary("nginx")
        check = subprocess.run([nginx, "-t", "-q", "-c", str(main)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        self.spawn("nginx", [nginx, "-c", str(main)])

        base = f"http://127.0.0.1:{args.http_port}"
        checks = [f"http://127.0.0.1:{port}/healthz" for port in self.ports] + [f"{base}/healthz"]
        if args.ingest:
            checks.append(f"http://127.0.0.1:{args.ingest_port}/healthz")
        deadline = time.monotonic() + args.start_timeout
        while not all(healthy(url) for url in checks):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack did not come up within {args.start_timeout:.0f} s")
            if (dead := self.dead()) is not None:
                raise RuntimeError(f"{dead} exited during start-up")
            time.sleep(0.2)
        return base

    def dead(self) -> str | None:
        return next((name for name, proc in self.procs.items() if proc.poll() is not None), None)

    def stop(self) -> None:
        # Workers drain first (WebSockets closed with 1001 through nginx),
        # then nginx finishes gracefully, then Redis.
        for name, sig, wait in (
            ("supervisord", signal.SIGTERM, 30),
            ("nginx", signal.SIGQUIT, 10),
            ("redis", signal.SIGTERM, 10),
        ):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                print(f"stack: {name} did not stop in {wait} s; killing it", file=sys.stderr)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(env("HTTP_PORT", "8080")),
        help="nginx port on 127.0.0.1 (HTTP_PORT, default 8080)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("WORKERS", "4")),
        help="Tornado worker processes (WORKERS, default 4)",
    )
    parser.add_argument(
        "--app-base-port",
        type=int,
        default=int(env("APP_BASE_PORT", "8001")),
        help="port of the first worker; worker n listens on base + n (APP_BASE_PORT)",
    )
    parser.add_argument(
        "--ingest-port",
        type=int,
        default=int(env("INGEST_PORT", "8000")),
        help="health port of the ingest process (INGEST_PORT, default 8000)",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=int(env("REDIS_PORT", "0")),
        help="port for the redis-server this starts (REDIS_PORT, default: a free one)",
    )
    parser.add_argument(
        "--redis-url", default=env("REDIS_URL", ""), help="use this Redis instead of starting one (REDIS_URL)"
    )
    parser.add_argument(
        "--udp-port",
        type=int,
        default=int(env("UDP_PORT", "9999")),
        help="UDP port for sensor datagrams (UDP_PORT, default 9999)",
    )
    parser.add_argument(
        "--conn-per-ip",
        type=int,
        default=int(env("CONN_PER_IP", "1000")),
        help="nginx limit of streaming connections per client address (CONN_PER_IP)",
    )
    # One nginx process holds about (descriptor limit) / 2 proxied streams; the
    # bench needs more (10,000 under a 20,000 limit), so these size nginx for it.
    parser.add_argument(
        "--nginx-workers",
        type=int,
        default=int(env("NGINX_WORKERS", "1")),
        help="nginx worker processes (NGINX_WORKERS, default 1)",
    )
    parser.add_argument(
        "--nginx-connections",
        type=int,
        default=int(env("NGINX_CONNECTIONS", "0")),
        help="worker_connections of each nginx worker process (NGINX_CONNECTIONS; "
        "default 0: the descriptor limit less 64, within 1024-65536)",
    )
    parser.add_argument(
        "--no-ingest", dest="ingest", action="store_false", help="do not run the ingest process"
    )
    parser.add_argument("--start-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.nginx_workers < 1:
        parser.error("--nginx-workers must be at least 1")
    if args.nginx_connections < 0:
        parser.error("--nginx-connections must be 0 (the default size) or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Every proxied stream costs nginx two descriptors and a worker one.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = Stack(args)
    code = 0
    try:
        url = stack.start()
        print(
            f"Windsock is up: {url}/  ({args.workers} workers on ports "
            f"{stack.ports[0]}-{stack.ports[-1]}, UDP {args.udp_port}). Ctrl-C stops it.",
            flush=True,
        )
        print(
            f"Control the workers with: {sys.executable} -m supervisor.supervisorctl "
            f"-s unix://{stack.dir}/supervisor.sock status",
            flush=True,
        )
        while not stopping:
            if (dead := stack.dead()) is not None:
                print(f"stack: {dead} exited unexpectedly; stopping everything", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    except RuntimeError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        code = 1
    finally:
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
