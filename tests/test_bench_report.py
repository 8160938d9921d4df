"""The bench's pure parts, without servers or sockets: its tables, percentiles, targets and module sizes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.goals import GOALS, goal_lines
from bench.loadgen.stats import bucket, bucket_floor_us
from bench.results import Result, percentile, saturation
from bench.table import deflate_table, table

BENCH = Path(__file__).resolve().parent.parent / "bench"


def result(target: str, group: str = "ws-1k", phase: str = "20k", **figures: Any) -> Result:
    """A Result as one phase would record it; ``figures`` override the plain defaults."""
    values: dict[str, Any] = {
        "target": target,
        "group": group,
        "phase": phase,
        "transport": "ws",
        "subscribers": 1000,
        "connected": 1000,
        "slow": 0,
        "offered_msgs": 20_000.0,
        "publish_rate": 20.0,
        "published": 100,
        "publish_failed": 0,
        "delivered": 100_000,
        "delivered_per_s": 20_000.0,
        "loss": 0.0,
        "p50_ms": 5.0,
        "p90_ms": 9.0,
        "p99_ms": 15.0,
        "max_ms": 30.0,
        "cpu_us_per_msg": 10.0,
        "cpu_breakdown_us": {"worker": 10.0},
        "server_cpu_percent": 20.0,
        "server_wait_percent": 1.0,
        "loadgen_wait_percent": 1.0,
        "other_load_percent": 3.0,
        "switches_per_msg": {"voluntary": 0.1, "involuntary": 0.0},
        "loadgen_cpu_percent": 40.0,
        "loadgen_limited": False,
        "seconds": 5.0,
    }
    return Result(**{**values, **figures})


def text_rows(text: str) -> list[list[str]]:
    """The cells of each row of the text table (under its heading and rule)."""
    return [line.replace(" LG-LIMITED", "").split() for line in text.splitlines()[2:]]


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of each row of a markdown table (under its heading and separator)."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:]]


def test_text_and_markdown_tables_hold_the_same_rows() -> None:
    """table() renders one row per Result as text and markdown, with the same figures and ratios to Nchan."""
    ours = result("worker", cpu_us_per_msg=12.0, p99_ms=30.0, loadgen_limited=True)
    nchan = result("nchan", cpu_us_per_msg=8.0, p99_ms=15.0)
    text, md = table([ours, nchan]), table([ours, nchan], markdown=True)
    assert text.splitlines()[0].split()[:3] == ["group", "phase", "target"]
    assert set(text.splitlines()[1]) == {"-"} and len(text.splitlines()[1]) == len(text.splitlines()[0])
    assert md.splitlines()[1] == "|" + "---|" * 12
    rows_t, rows_m = text_rows(text), markdown_rows(md)
    assert (
        [r[:3] for r in rows_t]
        == [r[:3] for r in rows_m]
        == [
            ["ws-1k", "20k", "worker"],
            ["ws-1k", "20k", "nchan"],
        ]
    )
    assert "1.50x" in rows_t[0] and "1.50x" in rows_m[0]  # CPU, 12 vs 8 us
    assert "2.00x" in rows_t[0] and "2.00x" in rows_m[0]  # p99, 30 vs 15 ms
    assert rows_m[0][3] == "20,000" and "20000" in rows_t[0]
    assert text.splitlines()[2].endswith(" LG-LIMITED") and "LG-LIMITED" not in md
    assert "x" not in "".join(rows_m[1][8:10])  # Nchan's own row has no ratios


def test_deflate_table_compares_each_level_with_level_0_in_both_forms() -> None:
    """deflate_table() sets each level against level 0 in both forms; it is empty without ws-deflate."""
    group = {"group": "ws-deflate", "phase": "10k"}
    plain = result("worker-z0", **group, deflate_level=0, wire_bytes_per_msg=200.0)
    level_1 = result("worker-z1", **group, deflate_level=1, wire_bytes_per_msg=150.0, cpu_us_per_msg=11.0)
    results = [plain, level_1, result("worker")]
    text, md = deflate_table(results), deflate_table(results, markdown=True)
    assert [r[0] for r in markdown_rows(md)] == ["0", "1"]
    assert [r[0] for r in text_rows(text)[:2]] == ["0", "1"]
    assert markdown_rows(md)[1][-1] == "0.75x" and text_rows(text)[1][-1] == "0.75x"
    assert markdown_rows(md)[0][-1] == ""  # level 0 is not compared with itself
    assert text.splitlines()[-1].startswith("ws-deflate:") and "ws-deflate:" not in md
    assert deflate_table([result("worker")]) == ""


def test_percentile_reads_bucket_edges_of_a_merged_histogram() -> None:
    """percentile() returns the lower edge, in ms, of the bucket holding the q-th delivery; NaN for none."""
    hist = {bucket(1_000): 50, bucket(5_000): 40, bucket(50_000): 10}
    assert percentile(hist, 100, 0.5) == 1.0
    assert percentile(hist, 100, 0.9) == 5.0
    assert percentile(hist, 100, 0.99) == bucket_floor_us(bucket(50_000)) / 1000 == 50.0
    assert math.isnan(percentile({}, 0, 0.5))


def test_saturation_is_the_best_passing_step() -> None:
    """saturation() takes, per target, the most delivered/s among step-up phases that passed."""
    steps = [
        result("worker", "ws-1k-stepup", "step-20k", delivered_per_s=20_000.0),
        result("worker", "ws-1k-stepup", "step-40k", delivered_per_s=39_000.0),
        result("worker", "ws-1k-stepup", "step-60k", delivered_per_s=50_000.0, ok=False),
    ]
    assert saturation(steps) == {"worker": 39_000.0}


def test_targets_quote_their_thresholds_and_judge_by_them() -> None:
    """goal_lines() numbers the targets of the GOALS table, quotes their thresholds, says MET or NOT MET."""
    limit = dict(GOALS[0].limits)
    worker = result("worker", cpu_us_per_msg=limit["us_per_msg"] - 1, p99_ms=limit["p99_ms"] - 1)
    lines = goal_lines([worker])
    assert lines[0] == "targets:"
    assert lines[1].startswith("  1. one worker") and lines[1].endswith(": MET")
    assert f"(<= {limit['us_per_msg']:g})" in lines[1]
    slow = result("worker", cpu_us_per_msg=limit["us_per_msg"] + 1)
    assert goal_lines([slow])[1].endswith(": NOT MET")
    assert goal_lines([]) == ["targets:"]  # nothing measured, nothing judged
    assert "issue" not in " ".join(goal_lines([worker]))


def test_every_bench_module_is_at_most_300_lines() -> None:
    """No file in bench/ (the load generator's package included) is over 300 lines."""
    sizes = {str(p.relative_to(BENCH)): len(p.read_text().splitlines()) for p in BENCH.rglob("*.py")}
    assert "loadgen/__main__.py" in sizes
    assert {name: n for name, n in sizes.items() if n > 300} == {}
