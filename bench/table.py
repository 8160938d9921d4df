"""The result tables, each defined once as columns and rendered as text (table.txt) or markdown (table.md).

A column has one heading and one cell function; where the two renderings
differ (the text table is wider, the markdown one is for README.md), the
column says so with its own markdown heading or cell, or leaves markdown
out. Text columns with a width are padded to it, as a format spec would
(a longer cell is not cut); the others to their widest cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import Result

# A row is a Result and the Result its ratios are taken against (None: no ratios).
Row = tuple[Result, Result | None]
Cell = Callable[[Result, Result | None], str]


@dataclass(frozen=True)
class Column:
    """One column of a table: its heading, its cell, and how each rendering shows it."""

    head: str
    cell: Cell
    width: int = 0  # text: pad to this (0: to the widest cell or heading)
    align: str = ">"  # text: "<" left, ">" right
    md_head: str = ""  # markdown heading, if not ``head``
    md_cell: Cell | None = None  # markdown cell, if not ``cell``
    markdown: bool = True  # in the markdown table at all


@dataclass(frozen=True)
class Table:
    """A table: its columns, the rows it takes from the Results, and what only its text form has."""

    columns: tuple[Column, ...]
    rows: Callable[[list[Result]], list[Row]]
    sep: str = " "  # between text columns
    flag: Callable[[Result], str] = lambda r: ""  # text: appended to a row
    note: str = ""  # text: a line under the table


def render(table: Table, results: list[Result], markdown: bool = False) -> str:
    """``table`` over ``results``: aligned text with a rule under the headings, or a markdown table."""
    rows = table.rows(results)
    if markdown:
        cols = [c for c in table.columns if c.markdown]
        lines = ["| " + " | ".join(c.md_head or c.head for c in cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join((c.md_cell or c.cell)(r, ref) for c in cols) + " |" for r, ref in rows]
        return "\n".join(lines)
    cells = [[c.cell(r, ref) for c in table.columns] for r, ref in rows]
    widths = [
        c.width or max([len(c.head), *(len(row[i]) for row in cells)]) for i, c in enumerate(table.columns)
    ]

    def line(values: list[str]) -> str:
        return table.sep.join(
            v.ljust(w) if c.align == "<" else v.rjust(w)
            for v, w, c in zip(values, widths, table.columns, strict=True)
        )

    head = line([c.head for c in table.columns])
    lines = [head, "-" * len(head)]
    lines += [line(row) + table.flag(r) for row, (r, _) in zip(cells, rows, strict=True)]
    if table.note:
        lines.append(table.note)
    return "\n".join(lines)


def fmt(value: float, digits: int = 1) -> str:
    if value != value:
        return "-"
    return f"{value:.{digits}f}"


def ratio(ours: float, theirs: float) -> str:
    if not theirs or theirs != theirs or ours != ours:
        return "-"
    return f"{ours / theirs:.2f}x"


def vs(value: Callable[[Result], float]) -> Cell:
    """A cell with ``value`` of the row as a ratio to its reference's; blank without one."""
    return lambda r, ref: ratio(value(r), value(ref)) if ref else ""


def kib_per_conn(r: Result, component: str | None = None) -> float:
    """PSS growth per connection of the workers (nginx's for Nchan); only a fresh server's counts."""
    kib = r.mem.get("per_conn_pss_kib", {}) if r.mem.get("fresh") else {}
    if component:
        return float(kib.get(component, float("nan")))
    return float(kib.get("worker", kib.get("nginx", float("nan"))))


def against_nchan(results: list[Result]) -> list[Row]:
    """Every Result, with Nchan's in the same group and phase for ours (none for Nchan's own)."""
    nchan = {(r.group, r.phase): r for r in results if r.target == "nchan"}
    return [(r, nchan.get((r.group, r.phase)) if r.target != "nchan" else None) for r in results]


def against_level_0(results: list[Result]) -> list[Row]:
    """The ws-deflate group, each level's Result with level 0's in the same phase."""
    rows = [r for r in results if r.group == "ws-deflate"]
    plain = {r.phase: r for r in rows if r.deflate_level == 0}
    return [(r, ref if (ref := plain.get(r.phase)) is not r else None) for r in rows]


# Every phase, ours next to Nchan's: table.txt's main table, and table.md's for README.md.
RESULTS = Table(
    columns=(
        Column("group", lambda r, ref: r.group, 13, "<"),
        Column("phase", lambda r, ref: r.phase, 10, "<"),
        Column("target", lambda r, ref: r.target, 7, "<", md_head="server"),
        Column("subs", lambda r, ref: str(r.connected), 6, markdown=False),
        Column("offered/s", lambda r, ref: f"{r.offered_msgs:.0f}", 9, markdown=False),
        Column(
            "deliv/s",
            lambda r, ref: f"{r.delivered_per_s:.0f}",
            9,
            md_head="delivered/s",
            md_cell=lambda r, ref: f"{r.delivered_per_s:,.0f}",
        ),
        Column("loss", lambda r, ref: f"{r.loss:.1%}", 6),
        Column("p50", lambda r, ref: fmt(r.p50_ms), 6, md_head="p50 ms"),
        Column("p90", lambda r, ref: fmt(r.p90_ms), 6, markdown=False),
        Column("p99", lambda r, ref: fmt(r.p99_ms), 7, md_head="p99 ms"),
        Column("max", lambda r, ref: fmt(r.max_ms), 7, markdown=False),
        Column(
            "us/msg",
            lambda r, ref: fmt(r.cpu_us_per_msg, 2),
            7,
            md_head="CPU us/msg",
            md_cell=lambda r, ref: fmt(r.cpu_us_per_msg),
        ),
        Column("xNchan", vs(lambda r: r.cpu_us_per_msg), 7, md_head="CPU x Nchan"),
        Column("p99 x", vs(lambda r: r.p99_ms), 6, md_head="p99 x Nchan"),
        Column("KiB/conn", lambda r, ref: fmt(kib_per_conn(r)), 8),
        Column("conn/s", lambda r, ref: f"{r.connect_per_s:.0f}", 6, markdown=False),
        Column("lg%", lambda r, ref: f"{r.loadgen_cpu_percent:.0f}", 4, markdown=False),
        Column(
            "oth%",
            lambda r, ref: f"{r.other_load_percent:.0f}",
            4,
            md_head="other load",
            md_cell=lambda r, ref: f"{r.other_load_percent:.0f}%",
        ),
    ),
    rows=against_nchan,
    flag=lambda r: " LG-LIMITED" if r.loadgen_limited else "",
)

# The ws-deflate group: each WS_DEFLATE_LEVEL next to level 0 (CPU, memory, bytes on the wire).
DEFLATE = Table(
    columns=(
        Column("WS_DEFLATE_LEVEL", lambda r, ref: str(r.deflate_level)),
        Column("phase", lambda r, ref: r.phase),
        Column("deflated subs", lambda r, ref: f"{r.deflated_clients}/{r.connected}"),
        Column("delivered/s", lambda r, ref: f"{r.delivered_per_s:,.0f}"),
        Column("loss", lambda r, ref: f"{r.loss:.1%}"),
        Column("p50 ms", lambda r, ref: fmt(r.p50_ms)),
        Column("p99 ms", lambda r, ref: fmt(r.p99_ms)),
        Column("CPU us/delivery", lambda r, ref: fmt(r.cpu_us_per_msg, 2)),
        Column("CPU x level 0", vs(lambda r: r.cpu_us_per_msg)),
        Column("KiB/conn", lambda r, ref: fmt(kib_per_conn(r, "worker"))),
        Column("wire B/msg", lambda r, ref: fmt(r.wire_bytes_per_msg)),
        Column("wire x level 0", vs(lambda r: r.wire_bytes_per_msg)),
    ),
    rows=against_level_0,
    sep="  ",
    note=(
        "ws-deflate: 1,000 WebSocket subscribers offering permessage-deflate as Chromium does, "
        "sensor JSON bodies; wire B/msg is what the clients read per message (frame header included, "
        "TCP/IP not); KiB/conn is the worker's PSS growth per connection on a fresh worker"
    ),
)


def table(results: list[Result], markdown: bool = False) -> str:
    """Every phase's figures, with ratios to Nchan's in the same group and phase."""
    return render(RESULTS, results, markdown)


def deflate_table(results: list[Result], markdown: bool = False) -> str:
    """The ws-deflate group against level 0; empty when that group did not run."""
    return render(DEFLATE, results, markdown) if against_level_0(results) else ""
