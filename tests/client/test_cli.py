"""`python -m app sub|pub` end to end through nginx: output for jq, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.client.helpers import post
from tests.helpers import UNIT, free_port
from tests.journeys import check, shell_env
from tests.readme_blocks import ROOT, manual_command
from tests.stack.conftest import NativeStack

pytestmark = pytest.mark.stack


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout * UNIT,
        env={k: v for k, v in os.environ.items() if k != "PUBLISH_KEY"},
    )


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int, code: str) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().split("\n")
    assert lines[-1].startswith(f"windsock: {code}: "), done.stderr
    if status == 2:
        assert len(lines) == 1, done.stderr


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_sub_prints_envelopes_for_jq_and_exits_0_after_count(
    native_stack: NativeStack, transport: str
) -> None:
    """`sub A B --since 0 --count 3` prints 3 envelopes, one JSON object per line, in order, and exits 0."""
    a, b = fresh("cli.a"), fresh("cli.b")
    ids = [
        post(native_stack.base, a, {"n": 1}),
        post(native_stack.base, a, {"n": 2}),
        post(native_stack.base, b, 3),
    ]
    done = run(
        "sub", a, b, "--url", native_stack.base, "--since", "0", "--count", "3", "--transport", transport
    )
    assert done.returncode == 0, done.stderr
    envelopes = [json.loads(line) for line in done.stdout.strip().split("\n")]
    assert [(e["type"], e["channel"], e["id"]) for e in envelopes if e["channel"] == a] == [
        ("message", a, ids[0]),
        ("message", a, ids[1]),
    ]
    assert sorted(e["id"] for e in envelopes) == sorted(ids)
    assert [e["data"] for e in envelopes if e["channel"] == b] == [3]
    assert "Traceback" not in done.stderr


def test_pub_prints_the_answer_and_sub_since_an_id_resumes_after_it(native_stack: NativeStack) -> None:
    """`pub` prints the server's answer (the id); `sub --since ID` then starts right after that id."""
    a = fresh("cli.pub")
    first = run("pub", a, '{"t": 21.4}', "--url", native_stack.base)
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer["channel"] == a and isinstance(answer["id"], int)
    second = json.loads(run("pub", a, "42", "--url", native_stack.base).stdout)
    done = run("sub", a, "--url", native_stack.base, "--since", str(answer["id"]), "--count", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"type": "message", "channel": a, "id": second["id"], "data": 42}


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("form", ["latest", "cursor"])
def test_sub_since_latest_prints_the_newest_message_then_live(
    native_stack: NativeStack, transport: str, form: str
) -> None:
    """`sub A B --since latest` (or `A=latest,B=latest`): A's newest, nothing for empty B, then live."""
    a, b = fresh("cli.latest"), fresh("cli.empty")
    ids = [post(native_stack.base, a, {"n": n}) for n in range(3)]
    since = "latest" if form == "latest" else f"{a}=latest,{b}=latest"
    args = ["sub", a, b, "--url", native_stack.base, "--since", since, "--count", "2", "--transport"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args, transport],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        assert first == {"type": "message", "channel": a, "id": ids[-1], "data": {"n": 2}}
        line = ""
        while "live" not in line:
            line = proc.stderr.readline()
            assert line, "sub ended before it was live"
        live = post(native_stack.base, b, "live")
        second = json.loads(proc.stdout.readline())
        assert (second["channel"], second["id"], second["data"]) == (b, live, "live")
        assert proc.wait(30 * UNIT) == 0, proc.stderr.read()
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_sub_exits_130_on_ctrl_c(native_stack: NativeStack, transport: str) -> None:
    """Ctrl-C (SIGINT) ends a running `sub` with status 130 and no traceback, after what it printed."""
    a = fresh("cli.int")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "sub", a, "--url", native_stack.base, "--transport", transport],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        deadline = time.monotonic() + 30 * UNIT
        line = ""
        while "live" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stderr.readline()
        sent = post(native_stack.base, a, {"x": 1})
        assert json.loads(proc.stdout.readline())["id"] == sent
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30 * UNIT) == 130
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_pub_with_an_idempotency_key_run_twice_publishes_once(native_stack: NativeStack) -> None:
    """`pub --idempotency-key K` run twice: the second prints the first id with duplicate: true."""
    a = fresh("cli.idem")
    args = ("pub", a, '{"t": 1}', "--url", native_stack.base, "--idempotency-key", "k-1")
    first, second = run(*args), run(*args)
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    answer = json.loads(first.stdout)
    assert "duplicate" not in answer and json.loads(second.stdout) == {**answer, "duplicate": True}
    bad = run("pub", a, "1", "--url", native_stack.base, "--idempotency-key", "two words")
    assert_one_line_error(bad, 2, "bad_idempotency_key")


def test_pub_error_answer_exits_1_with_the_servers_code(native_stack: NativeStack) -> None:
    """A publish the server refuses (413 too_large) exits 1 with one line naming the server's code."""
    big = json.dumps("x" * 70_000)  # MAX_MESSAGE_BYTES is 65536
    done = run("pub", fresh("cli.big"), big, "--url", native_stack.base)
    assert_one_line_error(done, 1, "too_large")
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["sub", "demo", "--url", "ftp://127.0.0.1"], "bad_url"),
        (["sub", "demo", "--url", "127.0.0.1:8888"], "bad_url"),
        (["pub", "demo", "1", "--url", "http://127.0.0.1:99999"], "bad_url"),
        (["sub", "no spaces"], "bad_channel"),
        (["pub", "a/b", "1"], "bad_channel"),
        (["pub", "demo", "{not json"], "bad_json"),
        (["pub", "demo", "NaN"], "bad_json"),
        (["sub", "demo", "--since", "yesterday"], "bad_since"),
        (["sub", "demo", "--since", "demo=newest"], "bad_since"),
        (["sub", "demo", "--count", "0"], "bad_arguments"),
        (["sub", "demo", "--transport", "carrier-pigeon"], "bad_arguments"),
        (["sub"], "bad_arguments"),
        (["pub", "demo"], "bad_arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], code: str) -> None:
    """A bad URL, channel, JSON argument, since or option: exit 2 and one line `windsock: CODE: ...`."""
    assert_one_line_error(run(*args), 2, code)


@pytest.mark.parametrize(
    "args",
    [["sub", "demo"], ["sub", "demo", "--transport", "sse"], ["pub", "demo", "1"]],
    ids=["sub-websocket", "sub-sse", "pub"],
)
def test_unreachable_server_is_a_clear_error(args: list[str]) -> None:
    """Nothing listens at --url: exit 1 with `windsock: unreachable: ... connection refused`, no traceback."""
    done = run(*args, "--url", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert_one_line_error(done, 1, "unreachable")
    assert "connection refused" in done.stderr.strip().split("\n")[-1]


README_PUB = 'python -m app pub notes \'{"text": "hello"}\' --url http://localhost:8080'
README_SUB = "python -m app sub notes --url http://localhost:8080 --since 0 --count 1"


def test_readme_cli_journey(native_stack: NativeStack) -> None:
    """The README's pub and sub commands, run by bash as written (port substituted), print what it shows."""
    values = {"localhost": "127.0.0.1", "8080": str(native_stack.http_port)}
    env = shell_env()
    check(manual_command(README_PUB), values, env)
    check(manual_command(README_SUB), values, env)
