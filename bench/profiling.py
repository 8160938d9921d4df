"""The headline of a py-spy profile of the single worker (--profile): where its samples went."""

from __future__ import annotations

from pathlib import Path


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
