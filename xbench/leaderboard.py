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


def method_stage(rec: dict[str, Any]) -> dict[str, Any]:
    """The stage in which the method trained its student (later stages: fine-tuning, a probe);
    the teacher's for the teacher reference."""
    stages = rec["budget"]["stages"]
    return next((s for s in stages if s["stage"] == "student"), stages[-1])


def _label(rec: dict[str, Any], variants: int) -> str:
    """The method, its evaluation protocol where it is not the default, and the config hash where
    the same method ran with other options in this table."""
    label = rec["method"]
    protocol = rec.get("config", {}).get("task_options", {}).get("protocol")
    if protocol and protocol != "finetune":
        label += f" ({protocol} probe)" if protocol == "linear" else f" ({protocol})"
    if variants > 1:
        label += f" #{rec['config_hash'][:6]}"
    return label


def rows(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """tier -> one row per method and configuration (seeds aggregated; the latest record of a
    seed wins). Runs of one method with other options (e.g. the linear-probe protocol) are other
    rows, never averaged together."""
    by: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)
    for rec in records:
        by[(rec["tier"], rec["method"], rec["config_hash"])][rec["seed"]] = rec
    protocols: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for (tier, method, config), seeds in by.items():
        protocols[(tier, method, _label(next(iter(seeds.values())), 1))].add(config)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (tier, method, _), seeds in sorted(by.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        metric = recs[0]["main_metric"]
        variants = len(protocols[(tier, method, _label(recs[0], 1))])
        # the method's own training stage (later stages: fine-tuning, a probe)
        student = [method_stage(r) for r in recs]
        totals = [r["budget"]["totals"] for r in recs]
        out[tier].append({
            # a row evaluated on a privileged modality is a reference, not a student result
            "method": _label(recs[0], variants) + (f" [{', '.join(recs[0]['eval_modalities'])} input]"
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
