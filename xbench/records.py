"""The run record's schema: one definition used to write (the engine), check (``submit``), store
(the store), and read records (the store, ``import``, ``leaderboard --records``, ``--publish``).

Version 2 adds ``baseline`` (whether the run is of its task's baseline method) to version 1 and
makes the content hashes (``integrity``) required;
version 1 records (the published leaderboard's) are read as they are: a reader that needs
``baseline`` takes it from :func:`xbench.leaderboard.is_baseline`. A record is JSON; every reader
validates it first, so a forged or damaged one fails with one line naming the problem instead of
writing outside the store or crashing the tables later:

- ``id`` is a safe slug (letters, digits, ``. _ + -``, no ``..``), never used raw as a path;
- ``seed`` and every count fit SQLite's 64-bit integers;
- every metric is a number: finite, or NaN where a run could not define the metric (BLEU of a
  model that generates nothing); never a string or an infinity.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from xbench.errors import DataError

SCHEMA_VERSION = 2
READABLE = (1, 2)

#: top-level fields and their types, in every readable version
FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int, "id": str, "method": str, "task": str, "dataset": str, "tier": str, "seed": int,
    "evaluated": str, "eval_modalities": list, "main_metric": str, "metrics": dict, "selection": dict,
    "budget": dict, "params": dict, "teacher": (dict, type(None)), "config": dict, "config_hash": str,
    "plugins": dict, "data": dict, "env": dict, "started": str, "finished": str,
}
#: fields a version adds: the content hashes (optional in version 1, whose earliest records were
#: made before them) and whether the run is of a baseline method
ADDED = {2: {"integrity": dict, "baseline": bool}}

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
INT64 = 2 ** 63


def safe_id(run_id: Any) -> bool:
    return isinstance(run_id, str) and SLUG.fullmatch(run_id) is not None and ".." not in run_id


def problems(rec: Any) -> list[str]:
    """Every way ``rec`` breaks the schema; empty when it is a readable record."""
    if not isinstance(rec, dict):
        return [f"schema: a record is a JSON object, not {type(rec).__name__}"]
    version = rec.get("schema")
    if version not in READABLE:
        return [f"schema: version {version!r} is not one this xbench reads ({', '.join(map(str, READABLE))})"]
    out = []
    expected = {**FIELDS, **{k: t for v, added in ADDED.items() if version >= v for k, t in added.items()}}
    for key, kind in expected.items():
        if key not in rec:
            out.append(f"schema: missing field '{key}'")
        elif not isinstance(rec[key], kind) or (kind is int and isinstance(rec[key], bool)):
            out.append(f"schema: field '{key}' is {type(rec[key]).__name__}")
    if "integrity" in rec and not isinstance(rec["integrity"], dict):
        out.append(f"schema: field 'integrity' is {type(rec['integrity']).__name__}")
    if out:
        return out
    if not safe_id(rec["id"]):
        out.append(f"schema: id {rec['id'][:80]!r} is not a safe name (letters, digits, . _ + -)")
    if not 0 <= rec["seed"] < INT64:
        out.append(f"schema: seed {rec['seed']} is outside 0..2^63-1")
    for name, value in rec["metrics"].items():
        if not _number(value) or math.isinf(value):
            out.append(f"schema: metric '{name}' is {value!r}, not a finite number (or NaN: undefined)")
    for name, value in rec["params"].items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < INT64:
            out.append(f"schema: params.{name} is {value!r}, not a count")
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(rec: Any, where: str) -> dict[str, Any]:
    """``rec`` if it is a readable record, else a DataError naming ``where`` and the first problem."""
    found = problems(rec)
    if found:
        raise DataError(f"{where}: not a valid run record: {found[0]}")
    return rec


def run_dir(home: Path, run_id: str) -> Path:
    """The folder of a run under ``home/runs``, for a safe id only."""
    if not safe_id(run_id):
        raise DataError(f"run id {str(run_id)[:80]!r} is not a safe name (letters, digits, . _ + -)")
    return home / "runs" / run_id
