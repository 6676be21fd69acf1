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
from xbench.cache import TeacherCache, enabled
from xbench.checkpoints import describe, load_checkpoint, read_weights
from xbench.config import stable_hash, to_plain
from xbench.context import RunContext, Stage
from xbench.contracts import MaskedLM, teacher_is_train
from xbench.data.examples import Examples
from xbench.engine.plan import Plan
from xbench.engine.record import numerics
from xbench.engine.state import RunState, TeacherSlot, add_cached, call, fold_tag
from xbench.errors import ConfigError, IncompatibleError
from xbench.specs import NoOptions
from xbench.store import xbench_home
from xbench.taps import install
from xbench.train import Selection, StepSpec, derive_seed, fit, place, predict, set_execution


def build_teacher(ctx: RunContext, state: RunState) -> None:
    """The run's teachers (one; or one per fold under "crossfit:K", of which a teacher reference
    needs the first only), seeded; each trained from the cache where this exact teacher was
    trained before. When all are, the training stages are done."""
    p = ctx.plan
    k = folds_of(state.dataset)
    ckpt = p.teacher_setup.checkpoint
    weights = read_weights(ckpt.path, "teacher") if ckpt is not None else None  # read once for every fold
    for fold in [None] if not k else range(1 if p.method.evaluates == "teacher" else k):
        state.teachers.append(_build_one(ctx, state, fold, weights))
    state.teacher = state.teachers[0].model
    if all(t.spend is not None for t in state.teachers):
        state.done |= {Stage.TEACHER_PRETRAIN, Stage.TEACHER}
        _frozen(ctx, state)


def folds_of(dataset: Any) -> int:
    """K under the dataset's "crossfit:K" teacher protocol, else 0."""
    return int(getattr(dataset, "teacher_folds", 0) or 0)


def _build_one(ctx: RunContext, state: RunState, fold: int | None, weights: dict | None) -> TeacherSlot:
    p = ctx.plan
    owner = p.owner("teachers", p.teacher.name)
    torch.manual_seed(derive_seed(ctx.seed, "teacher-init", *fold_tag(fold)))
    args = (state.model_ctx,) if p.teacher.options is NoOptions else (state.model_ctx, p.teacher_options)
    model = call(owner, f"teacher '{p.teacher.name}'", p.teacher.factory, *args)
    if weights is not None:  # before placing: a checkpoint is read on the CPU
        state.checkpoints["teacher"] = load_checkpoint(model, p.teacher_setup.checkpoint, "teacher", weights)
        if fold in (None, 0):
            ctx.log(f"teacher '{p.teacher.name}': {describe(state.checkpoints['teacher'])}")
    if isinstance(source := getattr(model, "weights_source", None), dict):  # its own files, recorded
        state.checkpoints["teacher-model"] = dict(source)
    install(model, p.module_taps("teacher"), f"teacher '{p.teacher.name}'")
    setup = p.teacher_setup
    model = set_execution(place(model, ctx.device), f"teacher '{p.teacher.name}'", setup.compile,
                          setup.activation_checkpointing)
    slot = TeacherSlot(model, fold, {n for n, q in model.named_parameters() if not q.requires_grad})
    if enabled("teachers", p.tier):
        key = teacher_key(p, ctx.seed, state.dataset, model, state.task, ctx.device, fold)
        slot.cache = TeacherCache(ctx.home or xbench_home(), key, ctx.log)
        hit = slot.cache.claim(model, needs=("spends", "selection"))
        if hit is not None:  # trained before for this (teacher, data, task, tier, seed, fold)
            slot.spend = add_cached(ctx, state, hit["spends"])[-1]
            slot.selection = Selection(**hit["selection"])
    return slot


def teacher_pretrain(ctx: RunContext, state: RunState) -> None:
    """Masked-LM pretraining of a text teacher (as Ghosh et al. pretrain on Recipe1M), on a local
    text file (one procedure per line, steps separated by ' ; ') or the task's train-split step
    texts. Counted in the budget; capped by the tier's teacher-steps cap. A teacher without the
    capability (``mlm_loss``) skips it."""
    p = ctx.plan
    slots = [t for t in state.teachers if t.spend is None and isinstance(t.model, MaskedLM)]
    if not slots:
        return
    if slots[0].fold is not None and not getattr(p.teacher_options, "corpus", None):
        # the task's corpus is the train split's texts: each teacher would read its own fold
        raise IncompatibleError(f"teacher '{p.teacher.name}': masked-LM pretraining on the task's train texts "
                                "shows each crossfit teacher the fold it scores; give --set teacher.corpus=FILE "
                                "or --set teacher.mlm_steps=0")
    docs = _corpus(p, state)  # read once: every teacher pretrains on the same texts
    corpus = Examples({"text": docs, "index": torch.arange(len(docs))})
    for slot in slots:
        teacher = slot.model
        torch.manual_seed(derive_seed(ctx.seed, "train", "teacher-pretrain", *slot.tag))
        spend, _ = fit(StepSpec(
            stage=Stage.TEACHER_PRETRAIN.value, modules={"teacher": teacher},
            groups=[([q for q in teacher.parameters() if q.requires_grad], 1.0)],
            step_fn=lambda batch, t=teacher: {"mlm": t.mlm_loss(batch["text"])}, data=corpus, keys=("text",),
            max_steps=min(p.teacher_options.mlm_steps, p.teacher_steps), main_metric="mlm",
            culprit=f"teacher '{p.teacher.name}'", tag=slot.tag), ctx)
        slot.spends = [spend]
        ctx.log(f"teacher '{p.teacher.name}'{_which(slot)}: masked-LM pretraining, {spend.steps} steps on "
                f"{len(docs)} texts")


def _which(slot: TeacherSlot) -> str:
    return "" if slot.fold is None else f" (fold {slot.fold + 1})"


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
    """Each teacher not taken from the cache on the teacher split (under "crossfit:K", without
    the fold it scores) with the task's teacher objective, selected on val, then stored in the
    teacher cache; then all are frozen."""
    p = ctx.plan
    t_mods = state.teacher_modalities
    targets = tuple(dict.fromkeys(t.target for _, t, _, _ in p.teacher_terms))
    data = state.load(ctx, "teacher", t_mods)
    for slot in (t for t in state.teachers if t.spend is None):
        teacher = slot.model
        losses = {k: spec.factory(o, {}) for k, _, spec, o in p.teacher_terms}

        def step(batch: dict[str, Any], teacher: nn.Module = teacher, losses: dict = losses) -> dict[str, torch.Tensor]:
            out = teacher({m: batch[m] for m in t_mods})
            return {k: t.weight * losses[k](out[t.student], batch[t.target]) for k, t, _, _ in p.teacher_terms}

        own = data if slot.fold is None else data.subset(torch.nonzero(fold_rows(ctx, state, data) != slot.fold)[:, 0])
        torch.manual_seed(derive_seed(ctx.seed, "train", "teacher", *slot.tag))
        spend, sel = fit(StepSpec(
            stage=Stage.TEACHER.value, modules={"teacher": teacher},
            groups=[([q for q in teacher.parameters() if q.requires_grad], 1.0)], step_fn=step, data=own,
            keys=t_mods + targets, max_steps=p.teacher_steps, main_metric=teacher_metric(p, state),
            evaluate=state.evaluator(ctx, teacher, t_mods, state.val), culprit=f"teacher '{p.teacher.name}'",
            optimizer=p.teacher_optimizer, tag=slot.tag), ctx)
        spends = [*slot.spends, spend]
        state.spent.extend(s.as_dict() for s in spends)
        # a teacher the clock cut short is this run's only: neither it nor its outputs are cached
        if any(s.stopped_by == "max_seconds" for s in spends):
            if slot.cache is not None:
                slot.cache.release()
            slot.cache = None
        if slot.cache is not None:
            slot.cache.save(teacher, slot.frozen, {
                "spends": [s.as_dict() for s in spends], "selection": dataclasses.asdict(sel)})
        slot.spend, slot.selection = spend, sel
    _frozen(ctx, state)


def fold_rows(ctx: RunContext, state: RunState, data: Examples) -> torch.Tensor:
    """The fold of each example of ``data`` (the train split, or the teacher split it equals under
    "crossfit:K"). A dataset lists train fold by fold, so fold k's examples are the k-th block;
    the block sizes come from the task's examples of each ``fold:k`` split, and their labels
    must be train's."""
    if state.example_fold is None:
        parts = [state.task.examples(state.dataset, f"fold:{k}", (), 1.0, ctx.seed)
                 for k in range(folds_of(state.dataset))]
        state.example_fold = torch.repeat_interleave(torch.arange(len(parts)), torch.tensor([len(x) for x in parts]))
        state.fold_labels = [x.tensors.get("label") for x in parts]
    rows = state.example_fold
    labels = state.fold_labels
    same = len(rows) == len(data) and (
        "label" not in data.tensors or any(lab is None for lab in labels)
        or torch.equal(torch.cat(labels), data.tensors["label"]))
    if not same:
        raise IncompatibleError(f"task '{ctx.plan.task.name}' cuts the folds of dataset '{ctx.plan.dataset_name}' into "
                                "other examples than its train split, so teacher protocol crossfit cannot tell which "
                                "teacher scores which example")
    return rows


def teacher_metric(p: Plan, state: RunState) -> str:
    return getattr(state.task, "teacher_metric", p.task.main_metric)


def _frozen(ctx: RunContext, state: RunState) -> None:
    """The trained teachers frozen (no gradients, eval mode), and what the record says of them."""
    p, first = ctx.plan, state.teachers[0]
    for slot in state.teachers:
        slot.model.requires_grad_(False)
        slot.model.eval()
    if p.method.evaluates == "teacher":  # the teacher is what this method is scored by
        state.final_model, state.final_modalities = first.model, state.teacher_modalities
        state.selection = first.selection.record()
    state.teacher_record = {
        "name": p.teacher.name, "plugin": p.owner("teachers", p.teacher.name),
        "modalities": list(state.teacher_modalities),
        **_trained_on(state.dataset, len(state.teachers)),
        "source": first.spend.source, "cache_key": first.cache.key if first.cache else None,
        "val": first.selection.val_metrics, "selected_step": first.selection.step}
    if p.teacher_setup.checkpoint is not None:  # its provenance: the file it started from
        state.teacher_record.update(checkpoint=p.teacher_setup.checkpoint.path,
                                    checkpoint_sha256=p.teacher_setup.checkpoint.sha256, train_steps=p.teacher_steps)
        if p.teacher_steps == 0:
            state.teacher_record["trained_on"] = "nothing here: the pretrained checkpoint, used as it is"
    if first.fold is not None:
        state.teacher_record["folds"] = [
            {"fold": t.fold + 1, "source": t.spend.source, "cache_key": t.cache.key if t.cache else None,
             "val": t.selection.val_metrics, "selected_step": t.selection.step} for t in state.teachers]
    for slot in state.teachers:
        ctx.log(f"teacher '{p.teacher.name}'{_which(slot)} ({slot.spend.source}): val {teacher_metric(p, state)} "
                f"{slot.selection.value:.2f} after {slot.spend.steps} steps ({slot.spend.stopped_by})")


def _trained_on(dataset: Any, teachers: int) -> dict[str, str]:
    """What the record says of the teacher's data: its own split, the student's train split
    (a real dataset's ``teacher=train`` protocol, as the papers train their teachers), or all of
    it but one fold per teacher (``crossfit:K``)."""
    k = folds_of(dataset)
    if k and teachers == 1:
        return {"trained_on": f"the student's train split without fold 1 of {k} (teacher protocol 'crossfit:{k}')",
                "soft_targets": "none (a teacher reference)"}
    if k:
        return {"trained_on": f"{k} teachers, each on the student's train split without one of its {k} folds "
                              f"(teacher protocol 'crossfit:{k}'); this entry: the first",
                "soft_targets": "each train clip's from the teacher that never trained on its fold"}
    if teacher_is_train(dataset):
        return {"trained_on": "the student's train split (teacher protocol 'train')",
                "soft_targets": "frozen teacher's outputs on the train clips it trained on"}
    return {"trained_on": "teacher split (disjoint from the student's train split)",
            "soft_targets": "frozen teacher's outputs on train clips it never trained on"}


def teacher_inference(ctx: RunContext, state: RunState) -> None:
    """The frozen teachers' taps on the train split (each fold's from its teacher under
    "crossfit:K"): from the cache, or computed once and stored. Recorded as a
    ``teacher-inference`` stage either way. Without a teacher cache the student stage runs the
    frozen teachers on every batch instead."""
    p, train = ctx.plan, state.train
    if any(t.cache is None for t in state.teachers):
        return
    # every tap the teacher declares, so a second method reading another tap hits the cache too
    taps = (*p.teacher.taps, *p.module_taps("teacher"))
    spend = ctx.meter.stage(Stage.TEACHER_INFERENCE.value, 0)
    spend.samples = spend.teacher_forwards = len(train)
    rows = fold_rows(ctx, state, train) if state.teachers[0].fold is not None else None
    full: dict[str, torch.Tensor] = {}
    computed = False
    for slot in state.teachers:
        idx = torch.arange(len(train)) if rows is None else torch.nonzero(rows == slot.fold)[:, 0]
        outs = slot.cache.load_outputs("train", len(idx))
        if outs is None or any(t not in outs for t in taps):
            t0 = time.perf_counter()
            data = train if rows is None else train.subset(idx)
            outs = predict(slot.model, data, state.teacher_modalities, ctx.device, taps)
            spend.seconds += time.perf_counter() - t0
            slot.cache.save_outputs("train", outs)
            computed = True
        for t in taps:
            if t in outs:
                full.setdefault(t, outs[t].new_empty((len(train), *outs[t].shape[1:])))[idx] = outs[t]
    spend.source = "computed" if computed else "cache"
    spend.stopped_by = "done"
    needed = {t.teacher for _, t, spec, _ in p.terms if spec.reads == "teacher"} | set(p.method.teacher_taps)
    state.teacher_outputs = {t: full[t].to(ctx.device) for t in taps if t in needed}
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
    # a model that reads weights of its own (a pretrained encoder's folder) names their hash
    h.update(str(getattr(model, "weights_source", {}).get("sha256", "")).encode())
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
        "tier": [p.teacher_steps, tier.batch_size, tier.eval_every, tier.max_seconds,
                 to_plain(p.teacher_optimizer), to_plain(tier.schedule)],
        "seed": seed,
        # a checkpoint's hash (and steps other than the tier's), where set: another file is another teacher
        **({"model": setup} if (setup := p.teacher_setup.plain()) else {}),
    }


def teacher_key(p: Plan, seed: int, dataset: Any, model: nn.Module, task: Any, device: torch.device,
                fold: int | None = None) -> str:
    """Everything a trained teacher depends on: which teacher (plugin version, code and
    architecture), the data files, its configuration (``teacher_config``), the numerical stack,
    and under "crossfit:K" the fold it leaves out."""
    plugin = p.plugins[p.owner("teachers", p.teacher.name)]
    return stable_hash({
        "teacher": p.teacher.name, "plugin": [plugin["dist"], plugin["version"]], "xbench": __version__,
        "code": code_hash(model, task), "data": dataset.manifest_hash(), "numerics": numerics(device),
        **teacher_config(p, task, seed), **({} if fold is None else {"fold": fold}),
    })
