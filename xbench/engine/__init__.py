"""The engine: a plan, a list of named stages run with one ``RunContext``, and the run record.

``plan`` resolves and checks a RunConfig; ``execute`` opens the data and the task, builds the
models, runs the plan's stages in order (skipping a stage whose outputs already exist, as a teacher
taken trained from the cache does) and returns the record. Every stage trains through the one loop,
``xbench.train.fit``, and is counted by one BudgetMeter."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xbench import distributed
from xbench.budget import BudgetMeter
from xbench.cache import release_all
from xbench.context import Clock, Reporter, RunContext, Stage
from xbench.contracts import Dataset, missing_members, teacher_is_train
from xbench.data.examples import Examples
from xbench.engine import student as _student
from xbench.engine import teacher as _teacher
from xbench.engine.features import FrozenFeatures
from xbench.engine.plan import Plan, plan, resolve_term, stages_of
from xbench.engine.record import build_record, device_name, environment, git_sha, numerics
from xbench.engine.state import RunState, call
from xbench.engine.teacher import teacher_config
from xbench.errors import ConfigError, IncompatibleError, PluginError
from xbench.resume import RunCheckpoints, run_identity
from xbench.settings import settings
from xbench.specs import ModelContext

__all__ = [
    "STAGES",
    "Plan",
    "RunCheckpoints",
    "RunContext",
    "RunState",
    "Stage",
    "checkpoints_for",
    "device_name",
    "environment",
    "execute",
    "git_sha",
    "plan",
    "resolve_device",
    "resolve_term",
    "run",
    "stages_of",
    "teacher_config",
]

#: what each stage runs
STAGES: dict[Stage, Callable[[RunContext, RunState], None]] = {
    Stage.TEACHER_PRETRAIN: _teacher.teacher_pretrain,
    Stage.TEACHER: _teacher.train_teacher,
    Stage.PRETRAIN: _student.pretrain,
    Stage.TEACHER_INFERENCE: _teacher.teacher_inference,
    Stage.STUDENT: _student.train_student,
    Stage.FINETUNE: _student.finetune,
    Stage.PROBE: _student.probe,
    Stage.TEST: _student.test,
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(name)


def execute(p: Plan, seed: int, *, device: torch.device, data_root: Path | None = None,
            progress: bool = False, log: Callable[[str], None] = lambda s: None,
            home: Path | None = None, clock: Clock | None = None, checkpoints: Any = None) -> dict[str, Any]:
    """Train and evaluate one seed of a plan; returns the run record (not yet stored). ``home``
    holds the teacher cache (default XBENCH_HOME); ``clock`` gets where the time went;
    ``checkpoints`` (``xbench.resume.RunCheckpoints``, see ``checkpoints_for``) makes its stages
    save checkpoints and resume from the ones a killed run of it left."""
    # the wall-clock limit is a safety net: off, nothing but steps and samples ends a stage
    # the clock is a safety net XBENCH_CLOCK_LIMIT may turn off, unless it is the tier's budget
    limit = p.tier.max_seconds if settings().clock_limit or p.tier.time_budget else math.inf
    ctx = RunContext(p, seed, device, BudgetMeter(limit), Reporter(log, progress), data_root,
                     home=home, clock=clock or Clock(), checkpoints=checkpoints)
    return run(ctx)


def checkpoints_for(p: Plan, seed: int, device: torch.device, home: Path | None = None,
                    log: Callable[[str], None] = lambda s: None, restart: bool = False) -> RunCheckpoints | None:
    """The stage checkpoints of one seed of ``p`` (None where ``XBENCH_CHECKPOINT`` is off),
    keyed by everything its numbers depend on (``xbench.resume``); ``restart`` discards the ones
    a killed run of it left."""
    s = settings()
    if not s.checkpoint:
        return None
    env = {**numerics(device), "xbench": environment(device)["xbench"], "git_sha": git_sha()}
    return RunCheckpoints(home or s.home, run_identity(p.resolved(), seed, p.plugins, env),
                          s.checkpoint_every or None, log, restart)


def run(ctx: RunContext) -> dict[str, Any]:
    """The plan's stages in order on one context; test is evaluated once, on the val-selected
    state."""
    started = dt.datetime.now(dt.timezone.utc)
    try:
        state = prepare(ctx)
        if ctx.checkpoints is not None:  # the data are open: checkpoints of other data are never read
            ctx.checkpoints.bind(state.dataset.manifest_hash())
            distributed.barrier()  # rank 0's --restart has removed them before any rank reads one
        for stage in ctx.plan.stages:
            if stage in state.done:  # its outputs exist (a teacher from the cache)
                continue
            with ctx.clock.part(_PARTS.get(stage, "train")):
                STAGES[stage](ctx, state)
            state.done.add(stage)
    finally:
        release_all()  # a cache entry this run claimed and did not store is the next run's to compute
    with ctx.clock.part("record"):
        return build_record(ctx, state, started)


#: the part of the run's wall time (``Clock``) each stage is counted in; the others: "train"
_PARTS = {Stage.TEACHER_PRETRAIN: "teacher", Stage.TEACHER: "teacher", Stage.TEACHER_INFERENCE: "teacher",
          Stage.TEST: "test"}


def prepare(ctx: RunContext) -> RunState:
    """The run's inputs: the dataset and the task opened, the splits loaded with the modalities
    each needs, and the models built (seeded), the teacher trained from the cache where it can be."""
    p = ctx.plan
    with ctx.clock.part("data"), distributed.main_first():  # rank 0 generates or decodes, the others read
        state = _open(ctx)
    state.model_ctx = ModelContext(num_classes=state.dataset.num_classes, shapes=_shapes(state),
                                   extras=dict(getattr(state.task, "extras", {})))
    if p.teacher is not None:
        with ctx.clock.part("teacher"):
            _teacher.build_teacher(ctx, state)
    if p.method.evaluates != "teacher":
        with ctx.clock.part("models"):
            _student.build_student(ctx, state)
    return state


def _open(ctx: RunContext) -> RunState:
    """The dataset and the task opened, the splits loaded with the modalities each needs."""
    p = ctx.plan
    dataset = call(p.owner("datasets", p.dataset_name), f"dataset '{p.dataset_name}'", p.dataset.factory,
                   p.dataset_options, ctx.data_root)
    _check_dataset(ctx, dataset)
    task = call(p.owner("tasks", p.task.name), f"task '{p.task.name}'", p.task.factory, p.task_options)
    s_mods = p.task.student_modalities
    t_mods = p.teacher.modalities if p.teacher else ()
    train_mods = s_mods + (t_mods if p.uses_teacher_in_loss else ()) + p.method.modalities
    teacher_eval = p.method.evaluates == "teacher"
    state = RunState(dataset, task, None, None, None, None, s_mods, t_mods, train_mods)  # type: ignore[arg-type]
    if p.frozen_encoder:  # frozen-feature mode: every split's student clips become features
        state.features = FrozenFeatures(ctx, state)
    state.train = (Examples.concat([state.load(ctx, s, train_mods) for s in p.method.train_splits])
                   if not teacher_eval else None)
    state.val = state.load(ctx, "val", s_mods + t_mods)
    state.test = state.load(ctx, "test", t_mods if teacher_eval else s_mods)
    if isinstance(state.features, FrozenFeatures):
        state.features.finish(state)
    return state


def _check_dataset(ctx: RunContext, dataset: object) -> None:
    """The opened dataset satisfies the Dataset contract and has the splits this run reads."""
    p = ctx.plan
    culprit = f"plugin '{p.owner('datasets', p.dataset_name)}': dataset '{p.dataset_name}'"
    missing = missing_members(dataset, Dataset)
    if missing:
        raise PluginError(f"{culprit} lacks {', '.join(missing)} (see xbench.contracts.Dataset)")
    needed = tuple(dict.fromkeys(p.method.train_splits + ("val", "test")
                                 + (("teacher",) if Stage.TEACHER in p.stages else ())))
    lacking = [s for s in needed if s not in dataset.splits]
    if lacking:
        why = " (the teacher trains on it)" if lacking == ["teacher"] else ""
        raise IncompatibleError(f"{culprit} has no split '{lacking[0]}'{why}; its splits: {', '.join(dataset.splits)}")
    if "teacher" in p.method.train_splits and "train" in p.method.train_splits and teacher_is_train(dataset):
        # the student would see its train split twice: the teacher has no data of its own
        raise IncompatibleError(f"method '{p.method.name}' trains on the teacher split's labels, but {culprit}'s "
                                "teacher split is its train split (set dataset.teacher=holdout:F for one of its own)")


def _shapes(state: RunState) -> dict[str, tuple[int, ...]]:
    """Each modality's example shape, from the splits that carry it (the method's train-time
    modalities are in train only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for split in (state.train, state.val):
        for m in state.train_modalities + state.student_modalities + state.teacher_modalities:
            # a tensor, or a lazy column with a shape (frames read on demand)
            if split is not None and hasattr(split.tensors.get(m), "shape"):
                shapes.setdefault(m, tuple(split.tensors[m].shape[1:]))
    return shapes
