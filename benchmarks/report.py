"""Benchmark results as a Markdown report, a JSON file and a PNG bar chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bench import BenchResult, Cell

DASH = "—"
REASON_CHARS = 90  # status cells stay one readable line; the JSON keeps the full reason
DETAIL_CHARS = 240  # a backend may list every kernel; the notes show the start, the JSON all


def fmt_ms(v: float | None) -> str:
    """Latency with about three significant digits, never in exponent form."""
    if v is None:
        return DASH
    digits = 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 1 else 3
    return f"{v:.{digits}f}"


def _num(v: float | None, spec: str, suffix: str = "") -> str:
    return DASH if v is None or not math.isfinite(v) else f"{v:{spec}}{suffix}"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(cell: Cell) -> str:
    if cell.status == "ok":
        return "ok"
    reason = _clip(cell.reason, REASON_CHARS).replace("|", "\\|")
    return f"**WRONG**: {reason}" if cell.status == "WRONG" else f"{cell.status}: {reason}"


def _summary_cell(cell: Cell) -> str:
    if cell.status == "ok":
        speed = f" ({cell.speedup:.2f}×)" if cell.speedup is not None else ""
        return f"{fmt_ms(cell.median_ms)}{speed}"
    return "**WRONG**" if cell.status == "WRONG" else cell.status


def header(result: BenchResult) -> list[str]:
    """The run's conditions, machine peaks and versions."""
    c, p = result.config, result.peaks
    lines = [
        "# graphopt bench",
        "",
        (f"{len(result.models)} model(s) × {len(result.systems)} system(s) · batch {c.batch} · "
         f"{c.threads} thread(s) for every system · median of {c.runs} timed runs, interleaved in "
         f"rounds, after {c.warmup} warm-up · outputs checked against the reference "
         f"(rtol {c.rtol:g}, atol {c.atol:g})"),
        "",
        f"- CPU: {p.cpu}",
        f"- {p.to_text().splitlines()[0]}",
        f"- {p.to_text().splitlines()[1]}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in result.versions.items()),
        f"- graphopt backend: {c.backend}",
    ]
    lines += [f"- {name}: {text}" for name, text in result.system_summaries.items()]
    load = result.load_average
    if load:
        # The end value includes this run's own threads; only the start one measures the others.
        busy = load.get("start", 0.0) > 0.5 * c.threads
        lines.append(f"- 1-minute load average {load.get('start', 0):.1f} before the run "
                     f"({load.get('end', 0):.1f} at its end, this run included)"
                     + (" — **other processes were using the cores: timings are noisy**"
                        if busy else ""))
    if c.runs < 20:
        lines.append(f"- **{c.runs} runs: fewer than the 20 that speed claims need (DESIGN §7)**")
    return lines


def summary_table(result: BenchResult) -> list[str]:
    """Models by systems: median ms and speedup vs torch eager, plus the geomean row."""
    lines = ["| model | GFLOP | " + " | ".join(result.systems) + " |",
             "|---|---:|" + "---:|" * len(result.systems)]
    for m in result.models:
        cells = [_summary_cell(result.cell(m.name, s)) for s in result.systems]
        gflop = _num(m.flops / 1e9 if m.flops is not None else None, ".2f")
        lines.append(f"| {m.name} | {gflop} | " + " | ".join(cells) + " |")
    if result.geomean_models:
        cells = []
        for s in result.systems:
            g = result.geomean[s]
            speed = f" ({g['speedup']:.2f}×)" if g.get("speedup") is not None else ""
            cells.append(f"**{fmt_ms(g['median_ms'])}{speed}**")
        label = f"**geomean** ({len(result.geomean_models)})"
        lines.append(f"| {label} | | " + " | ".join(cells) + " |")
    return lines


def detail_table(result: BenchResult) -> list[str]:
    """One row per model and system with every measured number."""
    lines = [("| model | system | median ms | p10–p90 ms | vs eager | GFLOP/s | % GEMM peak | "
              "prepare s | max rel err | status |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in result.models:
        for i, s in enumerate(result.systems):
            c = result.cell(m.name, s)
            spread = f"{fmt_ms(c.p10_ms)}–{fmt_ms(c.p90_ms)}" if c.p10_ms is not None else DASH
            lines.append(
                f"| {m.name if i == 0 else ''} | {s} | {fmt_ms(c.median_ms)} | {spread} | "
                f"{_num(c.speedup, '.2f', '×')} | {_num(c.gflops, '.1f')} | "
                f"{_num(c.peak_fraction * 100 if c.peak_fraction is not None else None, '.1f')} | "
                f"{_num(c.prepare_s, '.1f')} | {_num(c.max_rel_err, '.1e')} | {_status(c)} |")
    for i, s in enumerate(result.systems):
        g = result.geomean.get(s, {})
        if not result.geomean_models:
            break
        label = f"**geomean** ({len(result.geomean_models)} model(s))" if i == 0 else ""
        lines.append(f"| {label} | {s} | {fmt_ms(g.get('median_ms'))} | | "
                     f"{_num(g.get('speedup'), '.2f', '×')} | {_num(g.get('gflops'), '.1f')} "
                     "| | | | |")
    return lines


def notes(result: BenchResult) -> list[str]:
    """Per-model facts (reference, FLOPs source) and how each system was built."""
    lines = []
    left_out = [s for s in result.systems if s not in result.geomean_systems]
    if result.geomean_models:
        lines.append(f"- geomean over the models on which every system succeeded: "
                     f"{', '.join(result.geomean_models)}")
    else:
        lines.append("- no geomean: no model on which every system succeeded")
    if left_out:
        lines.append(f"- left out of the geomean (skipped on some model): {', '.join(left_out)}")
    if "torch-eager" not in result.systems:
        lines.append("- no speedups: torch-eager, the baseline, was not among the systems")
    for m in result.models:
        lines.append(f"- {m.name}: inputs {', '.join(m.inputs)}; reference {m.reference}; "
                     + "; ".join(m.notes))
        for s in result.systems:
            c = result.cell(m.name, s)
            if c.detail:
                lines.append(f"  - {s}: {_clip(c.detail, DETAIL_CHARS)}")
    return lines


def to_markdown(result: BenchResult) -> str:
    """The whole report: conditions and peaks, summary table, detail table, notes."""
    return "\n".join([*header(result), "", *summary_table(result), "", *detail_table(result), "",
                      *notes(result)]) + "\n"


def write_json(result: BenchResult, path: str | Path) -> Path:
    """Write ``result.to_json()`` to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(result.to_json(), indent=1, default=str) + "\n")
    return path


def write_plot(result: BenchResult, path: str | Path) -> Path:
    """A grouped bar chart per model (and geomean): speedup vs torch eager, else median latency.

    Cells that are WRONG, failed or were skipped get no bar but a mark ("WRONG" or "×"), so a
    missing bar is never mistaken for a slow system.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on benchmark machines
    import matplotlib.pyplot as plt

    use_speedup = any(c.speedup is not None for c in result.cells)
    groups = [m.name for m in result.models] + (["geomean"] if result.geomean_models else [])
    n = max(len(result.systems), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) * max(1.0, n / 3)), 4.5))
    for j, s in enumerate(result.systems):
        xs, ys, marks = [], [], []
        for i, g in enumerate(groups):
            x = i - 0.4 + width * (j + 0.5)
            if g == "geomean":
                value = result.geomean[s].get("speedup" if use_speedup else "median_ms")
                status = "ok" if value is not None else "n/a"
            else:
                c = result.cell(g, s)
                value, status = (c.speedup if use_speedup else c.median_ms), c.status
            if status == "ok" and value is not None:
                xs.append(x)
                ys.append(value)
            else:
                marks.append((x, "WRONG" if status == "WRONG" else "×"))
        color = f"C{j % 10}"  # fixed per system: a system with no bars must not shift the others
        ax.bar(xs, ys, width, label=s, color=color)
        for x, text in marks:
            ax.annotate(text, (x, 0.01), xycoords=("data", "axes fraction"), ha="center",
                        va="bottom", fontsize=7, rotation=90 if len(text) > 1 else 0, color=color)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    if use_speedup:
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("speedup vs torch eager (×, log)")
    else:
        ax.set_ylabel("median latency (ms, log)")
    c = result.config
    ax.set_title(f"{result.peaks.cpu}, {c.threads} threads, batch {c.batch}, "
                 f"median of {c.runs} runs", fontsize=10)
    ax.legend(fontsize=8, ncol=min(n, 5), loc="upper center", bbox_to_anchor=(0.5, -0.18),
              frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
