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
