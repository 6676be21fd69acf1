"""Leaderboard tables from stored run records (never hand-edited)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from tabulate import tabulate


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def rows(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """tier -> one row per method (seeds aggregated; the latest record of a seed wins)."""
    by: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for rec in records:
        by[(rec["tier"], rec["method"])][rec["seed"]] = rec
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (tier, method), seeds in sorted(by.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        metric = recs[0]["main_metric"]
        student = [r["budget"]["stages"][-1] for r in recs]
        totals = [r["budget"]["totals"] for r in recs]
        out[tier].append({
            # a row evaluated on a privileged modality is a reference, not a student result
            "method": method + (f" [{', '.join(recs[0]['eval_modalities'])} input]"
                                if recs[0]["evaluated"] == "teacher" else ""),
            "seeds": len(recs),
            metric: mean_std([r["metrics"][metric] for r in recs if metric in r["metrics"]]),
            "steps": "/".join(sorted({str(s["steps"]) for s in student})),
            "samples": "/".join(sorted({str(s["samples"]) for s in student})),
            "teacher fwd": max(t["teacher_forwards"] for t in totals),
            "params": recs[0]["params"]["student"] + recs[0]["params"]["heads"]
                      if recs[0]["evaluated"] == "student" else recs[0]["params"]["teacher"],
            "GFLOPs": f"{statistics.fmean(t['flops'] for t in totals) / 1e9:.1f}",
            "seconds": f"{statistics.fmean(t['seconds'] for t in totals):.1f}",
        })
    return out


def render(records: list[dict[str, Any]], fmt: str = "md") -> str:
    if not records:
        return "no runs"
    parts = []
    tablefmt = {"md": "github", "plain": "simple"}[fmt]
    for tier, table in rows(records).items():
        parts.append(f"tier: {tier}\n" + tabulate(table, headers="keys", tablefmt=tablefmt,
                                                  disable_numparse=True))
    return "\n\n".join(parts)
