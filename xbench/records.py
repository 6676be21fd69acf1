"""The run record's schema: one typed definition (:class:`RunRecord`) used to write (the engine),
check (``submit``), store and read records (the store, ``import``, ``leaderboard --records``,
``--publish``, ``reproduce``). A record is JSON on disk; in memory it is a :class:`RunRecord`,
read by attribute, and :meth:`RunRecord.to_json` gives back exactly the JSON it was read from.

Version 2 adds ``baseline`` (whether the run is of its task's baseline method) to version 1 and
makes the content hashes (``integrity``) required; version 3 adds ``status``: ``complete``, or
``incomplete`` where the wall-clock limit stopped a stage before its steps were done.
Older records are migrated when read: the baseline of a version 1 record is the baselines
plugin's ``student`` evaluated as a student, the one baseline there was; the status of a
version 1 or 2 record follows from its totals (``stopped_by``). Written back, they are unchanged. Every reader validates
first, so a forged or damaged record fails with one line naming the problem instead of writing
outside the store or crashing the tables later:

- every field is present with its type, nested ones included (``budget.stages[1].steps``);
- ``id`` is a safe slug (letters, digits, ``. _ + -``, no ``..``), never used raw as a path;
- ``seed`` and every count fit SQLite's 64-bit integers;
- every metric is a number: finite, or NaN where a run could not define the metric (BLEU of a
  model that generates nothing); never a string or an infinity.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xbench.budget import StageSpend
from xbench.context import Stage
from xbench.errors import DataError

SCHEMA_VERSION = 3
READABLE = (1, 2, 3)
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
INT64 = 2 ** 63

#: a field's metadata: ``since`` the version that added it (absent before: migrated on reading,
#: left out on writing); ``optional_before`` the first version that requires the key (before it,
#: a record may lack it: read as None, never written as None)
SINCE_2 = {"since": 2}
SINCE_3 = {"since": 3}
OPTIONAL = {"optional_before": math.inf}

#: a run that did its whole budget of steps and samples
COMPLETE = "complete"
#: a run the wall-clock limit stopped before its budget: stored, never ranked
INCOMPLETE = "incomplete"
#: ``xbench run``'s exit status when it stored a run incomplete (and a sweep worker's)
EXIT_INCOMPLETE = 3


@dataclass(frozen=True)
class Totals:
    """A run's spend over all its stages; ``stopped_by`` names the first stage a limit other than
    its step count stopped (``"student:max_seconds"``), None when none did."""

    steps: int
    samples: int
    teacher_forwards: int
    flops: int
    seconds: float
    peak_memory_mb: float
    stopped_by: str | None


@dataclass(frozen=True)
class Budget:
    """What each stage spent, the totals, and the tier the run was given (as resolved)."""

    stages: tuple[StageSpend, ...]
    totals: Totals
    tier: dict[str, Any]

    def stage(self, name: str) -> StageSpend | None:
        return next((s for s in self.stages if s.stage == name), None)


@dataclass(frozen=True)
class Params:
    """Parameter counts: the student, the method's trainable heads, the teacher (0: none)."""

    student: int
    heads: int
    teacher: int


@dataclass(frozen=True)
class SelectionRecord:
    """Which state of the evaluated model was kept: selected on ``split`` (None: self-supervised,
    the last state) by ``metric`` at ``step``, with its ``metrics`` there; ``stage`` names the
    stage that selected when it was not the method's own (fine-tuning)."""

    split: str | None
    metric: str | None
    step: int | None
    value: float | None
    metrics: dict[str, float]
    stage: str | None = field(default=None, metadata=OPTIONAL)
    note: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class DataRecord:
    """The data a run read: its folder, the content hash of its manifest, and the split sizes."""

    root: str
    manifest_sha256: str
    sizes: dict[str, int]


@dataclass(frozen=True)
class RunRecord:
    """One finished run: what was run (the resolved ``config`` and its hash), what it scored, what
    it spent, and where (``env``: versions, device, threads, the source commit)."""

    #: the schema version the record was written in (1, 2 or 3)
    schema: int
    #: unique, a safe slug: ``METHOD-TASK-TIER-sSEED-STARTED-RANDOM``
    id: str
    method: str
    task: str
    dataset: str
    #: the budget tier's name (``NAME+custom`` when options changed it)
    tier: str
    seed: int
    #: ``student``, or ``teacher`` for the teacher reference row
    evaluated: str
    #: the modalities the evaluated model saw at test time
    eval_modalities: tuple[str, ...]
    main_metric: str
    #: test metrics of the selected state; NaN where a run could not define one
    metrics: dict[str, float]
    selection: SelectionRecord
    budget: Budget
    params: Params
    #: the teacher: name, plugin, modalities, cache key, selected step, val metrics, source
    teacher: dict[str, Any] | None
    #: the resolved configuration (every option, the tier) with the seed
    config: dict[str, Any]
    #: hash of ``config`` without the seed: the runs of one cell share it
    config_hash: str
    #: plugin -> distribution and version
    plugins: dict[str, Any]
    data: DataRecord
    #: versions, device, threads, allocator, the source commit (``git_sha``)
    env: dict[str, Any]
    #: ISO 8601 times, UTC
    started: str
    finished: str
    #: whether the method is its task's baseline (``MethodSpec.baseline``); version 2
    baseline: bool = field(default=False, metadata=SINCE_2)
    #: ``complete``, or ``incomplete``: the wall-clock limit stopped a stage (left out of leaderboards);
    #: version 3
    status: str = field(default=COMPLETE, metadata=SINCE_3)
    #: the local checkpoints the student and teacher started from (path, SHA-256, where they
    #: loaded, missing and unexpected keys); absent when both were randomly initialised
    checkpoints: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    #: per-field content hashes: a record edited after its run is refused; required from version 2
    integrity: dict[str, Any] | None = field(default=None, metadata={"optional_before": 2})

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunRecord:
        """The record ``data`` holds, or a DataError naming ``where`` and the first problem."""
        validate(data, where)
        return cls.from_checked(data)

    @classmethod
    def from_checked(cls, data: dict[str, Any]) -> RunRecord:
        """The record of JSON ``data`` that :func:`problems` has already passed."""
        return _make(cls, _migrated(data))

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data, exactly as it was written (a migrated field left out)."""
        return _plain(self, self.schema)

    @property
    def main_score(self) -> float | None:
        return self.metrics.get(self.main_metric)

    @property
    def selecting_stage(self) -> StageSpend | None:
        """The stage whose evaluations chose the kept state: the selection's (fine-tuning after
        a self-supervised stage), else the method's."""
        sel = self.selection
        return self.budget.stage(sel.stage) if sel.stage else self.method_stage

    @property
    def still_improving(self) -> bool:
        """Whether the state kept was the stage's last evaluated one: its val metric was still
        rising when the budget ran out (a longer run might score higher)."""
        sel, stage = self.selection, self.selecting_stage
        return sel.split is not None and stage is not None and stage.steps > 0 and sel.step == stage.steps

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def git_sha(self) -> str | None:
        return self.env.get("git_sha")

    @property
    def trained_steps(self) -> int:
        """Optimizer steps of every stage that trained the evaluated model: the student's stages
        (encoder pretraining, the method's stage, fine-tuning, a probe), or the teacher's for the
        teacher reference. xkd's 250 self-supervised + 250 fine-tuning steps are 500."""
        teacher = self.evaluated == "teacher"
        return sum(s.steps for s in self.budget.stages
                   if (s.stage in (Stage.TEACHER_PRETRAIN, Stage.TEACHER)) == teacher
                   and s.stage not in (Stage.TEACHER_INFERENCE, Stage.TEST))

    @property
    def trial(self) -> int | None:
        """The search trial this run is (a sweep's tuning run), or None."""
        return self.config.get("trial")

    @property
    def tuning(self) -> dict[str, Any]:
        """How a tuned configuration was chosen (trials, winner, cost), or {} for a default one."""
        return self.config.get("tuning") or {}

    @property
    def regime(self) -> str | None:
        """The name of the regime the run was in (``xbench.regimes``), or None."""
        regime = self.config.get("regime")
        return regime.get("name") if isinstance(regime, dict) else None

    @property
    def method_stage(self) -> StageSpend:
        """The stage in which the method trained its student (later stages: fine-tuning, a
        probe); the teacher's for the teacher reference."""
        return self.budget.stage(Stage.STUDENT) or self.budget.stages[-1]


#: records made before records said whether they are a baseline run had one baseline: the
#: baselines plugin's ``student``
LEGACY_BASELINE = "student"


def _migrated(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if data["schema"] < 2:
        out["baseline"] = data["method"] == LEGACY_BASELINE and data["evaluated"] == "student"
    if data["schema"] < 3:
        out["status"] = status_of(data["budget"]["totals"]["stopped_by"])
    return out


def status_of(stopped_by: str | None) -> str:
    """A run's status from what stopped it: only the clock (``STAGE:max_seconds``) leaves a run
    short of its budget; the meter's totals name nothing else."""
    return INCOMPLETE if stopped_by else COMPLETE


def safe_id(run_id: Any) -> bool:
    return isinstance(run_id, str) and SLUG.fullmatch(run_id) is not None and ".." not in run_id


def problems(rec: Any) -> list[str]:
    """Every way ``rec`` (JSON data) breaks the schema; empty when it is a readable record."""
    if not isinstance(rec, dict):
        return [f"schema: a record is a JSON object, not {type(rec).__name__}"]
    version = rec.get("schema")
    if version not in READABLE or isinstance(version, bool):
        return [f"schema: version {version!r} is not one this xbench reads ({', '.join(map(str, READABLE))})"]
    # a metric's own message says what a metric may be (NaN: undefined) rather than its type only
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    out = [f"schema: metric '{name}' is {value!r}, not a finite number (or NaN: undefined)"
           for name, value in metrics.items() if not _number(value) or math.isinf(value)]
    out += [p for p in _type_problems(RunRecord, rec, "", version) if not p.startswith("schema: field 'metrics.")]
    if out:
        return out
    if not safe_id(rec["id"]):
        out.append(f"schema: id {rec['id'][:80]!r} is not a safe name (letters, digits, . _ + -)")
    if rec.get("status", COMPLETE) not in (COMPLETE, INCOMPLETE):
        out.append(f"schema: status {rec['status']!r} is not {COMPLETE} or {INCOMPLETE}")
    if not 0 <= rec["seed"] < INT64:
        out.append(f"schema: seed {rec['seed']} is outside 0..2^63-1")
    for name, value in rec["params"].items():
        if not 0 <= value < INT64:
            out.append(f"schema: params.{name} is {value!r}, not a count")
    return out


def validate(data: Any, where: str) -> None:
    """A DataError naming ``where`` and the first problem where JSON ``data`` is no readable record."""
    found = problems(data)
    if found:
        raise DataError(f"{where}: not a valid run record: {found[0]}")


def run_dir(home: Path, run_id: str) -> Path:
    """The folder of a run under ``home/runs``, for a safe id only."""
    if not safe_id(run_id):
        raise DataError(f"run id {str(run_id)[:80]!r} is not a safe name (letters, digits, . _ + -)")
    return home / "runs" / run_id


# -- the typed layer: JSON data <-> dataclasses, by the dataclasses' annotations


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # each class's annotations in its own module's names


def _wanted(f: dataclasses.Field, version: int) -> bool:
    return version >= f.metadata.get("since", 0)


def _type_problems(cls: type, data: dict[str, Any], prefix: str, version: int) -> list[str]:
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in data:
            if _wanted(f, version) and version >= f.metadata.get("optional_before", 0):
                out.append(f"schema: missing field '{name}'")
            continue
        tp = hints[f.name]
        if version >= f.metadata.get("optional_before", math.inf):  # required here: not None
            tp = typing.get_args(tp)[0]
        out += _value_problems(tp, data[f.name], name, version)
    return out


def _value_problems(tp: Any, value: Any, name: str, version: int) -> list[str]:
    """Whether JSON ``value`` fits annotation ``tp``: its problems, most specific first."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        (inner,) = [a for a in args if a is not type(None)]
        return _value_problems(inner, value, name, version)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [f"schema: field '{name}' is {type(value).__name__}"]
        return _type_problems(tp, value, f"{name}.", version)
    if origin in (tuple, list):
        if not isinstance(value, list):
            return [f"schema: field '{name}' is {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in _value_problems(args[0], v, f"{name}[{i}]", version)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"schema: field '{name}' is {type(value).__name__}"]
        return [p for k, v in value.items() for p in _value_problems(args[1], v, f"{name}.{k}", version)]
    return [] if _fits(tp, value) else [f"schema: field '{name}' is {type(value).__name__}"]


def _fits(tp: Any, value: Any) -> bool:
    if tp is Any:
        return True
    if tp is float:  # JSON writes 0.0 as 0 in other writers: an int is a number too
        return _number(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _make(tp: Any, value: Any) -> Any:
    """The typed value of checked JSON ``value``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _make(inner, value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{f.name: _make(hints[f.name], value[f.name])
                     for f in dataclasses.fields(tp) if f.name in value})
    if origin is tuple:
        return tuple(_make(args[0], v) for v in value)
    if origin is list:
        return [_make(args[0], v) for v in value]
    return value


def _plain(obj: Any, version: int) -> Any:
    """JSON data of a typed value: the inverse of :func:`_make`."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not _wanted(f, version) or ("optional_before" in f.metadata and value is None):
                continue
            out[f.name] = _plain(value, version)
        return out
    if isinstance(obj, (tuple, list)):
        return [_plain(v, version) for v in obj]
    return obj
