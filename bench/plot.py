"""bench.png: latency and throughput against offered load (the step-up), and CPU per delivered message."""

from __future__ import annotations

from pathlib import Path

from bench.publisher import MESSAGE_BYTES
from bench.results import SATURATION_P99_MS, Result


def plot(results: list[Result], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tp, ax_cpu) = plt.subplots(1, 3, figsize=(16, 5))
    colors = {"worker": "tab:blue", "stack": "tab:orange", "nchan": "tab:green"}
    for target in ("worker", "stack", "nchan"):
        pts = sorted(
            (r for r in results if r.target == target and r.group == "ws-1k-stepup"),
            key=lambda r: r.offered_msgs,
        )
        if not pts:
            continue
        x = [r.offered_msgs / 1000 for r in pts]
        c = colors[target]
        ax_lat.plot(x, [r.p50_ms for r in pts], "o--", color=c, label=f"{target} p50")
        ax_lat.plot(x, [r.p99_ms for r in pts], "o-", color=c, label=f"{target} p99")
        ax_tp.plot(x, [r.delivered_per_s / 1000 for r in pts], "o-", color=c, label=target)
    top = max((r.offered_msgs / 1000 for r in results), default=1)
    ax_tp.plot([0, top], [0, top], ":", color="grey", label="delivered = offered")
    ax_lat.axhline(SATURATION_P99_MS, color="grey", linestyle=":")
    ax_lat.set(xlabel="offered deliveries/s (thousands), 1,000 WebSocket subscribers", ylabel="latency (ms)")
    ax_lat.set_yscale("log")
    if ax_lat.get_legend_handles_labels()[0]:
        ax_lat.legend(fontsize=7)
    ax_lat.set_title("Latency vs offered load")
    ax_tp.set(xlabel="offered deliveries/s (thousands)", ylabel="delivered/s (thousands)")
    ax_tp.legend(fontsize=7)
    ax_tp.set_title("Throughput vs offered load")
    # CPU per delivered message in the fixed-rate phases.
    fixed = [
        (g, p)
        for g, p in dict.fromkeys((r.group, r.phase) for r in results)
        if "step" not in g and g != "ws-deflate"
    ]
    width = 0.27
    for i, target in enumerate(("worker", "stack", "nchan")):
        by = {(r.group, r.phase): r.cpu_us_per_msg for r in results if r.target == target}
        ax_cpu.bar(
            [j + (i - 1) * width for j in range(len(fixed))],
            [by.get(k, 0) for k in fixed],
            width,
            color=colors[target],
            label=target,
        )
    ax_cpu.set_xticks(range(len(fixed)), [f"{g}\n{p}" for g, p in fixed], fontsize=7)
    ax_cpu.set(ylabel="server CPU us per delivered message")
    ax_cpu.legend(fontsize=7)
    ax_cpu.set_title("Server CPU per delivered message")
    fig.suptitle(f"Windsock vs Nchan ({MESSAGE_BYTES}-byte messages) - {machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
