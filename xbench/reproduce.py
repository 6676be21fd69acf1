"""``xbench reproduce RECORD``: run a stored or published record again from its resolved
configuration and seed, and compare.

Bit-identity is promised only for an equal environment (torch and numpy versions, CPU capability,
device, thread count): the environment is compared first and what differs is said. The re-run
uses the record's thread count and a teacher cache of its own (a teacher cached by another
version must not make a difference disappear). Metrics are compared exactly; where the
environment differs, each metric's difference is set against the seed spread of the record's
cell (the other seeds of its configuration, from the store or ``--records``)."""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xbench.config import RunConfig, Tier, from_mapping, load_tiers, stable_hash, to_plain
from xbench.engine import execute, plan, resolve_device
from xbench.engine.record import NUMERIC_ENV
from xbench.errors import ConfigError
from xbench.records import RunRecord
from xbench.registry import Registry


@dataclass
class Outcome:
    """What a reproduction found."""

    record: RunRecord
    new: RunRecord
    env_diff: dict[str, tuple[Any, Any]]
    config_changed: list[str]
    #: metric -> (recorded, reproduced), for the metrics that differ
    differs: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differs and not self.config_changed


def run_config(record: RunRecord, tiers: dict[str, Tier]) -> RunConfig:
    """The RunConfig that resolves to the record's configuration: its names, every option as
    resolved, and the tier (a modified tier as its base tier plus the fields that differ)."""
    cfg = record.config
    tier_name = cfg["tier"]["name"]
    base = tier_name.removesuffix("+custom")
    if base not in tiers:
        raise ConfigError(f"record {record.id}: its tier '{base}' is not among this installation's tiers "
                          f"({', '.join(tiers)})")
    budget_options = {}
    if tier_name != base:
        plain = to_plain(tiers[base])
        budget_options = {k: v for k, v in cfg["tier"].items() if k != "name" and plain.get(k) != v}
    models, files = cfg.get("models") or {}, record.checkpoints or {}
    # the models' options (steps, execution, encoder) with each checkpoint's path for its hash
    setup = {who: {**{k: v for k, v in models.get(who, {}).items() if k not in ("checkpoint", "encoder_checkpoint")},
                   **({"checkpoint": files[who]["path"]} if who in files else {}),
                   **({"encoder_checkpoint": files[f"{who}-encoder"]["path"]} if f"{who}-encoder" in files else {})}
             for who in ("student", "teacher")}
    return from_mapping(RunConfig, {
        "method": cfg["method"], "task": cfg["task"], "dataset": cfg["dataset"], "teacher": cfg["teacher"],
        "student": cfg.get("student"), "student_options": setup["student"],
        "budget": base, "seeds": [record.seed], "budget_options": budget_options,
        "method_options": cfg["method_options"] or {}, "task_options": cfg["task_options"] or {},
        "dataset_options": cfg["dataset_options"] or {}, "teacher_options": {**(cfg["teacher_options"] or {}), **setup["teacher"]},
    }, f"record {record.id}")


def env_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The numerically relevant environment keys the record names whose values differ here."""
    return {k: (old[k], new.get(k)) for k in NUMERIC_ENV if k in old and old[k] != new.get(k)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def reproduce(record: RunRecord, reg: Registry, *, device: str = "cpu",
              log: Callable[[str], None] = lambda s: None) -> Outcome:
    tiers = load_tiers()
    p = plan(reg, run_config(record, tiers), tiers)
    resolved = p.resolved()
    changed = [] if stable_hash(resolved) == record.config_hash else sorted(
        k for k in resolved if resolved[k] != record.config.get(k))
    threads = record.env.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        # a teacher cache of its own: a teacher cached by another version must not hide a difference
        with tempfile.TemporaryDirectory(prefix="xbench-reproduce-") as home:
            new = execute(p, record.seed, device=resolve_device(device), log=log, home=Path(home))
    finally:
        torch.set_num_threads(before)
    out = Outcome(record, new, env_diff(record.env, new.env), changed)
    for k in sorted(set(record.metrics) | set(new.metrics)):
        a, b = record.metrics.get(k, float("nan")), new.metrics.get(k, float("nan"))
        if not _same(a, b):
            out.differs[k] = (a, b)
    return out


def seed_spread(record: RunRecord, peers: list[RunRecord]) -> dict[str, float]:
    """Each metric's standard deviation over the seeds of the record's cell (same config hash)."""
    cell = [r for r in peers if r.config_hash == record.config_hash]
    out = {}
    for k in record.metrics:
        values = [r.metrics[k] for r in cell if k in r.metrics and math.isfinite(r.metrics[k])]
        if len(values) >= 2:
            out[k] = statistics.stdev(values)
    return out


def report(o: Outcome, spread: dict[str, float]) -> list[str]:
    """The lines ``xbench reproduce`` prints."""
    rec = o.record
    head = f"{rec.id}: {rec.method} on {rec.task} ({rec.dataset}), tier {rec.tier}"
    lines = [f"{head}, seed {rec.seed}"]
    if o.env_diff:
        lines.append("environment differs (bit-identity is promised only for an equal one):")
        lines += [f"  {k}: recorded {a!r}, here {b!r}" for k, a, b in ((k, *v) for k, v in o.env_diff.items())]
    else:
        lines.append("environment: equal (" + ", ".join(f"{k} {o.new.env.get(k)}" for k in NUMERIC_ENV
                                                      ) + ")")
    unrecorded = [k for k in NUMERIC_ENV if k not in rec.env]
    if unrecorded:
        lines.append(f"not recorded by this record's version: {', '.join(unrecorded)}")
    if o.config_changed:
        lines.append("the configuration resolves differently at this version: " + ", ".join(o.config_changed))
    if not o.differs:
        lines.append(f"identical: all {len(rec.metrics)} metrics equal")
        return lines
    lines.append(f"{len(o.differs)} of {len(rec.metrics)} metrics differ:")
    for k, (a, b) in o.differs.items():
        note = f" (seed std {spread[k]:.2f}: {abs(b - a) / spread[k]:.2f} std)" if spread.get(k) else ""
        lines.append(f"  {k}: recorded {a:.4f}, reproduced {b:.4f}, difference {b - a:+.4f}{note}")
    return lines
