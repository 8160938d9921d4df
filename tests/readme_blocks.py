"""The manual as data: fenced blocks, commands, links and anchors of README.md and docs/*.md (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manual_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page under docs/, in a stable order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced code block: its info string, its text, and where it starts."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")


def blocks(text: str, path: Path = Path("-")) -> list[Block]:
    """Every fenced block of a markdown text; indented fences (inside list items) count too."""
    found: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        found.append(Block(path, i + 1, lang, "\n".join(body)))
        i = j + 1
    return found


def sh_blocks(paths: list[Path] | None = None) -> list[Block]:
    """The ```sh blocks of the manual: the commands a reader is meant to run."""
    result = []
    for path in paths if paths is not None else manual_files():
        result += [b for b in blocks(path.read_text(), path) if b.lang == "sh"]
    return result


@dataclass(frozen=True)
class Command:
    """One command line of a sh block, and the comment lines after it (what it prints)."""

    block: Block
    text: str
    output: tuple[str, ...]


def commands(block: Block) -> list[Command]:
    """Split a sh block into commands: every line that is not a comment, with the `# ` lines below it.

    A trailing `# ...` comment on a command line is part of the text bash runs
    (bash ignores it); a line ending in a backslash continues on the next.
    """
    result: list[Command] = []
    current: list[str] = []
    output: list[str] = []

    def flush() -> None:
        if current:
            result.append(Command(block, "\n".join(current), tuple(output)))
        current.clear()
        output.clear()

    lines = block.text.split("\n")
    continuing = False
    for line in lines:
        stripped = line.strip()
        if continuing:
            current.append(line)
            continuing = stripped.endswith("\\")
            continue
        if not stripped:
            continue
        if stripped.startswith("#"):
            if current:
                output.append(stripped[1:].strip())
            continue
        flush()
        current.append(line)
        continuing = stripped.endswith("\\")
    flush()
    return result


def all_commands(paths: list[Path] | None = None) -> list[Command]:
    """Every command of every sh block of the manual."""
    return [c for b in sh_blocks(paths) for c in commands(b)]


def _strip_code(text: str) -> str:
    """The text without fenced blocks and inline code spans, where brackets are not links."""
    lines = text.split("\n")
    for block in blocks(text):
        end = block.line + block.text.count("\n") + 1
        for k in range(block.line - 1, min(end + 1, len(lines))):
            lines[k] = ""
    return re.sub(r"`[^`\n]*`", "", "\n".join(lines))


_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(text: str) -> list[str]:
    """Targets of the inline links and images of a markdown text, code excluded."""
    return _LINK.findall(_strip_code(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    result = set()
    for line in _strip_code(text).split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """The relative links and #anchors in one manual file that do not resolve, each with its reason."""
    problems = []
    for target in links(path.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: {file_part} does not exist")
            continue
        if root.resolve() not in dest.parents and dest != root.resolve():
            problems.append(f"{target}: points outside the repository")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest.read_text()):
                problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(root.resolve())}")
    return problems


# Commands: their text without the trailing comment, the alternative a comment
# offers ("# or: ..."), what they print, and what the manual asks to open.


def _comment_start(line: str) -> int | None:
    """Index of the `#` that begins a trailing shell comment, outside quotes; None if there is none."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return i
    return None


def command_text(command: Command) -> str:
    """The command as bash sees it: trailing comment removed, runs of spaces joined."""
    lines = []
    for line in command.text.split("\n"):
        cut = _comment_start(line)
        lines.append(line if cut is None else line[:cut])
    return " ".join(" ".join(lines).split())


def comment(command: Command) -> str:
    """The trailing comment of a command's first line, without the `#`."""
    line = command.text.split("\n")[0]
    cut = _comment_start(line)
    return "" if cut is None else line[cut + 1 :].strip()


def alternative(command: Command) -> str | None:
    """The other form a `# or: ...` comment gives, up to a parenthesis or a double space."""
    m = re.match(r"or:\s*(.*?)(?:\s{2,}|\s*\(|$)", comment(command))
    return m.group(1).strip() if m else None


def streams(command: Command) -> bool:
    """A command the manual says runs until Ctrl-C (a stream, or a server in the foreground)."""
    return "Ctrl-C stops it" in comment(command) or any("Ctrl-C stops it" in o for o in command.output)


def expected_output(command: Command) -> list[str]:
    """The lines the manual says the command prints (its `# ` lines, less `open URL` instructions)."""
    return [line for line in command.output if not line.startswith("open ")]


def expected(command: Command, values: dict[str, str]) -> list[str]:
    """`expected_output` with the README's hosts and ports replaced by the test's."""
    return [substitute(line, values) for line in expected_output(command)]


def opens(command: Command) -> list[str]:
    """The URLs the manual says to open once the command runs."""
    return [line.split(None, 1)[1] for line in command.output if line.startswith("open ")]


def manual_command(text: str, paths: list[Path] | None = None) -> Command:
    """The one command of the manual whose `command_text` is exactly `text`."""
    found = [c for c in all_commands(paths) if command_text(c) == text]
    assert len(found) == 1, f"{text!r} is in the manual's sh blocks {len(found)} times, not once"
    return found[0]


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace hosts and ports: each key as a whole token (not inside a longer number or name)."""
    for key in sorted(values, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.]){re.escape(key)}(?![\w])", lambda _m, k=key: values[k], text)
    return text


# What the manual shows as output, matched against what a command printed.
# Ids (12 digits or more), decimals (times, readings) and JWTs vary from run
# to run; everything else must be exactly as shown.

_VARIES = re.compile(
    r"(?P<jwt>eyJ[\w-]*\.[\w-]*\.[\w-]*)|(?<![\d.])(?P<id>\d{12,})(?![\d.])|(?<![\d.])(?P<dec>\d+\.\d+)(?![\d.])"
)
_PATTERNS = {"jwt": r"eyJ[\w-]*\.[\w-]*\.[\w-]*", "id": r"\d{12,}", "dec": r"\d+(?:\.\d+)?"}


def _pattern(expected: str) -> re.Pattern[str]:
    parts, last = [], 0
    for m in _VARIES.finditer(expected):
        parts += [re.escape(expected[last : m.start()]), _PATTERNS[m.lastgroup or ""]]
        last = m.end()
    parts.append(re.escape(expected[last:]))
    return re.compile("".join(parts))


def json_matches(expected: object, actual: object) -> bool:
    """Same structure and values, where an id (a 12+ digit integer) or a decimal may differ."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(json_matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(json_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return expected == actual
    if isinstance(expected, float):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool)
    if isinstance(expected, int) and expected >= 10**12:
        return isinstance(actual, int) and not isinstance(actual, bool) and actual >= 10**12
    return expected == actual


def line_matches(expected: str, actual: str) -> bool:
    """Whether a printed line is the one the manual shows: as JSON where it is JSON, else by pattern."""
    import json

    expected, actual = expected.rstrip(), actual.rstrip()
    brace = next((i for i, ch in enumerate(expected) if ch in "{["), None)
    if brace is not None and actual[:brace] == expected[:brace]:
        try:
            return json_matches(json.loads(expected[brace:]), json.loads(actual[brace:]))
        except ValueError:
            pass
    return _pattern(expected).fullmatch(actual) is not None


def missing_output(expected: list[str], printed: list[str]) -> list[str]:
    """The expected lines not found in order in what was printed (empty when all were)."""
    position = 0
    for n, line in enumerate(expected):
        while position < len(printed) and not line_matches(line, printed[position]):
            position += 1
        if position == len(printed):
            return expected[n:]
        position += 1
    return []


# Which test runs each command of the manual's sh blocks. tests/test_readme_blocks.py
# fails when a sh block holds a command that is in neither table, so an
# untested command cannot creep into the manual.

_NATIVE = "tests/stack/test_readme_journeys.py::"
_DOCKER = "tests/docker/test_readme_journeys.py::"
_CLIENT = "tests/client/test_cli.py::test_readme_cli_journey"

IDEMPOTENT_RETRY = (
    "for try in 1 2; do curl -s -X POST localhost:8080/api/channels/orders "
    "-H 'Idempotency-Key: order-1234' -d '{\"total\": 12.5}'; echo; done"
)

JOURNEYS: dict[str, tuple[str, ...]] = {
    "docker compose up": (_DOCKER + "test_docker_compose_up_serves_the_page",),
    "make run": (
        _NATIVE + "test_make_run_starts_the_stack_it_describes",
        _NATIVE + "test_ctrl_c_stops_make_run_and_leaves_nothing",
    ),
    "python deploy/stack.py --help": (_NATIVE + "test_stack_help_lists_every_setting_the_readme_names",),
    "make serve": (_NATIVE + "test_make_serve_serves_the_page_and_the_curl_journey",),
    'curl -X POST localhost:8888/api/channels/demo -d \'{"hello": "world"}\'': (
        _NATIVE + "test_make_serve_serves_the_page_and_the_curl_journey",
        _NATIVE + "test_curl_publish_and_stream_through_make_run",
        _DOCKER + "test_curl_publish_and_stream_through_nginx",
    ),
    "curl -N 'localhost:8888/events?channel=demo&last_event_id=0'": (
        _NATIVE + "test_make_serve_serves_the_page_and_the_curl_journey",
        _NATIVE + "test_curl_publish_and_stream_through_make_run",
        _DOCKER + "test_curl_publish_and_stream_through_nginx",
    ),
    'echo -n \'{"sensor": "greenhouse-1", "temperature": 21.4, "humidity": 0.56}\' '
    "| nc -u -w0 127.0.0.1 9999": (
        _NATIVE + "test_nc_datagram_becomes_the_channels_latest",
        _DOCKER + "test_nc_datagram_to_the_published_udp_port",
    ),
    "curl localhost:8080/api/channels/sensors.greenhouse-1": (
        _NATIVE + "test_nc_datagram_becomes_the_channels_latest",
        _DOCKER + "test_nc_datagram_to_the_published_udp_port",
    ),
    "python -m app.tools.sensor --host 127.0.0.1 --port 9999 --sensors 5 --rate 10 --count 100": (
        _NATIVE + "test_sensor_simulator_sends_its_count",
        _DOCKER + "test_sensor_simulator_against_the_published_udp_port",
    ),
    "curl localhost:8080/api/channels/sensors.sim-1": (
        _NATIVE + "test_sensor_simulator_sends_its_count",
        _DOCKER + "test_sensor_simulator_against_the_published_udp_port",
    ),
    "SUBSCRIBE_SECRET=change-me-to-32-or-more-random-bytes make serve": (
        _NATIVE + "test_subscribe_token_journey",
    ),
    "curl 'localhost:8888/events?channel=sensors.demo-1'": (_NATIVE + "test_subscribe_token_journey",),
    "python -m app.tools.token --secret change-me-to-32-or-more-random-bytes "
    "--channel 'sensors.*' --ttl 3600": (_NATIVE + "test_subscribe_token_journey",),
    'curl -N "localhost:8888/events?channel=sensors.demo-1&token=$(python -m app.tools.token '
    "--secret change-me-to-32-or-more-random-bytes --channel 'sensors.*')\"": (
        _NATIVE + "test_subscribe_token_journey",
    ),
    IDEMPOTENT_RETRY: (_NATIVE + "test_a_retry_under_the_same_key_publishes_once",),
    "WORKERS=8 make run": (_NATIVE + "test_workers_8_make_run_runs_8_workers",),
    "docker compose up -d --scale app=2": (_DOCKER + "test_scale_up_then_make_scale",),
    "make scale N=3": (_DOCKER + "test_scale_up_then_make_scale",),
    'python -m app pub notes \'{"text": "hello"}\' --url http://localhost:8080': (_CLIENT,),
    "python -m app sub notes --url http://localhost:8080 --since 0 --count 1": (_CLIENT,),
}

# Commands of the manual that no test runs, each with the reason.
NOT_RUN: dict[str, str] = {
    "make test": "the suite itself, which these tests are part of; .ci/run runs it",
    "apt-get install nginx redis-server libnginx-mod-nchan": (
        "installs system packages as root from the network; .ci/run installs what the suite needs"
    ),
    "make bench": "the benchmark: 4 to 6 minutes of load on every core, and it needs libnginx-mod-nchan",
    'make bench BENCH_ARGS="--groups ws-1k --profile"': "the benchmark, one group under py-spy: as above",
}
