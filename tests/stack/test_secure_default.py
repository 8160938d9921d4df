"""Secure by default, seen from another host: a network namespace on a veth pair that the fixture makes.

The namespace has its own network stack, so its requests reach this machine
on the veth's private address, never on loopback: they are what a client on
the LAN would send. Nothing leaves the machine; the fixture removes the
namespace and the veth pair afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import UNIT, Process, free_port, http_status, wait_until
from tests.stack.conftest import ROOT, get_json, start_stack

pytestmark = pytest.mark.stack

# Run inside the namespace: one probe, its result as one JSON line.
PROBE = r"""
import json, socket, sys, urllib.error, urllib.request
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(json.dumps("connected"))
    except ConnectionRefusedError:
        print(json.dumps("refused"))
    except OSError as exc:
        print(json.dumps(f"error: {exc}"))
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(sys.argv[4].encode())
    s.settimeout(2)
    try:
        s.recv(100)
        print(json.dumps("answered"))
    except ConnectionRefusedError:  # ICMP port unreachable: no socket on that address
        print(json.dumps("refused"))
    except OSError as exc:
        print(json.dumps(f"no answer: {exc}"))
else:
    headers = {"Content-Type": "application/json"}
    if len(sys.argv) > 5:
        headers["Authorization"] = "Bearer " + sys.argv[5]
    request = urllib.request.Request(
        f"http://{host}:{port}/api/channels/{sys.argv[4]}", data=b'{"from": "netns"}', headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(json.dumps([response.status, json.load(response)]))
    except urllib.error.HTTPError as exc:
        with exc:
            print(json.dumps([exc.code, json.load(exc)]))
"""


@dataclass
class Namespace:
    """A network namespace joined to this machine by a veth pair: host_ip here, ns_ip there."""

    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    def probe(self, *args: str | int) -> Any:
        """Run PROBE inside the namespace; its decoded result."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", PROBE, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=30 * UNIT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _pick_subnet() -> tuple[str, str]:
    """Two addresses of a /30 in 10.213.0.0/16 that no interface here uses yet."""
    used = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    rng = random.Random()
    for _ in range(50):
        third, fourth = rng.randrange(256), rng.randrange(0, 256, 4)
        prefix = f"10.213.{third}."
        if prefix not in used:
            return f"{prefix}{fourth + 1}", f"{prefix}{fourth + 2}"
    raise RuntimeError("no free /30 in 10.213.0.0/16")


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A namespace on a fresh veth pair with private addresses, deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed: no network namespace to test from")
    tag = uuid.uuid4().hex[:8]
    name, host_if, ns_if = f"windsock-{tag}", f"wsk{tag}h", f"wsk{tag}n"
    added = _ip("netns", "add", name)
    if added.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here ({added.stderr.strip()}); it needs root")
    try:
        host_ip, ns_ip = _pick_subnet()
        for args in (
            ["link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name],
            ["addr", "add", f"{host_ip}/30", "dev", host_if],
            ["link", "set", host_if, "up"],
            ["-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if],
            ["-n", name, "link", "set", ns_if, "up"],
            ["-n", name, "link", "set", "lo", "up"],
        ):
            done = _ip(*args)
            if done.returncode != 0:
                pytest.skip(f"`ip {' '.join(args)}` failed here: {done.stderr.strip()}")
        yield Namespace(name, host_if, host_ip, ns_ip)
    finally:
        _ip("netns", "del", name)  # takes the veth pair with it
        if _ip("link", "show", host_if).returncode == 0:
            _ip("link", "del", host_if)
        assert name not in _ip("netns", "list").stdout
        assert _ip("link", "show", host_if).returncode != 0


def test_keyed_worker_on_every_interface_refuses_keyless_publish_from_another_host(
    netns: Namespace, tmp_path: Path
) -> None:
    """A worker on 0.0.0.0 with PUBLISH_KEY gives the namespace's keyless publish 401 JSON, a keyed 202."""
    port = free_port()
    worker = Process(
        [sys.executable, "-m", "app", "--host", "0.0.0.0", "--port", str(port)],
        env={"PUBLISH_KEY": "netns-key", "SOURCES": "", "LOG_LEVEL": "WARNING"},
        log=str(tmp_path / "worker.log"),
    )
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, timeout=15 * UNIT)
        status, body = netns.probe("publish", netns.host_ip, port, "sensors.netns")
        assert status == 401, body
        assert body["type"] == "error" and body["code"] == "unauthorized", body
        assert "PUBLISH_KEY" in body["message"], body
        status, body = netns.probe("publish", netns.host_ip, port, "sensors.netns", "wrong-key")
        assert (status, body["code"]) == (401, "unauthorized"), body
        status, body = netns.probe("publish", netns.host_ip, port, "sensors.netns", "netns-key")
        assert status == 202 and body["channel"] == "sensors.netns", body
        status, channel = get_json(f"http://127.0.0.1:{port}/api/channels/sensors.netns")
        assert status == 200 and channel["latest"]["data"] == {"from": "netns"}, channel
        assert channel["history"] == 1, channel  # the two refused publishes left nothing
    finally:
        assert worker.stop() == 0, worker.output()


def test_default_native_stack_is_not_reachable_from_another_host(netns: Namespace, tmp_path: Path) -> None:
    """`make run` listens on 127.0.0.1 only (nginx, workers, ingest, UDP), even with HTTP_BIND=0.0.0.0 set."""
    # Control: the namespace does reach this machine's veth address.
    with socket.socket() as listener:
        listener.bind((netns.host_ip, 0))
        listener.listen()
        assert netns.probe("tcp", netns.host_ip, listener.getsockname()[1]) == "connected"
    # What a developer's shell may export for compose does not widen make run.
    stack = start_stack(tmp_path, workers=1, ingest=True, HTTP_BIND="0.0.0.0", UDP_BIND="0.0.0.0")
    try:
        for port in (stack.http_port, *stack.worker_ports, stack.ingest_port):
            assert http_status(f"http://127.0.0.1:{port}/healthz") == 200, port
            assert netns.probe("tcp", netns.host_ip, port) == "refused", port
        reading = json.dumps({"sensor": "netns-probe", "temperature": 1.0})
        assert netns.probe("udp", netns.host_ip, stack.udp_port, reading) == "refused"
        # Control: the same kind of datagram on loopback is published.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(
                json.dumps({"sensor": "loopback-probe", "temperature": 1.0}).encode(),
                ("127.0.0.1", stack.udp_port),
            )
        url = f"{stack.base}/api/channels/sensors.%s"
        wait_until(lambda: get_json(url % "loopback-probe")[1]["latest"] is not None, timeout=10 * UNIT)
        time.sleep(0.3 * UNIT)
        assert get_json(url % "netns-probe")[1]["latest"] is None
    finally:
        assert stack.stop() == 0, stack.output()


def test_native_stack_with_udp_on_every_interface_and_no_token_refuses_to_start() -> None:
    """`make run` with UDP_HOST=0.0.0.0 and no UDP_TOKEN exits 1 at once with one line naming both."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "stack.py"),
            "--http-port",
            str(free_port()),
            "--app-base-port",
            str(free_port()),
            "--workers",
            "1",
            "--ingest-port",
            str(free_port()),
            "--udp-port",
            str(free_port()),
        ],
        env={
            **{k: v for k, v in os.environ.items() if k not in {"UDP_TOKEN", "OPEN_PUBLISH"}},
            "UDP_HOST": "0.0.0.0",
        },
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "stack: the ingest would not start: windsock: UDP_HOST='0.0.0.0' is reachable from other machines "
        "and UDP_TOKEN is empty, so anyone could publish: set UDP_TOKEN, or bind 127.0.0.1, or set "
        "OPEN_PUBLISH=true to allow it"
    ]
    assert done.stdout == ""
