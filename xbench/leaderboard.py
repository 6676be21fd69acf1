"""Leaderboard tables from stored run records (never hand-edited)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

from tabulate import tabulate

from xbench.stats import paired, summarize


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
    data = config.get("dataset_options", {})
    shown = [f"{k}={opts[k]}" for k in differing if k in opts]
    shown += [f"{k}={data[k[8:]]}" for k in differing if k.startswith("dataset.") and k[8:] in data]
    return label + (f" [{', '.join(shown)}]" if shown else "")


def _differing(configs: list[dict[str, Any]]) -> tuple[str, ...]:
    """Method options, dataset options (``dataset.KEY``) and the teacher whose values are not the
    same in every configuration."""
    def varying(section: str) -> list[str]:
        keys = sorted({k for c in configs for k in c.get(section, {})})
        return [k for k in keys if len({repr(c.get(section, {}).get(k)) for c in configs}) > 1]

    # runs on other data (fewer labels, another noise rate) are other rows, labelled so
    out = varying("method_options") + [f"dataset.{k}" for k in varying("dataset_options")]
    if len({c.get("teacher") for c in configs}) > 1:
        out.append("teacher")
    return tuple(out)


def _setting(rec: dict[str, Any]) -> str:
    """What a run's baseline must share with it: tier, task, dataset and their options (the
    same data, labels and protocol); the method and its options are what is compared."""
    c = rec.get("config", {})
    return json.dumps([rec["tier"], rec.get("task"), c.get("dataset"), c.get("task_options"),
                       c.get("dataset_options")], sort_keys=True)


def _interval(values: list[float]) -> str:
    """The 95% percentile-bootstrap interval of the mean over seeds."""
    if len(values) < 2:
        return "-"
    s = summarize(values)
    return f"[{s.low:.2f}, {s.high:.2f}]"


def _versus(seeds: dict[int, dict], base: dict[int, dict] | None, metric: str) -> str:
    """Mean paired difference with ``student`` on the seeds both have, its 95% paired-bootstrap
    interval and the exact sign-flip p; ``*`` where the interval excludes zero."""
    if not base:
        return "-"
    r = paired({s: x["metrics"][metric] for s, x in seeds.items() if metric in x["metrics"]},
               {s: x["metrics"][metric] for s, x in base.items() if metric in x["metrics"]})
    if r is None:
        return "-"
    return f"{r.diff:+.2f} [{r.low:+.2f}, {r.high:+.2f}] p={r.p:.3f} n={r.n}" + (" *" if r.significant else "")


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
    baselines = {_setting(next(iter(seeds.values()))): seeds
                 for (_, method, _), seeds in by.items() if method == "student"}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (tier, method, _), seeds in sorted(by.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        metric = recs[0]["main_metric"]
        values = [r["metrics"][metric] for r in recs if metric in r["metrics"]]
        base = baselines.get(_setting(recs[0])) if method != "student" else None
        differing = _differing(configs[(tier, method)])
        # the method's own training stage (later stages: fine-tuning, a probe)
        student = [method_stage(r) for r in recs]
        totals = [r["budget"]["totals"] for r in recs]
        out[tier].append({
            # a row evaluated on a privileged modality is a reference, not a student result
            "method": _label(recs[0], differing) + (f" [{', '.join(recs[0]['eval_modalities'])} input]"
                                if recs[0]["evaluated"] == "teacher" else ""),
            "seeds": len(recs),
            metric: mean_std(values),
            "95% CI": _interval(values),
            "vs student": _versus(seeds, base, metric),
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
