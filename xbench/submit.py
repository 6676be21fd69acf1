"""Checking a run record made on another machine before it enters a leaderboard.

``xbench submit --check RESULT.json`` and ``xbench import`` run :func:`check_record`: the schema,
the content hashes (a field edited after the run is named), the config hash recomputed from the
recorded config, the tier's limits against the recorded spend, the plugins (installed here, same
versions), the modality contract and model selection on val only. A record that fails any check
never enters the store.

The content hashes make an edit visible, and say which field it touched; they are not a
signature (anyone can recompute them). What a forger cannot fake without rerunning is checked
separately: the spend against the published tier, the config against its hash, the method's
modalities against the task's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from xbench.context import Stage
from xbench.errors import ConfigError
from xbench.records import RunRecord
from xbench.records import problems as schema_problems

#: stage -> the tier's step limit for it
STAGE_LIMITS = {Stage.TEACHER: "teacher_steps", Stage.TEACHER_PRETRAIN: "teacher_steps",
                Stage.PRETRAIN: "pretrain_steps", Stage.STUDENT: "student_steps", Stage.PROBE: "probe_steps",
                Stage.FINETUNE: "finetune_steps"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def integrity(record: dict[str, Any]) -> dict[str, Any]:
    """Hashes of every top-level field and of each key of the dict fields (``metrics.top1``,
    ``budget.totals``, ``config.method_options``), and of the whole record."""
    fields: dict[str, str] = {}
    for key, value in record.items():
        if key == "integrity":
            continue
        fields[key] = _digest(value)
        if isinstance(value, dict):
            for sub, inner in value.items():
                fields[f"{key}.{sub}"] = _digest(inner)
    body = {k: v for k, v in record.items() if k != "integrity"}
    return {"sha256": hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest(),
            "fields": fields}


def changed_fields(record: dict[str, Any]) -> list[str]:
    """Fields whose content no longer matches the record's hashes: the most specific names
    (``metrics.top1`` rather than ``metrics``), added and removed ones included."""
    stored = (record.get("integrity") or {}).get("fields") or {}
    now = integrity(record)["fields"]
    changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    # a changed sub-field changes its parent: name the sub-field only
    return [k for k in changed if not any(c.startswith(k + ".") for c in changed)]


def check_record(data: Any, reg, tiers: dict, tier: str | None = None) -> list[str]:
    """Every reason a record (JSON data) cannot enter a leaderboard; an empty list when it can."""
    from xbench.config import stable_hash, to_plain

    problems = schema_problems(data)
    if problems:
        return problems
    # -- the content as the run wrote it (hashed as JSON data)
    changed = changed_fields(data) if "integrity" in data else []
    if "integrity" not in data:
        problems.append("content: the record has no content hashes (made before they were kept): it cannot be "
                        "checked")
    elif changed:
        problems.append(f"content: edited after the run: {', '.join(changed)} "
                        f"no longer match(es) the record's hashes")
    elif integrity(data)["sha256"] != data["integrity"].get("sha256"):
        problems.append("content: the record's hash does not match its content")
    record = RunRecord.from_checked(data)
    # -- the configuration
    config = {k: v for k, v in record.config.items() if k != "seed"}
    if stable_hash(config) != record.config_hash:
        problems.append(f"config: config_hash {record.config_hash} is not the hash of the recorded "
                        f"config ({stable_hash(config)})")
    for key in ("method", "task", "dataset"):
        if record.config.get(key) != getattr(record, key):
            problems.append(f"config: {key} '{getattr(record, key)}' but the config says "
                            f"'{record.config.get(key)}'")
    # -- the budget tier, as published here
    name = tier or record.tier
    if name != record.tier:
        problems.append(f"tier: the record is of tier '{record.tier}', not '{name}'")
    elif name not in tiers:
        problems.append(f"tier: unknown tier '{name}' (known: {', '.join(tiers)})")
    else:
        problems += _check_budget(record, to_plain(tiers[name]))
    # -- plugins, as installed here
    for plugin, info in sorted(record.plugins.items()):
        here = reg.plugins.get(plugin)
        if here is None:
            problems.append(f"plugins: unknown plugin '{plugin}' ({info.get('dist')} {info.get('version')}) "
                            f"is not installed here")
        elif here.version != info.get("version"):
            problems.append(f"plugins: plugin '{plugin}' is version {here.version} here, "
                            f"{info.get('version')} in the record")
    problems += _check_contract(record, reg)
    return problems


def _check_budget(record: RunRecord, tier: dict[str, Any]) -> list[str]:
    problems = []
    recorded = record.budget.tier
    for key, value in sorted(tier.items()):
        if key != "description" and recorded.get(key) != value:
            problems.append(f"budget: the record's tier says {key}={recorded.get(key)!r}, tier "
                            f"'{tier['name']}' says {value!r}")
    stages = record.budget.stages
    for stage in stages:
        limit_key = STAGE_LIMITS.get(stage.stage)
        if limit_key is None:
            continue
        limit = tier[limit_key]
        if stage.steps > limit:
            problems.append(f"budget: stage '{stage.stage}' took {stage.steps} steps, the tier allows {limit_key}={limit}")
        if stage.samples > stage.steps * tier["batch_size"]:
            problems.append(f"budget: stage '{stage.stage}' saw {stage.samples} samples in {stage.steps} "
                            f"steps of batch {tier['batch_size']}")
    totals = record.budget.totals
    for key in ("steps", "samples", "teacher_forwards", "flops"):
        if getattr(totals, key) != sum(getattr(s, key) for s in stages):
            problems.append(f"budget: totals.{key} {getattr(totals, key)} is not the sum over stages")
    computed = sum(s.seconds for s in stages if s.source == "computed")
    if computed > tier["max_seconds"] * 1.05:  # the cap is checked between steps: one step may pass it
        problems.append(f"budget: {computed:.0f} s of computed stages, the tier allows max_seconds={tier['max_seconds']}")
    return problems


def _check_contract(record: RunRecord, reg) -> list[str]:
    problems = []
    try:
        task = reg.get("tasks", record.task)
        method = reg.get("methods", record.method)
    except Exception as exc:  # noqa: BLE001 - any lookup failure is the record's problem to report
        return [f"contract: {exc}"]
    if record.evaluated == "student" and record.eval_modalities != tuple(task.student_modalities):
        problems.append(f"contract: the student was evaluated on {list(record.eval_modalities)}, task "
                        f"'{task.name}' allows {list(task.student_modalities)}")
    if record.evaluated != method.evaluates:
        problems.append(f"contract: method '{method.name}' evaluates the {method.evaluates}, the record the "
                        f"{record.evaluated}")
    split, stage = record.selection.split, record.selection.stage
    if method.labels or stage == "finetune":
        if split != "val":
            problems.append(f"selection: model selected on '{split}', only val is allowed")
    elif split is not None:
        problems.append(f"selection: self-supervised method '{method.name}' selected on '{split}'")
    return problems


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
