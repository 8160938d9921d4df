"""Run the manual's commands through bash as a reader would: hosts and ports substituted, nothing else."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from app.config import Settings
from tests.helpers import UNIT, need_binary
from tests.readme_blocks import ROOT, Command, blocks, command_text, expected, missing_output, substitute

BIN = ROOT / ".venv" / "bin"


# Variables a developer's shell may export that would change what the manual's
# commands do: every Windsock setting, make run's, and the compose file's.
_SETTINGS = [f.name.upper() for f in dataclasses.fields(Settings)]
_STACK = ["HTTP_PORT", "HTTP_BIND", "WORKERS", "APP_BASE_PORT", "REDIS_PORT", "INGEST_PORT", "CONN_PER_IP"]
_COMPOSE = ["UDP_BIND", "WINDSOCK_TAG", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "PYTHON_IMAGE", "NGINX_IMAGE"]
CLEARED = {*_SETTINGS, *_STACK, *_COMPOSE, "REDIS_IMAGE", "COMPOSE"}


def shell_env(**extra: str) -> dict[str, str]:
    """A fresh reader's shell in the checkout, with the virtualenv activated (`python` is its python).

    Nothing Windsock reads is inherited from the developer's environment;
    `extra` sets what the test substitutes (ports, and the compose project).
    """
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def need_tools(command: str) -> None:
    """Skip outside CI (fail in CI) when a program the command starts with is missing."""
    for tool in ("curl", "nc", "make", "docker"):
        if f"{tool} " in f" {command} ".replace("|", " ").replace("$(", " "):
            need_binary(tool)


def _lines(data: str) -> list[str]:
    return data.replace("\r", "\n").split("\n")


def check(
    command: Command,
    values: dict[str, str],
    env: dict[str, str],
    timeout: float = 60,
    text: str | None = None,
) -> str:
    """Run a command to its end; assert exit 0 and the output the manual shows. Returns stdout."""
    script = substitute(text if text is not None else command_text(command), values)
    need_tools(script)
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout * UNIT
    )
    assert done.returncode == 0, f"{script!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    want = expected(command, values)
    out, err = _lines(done.stdout), _lines(done.stderr)
    assert not missing_output(want, out) or not missing_output(want, err), (
        f"{script!r} did not print what the manual shows.\nexpected: {want}\n"
        f"stdout: {done.stdout!r}\nstderr: {done.stderr!r}"
    )
    return done.stdout


def check_until(command: Command, values: dict[str, str], env: dict[str, str], timeout: float = 30) -> str:
    """`check`, repeated until it passes or the time runs out: for output after an asynchronous step."""
    deadline = time.monotonic() + timeout * UNIT
    while True:
        try:
            return check(command, values, env)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Running:
    """A command left running in the foreground of its own terminal session, until Ctrl-C.

    Its output goes to files, not pipes: the stack's servers inherit it and
    may outlive the command, and a pipe would then never reach its end.
    """

    def __init__(self, script: str, env: dict[str, str]) -> None:
        need_tools(script)
        self.script = script
        self._files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]  # noqa: SIM115 (closed by kill)
        # Its own session and process group, as a terminal gives a foreground job:
        # ctrl_c() signals the whole group, as the terminal's Ctrl-C does.
        self.proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._files[0],
            stderr=self._files[1],
            start_new_session=True,
        )

    def _text(self, n: int) -> list[str]:
        if self._files[n].closed:
            return []
        return (
            os.pread(self._files[n].fileno(), 1 << 26, 0)
            .decode(errors="replace")
            .replace("\r", "\n")
            .split("\n")
        )

    @property
    def out(self) -> list[str]:
        """The lines printed on stdout so far."""
        return self._text(0)

    @property
    def err(self) -> list[str]:
        """The lines printed on stderr so far."""
        return self._text(1)

    def printed(self) -> str:
        return "\n".join(self.out[-200:]) + "\n--- stderr ---\n" + "\n".join(self.err[-200:])

    def expect(self, expected: list[str], timeout: float = 60) -> None:
        """Wait until the command has printed the expected lines, in order (on stdout or on stderr)."""
        deadline = time.monotonic() + timeout * UNIT
        while missing_output(expected, self.out) and missing_output(expected, self.err):
            assert self.proc.poll() is None, (
                f"{self.script!r} exited {self.proc.returncode} before printing {expected}:\n{self.printed()}"
            )
            assert time.monotonic() < deadline, (
                f"{self.script!r} did not print {expected} within {timeout * UNIT:.0f} s:\n{self.printed()}"
            )
            time.sleep(0.1)

    def until(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Wait, bounded, until a condition about the running command holds."""
        deadline = time.monotonic() + timeout * UNIT
        while not predicate():
            assert self.proc.poll() is None, f"{self.script!r} exited early:\n{self.printed()}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout * UNIT:.0f} s\n{self.printed()}"
            time.sleep(0.2)

    def ctrl_c(self, timeout: float = 60) -> int:
        """Send SIGINT to the command's process group, as Ctrl-C does; its exit status once it ended."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout * UNIT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"{self.script!r} did not stop within {timeout * UNIT:.0f} s of Ctrl-C:\n{self.printed()}"
                ) from None
        return self.proc.returncode

    def stop(self) -> None:
        """Teardown: Ctrl-C if it runs (a stack then stops its servers), else SIGKILL; close the files."""
        try:
            if self.proc.poll() is None:
                self.ctrl_c()
        finally:
            self.kill()

    def kill(self) -> None:
        """Last resort: SIGKILL the whole group; then close the output files."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for f in self._files:
            f.close()


def start(command: Command, values: dict[str, str], env: dict[str, str], text: str | None = None) -> Running:
    """Start a command that runs until Ctrl-C (a stream, a server in the foreground)."""
    return Running(substitute(text if text is not None else command_text(command), values), env)


def get(url: str, timeout: float = 5) -> tuple[int, str, dict[str, str]]:
    """GET a URL: status, body and headers (an error status is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def healthz_workers(base: str, tries: int) -> set[str]:
    """The workers that answered some of `tries` GET /healthz through nginx (each a new connection)."""
    seen = set()
    for _ in range(tries):
        with contextlib.suppress(OSError, ValueError):
            status, body, _headers = get(f"{base}/healthz")
            if status == 200:
                seen.add(json.loads(body)["worker"])
    return seen


# Journeys the native and the Docker suites both walk; each test module takes
# the commands from the manual itself (manual_command), so the coverage check
# in tests/test_readme_blocks.py sees which module runs which command.


def publish_and_stream(publish: Command, stream: Command, values: dict[str, str]) -> None:
    """The curl publish prints its answer; the `curl -N` stream then shows the history, message included."""
    env = shell_env()
    check(publish, values, env)
    running = start(stream, values, env)
    try:
        running.expect(expected(stream, values), timeout=30)
    finally:
        running.stop()


def udp_journey(nc: Command, latest: Command, values: dict[str, str], timeout: float = 30) -> None:
    """`nc -u` sends the datagram; the channel's latest message then is that reading, as the README shows."""
    env = shell_env()
    check(nc, values, env)
    out = check_until(latest, values, env, timeout)
    # What "Subscribers of sensors.greenhouse-1 then receive" shows is that reading, ts added.
    [shown] = [
        b for b in blocks((ROOT / "README.md").read_text()) if b.lang == "json" and "greenhouse-1" in b.text
    ]
    data, example = json.loads(out)["latest"]["data"], json.loads(shown.text)
    assert data.keys() == example.keys() and isinstance(data["ts"], float)
    assert {k: v for k, v in data.items() if k != "ts"} == {k: v for k, v in example.items() if k != "ts"}


def simulator_journey(sensor: Command, latest: Command, values: dict[str, str]) -> None:
    """The simulator reports the readings it sent; one sensor's channel then holds its share of them."""
    env = shell_env()
    check(sensor, values, env)
    check_until(latest, values, env)
