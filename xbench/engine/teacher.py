"""The teacher's stages: build it (or take it trained from the teacher cache), masked-LM
pretraining, training on the teacher split, and its frozen outputs on the student's train split;
and the identity of a trained teacher (what the cache and the sweep key it by)."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbench import __version__
from xbench import train as training_loop
from xbench.budget import StageSpend
from xbench.cache import TeacherCache, enabled
from xbench.config import stable_hash, to_plain
from xbench.context import RunContext, Stage
from xbench.contracts import MaskedLM, teacher_is_train
from xbench.data.examples import Examples
from xbench.engine.plan import Plan
from xbench.engine.record import numerics
from xbench.engine.state import RunState, add_cached, call
from xbench.errors import ConfigError
from xbench.specs import NoOptions
from xbench.store import xbench_home
from xbench.train import Selection, StepSpec, derive_seed, fit, place, predict


def build_teacher(ctx: RunContext, state: RunState) -> None:
    """The teacher model, seeded; trained from the cache where this exact teacher was trained
    before (then its training stages are done)."""
    p = ctx.plan
    owner = p.owner("teachers", p.teacher.name)
    torch.manual_seed(derive_seed(ctx.seed, "teacher-init"))
    args = (state.model_ctx,) if p.teacher.options is NoOptions else (state.model_ctx, p.teacher_options)
    state.teacher = place(call(owner, f"teacher '{p.teacher.name}'", p.teacher.factory, *args), ctx.device)
    state.teacher_frozen = {n for n, q in state.teacher.named_parameters() if not q.requires_grad}
    if enabled("teachers", p.tier):
        key = teacher_key(p, ctx.seed, state.dataset, state.teacher, state.task, ctx.device)
        state.teacher_cache = TeacherCache(ctx.home or xbench_home(), key, ctx.log)
        hit = state.teacher_cache.load(state.teacher, needs=("spends", "selection"))
        if hit is not None:  # trained before for this (teacher, data, task, tier, seed)
            spends = add_cached(ctx, state, hit["spends"])
            state.done |= {Stage.TEACHER_PRETRAIN, Stage.TEACHER}
            _frozen(ctx, state, spends[-1], Selection(**hit["selection"]))


def teacher_pretrain(ctx: RunContext, state: RunState) -> None:
    """Masked-LM pretraining of a text teacher (as Ghosh et al. pretrain on Recipe1M), on a local
    text file (one procedure per line, steps separated by ' ; ') or the task's train-split step
    texts. Counted in the budget; capped by the tier's teacher-steps cap. A teacher without the
    capability (``mlm_loss``) skips it."""
    p, teacher = ctx.plan, state.teacher
    if not isinstance(teacher, MaskedLM):
        return
    docs = _corpus(p, state)
    corpus = Examples({"text": docs, "index": torch.arange(len(docs))})
    torch.manual_seed(derive_seed(ctx.seed, "train", "teacher-pretrain"))
    spend, _ = fit(StepSpec(
        stage=Stage.TEACHER_PRETRAIN.value, modules={"teacher": teacher},
        groups=[([q for q in teacher.parameters() if q.requires_grad], 1.0)],
        step_fn=lambda batch: {"mlm": teacher.mlm_loss(batch["text"])}, data=corpus, keys=("text",),
        max_steps=min(p.teacher_options.mlm_steps, p.tier.teacher_steps), main_metric="mlm",
        culprit=f"teacher '{p.teacher.name}'"), ctx)
    state.teacher_spends = [spend]
    ctx.log(f"teacher '{p.teacher.name}': masked-LM pretraining, {spend.steps} steps on {len(docs)} texts")


def _corpus(p: Plan, state: RunState) -> list[tuple[str, ...]]:
    opts = p.teacher_options
    if getattr(opts, "corpus", None):
        path = Path(opts.corpus)
        if not path.is_file():
            raise ConfigError(f"teacher '{p.teacher.name}' option corpus: no file {path}")
        docs = [tuple(s.strip() for s in line.split(";") if s.strip())
                for line in path.read_text().splitlines() if line.strip()]
    else:
        docs = [tuple(d) for d in state.model_ctx.extras.get("corpus", [])]
    if not docs:
        raise ConfigError(f"teacher '{p.teacher.name}': masked-LM pretraining has no text "
                          f"(give --set teacher.corpus=FILE)")
    return docs


def train_teacher(ctx: RunContext, state: RunState) -> None:
    """The teacher on the teacher split with the task's teacher objective, selected on val, then
    stored in the teacher cache and frozen."""
    p, teacher = ctx.plan, state.teacher
    t_mods = state.teacher_modalities
    losses = {k: spec.factory(o, {}) for k, _, spec, o in p.teacher_terms}
    targets = tuple(dict.fromkeys(t.target for _, t, _, _ in p.teacher_terms))

    def step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = teacher({m: batch[m] for m in t_mods})
        return {k: t.weight * losses[k](out[t.student], batch[t.target]) for k, t, _, _ in p.teacher_terms}

    data = state.load(ctx, "teacher", t_mods)
    torch.manual_seed(derive_seed(ctx.seed, "train", "teacher"))
    spend, sel = fit(StepSpec(
        stage=Stage.TEACHER.value, modules={"teacher": teacher},
        groups=[([q for q in teacher.parameters() if q.requires_grad], 1.0)], step_fn=step, data=data,
        keys=t_mods + targets, max_steps=p.tier.teacher_steps, main_metric=teacher_metric(p, state),
        evaluate=state.evaluator(ctx, teacher, t_mods, state.val), culprit=f"teacher '{p.teacher.name}'",
        optimizer=p.teacher_optimizer), ctx)
    spends = [*state.teacher_spends, spend]
    state.spent.extend(s.as_dict() for s in spends)
    # a teacher the clock cut short is this run's only: neither it nor its outputs are cached
    if any(s.stopped_by == "max_seconds" for s in spends):
        state.teacher_cache = None
    if state.teacher_cache is not None:
        state.teacher_cache.save(teacher, state.teacher_frozen, {
            "spends": [s.as_dict() for s in spends], "selection": dataclasses.asdict(sel)})
    _frozen(ctx, state, spend, sel)


def teacher_metric(p: Plan, state: RunState) -> str:
    return getattr(state.task, "teacher_metric", p.task.main_metric)


def _frozen(ctx: RunContext, state: RunState, spend: StageSpend, sel: Selection) -> None:
    """The trained teacher frozen (no gradients, eval mode), and what the record says of it."""
    p, teacher = ctx.plan, state.teacher
    teacher.requires_grad_(False)
    teacher.eval()
    cache = state.teacher_cache
    if p.method.evaluates == "teacher":  # the teacher is what this method is scored by
        state.final_model, state.final_modalities = teacher, state.teacher_modalities
        state.selection = sel.record()
    state.teacher_record = {
        "name": p.teacher.name, "plugin": p.owner("teachers", p.teacher.name),
        "modalities": list(state.teacher_modalities),
        **_trained_on(state.dataset),
        "source": spend.source, "cache_key": cache.key if cache else None,
        "val": sel.val_metrics, "selected_step": sel.step}
    ctx.log(f"teacher '{p.teacher.name}' ({spend.source}): val {teacher_metric(p, state)} {sel.value:.2f} "
            f"after {spend.steps} steps ({spend.stopped_by})")


def _trained_on(dataset: Any) -> dict[str, str]:
    """What the record says of the teacher's data: its own split, or the student's train split
    (a real dataset's ``teacher=train`` protocol, as the papers train their teachers)."""
    if teacher_is_train(dataset):
        return {"trained_on": "the student's train split (teacher protocol 'train')",
                "soft_targets": "frozen teacher's outputs on the train clips it trained on"}
    return {"trained_on": "teacher split (disjoint from the student's train split)",
            "soft_targets": "frozen teacher's outputs on train clips it never trained on"}


def teacher_inference(ctx: RunContext, state: RunState) -> None:
    """The frozen teacher's taps on the train split: from the cache, or computed once and stored.
    Recorded as a ``teacher-inference`` stage either way. Without a teacher cache the student
    stage runs the frozen teacher on every batch instead."""
    p, cache, train = ctx.plan, state.teacher_cache, state.train
    if cache is None:
        return
    # every tap the teacher declares, so a second method reading another tap hits the cache too
    taps = p.teacher.taps
    spend = ctx.meter.stage(Stage.TEACHER_INFERENCE.value, 0)
    spend.samples = spend.teacher_forwards = len(train)
    outs = cache.load_outputs("train", len(train))
    if outs is None or any(t not in outs for t in taps):
        t0 = time.perf_counter()
        outs = predict(state.teacher, train, state.teacher_modalities, ctx.device, taps)
        spend.seconds = time.perf_counter() - t0
        cache.save_outputs("train", outs)
    else:
        spend.source = "cache"
    spend.stopped_by = "done"
    needed = {t.teacher for _, t, spec, _ in p.terms if spec.reads == "teacher"} | set(p.method.teacher_taps)
    state.teacher_outputs = {t: outs[t].to(ctx.device) for t in taps if t in needed}
    state.spent.append(spend.as_dict())


# ----------------------------------------------------------------------------- teacher identity


def code_hash(model: nn.Module, task: Any = None) -> str:
    """The source files of the model's class, of the task's class and of the training loop, and the
    model's parameter/buffer names and shapes: a stage whose code changed without a version bump
    (a working tree) is not taken from a cache."""
    h = hashlib.sha256()
    for obj in (type(model), training_loop, *([type(task)] if task is not None else [])):
        try:
            h.update(Path(inspect.getsourcefile(obj) or "").read_bytes())
        except (OSError, TypeError):  # no source (a compiled or dynamic class): the schema only
            pass
    h.update(repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()]).encode())
    return h.hexdigest()[:16]


def _teacher_view(p: Plan, task: Any) -> Any:
    """How a task trains and selects a teacher: its ``teacher_view()`` where it declares one,
    else (conservatively) its name and every option."""
    view = getattr(task, "teacher_view", None)
    if view is None:
        return {"task": p.task.name, "options": to_plain(p.task_options)}
    return call(p.owner("tasks", p.task.name), f"task '{p.task.name}' teacher_view", view)


def teacher_config(p: Plan, task: Any, seed: int) -> dict[str, Any]:
    """What a trained teacher depends on in the run's configuration: the teacher and its options,
    the dataset and its options, the task's view of teacher training (``_teacher_view``), the
    teacher's objective, the tier's teacher budget and optimizer, and the seed. Runs equal here
    share one teacher (the sweep groups them by it); the cache key adds code, plugin and data."""
    tier = p.tier
    return {
        "teacher_options": to_plain(p.teacher_options),
        "dataset": p.dataset_name,
        "dataset_options": {k: v for k, v in to_plain(p.dataset_options).items() if k != "label_fraction"},
        # what the teacher stage reads from the task, not the task's name: tasks that cut the
        # same examples and select the teacher the same way share one trained teacher
        "task": _teacher_view(p, task),
        "teacher_terms": [to_plain(t) for t in p.task.teacher_terms],
        "tier": [tier.teacher_steps, tier.batch_size, tier.eval_every, tier.max_seconds,
                 to_plain(p.teacher_optimizer), to_plain(tier.schedule)],
        "seed": seed,
    }


def teacher_key(p: Plan, seed: int, dataset: Any, model: nn.Module, task: Any, device: torch.device) -> str:
    """Everything a trained teacher depends on: which teacher (plugin version, code and
    architecture), the data files, its configuration (``teacher_config``) and the numerical stack."""
    plugin = p.plugins[p.owner("teachers", p.teacher.name)]
    return stable_hash({
        "teacher": p.teacher.name, "plugin": [plugin["dist"], plugin["version"]], "xbench": __version__,
        "code": code_hash(model, task), "data": dataset.manifest_hash(), "numerics": numerics(device),
        **teacher_config(p, task, seed),
    })
