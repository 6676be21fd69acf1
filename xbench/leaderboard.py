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


def _label(rec: dict[str, Any], differing: tuple[str, ...] = ()) -> str:
    """The method, its evaluation protocol where it is not the default, and the values of the
    options that differ between runs of the same method in this table."""
    config = rec.get("config", {})
    label = rec["method"]
    if config.get("teacher") and rec.get("evaluated") == "student" and "teacher" in differing:
        label += f" <- {config['teacher']}"
    protocol = config.get("task_options", {}).get("protocol")
    if protocol and protocol != "finetune":
        label += f" ({protocol} probe)" if protocol == "linear" else f" ({protocol})"
    opts = config.get("method_options", {})
    shown = [f"{k}={opts[k]}" for k in differing if k in opts]
    return label + (f" [{', '.join(shown)}]" if shown else "")


def _differing(configs: list[dict[str, Any]]) -> tuple[str, ...]:
    """Method options (and the teacher) whose values are not the same in every configuration."""
    keys = sorted({k for c in configs for k in c.get("method_options", {})})
    out = [k for k in keys if len({repr(c.get("method_options", {}).get(k)) for c in configs}) > 1]
    if len({c.get("teacher") for c in configs}) > 1:
        out.append("teacher")
    return tuple(out)


def rows(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """tier -> one row per method and configuration (seeds aggregated; the latest record of a
    seed wins). Runs of one method with other options (the linear-probe protocol, an ablation,
    another teacher) are other rows, labelled by what differs, never averaged together."""
    by: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)
    for rec in records:
        by[(rec["tier"], rec["method"], rec["config_hash"])][rec["seed"]] = rec
    configs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (tier, method, _), seeds in by.items():
        configs[(tier, method)].append(next(iter(seeds.values())).get("config", {}))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (tier, method, _), seeds in sorted(by.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        metric = recs[0]["main_metric"]
        differing = _differing(configs[(tier, method)])
        # the method's own training stage (later stages: fine-tuning, a probe)
        student = [method_stage(r) for r in recs]
        totals = [r["budget"]["totals"] for r in recs]
        out[tier].append({
            # a row evaluated on a privileged modality is a reference, not a student result
            "method": _label(recs[0], differing) + (f" [{', '.join(recs[0]['eval_modalities'])} input]"
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
    for table in out.values():
        table.sort(key=lambda row: row["method"])
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
