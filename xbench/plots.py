"""Leaderboard plots (matplotlib, no display needed): score against compute with the Pareto
front, and every seed's score per method against the student's."""

from __future__ import annotations

import re
from pathlib import Path

from xbench.leaderboard import Table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _stem(table: Table) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{table.tier}-{table.task}")


def _save(fig, path: Path) -> None:
    # no software/date metadata: the same table gives the same file
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})


def pareto_plot(table: Table, path: Path) -> None:
    """Mean score (error bar: std over seeds) against mean training GFLOPs of a run, log scale;
    the Pareto front joined by a line, the teacher reference drawn hollow."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in table.rows if r.summary]
    for row in rows:
        style = {"fmt": "o", "capsize": 2, "ms": 5}
        if row.is_reference:
            style.update(mfc="none", color="0.5")
        elif row.pareto:
            style.update(color="C3")
        else:
            style.update(color="C0")
        ax.errorbar(row.gflops, row.summary.mean, yerr=row.summary.std, **style)
        # parse_math=False: a name with $ is text, not mathtext
        ax.annotate(row.label, (row.gflops, row.summary.mean), xytext=(4, 3), textcoords="offset points",
                    fontsize=7, parse_math=False)
    front = sorted((r.gflops, r.summary.mean) for r in rows if r.pareto)
    if len(front) > 1:
        ax.plot(*zip(*front), color="C3", lw=1, alpha=0.6, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training GFLOPs per run (all stages, teacher included)")
    ax.set_ylabel(f"test {table.metric} (mean ± std)")
    ax.set_title(f"{table.task}, tier {table.tier}: score vs compute", fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def seeds_plot(table: Table, path: Path) -> None:
    """Each seed's score per method (one colour per seed, so a method's seeds line up with the
    student's), methods ordered by mean; the student's mean as a dashed line."""
    plt = _pyplot()
    rows = sorted((r for r in table.rows if r.summary), key=lambda r: r.summary.mean)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.2))
    seeds = table.seeds
    for i, row in enumerate(rows):
        for seed, score in row.scores.items():
            ax.scatter(score, i, s=14, color=f"C{seeds.index(seed) % 10}", zorder=3)
        ax.plot([row.summary.mean] * 2, [i - 0.3, i + 0.3], color="k", lw=1)
    for n, seed in enumerate(seeds):
        ax.scatter([], [], s=14, color=f"C{n % 10}", label=f"seed {seed}")
    ax.legend(fontsize=7, loc="lower right", ncol=min(5, len(seeds)) or 1)
    student = next((r for r in rows if r.baseline and r.summary), None)
    if student:
        ax.axvline(student.summary.mean, color="0.4", ls="--", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.label for r in rows], fontsize=7)
    for label in ax.get_yticklabels():
        label.set_parse_math(False)
    ax.set_xlabel(f"test {table.metric} per seed (colour: seed; bar: mean; dashed: student)")
    ax.set_title(f"{table.task}, tier {table.tier}: seeds", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)
    plt.close(fig)


def write_plots(tables: list[Table], folder: Path, prefix: str = "plots") -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Both plots of every table into ``folder/prefix``; returns the HTML page's image list."""
    (folder / prefix).mkdir(parents=True, exist_ok=True)
    out = {}
    wanted = {f"{_stem(t)}-{kind}.png" for t in tables for kind in ("pareto", "seeds")}
    for old in [*(folder / prefix).glob("*-pareto.png"), *(folder / prefix).glob("*-seeds.png")]:
        if old.name not in wanted:  # a plot of a table no longer there: the page would not link it
            old.unlink()
    for table in tables:
        stem = _stem(table)
        pareto, seeds = f"{prefix}/{stem}-pareto.png", f"{prefix}/{stem}-seeds.png"
        pareto_plot(table, folder / pareto)
        seeds_plot(table, folder / seeds)
        out[(table.tier, table.task)] = [(pareto, f"{table.task}: score vs compute"),
                                         (seeds, f"{table.task}: per-seed scores")]
    return out
