"""The manual's sh blocks as data (no sockets): every command has a journey test; the helpers are right."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.readme_blocks import (
    JOURNEYS,
    NOT_RUN,
    ROOT,
    Block,
    all_commands,
    alternative,
    blocks,
    command_text,
    commands,
    expected_output,
    line_matches,
    manual_command,
    missing_output,
    opens,
    streams,
    substitute,
)


def _block(text: str) -> Block:
    return Block(Path("-"), 1, "sh", text)


def test_every_sh_command_is_run_by_a_journey_test_or_says_why_not() -> None:
    """Each sh command of README.md and docs/*.md is in JOURNEYS or NOT_RUN; each entry is in the manual."""
    in_manual = {command_text(c) for c in all_commands()}
    listed = set(JOURNEYS) | set(NOT_RUN)
    assert sorted(in_manual - listed) == [], "commands no journey test runs: add a test, or say why not"
    assert sorted(listed - in_manual) == [], "entries for commands the manual no longer has"
    assert not set(JOURNEYS) & set(NOT_RUN)


def _calls_manual_command(tree: ast.Module) -> set[str]:
    """The texts a module passes to manual_command: string literals, or module-level string constants."""
    names = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "manual_command"
        ):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in names:
                found.add(names[arg.id])
    return found


@pytest.mark.parametrize("command", sorted(JOURNEYS))
def test_each_journey_test_exists_and_fetches_its_command(command: str) -> None:
    """Every test named for a command exists, and its module takes that very command from the manual."""
    for node_id in JOURNEYS[command]:
        path, _, name = node_id.partition("::")
        tree = ast.parse((ROOT / path).read_text())
        tests = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in tests, f"{node_id} does not exist"
        assert command in _calls_manual_command(tree), f"{path} never calls manual_command({command!r})"


def test_every_command_is_valid_bash() -> None:
    """bash parses every command of the manual's sh blocks (bash -n: nothing is run)."""
    for command in all_commands():
        done = subprocess.run(["bash", "-n", "-c", command.text], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, (command.text, done.stderr)


def test_commands_that_never_end_say_how_to_stop_them() -> None:
    """Every `curl -N` of the manual says `Ctrl-C stops it`, so a reader knows it runs until stopped."""
    for command in all_commands():
        if "curl -N" in command.text:
            assert streams(command), command.text


def test_no_block_shown_as_sh_is_a_listing() -> None:
    """A sh block holds commands: no file-tree listing or table is marked sh."""
    for command in all_commands():
        first = command_text(command).split()[0]
        assert "/" not in first or first.startswith((".", "tests/")), command.text


def test_commands_split_with_their_output_lines() -> None:
    """A sh block splits into commands, each with the `#` lines below it as output; `#` before any is not."""
    block = _block(
        "# a note\nmake run\n# Windsock is up\n\ncurl -N x   # Ctrl-C stops it\n# retry: 2000\n#\n"
    )
    [run, curl] = commands(block)
    assert (run.text, run.output) == ("make run", ("Windsock is up",))
    assert curl.output == ("retry: 2000", "") and streams(curl) and not streams(run)


def test_a_backslash_continues_a_command() -> None:
    """A line ending in a backslash continues the command on the next line."""
    [command] = commands(_block("curl \\\n  -X POST x\n# out"))
    assert command_text(command) == "curl \\ -X POST x" and command.output == ("out",)


def test_command_text_drops_only_a_real_trailing_comment() -> None:
    """The trailing comment goes, but a `#` inside quotes or a word stays."""
    [a, b] = commands(_block("make serve   # or: python -m app\ncurl 'x#y' -d \"#z\" a#b"))
    assert command_text(a) == "make serve" and alternative(a) == "python -m app"
    assert command_text(b) == "curl 'x#y' -d \"#z\" a#b" and alternative(b) is None


def test_alternative_stops_before_the_remark() -> None:
    """`# or: X   (remark)` offers X alone."""
    [command] = commands(_block("docker compose up    # or: docker-compose up   (v2 and v1.29 both work)"))
    assert alternative(command) == "docker-compose up"


def test_open_lines_are_instructions_not_output() -> None:
    """`# open URL` is what to open, not what the command prints."""
    [command] = commands(_block("make serve\n# open http://localhost:8888/\n# listening"))
    assert opens(command) == ["http://localhost:8888/"] and expected_output(command) == ["listening"]


def test_substitute_replaces_whole_hosts_and_ports_only() -> None:
    """Ports and hosts are replaced as whole tokens, never inside a longer number, name or address."""
    values = {"localhost": "127.0.0.1", "8080": "41000", "9999": "42000", "8001": "43000"}
    assert (
        substitute("curl localhost:8080/x ports 8001-8004 nc -u -w0 127.0.0.1 9999 id 180801 99999", values)
        == "curl 127.0.0.1:41000/x ports 43000-8004 nc -u -w0 127.0.0.1 42000 id 180801 99999"
    )


@pytest.mark.parametrize(
    ("expected", "printed", "match"),
    [
        ("retry: 2000", "retry: 2000", True),
        ("retry: 2000", "retry: 3000", False),
        ("id: 1763683200000001", "id: 1796225504470505", True),
        ("id: 1763683200000001", "id: 0", False),
        ("id: 0", "id: 0", True),
        ('{"id": 1763683200000001, "channel": "demo"}', '{"channel": "demo", "id": 1796225504470505}', True),
        (
            '{"id": 1763683200000001, "channel": "demo"}',
            '{"id": 1796225504470505, "channel": "other"}',
            False,
        ),
        ('{"id": 1763683200000001, "channel": "demo"}', '{"id": 1796225504470505}', False),
        ('data: {"data": {"temperature": 21.37}}', 'data: {"data": {"temperature": 19.02}}', True),
        ('data: {"data": {"temperature": 21.37}}', 'data: {"data": {"temperature": "hot"}}', False),
        ('data: {"data": {"n": 20}}', 'data: {"data": {"n": 19}}', False),
        ("sent 100 readings to 127.0.0.1:9 in 2.0 s", "sent 100 readings to 127.0.0.1:9 in 10.3 s", True),
        ("sent 100 readings to 127.0.0.1:9 in 2.0 s", "sent 99 readings to 127.0.0.1:9 in 2.0 s", False),
        ("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", "eyJhbGciOiJIUzI1NiJ9.eyJjaGFubmVscyI6W119.x-y_z", True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", '{"type": "error", "code": "unauthorized"}', False),
    ],
)
def test_line_matches_allows_only_ids_decimals_and_tokens_to_differ(
    expected: str, printed: str, match: bool
) -> None:
    """Output matches the manual's example where only ids, decimals (times, readings) or a JWT differ."""
    assert line_matches(expected, printed) is match


def test_missing_output_wants_the_lines_in_order() -> None:
    """The expected lines must all appear, in their order, with anything else between them."""
    printed = ["retry: 2000", "id: 0", "", ": ping", "id: 1763683200000001", "data: x"]
    assert missing_output(["retry: 2000", "", "data: x"], printed) == []
    assert missing_output(["data: x", "retry: 2000"], printed) == ["retry: 2000"]


def test_manual_command_finds_exactly_one(tmp_path: Path) -> None:
    """manual_command returns the one command with that text and refuses a missing or repeated one."""
    page = tmp_path / "page.md"
    page.write_text("```sh\nmake run\nmake serve   # x\n```\n\n```sh\nmake serve\n```\n")
    assert manual_command("make run", [page]).text == "make run"
    with pytest.raises(AssertionError):
        manual_command("make serve", [page])
    with pytest.raises(AssertionError):
        manual_command("make bench", [page])


def test_indented_fences_inside_list_items_are_blocks() -> None:
    """A fenced block indented under a list item is found, its indentation removed."""
    [block] = blocks('- item:\n\n  ```json\n  {"a": 1}\n  ```\n')
    assert block.lang == "json" and block.text == '{"a": 1}'
