"""The deployment files, checked without Docker: nginx renders, compose structure, supervisor's crash rule."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import free_port, need_binary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import stack as launcher  # noqa: E402  (deploy/stack.py, the `make run` launcher)

pytestmark = pytest.mark.stack


def _nginx_t(tmp_path: Path, values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    main = launcher.write_nginx_config(tmp_path, values)
    return subprocess.run([need_binary("nginx"), "-t", "-c", str(main)], capture_output=True, text=True)


def test_native_render_passes_nginx_t(tmp_path: Path) -> None:
    """The template rendered for `make run` is a valid nginx config with every proxy rule in place."""
    values = launcher.native_values(free_port(), [9101, 9102], 50)
    result = _nginx_t(tmp_path, values)
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "windsock.conf").read_text()
    assert "${" not in conf
    for directive in (
        "map $http_upgrade $connection_upgrade",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_buffering off;",
        "gzip off;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "server 127.0.0.1:9101",
        "server 127.0.0.1:9102",
        "proxy_read_timeout 1h;",
    ):
        assert directive in conf, directive


def _docker_values(tmp_path: Path, nginx_version: str, **env: str) -> dict[str, str]:
    """Run nginx/windsock-upstream.envsh as the nginx image does, with a given `nginx -v`."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nginx").write_text(f"#!/bin/sh\necho 'nginx version: nginx/{nginx_version}' >&2\n")
    (fake / "nginx").chmod(stat.S_IRWXU)
    script = ROOT / "nginx" / "windsock-upstream.envsh"
    out = subprocess.run(
        ["sh", "-c", f'. "{script}" && env -0'],
        capture_output=True,
        check=True,
        env={"PATH": f"{fake}:/usr/bin:/bin", **env},
    )
    pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith(("WINDSOCK_", "NGINX_"))}


def test_docker_render_uses_resolve_on_new_nginx(tmp_path: Path) -> None:
    """On nginx >= 1.27.3 the upstream names the app service with `resolve`, so scaled replicas join."""
    values = _docker_values(tmp_path, "1.28.0", WORKERS="3")
    lines = values["WINDSOCK_UPSTREAM"].strip().splitlines()
    assert [line.strip() for line in lines] == [
        f"server app:{port} resolve max_fails=0;" for port in (8001, 8002, 8003)
    ]
    assert values["WINDSOCK_RESOLVER"].startswith("resolver 127.0.0.11 ")
    assert values["NGINX_PORT"] == "80"


def test_docker_render_falls_back_to_addresses_on_old_nginx(tmp_path: Path) -> None:
    """On older nginx the script lists resolved addresses, and that render passes `nginx -t` here."""
    values = _docker_values(
        tmp_path,
        "1.22.1",
        APP_HOST="localhost",
        WORKERS="2",
        APP_BASE_PORT="9201",
        NGINX_PORT=f"127.0.0.1:{free_port()}",
    )
    assert "resolve" not in values["WINDSOCK_UPSTREAM"]
    assert "127.0.0.1:9201" in values["WINDSOCK_UPSTREAM"] and "127.0.0.1:9202" in values["WINDSOCK_UPSTREAM"]
    values["WINDSOCK_STATIC"] = str(ROOT / "app" / "static")
    # The resolver line needs Docker's DNS; nginx -t does not contact it.
    result = _nginx_t(tmp_path / "conf", values)
    assert result.returncode == 0, result.stderr


def test_version_comparison_boundaries(tmp_path: Path) -> None:
    """Exactly the nginx versions from 1.27.3 on get `resolve`."""
    for version, expected in [
        ("1.27.2", False),
        ("1.27.3", True),
        ("1.28.0", True),
        ("2.0.0", True),
        ("1.26.9", False),
        ("1.9.30", False),
    ]:
        has = "resolve" in _docker_values(tmp_path, version)["WINDSOCK_UPSTREAM"]
        assert has is expected, version


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_structure() -> None:
    """Compose runs redis, app, ingest and nginx; only nginx (TCP) and ingest (UDP) publish ports."""
    services = _compose()["services"]
    assert set(services) == {"redis", "app", "ingest", "nginx"}
    assert "ports" not in services["redis"] and "ports" not in services["app"]
    # Secure by default: both published ports bind this machine only unless HTTP_BIND/UDP_BIND say otherwise.
    assert services["nginx"]["ports"] == ["${HTTP_BIND:-127.0.0.1}:${HTTP_PORT:-80}:80"]
    assert services["ingest"]["ports"] == ["${UDP_BIND:-127.0.0.1}:${UDP_PORT:-9999}:9999/udp"]
    assert services["app"]["environment"]["HTTP_BIND"] == "${HTTP_BIND:-127.0.0.1}"
    assert services["ingest"]["environment"]["UDP_BIND"] == "${UDP_BIND:-127.0.0.1}"
    for name in ("app", "ingest"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["read_only"] is True
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name, service in services.items():
        test = " ".join(service["healthcheck"]["test"])
        assert "curl" not in test, name
    assert services["app"]["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.12-slim}"
    assert services["nginx"]["build"]["args"]["NGINX_IMAGE"] == "${NGINX_IMAGE:-nginx:1.28-alpine}"
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"


def test_compose_file_is_valid_for_docker_compose() -> None:
    """`docker-compose config` accepts the file (where Docker's compose tool is installed)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed; the YAML structure is checked above")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_runs_supervisord_as_pid_1_and_non_root() -> None:
    """The app image checks the workers' settings, then execs supervisord as PID 1, as a non-root user."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    check = "SOURCES= python -m app --check"
    assert f'CMD ["sh", "-c", "{check} && exec supervisord -c /app/deploy/supervisord.conf"]' in text
    assert "\nUSER windsock\n" in text
    assert text.count("FROM ${PYTHON_IMAGE}") == 2 and "ARG PYTHON_IMAGE=python:3.12-slim" in text


def test_crash_looping_worker_stops_supervisord(tmp_path: Path) -> None:
    """A worker that keeps crashing goes FATAL, and the listener stops supervisord: nothing looks healthy."""
    wrapper = tmp_path / "python"
    # Runs Python normally (the event listener) but makes every worker crash.
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *"-m app"*) exit 3;; esac\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(stat.S_IRWXU)
    env = {
        **os.environ,
        "WORKERS": "1",
        "APP_BASE_PORT": str(free_port()),
        "PYTHON": str(wrapper),
        "SUPERVISOR_DIR": str(tmp_path),
        "RUN_INGEST": "false",
        "INGEST_PORT": str(free_port()),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(ROOT / "deploy" / "supervisord.conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    output = proc.stdout + proc.stderr
    assert "gave up: app_00 entered FATAL state" in output, output
    assert "keeps crashing; stopping supervisord" in output, output
    print(f"supervisord stopped {time.monotonic() - started:.1f} s after start")


def test_prometheus_scrape_config_is_valid_and_finds_every_worker_port() -> None:
    """deploy/prometheus.yml passes `promtool check config` and has one DNS target per worker port."""
    promtool = need_binary("promtool")
    path = ROOT / "deploy" / "prometheus.yml"
    done = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(path.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "windsock"]
    ports = sorted(sd["port"] for sd in job["dns_sd_configs"] if sd["names"] == ["app"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    workers = int(compose["x-app-environment"]["WORKERS"].split(":-")[1].rstrip("}"))
    base = int(compose["x-app-environment"]["APP_BASE_PORT"])
    assert ports == list(range(base, base + workers)), (ports, base, workers)
