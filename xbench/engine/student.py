"""The student's stages: encoder pretraining, the method's own training, fine-tuning a
self-supervised student, the linear probe, and the one evaluation on test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xbench import __version__
from xbench.cache import ModelCache, enabled
from xbench.checkpoints import describe, load_checkpoint
from xbench.config import stable_hash, to_plain
from xbench.context import RunContext, Stage
from xbench.data.examples import Examples
from xbench.engine.features import build_encoder, clip_axes
from xbench.engine.heads import build_heads, objective_groups, step_fn
from xbench.engine.plan import Plan
from xbench.engine.record import numerics
from xbench.engine.state import RunState, add_cached, call
from xbench.engine.teacher import code_hash, fold_rows
from xbench.errors import PluginError
from xbench.specs import ObjectiveContext, StudentSpec
from xbench.store import xbench_home
from xbench.taps import install
from xbench.train import StepSpec, derive_seed, fit, frozen_forward, place, predict, set_execution


def build_student(ctx: RunContext, state: RunState) -> None:
    p = ctx.plan
    model_ctx = state.model_ctx
    if p.encoder is not None and not p.frozen_encoder:  # the student trains it as its clip encoder
        clip = model_ctx.shapes[p.task.student_modalities[0]][-clip_axes(p):]
        model_ctx = dataclasses.replace(model_ctx, extras={**model_ctx.extras,
                                                           "encoder": build_encoder(ctx, state, tuple(clip))})
    torch.manual_seed(derive_seed(ctx.seed, "student-init"))  # identical init for every method
    model = call(p.owner("students", p.student.name), f"student '{p.student.name}'", p.student.factory, model_ctx)
    if p.student_setup.checkpoint is not None:  # the same file for every method of the comparison
        state.checkpoints["student"] = load_checkpoint(model, p.student_setup.checkpoint, "student")
        ctx.log(f"student '{p.student.name}': {describe(state.checkpoints['student'])}")
    install(model, p.module_taps("student"), f"student '{p.student.name}'")
    setup = p.student_setup
    state.student = set_execution(place(model, ctx.device), f"student '{p.student.name}'", setup.compile,
                                  setup.activation_checkpointing)


def pretrain(ctx: RunContext, state: RunState) -> None:
    """The encoder-pretraining stage: the student's clip encoder learns to recognise single step
    clips of the train split (labels masked as for the student). Same data, seed and budget for
    every method, so every method starts distillation from the same encoder: trained once and
    taken from the pretrain cache by the others (the stage's cost is recorded either way)."""
    p, student = ctx.plan, state.student
    cache = None
    if enabled("pretrain", p.tier):
        key = pretrain_key(p, ctx.seed, state.dataset, student, state.task, ctx.device)
        cache = ModelCache(ctx.home or xbench_home(), key, "pretrain", "student", ctx.log)
        hit = cache.claim(student, needs=("spend",))
        if hit is not None:  # the stage leaves the student in eval mode, as fit does
            (spend,) = add_cached(ctx, state, [hit["spend"]])
            student.eval()
            ctx.log(f"pretrain (cache): {spend.steps} steps")
            return
    clips = state.task.pretrain_examples(state.dataset, p.label_fraction, ctx.seed)
    ce = p.ce.factory(None, {})

    def step(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"ce": ce(student.pretrain_logits(batch["rgb"]), batch["label"], batch["label_mask"])}

    torch.manual_seed(derive_seed(ctx.seed, "train", "pretrain"))
    spend, _ = fit(StepSpec(
        stage=Stage.PRETRAIN.value, modules={"student": student}, groups=[(list(student.parameters()), 1.0)],
        step_fn=step, data=clips, keys=("rgb", "label", "label_mask"), max_steps=p.tier.pretrain_steps,
        culprit=f"student '{p.student.name}'"), ctx)
    state.spent.append(spend.as_dict())
    ctx.log(f"pretrain: {spend.steps} steps on {len(clips)} clips ({spend.stopped_by})")
    if cache is not None and spend.stopped_by == "max_steps":  # not a stage the clock cut short
        cache.save(student, set(), {"spend": spend.as_dict()})
    elif cache is not None:
        cache.release()


def pretrain_config(p: Plan, seed: int) -> dict[str, Any]:
    """What the encoder-pretraining stage depends on in the run's configuration: the student, the
    task and dataset with their options (the labels it may use among them), its loss, the tier's
    pretraining budget and optimizer, and the seed; nothing of the method. Runs equal here start
    from the same encoder (the sweep groups them by it); the cache key adds code, data, numerics."""
    tier = p.tier
    return {
        "student": p.student.name, "task": p.task.name, "task_options": to_plain(p.task_options),
        "dataset": p.dataset_name, "dataset_options": to_plain(p.dataset_options), "ce": p.ce.name,
        "tier": [tier.pretrain_steps, tier.batch_size, tier.max_seconds, to_plain(tier.optimizer),
                 to_plain(tier.schedule)],
        "seed": seed,
        **({"model": setup} if (setup := p.student_setup.plain()) else {}),
    }


def pretrain_key(p: Plan, seed: int, dataset: Any, model: nn.Module, task: Any, device: torch.device) -> str:
    """The pretrain cache's key: ``pretrain_config``, the student's plugin and code, the data files
    and the numerical stack."""
    plugin = p.plugins[p.owner("students", p.student.name)]
    return stable_hash({
        "plugin": [plugin["dist"], plugin["version"]], "xbench": __version__, "code": code_hash(model, task),
        "data": dataset.manifest_hash(), "numerics": numerics(device), **pretrain_config(p, seed),
    })


def _targets(p: Plan) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*p.task.targets, "label_mask")))


def _tap_samples(ctx: RunContext, state: RunState, keys: tuple[str, ...]) -> tuple[dict, dict]:
    """The student's (and the teacher's, where a loss reads it) taps on two train examples: the
    widths the loss heads and the objective are built for."""
    p = ctx.plan
    probe = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v
             for k, v in state.train.take(torch.arange(min(2, len(state.train))), keys).items()}
    with torch.no_grad():
        state.student.eval()
        s_taps = state.student({m: probe[m] for m in state.student_modalities + p.student.train_inputs
                                 if m in probe})
        t_taps = (state.teacher({m: probe[m] for m in state.teacher_modalities})
                   if p.uses_teacher_in_loss else {})
    return s_taps, t_taps


def _teacher_out(ctx: RunContext, state: RunState) -> Callable[[dict[str, Any]], Any]:
    cached, teacher, t_mods = state.teacher_outputs, state.teacher, state.teacher_modalities
    use_teacher = ctx.plan.uses_teacher_in_loss
    # crossfit without cached targets: each batch is routed to its examples' fold teachers
    routed = cached is None and use_teacher and state.teachers[0].fold is not None
    folds = fold_rows(ctx, state, state.train) if routed else None

    def teacher_out(batch: dict[str, Any]) -> Any:
        if cached is not None:  # the frozen teacher's outputs, looked up by example
            return {tap: v[batch["index"]] for tap, v in cached.items()}
        if folds is not None:  # crossfit: each example's from the teacher that did not see it
            return _routed(state, folds[batch["index"].cpu()], batch)
        if use_teacher:  # frozen: eval mode, inference mode
            return frozen_forward(teacher, {m: batch[m] for m in t_mods})
        return None

    return teacher_out


def _routed(state: RunState, fold: torch.Tensor, batch: dict[str, Any]) -> dict[str, Any]:
    """The frozen teachers' taps on a batch, each example's from its fold's teacher."""
    out: dict[str, Any] = {}
    for slot in state.teachers:
        rows = torch.nonzero(fold == slot.fold)[:, 0]
        if not len(rows):
            continue
        part = {m: [batch[m][i] for i in rows.tolist()] if isinstance(batch[m], list) else batch[m][rows.to(batch[m].device)]
                for m in state.teacher_modalities}
        for tap, v in frozen_forward(slot.model, part).items():
            if isinstance(v, torch.Tensor):
                out.setdefault(tap, v.new_empty((len(fold), *v.shape[1:])))[rows.to(v.device)] = v
    return out


def _build_objective(ctx: RunContext, state: RunState, s_taps: dict, t_taps: dict) -> list:
    """The method's objective module, where it has one; returns its parameter groups."""
    p = ctx.plan
    octx = ObjectiveContext(
        model=state.model_ctx, student=state.student, student_modalities=state.student_modalities,
        student_shapes={k: tuple(v.shape[1:]) for k, v in s_taps.items()},
        teacher_shapes={t: tuple(t_taps[t].shape[1:]) for t in p.method.teacher_taps},
        partners={m: _builder(p, spec, state) for m, spec in p.partners.items()}, steps=p.tier.student_steps)
    torch.manual_seed(derive_seed(ctx.seed, "objective-init"))
    owner = p.owner("methods", p.method.name)
    state.objective = place(call(owner, f"method '{p.method.name}' objective", p.method.objective,
                                 p.method_options, octx), ctx.device)
    return objective_groups(p, state.objective, state.student, _culprit(p))


def _builder(p: Plan, spec: StudentSpec, state: RunState) -> Callable[[], nn.Module]:
    """A function building a new student of ``spec`` for the run's data (in the objective's
    seeded construction, so its initialisation is fixed by the run seed)."""
    owner = p.owner("students", spec.name)
    return lambda: call(owner, f"student '{spec.name}'", spec.factory, state.model_ctx)


def _culprit(p: Plan) -> str:
    return f"plugin '{p.owner('methods', p.method.name)}': method '{p.method.name}'"


def train_student(ctx: RunContext, state: RunState) -> None:
    """The method's stage: the student, the method's loss heads and objective, trained with the
    method's loss terms under the tier's budget, selected on val (a self-supervised method keeps
    its last state). The frozen teacher must come out unchanged."""
    p, student, labels = ctx.plan, state.student, ctx.plan.method.labels
    s_mods = state.student_modalities
    # a self-supervised method's batches carry no label, no label mask, no teacher-forcing target
    s_inputs = s_mods + (p.student.train_inputs if labels else ())
    # positions: which time steps of a padded sequence are real (not a label)
    extra = ("index", "positions") if "positions" in state.train.tensors else ("index",)
    keys = tuple(dict.fromkeys(state.train_modalities + (_targets(p) if labels else ()) + p.method.privileged
                               + extra))
    s_taps, t_taps = _tap_samples(ctx, state, keys)
    state.tap_samples = s_taps
    torch.manual_seed(derive_seed(ctx.seed, "heads-init"))
    state.heads = build_heads(p, p.terms, s_taps, t_taps, ctx.device, len(state.train))
    groups = [(list(student.parameters()), 1.0)]
    for key, term, _, _ in p.terms:
        groups.append((list(state.heads[key].parameters()), p.method.lr_multipliers.get(term.loss, 1.0)))
    if p.method.objective is not None:
        groups += _build_objective(ctx, state, s_taps, t_taps)
    teachers = nn.ModuleList([t.model for t in state.teachers])
    before = _fingerprint(teachers)
    use_teacher = p.uses_teacher_in_loss
    fn = step_fn(p.terms, state.heads, student, s_inputs, state.objective, _teacher_out(ctx, state), p.method.name,
                 p.tier.student_steps)
    teachers.eval()
    modules = {"student": student, **{f"head:{k}": h for k, h in state.heads.items()}}
    if state.objective is not None:
        modules["objective"] = state.objective
    # the training stream (dropout); a control may draw another one (MethodSpec.rng_stream)
    torch.manual_seed(derive_seed(ctx.seed, "train", "student", *([p.method.rng_stream] if p.method.rng_stream else [])))
    spend, sel = fit(StepSpec(
        stage=Stage.STUDENT.value, modules=modules, groups=groups, step_fn=fn, data=state.train, keys=keys,
        max_steps=p.tier.student_steps, main_metric=p.task.main_metric,
        # self-supervised: nothing to select on without val labels; the last state is kept
        evaluate=state.evaluator(ctx, student, s_mods, state.val) if labels else None,
        teacher_forwards_per_step=1 if use_teacher and state.teacher_outputs is None else 0,
        culprit=_culprit(p), after_step=getattr(state.objective, "after_step", None),
        optimizer=p.method_optimizer), ctx)
    state.spent.append(spend.as_dict())
    if not same_state(_fingerprint(teachers), before):
        raise PluginError(f"{_culprit(p)} changed the frozen teacher's parameters or buffers")
    state.final_model, state.final_modalities = student, s_mods
    if labels:
        ctx.log(f"student: val {p.task.main_metric} {sel.value:.2f} at step {sel.step} of "
                f"{spend.steps} ({spend.stopped_by})")
        state.selection = sel.record()
    else:
        ctx.log(f"student (self-supervised): {spend.steps} steps ({spend.stopped_by})")
        state.selection = {"split": None, "metric": None, "step": spend.steps, "value": None,
                           "metrics": {}, "note": "self-supervised stage: last state, no labels to select on"}


def finetune(ctx: RunContext, state: RunState) -> None:
    """A self-supervised encoder learns the task with the task's own objective, like every
    supervised method's student, and is selected on val."""
    p, student = ctx.plan, state.student
    s_mods = state.student_modalities
    heads = build_heads(p, p.finetune_terms, state.tap_samples, {}, ctx.device, len(state.train))
    keys = tuple(dict.fromkeys(s_mods + _targets(p) + p.student.train_inputs))
    torch.manual_seed(derive_seed(ctx.seed, "train", "finetune"))
    spend, sel = fit(StepSpec(
        stage=Stage.FINETUNE.value, modules={"student": student, **{f"head:{k}": h for k, h in heads.items()}},
        groups=[(list(student.parameters()), 1.0)] + [(list(h.parameters()), 1.0) for h in heads.values()],
        step_fn=step_fn(p.finetune_terms, heads, student, s_mods + p.student.train_inputs, None,
                        lambda b: None, p.method.name, p.tier.finetune_steps),
        data=state.train, keys=keys, max_steps=p.tier.finetune_steps, main_metric=p.task.main_metric,
        evaluate=state.evaluator(ctx, student, s_mods, state.val), culprit=_culprit(p),
        optimizer=p.method_optimizer), ctx)
    state.spent.append(spend.as_dict())
    state.selection = {**sel.record(), "stage": Stage.FINETUNE.value}
    ctx.log(f"finetune: val {p.task.main_metric} {sel.value:.2f} at step {sel.step}")


class LinearProbe(nn.Module):
    """A frozen student's ``feature`` tap, standardised with the train split's statistics, through
    a linear classifier: the ``logits`` the linear-probe protocol evaluates."""

    def __init__(self, student: nn.Module, mean: torch.Tensor, std: torch.Tensor, linear: nn.Linear) -> None:
        super().__init__()
        self.student, self.linear = student, linear
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(self.student(inputs))
        out["logits"] = self.linear((out["feature"].float() - self.mean) / self.std)
        return out


def probe(ctx: RunContext, state: RunState) -> None:
    """The linear-probe protocol, identical for every method: the student frozen, its pooled
    features of the train split computed once, a linear classifier trained ``probe_steps`` steps
    (the tier's optimizer and batch size, labelled examples only), no selection."""
    p, student, train, device = ctx.plan, state.student, state.train, ctx.device
    student.eval()
    feats = predict(student, train, state.student_modalities, device, ("feature",))["feature"]
    # standardising makes a fixed step count mean the same for every method's feature scale
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    data = Examples({"feature": (feats - mean) / std, "label": train.tensors["label"],
                     "label_mask": train.tensors["label_mask"]})
    torch.manual_seed(derive_seed(ctx.seed, "probe-init"))
    linear = nn.Linear(feats.shape[1], state.model_ctx.num_classes).to(device)
    ce = p.ce.factory(None, {})
    torch.manual_seed(derive_seed(ctx.seed, "train", "probe"))
    spend, _ = fit(StepSpec(
        stage=Stage.PROBE.value, modules={"probe": linear}, groups=[(list(linear.parameters()), 1.0)],
        step_fn=lambda b: {"ce": ce(linear(b["feature"]), b["label"], b["label_mask"])},
        data=data, keys=("feature", "label", "label_mask"), max_steps=p.tier.probe_steps,
        culprit="linear probe"), ctx)
    state.spent.append(spend.as_dict())
    state.final_model = LinearProbe(student, mean.to(device), std.to(device), linear).eval()
    ctx.log(f"linear probe: {p.tier.probe_steps} steps on frozen features")


def test(ctx: RunContext, state: RunState) -> None:
    """Test is evaluated exactly once, on the val-selected state."""
    state.metrics = state.evaluator(ctx, state.final_model, state.final_modalities, state.test, final=True)()


def _fingerprint(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def same_state(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
