"""From a RunConfig to a RunRecord: resolve and check everything, then train and evaluate.

``plan`` does every check that can fail cheaply (names, options, modalities, taps) before any data
is generated or any model built, so a bad command fails in milliseconds with one line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import platform
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbench import __version__
from xbench.alloc import state as alloc_state
from xbench.budget import BudgetMeter, StageSpend
from xbench.cache import TeacherCache
from xbench.cache import enabled as cache_enabled
from xbench.config import (
    REPO_ROOT,
    RunConfig,
    Tier,
    from_mapping,
    replace_options,
    stable_hash,
    to_plain,
)
from xbench.errors import ConfigError, IncompatibleError, PluginError, XbenchError
from xbench.registry import Registry
from xbench.specs import (
    LossSpec,
    LossTerm,
    MethodSpec,
    ModelContext,
    NoOptions,
    ObjectiveContext,
    TaskSpec,
    TeacherSpec,
)
from xbench.store import xbench_home
from xbench.train import Selection, derive_seed, fit, frozen_forward, place, predict


@dataclass
class Plan:
    cfg: RunConfig
    tier: Tier
    method: MethodSpec
    task: TaskSpec
    dataset_name: str
    teacher: TeacherSpec | None
    method_options: Any
    teacher_options: Any
    task_options: Any
    dataset_options: Any
    terms: list[tuple[str, LossTerm, LossSpec, Any]]
    registry: Registry

    @property
    def uses_teacher_in_loss(self) -> bool:
        return bool(self.method.teacher_taps) or any(spec.reads == "teacher" for _, _, spec, _ in self.terms)

    def resolved(self) -> dict[str, Any]:
        """Everything that determines a run's result but the seed: hashed into config_hash."""
        return {
            "method": self.method.name, "task": self.task.name, "dataset": self.dataset_name,
            "tier": to_plain(self.tier), "teacher": self.teacher.name if self.teacher else None,
            "teacher_options": to_plain(self.teacher_options),
            "student": self.task.student, "method_options": to_plain(self.method_options),
            "task_options": to_plain(self.task_options), "dataset_options": to_plain(self.dataset_options),
            "loss_terms": [{"key": k, **to_plain(t), "options": to_plain(o)} for k, t, _, o in self.terms],
            "lr_multipliers": dict(self.method.lr_multipliers),
        }


def _options(spec_options: type, values: dict[str, Any], where: str) -> Any:
    return from_mapping(spec_options, values, where)


def plan(reg: Registry, cfg: RunConfig, tiers: dict[str, Tier]) -> Plan:
    method = reg.get("methods", cfg.method)
    task = reg.get("tasks", cfg.task)
    m_owner = reg.entry("methods", cfg.method).plugin
    if method.tasks is not None and task.name not in method.tasks:
        raise IncompatibleError(f"method '{method.name}' does not support task '{task.name}' "
                                f"(it supports: {', '.join(method.tasks)})")
    dataset_name = cfg.dataset or task.datasets[0]
    dataset = reg.get("datasets", dataset_name)
    if dataset_name not in task.datasets:
        raise IncompatibleError(f"task '{task.name}' cannot run on dataset '{dataset_name}' "
                                f"(it runs on: {', '.join(task.datasets)})")
    if cfg.budget not in tiers:
        import difflib

        hint = difflib.get_close_matches(cfg.budget, list(tiers), n=1)
        raise ConfigError(f"unknown budget tier '{cfg.budget}'"
                          + (f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(tiers)}"))
    tier = tiers[cfg.budget]
    if cfg.budget_options:
        if "name" in cfg.budget_options:
            raise ConfigError("--set budget.name: a tier's name cannot be overridden")
        tier = replace_options(tier, cfg.budget_options, f"budget tier '{tier.name}'")
        # a modified tier is a different budget: never compared with the published one
        tier = replace_options(tier, {"name": f"{tier.name}+custom"}, "budget")

    known = {f.name for f in fields(dataset.options)} if dataset.options else set()
    ds_values = {k: v for k, v in tier.dataset.items() if k in known}
    ds_values.update({k: v for k, v in task.dataset_defaults.items() if k in known})
    ds_values.update(cfg.dataset_options)
    dataset_options = _options(dataset.options, ds_values, f"dataset '{dataset_name}' options")
    task_options = _options(task.options, cfg.task_options, f"task '{task.name}' options")
    method_options = _options(method.options, cfg.method_options, f"method '{method.name}' options")

    student = reg.get("students", task.student)
    teacher = None
    if cfg.teacher and method.teacher is None:
        raise IncompatibleError(f"--teacher {cfg.teacher}: method '{method.name}' uses no teacher")
    if method.teacher is not None:
        chosen = cfg.teacher or (task.default_teacher if method.teacher == "default" else method.teacher)
        teacher = reg.get("teachers", chosen)
    if teacher is None and cfg.teacher_options:
        raise ConfigError(f"teacher options given, but method '{method.name}' uses no teacher")
    teacher_options = _options(teacher.options, cfg.teacher_options,
                               f"teacher '{teacher.name}' options") if teacher else None
    for mod in student.modalities + (teacher.modalities if teacher else ()):
        if mod not in dataset.modalities:
            who = f"teacher '{teacher.name}'" if teacher and mod in teacher.modalities else "the student"
            raise IncompatibleError(f"method '{method.name}' needs modality '{mod}' ({who}), which "
                                    f"dataset '{dataset_name}' does not provide")

    try:
        import inspect

        wants_task = len(inspect.signature(method.terms).parameters) >= 2
        raw_terms = list(method.terms(method_options, task) if wants_task else method.terms(method_options))
    except Exception as exc:
        raise PluginError(f"plugin '{m_owner}': method '{method.name}' failed to list its loss "
                          f"terms: {type(exc).__name__}: {exc}") from exc
    if not raw_terms and method.evaluates == "student" and method.objective is None:
        raise PluginError(f"plugin '{m_owner}': method '{method.name}' has no loss terms")
    terms = []
    expanded: list[LossTerm] = []
    for term in raw_terms:
        if not isinstance(term, LossTerm):
            raise PluginError(f"plugin '{m_owner}': method '{method.name}' returned {term!r}, "
                              f"not a LossTerm")
        if term.loss == "task":  # the task's supervised objective, scaled as a whole
            expanded += [dataclasses.replace(t, weight=t.weight * term.weight) for t in task.terms]
        else:
            expanded.append(term)
    for term in expanded:
        try:
            spec = reg.get("losses", term.loss)
        except XbenchError as exc:
            raise IncompatibleError(f"method '{method.name}': {exc}") from exc
        term = resolve_term(term, spec, task)
        if term.student not in student.taps:
            raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' reads student tap "
                                    f"'{term.student}', which student '{student.name}' does not have "
                                    f"(taps: {', '.join(student.taps)})")
        if spec.reads == "teacher":
            if teacher is None:
                raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' needs a teacher "
                                        f"but the method declares none")
            if term.teacher not in teacher.taps:
                raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' reads teacher tap "
                                        f"'{term.teacher}', which teacher '{teacher.name}' does not "
                                        f"have (taps: {', '.join(teacher.taps)})")
            if spec.target and term.target not in task.targets:
                raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' reads target "
                                        f"'{term.target}', which task '{task.name}' does not provide")
        elif (term.target or "").startswith("student:"):
            if term.target[8:] not in student.taps:
                raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' reads student "
                                        f"tap '{term.target[8:]}', which student '{student.name}' "
                                        f"does not have (taps: {', '.join(student.taps)})")
        elif term.target not in task.targets:
            raise IncompatibleError(f"method '{method.name}': loss '{term.loss}' reads target "
                                    f"'{term.target}', which task '{task.name}' does not provide")
        opts = _options(spec.options, dict(term.options), f"method '{method.name}': loss '{term.loss}'")
        key = term.loss
        n = 2
        while any(k == key for k, *_ in terms):
            key, n = f"{term.loss}#{n}", n + 1
        terms.append((key, term, spec, opts))
    for name in method.lr_multipliers:
        # a name that is no loss may name a child module of the objective (checked when built)
        if not any(t.loss == name for _, t, _, _ in terms) and method.objective is None:
            raise PluginError(f"plugin '{m_owner}': method '{method.name}' sets an lr multiplier for "
                              f"'{name}', which is none of its losses")
    _check_objective(method, task, teacher, dataset, dataset_name, terms)
    if (teacher is not None and method.teacher == "default" and not cfg.teacher and method.evaluates == "student"
            and not method.teacher_taps and not any(spec.reads == "teacher" for _, _, spec, _ in terms)):
        # nothing reads the task's default teacher (a combination of label losses): none is trained
        teacher, teacher_options = None, None
    protocol = getattr(task_options, "protocol", None)
    if protocol == "linear" and tier.probe_steps <= 0:
        raise ConfigError(f"task '{task.name}' protocol 'linear' needs probe_steps > 0 in budget "
                          f"tier '{tier.name}'")
    if protocol == "finetune" and not method.labels and tier.finetune_steps <= 0:
        raise ConfigError(f"self-supervised method '{method.name}' with protocol 'finetune' needs "
                          f"finetune_steps > 0 in budget tier '{tier.name}'")
    return Plan(cfg, tier, method, task, dataset_name, teacher, method_options, teacher_options,
                task_options, dataset_options, terms, reg)


def resolve_term(term: LossTerm, spec: LossSpec, task: TaskSpec) -> LossTerm:
    """A term with what it leaves unset filled from its loss: the taps it reads by default, and
    the task's first target for a loss that reads a target."""
    updates: dict[str, Any] = {}
    if term.student is None:
        updates["student"] = spec.student_tap
    if spec.reads == "teacher" and term.teacher is None:
        updates["teacher"] = spec.teacher_tap
    if spec.reads_target and term.target is None and task.targets:
        updates["target"] = task.targets[0]
    return dataclasses.replace(term, **updates) if updates else term


def _check_objective(method: MethodSpec, task: TaskSpec, teacher: TeacherSpec | None, dataset,
                     dataset_name: str, terms) -> None:
    for mod in method.modalities:
        if mod not in dataset.modalities:
            raise IncompatibleError(f"method '{method.name}' needs modality '{mod}' at train time, "
                                    f"which dataset '{dataset_name}' does not provide")
    if method.teacher_taps:
        if teacher is None:
            raise IncompatibleError(f"method '{method.name}': its objective reads teacher taps but "
                                    f"the method declares no teacher")
        missing = [t for t in method.teacher_taps if t not in teacher.taps]
        if missing:
            raise IncompatibleError(f"method '{method.name}' reads teacher tap '{missing[0]}', which "
                                    f"teacher '{teacher.name}' does not have (taps: {', '.join(teacher.taps)})")
    if not method.labels:
        # self-supervised: no stage of the method may see a label, directly or through a teacher
        # trained on labels
        for _, term, spec, _ in terms:
            if spec.reads_target and not (term.target or "").startswith("student:"):
                raise IncompatibleError(f"method '{method.name}' is self-supervised (labels=False) "
                                        f"but its loss '{term.loss}' reads target '{term.target}'")
        if teacher is not None:
            raise IncompatibleError(f"method '{method.name}' is self-supervised (labels=False) but "
                                    f"uses teacher '{teacher.name}', which trains on labels")
    if method.objective is None and (method.modalities or method.teacher_taps or not method.labels):
        raise IncompatibleError(f"method '{method.name}' declares modalities, teacher taps or "
                                f"labels=False without an objective that reads them")


# ----------------------------------------------------------------------------- execution


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, check=False,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _count_own(module: nn.Module | None, student: nn.Module | None) -> int:
    """Trainable parameters of an objective, without the student's it may hold a reference to."""
    if module is None:
        return 0
    own = {id(q) for q in student.parameters()} if student is not None else set()
    seen = {id(q): q for q in module.parameters() if q.requires_grad and id(q) not in own}
    return sum(q.numel() for q in seen.values())


def _expand_task_terms(p: Plan, raw: list[LossTerm]) -> list[tuple[str, LossTerm, LossSpec, Any]]:
    out = []
    for n, term in enumerate(raw):
        spec = p.registry.get("losses", term.loss)
        term = resolve_term(term, spec, p.task)
        opts = _options(spec.options, dict(term.options), f"task '{p.task.name}': loss '{term.loss}'")
        out.append((f"{term.loss}#{n}" if n else term.loss, term, spec, opts))
    return out


def _build_heads(p: Plan, terms, s_probe, t_probe, device, examples: int) -> dict[str, nn.Module]:
    heads = {}
    for key, term, spec, opts in terms:
        dims = {"student": s_probe[term.student].shape[-1], "examples": examples}
        if spec.reads == "teacher":
            dims["teacher"] = t_probe[term.teacher].shape[-1]
        l_owner = p.registry.entry("losses", spec.name).plugin
        heads[key] = place(_call(l_owner, f"loss '{spec.name}'", spec.factory, opts, dims), device)
    return heads


def _objective_groups(p: Plan, objective: nn.Module, student: nn.Module,
                      culprit: str) -> list[tuple[list[nn.Parameter], float]]:
    """The objective's own trainable parameters, one group per child module with the method's
    lr multiplier for that child's name; parameters of the student it holds are left out (they
    are the student's group, at the tier's lr)."""
    seen = {id(q) for q in student.parameters()}
    mults = dict(p.method.lr_multipliers)
    loss_names = {t.loss for _, t, _, _ in p.terms}
    children = dict(objective.named_children())
    unknown = [n for n in mults if n not in children and n not in loss_names]
    if unknown:
        raise PluginError(f"{culprit} sets an lr multiplier for '{unknown[0]}', which is none of its "
                          f"losses and no module of its objective ({', '.join(children) or 'none'})")
    groups = []
    for name, module in [("", objective), *children.items()]:
        params = module.parameters(recurse=bool(name))
        own = [q for q in params if q.requires_grad and id(q) not in seen]
        seen.update(id(q) for q in own)
        groups.append((own, mults.get(name, 1.0)))
    return groups


def _step_fn(terms, heads, student: nn.Module, s_inputs: tuple[str, ...], objective: nn.Module | None,
             teacher_out: Callable, method: str) -> Callable:
    """batch -> named weighted loss terms: each (student tap, teacher tap or target) term, then the
    objective's terms. The student runs once on the batch, unless nothing reads its outputs."""
    need_student = bool(terms) or getattr(objective, "uses_student_output", True)
    # keyword -> batch key of what each teacher-reading loss reads besides its taps, decided once
    keywords = {key: {**({"target": term.target, "label_mask": "label_mask"} if spec.target else {}),
                      **({"index": "index"} if spec.index else {})}
                for key, term, spec, _ in terms}

    def step(batch):
        s_out = student({m: batch[m] for m in s_inputs}) if need_student else None
        t_out = teacher_out(batch)
        out = {}
        for key, term, spec, _ in terms:
            if spec.reads == "teacher":
                args = (batch.get("positions"),) if spec.positions else ()
                kw = {name: batch[k] for name, k in keywords[key].items()}
                value = heads[key](s_out[term.student], t_out[term.teacher], *args, **kw)
            elif term.target.startswith("student:"):
                value = heads[key](s_out[term.student], s_out[term.target[8:]], batch.get("label_mask"))
            else:
                value = heads[key](s_out[term.student], batch[term.target], batch["label_mask"])
            out[key] = term.weight * value
        if objective is not None:
            for name, value in objective(batch, s_out, t_out).items():
                out[f"{method}:{name}"] = value
        return out

    return step


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


def _linear_probe(p: Plan, student: nn.Module, train, s_mods, num_classes: int, seed: int,
                  device: torch.device, meter: BudgetMeter, progress: bool) -> LinearProbe:
    """The linear-probe protocol, identical for every method: the student frozen, its pooled
    features of the train split computed once, a linear classifier trained ``probe_steps`` steps
    (the tier's optimizer and batch size, labelled examples only), no selection."""
    from xbench.tasks import Examples

    student.eval()
    feats = predict(student, train, s_mods, device, ("feature",))["feature"]
    # standardising makes a fixed step count mean the same for every method's feature scale
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    data = Examples({"feature": (feats - mean) / std, "label": train.tensors["label"],
                     "label_mask": train.tensors["label_mask"]})
    torch.manual_seed(derive_seed(seed, "probe-init"))
    linear = nn.Linear(feats.shape[1], num_classes).to(device)
    ce = p.registry.get("losses", "ce").factory(None, {})
    torch.manual_seed(derive_seed(seed, "train", "probe"))
    fit(stage="probe", modules={"probe": linear}, groups=[(list(linear.parameters()), 1.0)],
        step_fn=lambda b: {"ce": ce(linear(b["feature"]), b["label"], b["label_mask"])},
        data=data, keys=("feature", "label", "label_mask"), tier=p.tier, max_steps=p.tier.probe_steps,
        seed=seed, device=device, meter=meter, evaluate=None, main_metric="top1", progress=progress,
        culprit="linear probe")
    return LinearProbe(student, mean.to(device), std.to(device), linear).eval()


def _call(owner: str, what: str, fn: Callable, *args):
    """Run plugin code; any exception is re-raised naming the plugin."""
    try:
        return fn(*args)
    except XbenchError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin '{owner}' raised in {what}: {type(exc).__name__}: {exc}") from exc


def execute(p: Plan, seed: int, *, device: torch.device, data_root: Path | None = None,
            progress: bool = False, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train and evaluate one seed of a plan; returns the run record (not yet stored).

    Stages, each through the one loop of ``train.fit`` and counted by one BudgetMeter:
    ``teacher`` (the privileged teacher on the teacher split, then frozen), ``pretrain`` (the
    student's clip encoder, for tasks that have it: identical for every method), ``student``
    (the method's objective). Test is evaluated once, on the val-selected state."""
    reg = p.registry
    started = dt.datetime.now(dt.timezone.utc)
    meter = BudgetMeter(p.tier.max_seconds)
    ds_spec = reg.get("datasets", p.dataset_name)
    ds_owner = reg.entry("datasets", p.dataset_name).plugin
    dataset = _call(ds_owner, f"dataset '{p.dataset_name}'", ds_spec.factory, p.dataset_options, data_root)
    task_owner = reg.entry("tasks", p.task.name).plugin
    task = _call(task_owner, f"task '{p.task.name}'", p.task.factory, p.task_options)
    st_spec = reg.get("students", p.task.student)
    s_mods = p.task.student_modalities
    t_mods = p.teacher.modalities if p.teacher else ()
    label_fraction = getattr(p.dataset_options, "label_fraction", 1.0)

    def load(split: str, mods: tuple[str, ...]):
        return task.examples(dataset, split, tuple(dict.fromkeys(mods)), label_fraction, seed)

    train_mods = s_mods + (t_mods if p.uses_teacher_in_loss else ()) + p.method.modalities
    teacher_eval = p.method.evaluates == "teacher"
    train = load("train", train_mods) if not teacher_eval else None
    val = load("val", s_mods + t_mods)
    test = load("test", t_mods if teacher_eval else s_mods)
    shapes = {}
    for split in (train, val):  # the method's train-time modalities are in train only
        for m in train_mods + s_mods + t_mods:
            if split is not None and isinstance(split.tensors.get(m), torch.Tensor):
                shapes.setdefault(m, tuple(split.tensors[m].shape[1:]))
    ctx = ModelContext(num_classes=dataset.num_classes, shapes=shapes,
                       extras=dict(getattr(task, "extras", {})))
    eval_taps = getattr(task, "eval_taps", ("logits",))
    teacher_metric = getattr(task, "teacher_metric", p.task.main_metric)
    targets = tuple(dict.fromkeys((*p.task.targets, "label_mask")))
    record_stages = []

    gallery_split = getattr(task, "gallery_split", None)
    galleries: dict[tuple[str, ...], Any] = {}

    def evaluator(model: nn.Module, mods: tuple[str, ...], data, final: bool = False):
        def evaluate():
            outputs = predict(model, data, mods, device, eval_taps)
            if gallery_split is None:
                return task.evaluate(outputs, data, final)
            # retrieval: the queries search a gallery split embedded by the same model
            if mods not in galleries:
                reuse = train is not None and gallery_split == "train" and all(m in train.tensors for m in mods)
                galleries[mods] = train if reuse else load(gallery_split, mods)
            g = galleries[mods]
            return task.evaluate(outputs, data, final, gallery=(predict(model, g, mods, device, eval_taps), g))
        return evaluate

    teacher_model = None
    teacher_record = None
    cache: TeacherCache | None = None
    cache_on = cache_enabled()
    if p.teacher is not None:
        t_owner = reg.entry("teachers", p.teacher.name).plugin
        torch.manual_seed(derive_seed(seed, "teacher-init"))
        t_args = (ctx,) if p.teacher.options is NoOptions else (ctx, p.teacher_options)
        teacher_model = place(_call(t_owner, f"teacher '{p.teacher.name}'", p.teacher.factory, *t_args), device)
        frozen = {n for n, q in teacher_model.named_parameters() if not q.requires_grad}
        if cache_on:
            cache = TeacherCache(xbench_home(), _teacher_key(p, seed, dataset, teacher_model, task), log)
        hit = cache.load_teacher(teacher_model) if cache is not None else None
        if hit is not None:  # trained before for this (teacher, data, task, tier, seed)
            spends = [StageSpend(**{**s, "source": "cache"}) for s in hit["spends"]]
            meter.stages.extend(spends)
            sel = Selection(**hit["selection"])
        else:
            spends = []
            if getattr(p.teacher_options, "mlm_steps", 0) > 0 and hasattr(teacher_model, "mlm_loss"):
                spends.append(_teacher_pretrain(p, teacher_model, ctx, seed, device, meter,
                                                progress, log))
            tdata = load("teacher", t_mods)
            t_terms = _expand_task_terms(p, list(p.task.teacher_terms or (LossTerm("ce", target="label"),)))
            t_losses = {k: spec.factory(o, {}) for k, _, spec, o in t_terms}
            t_targets = tuple(dict.fromkeys(t.target for _, t, _, _ in t_terms))

            def teacher_step(batch):
                out = teacher_model({m: batch[m] for m in t_mods})
                return {k: t.weight * t_losses[k](out[t.student], batch[t.target]) for k, t, _, _ in t_terms}

            torch.manual_seed(derive_seed(seed, "train", "teacher"))
            spend, sel = fit(
                stage="teacher", modules={"teacher": teacher_model},
                groups=[([q for q in teacher_model.parameters() if q.requires_grad], 1.0)],
                step_fn=teacher_step, data=tdata, keys=t_mods + t_targets, tier=p.tier,
                max_steps=p.tier.teacher_steps, seed=seed, device=device, meter=meter,
                main_metric=teacher_metric, progress=progress,
                evaluate=evaluator(teacher_model, t_mods, val), culprit=f"teacher '{p.teacher.name}'")
            spends.append(spend)
            if cache is not None:
                cache.save_teacher(teacher_model, frozen, {"spends": [s.as_dict() for s in spends],
                                                           "selection": dataclasses.asdict(sel)})
        spend = spends[-1]
        record_stages.extend(s.as_dict() for s in spends)
        teacher_model.requires_grad_(False)
        teacher_model.eval()
        teacher_record = {"name": p.teacher.name, "plugin": t_owner, "modalities": list(t_mods),
                          "trained_on": "teacher split (disjoint from the student's train split)",
                          "soft_targets": "frozen teacher's outputs on train clips it never trained on",
                          "source": spend.source, "cache_key": cache.key if cache else None,
                          "val": sel.val_metrics, "selected_step": sel.step}
        log(f"teacher '{p.teacher.name}' ({spend.source}): val {teacher_metric} {sel.value:.2f} "
            f"after {spend.steps} steps ({spend.stopped_by})")

    heads: dict[str, nn.Module] = {}
    objective: nn.Module | None = None
    student = None
    selection: dict[str, Any]
    if teacher_eval:
        final_model, final_mods = teacher_model, t_mods
        selection = {"split": "val", "metric": teacher_metric, "step": sel.step, "value": sel.value,
                     "metrics": sel.val_metrics}
    else:
        st_owner = reg.entry("students", st_spec.name).plugin
        m_owner = reg.entry("methods", p.method.name).plugin
        culprit = f"plugin '{m_owner}': method '{p.method.name}'"
        labels = p.method.labels
        torch.manual_seed(derive_seed(seed, "student-init"))  # identical init for every method
        student = place(_call(st_owner, f"student '{st_spec.name}'", st_spec.factory, ctx), device)
        if p.task.pretrain and p.tier.pretrain_steps > 0:
            record_stages.append(_pretrain(p, task, dataset, student, seed, device, meter, progress, log))
        # a self-supervised method's batches carry no label, no label mask, no teacher-forcing target
        s_inputs = s_mods + (st_spec.train_inputs if labels else ())
        # positions: which time steps of a padded sequence are real (not a label)
        extra = ("index", "positions") if "positions" in train.tensors else ("index",)
        train_keys = tuple(dict.fromkeys(train_mods + (targets if labels else ()) + extra))
        probe = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in train.take(torch.arange(min(2, len(train))), train_keys).items()}
        with torch.no_grad():
            student.eval()
            s_probe = student({m: probe[m] for m in s_mods + st_spec.train_inputs if m in probe})
            t_probe = teacher_model({m: probe[m] for m in t_mods}) if p.uses_teacher_in_loss else {}
        torch.manual_seed(derive_seed(seed, "heads-init"))
        heads = _build_heads(p, p.terms, s_probe, t_probe, device, len(train))
        groups = [(list(student.parameters()), 1.0)]
        for key, term, spec, _ in p.terms:
            groups.append((list(heads[key].parameters()), p.method.lr_multipliers.get(term.loss, 1.0)))
        if p.method.objective is not None:
            octx = ObjectiveContext(
                model=ctx, student=student, student_modalities=s_mods,
                student_shapes={k: tuple(v.shape[1:]) for k, v in s_probe.items()},
                teacher_shapes={t: tuple(t_probe[t].shape[1:]) for t in p.method.teacher_taps})
            torch.manual_seed(derive_seed(seed, "objective-init"))
            objective = place(_call(m_owner, f"method '{p.method.name}' objective", p.method.objective,
                                    p.method_options, octx), device)
            groups += _objective_groups(p, objective, student, culprit)
        frozen_before = _state_fingerprint(teacher_model) if teacher_model is not None else None
        use_teacher = p.uses_teacher_in_loss
        cached_outputs = None
        if use_teacher and cache is not None:
            cached_outputs = _teacher_outputs(p, cache, teacher_model, train, t_mods, device, meter)
            record_stages.append(meter.stages[-1].as_dict())

        def teacher_out(batch):
            if cached_outputs is not None:  # the frozen teacher's outputs, looked up by example
                return {tap: v[batch["index"]] for tap, v in cached_outputs.items()}
            if use_teacher:  # frozen: eval mode, inference mode
                return frozen_forward(teacher_model, {m: batch[m] for m in t_mods})
            return None

        student_step = _step_fn(p.terms, heads, student, s_inputs, objective, teacher_out,
                                p.method.name)
        if teacher_model is not None:
            teacher_model.eval()
        modules = {"student": student, **{f"head:{k}": h for k, h in heads.items()}}
        if objective is not None:
            modules["objective"] = objective
        torch.manual_seed(derive_seed(seed, "train", "student"))
        spend, sel = fit(
            stage="student", modules=modules, groups=groups, step_fn=student_step, data=train,
            keys=train_keys, tier=p.tier, max_steps=p.tier.student_steps, seed=seed, device=device,
            meter=meter, main_metric=p.task.main_metric, progress=progress,
            # self-supervised: nothing to select on without val labels; the last state is kept
            evaluate=evaluator(student, s_mods, val) if labels else None,
            teacher_forwards_per_step=1 if use_teacher and cached_outputs is None else 0,
            culprit=culprit, after_step=getattr(objective, "after_step", None))
        record_stages.append(spend.as_dict())
        if teacher_model is not None and not same_state(_state_fingerprint(teacher_model), frozen_before):
            raise PluginError(f"plugin '{m_owner}': method '{p.method.name}' changed the frozen "
                              f"teacher's parameters or buffers")
        if labels:
            log(f"student: val {p.task.main_metric} {sel.value:.2f} at step {sel.step} of "
                f"{spend.steps} ({spend.stopped_by})")
            selection = {"split": "val", "metric": p.task.main_metric, "step": sel.step,
                         "value": sel.value, "metrics": sel.val_metrics}
        else:
            log(f"student (self-supervised): {spend.steps} steps ({spend.stopped_by})")
            selection = {"split": None, "metric": None, "step": spend.steps, "value": None,
                         "metrics": {}, "note": "self-supervised stage: last state, no labels to select on"}
        final_model, final_mods = student, s_mods
        protocol = getattr(p.task_options, "protocol", None)
        if protocol == "finetune" and not labels:
            # the self-supervised encoder learns the task with the task's own objective, like
            # every supervised method's student, and is selected on val
            ft_terms = _expand_task_terms(p, list(p.task.terms))
            ft_heads = _build_heads(p, ft_terms, s_probe, {}, device, len(train))
            ft_keys = tuple(dict.fromkeys(s_mods + targets + st_spec.train_inputs))
            torch.manual_seed(derive_seed(seed, "train", "finetune"))
            spend, sel = fit(
                stage="finetune", modules={"student": student, **{f"head:{k}": h for k, h in ft_heads.items()}},
                groups=[(list(student.parameters()), 1.0)] + [(list(h.parameters()), 1.0) for h in ft_heads.values()],
                step_fn=_step_fn(ft_terms, ft_heads, student, s_mods + st_spec.train_inputs, None,
                                 lambda b: None, p.method.name),
                data=train, keys=ft_keys, tier=p.tier, max_steps=p.tier.finetune_steps, seed=seed,
                device=device, meter=meter, main_metric=p.task.main_metric, progress=progress,
                evaluate=evaluator(student, s_mods, val), culprit=culprit)
            record_stages.append(spend.as_dict())
            selection = {"split": "val", "metric": p.task.main_metric, "step": sel.step,
                         "value": sel.value, "metrics": sel.val_metrics, "stage": "finetune"}
            log(f"finetune: val {p.task.main_metric} {sel.value:.2f} at step {sel.step}")
        if protocol == "linear":
            final_model = _linear_probe(p, student, train, s_mods, ctx.num_classes, seed, device,
                                        meter, progress)
            record_stages.append(meter.stages[-1].as_dict())
            log(f"linear probe: {p.tier.probe_steps} steps on frozen features")
    # test is evaluated exactly once, on the val-selected state
    metrics = evaluator(final_model, final_mods, test, final=True)()
    finished = dt.datetime.now(dt.timezone.utc)
    resolved = p.resolved()
    run_id = f"{p.method.name}-{p.task.name}-{p.tier.name}-s{seed}-" \
             f"{started.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    record = {
        "schema": 1,
        "id": run_id,
        "method": p.method.name,
        "task": p.task.name,
        "dataset": p.dataset_name,
        "tier": p.tier.name,
        "seed": seed,
        "evaluated": p.method.evaluates,
        "eval_modalities": list(final_mods),
        "main_metric": p.task.main_metric,
        "metrics": metrics,
        "selection": selection,
        "budget": {"stages": record_stages, "totals": meter.totals(), "tier": to_plain(p.tier)},
        "params": {"student": _count(student),
                   "heads": sum(_count(h) for h in heads.values()) + _count_own(objective, student),
                   "teacher": _count(teacher_model)},
        "teacher": teacher_record,
        "config": {**resolved, "seed": seed},
        "config_hash": stable_hash(resolved),
        "plugins": {name: {"dist": i.dist, "version": i.version} for name, i in reg.plugins.items()},
        "data": {"root": str(getattr(dataset, "root", "")),
                 "manifest_sha256": getattr(dataset, "manifest_hash", lambda: None)(),
                 "sizes": {"train": len(train) if train is not None else 0, "val": len(val),
                           "test": len(test)}},
        "env": {"xbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "platform": platform.platform(), "device": _device_name(device),
                "threads": torch.get_num_threads(), "git_sha": git_sha(),
                "allocator": alloc_state()},
        "started": started.isoformat(),
        "finished": finished.isoformat(),
    }
    # per-field hashes: a record edited after the run is rejected naming what changed
    from xbench.submit import integrity

    record["integrity"] = integrity(record)
    return record


def _code_hash(model: nn.Module) -> str:
    """The source file of the model's class and its parameter/buffer names and shapes: a teacher
    whose code changed without a version bump (a working tree) is not taken from the cache."""
    import hashlib
    import inspect

    h = hashlib.sha256()
    try:
        h.update(Path(inspect.getsourcefile(type(model)) or "").read_bytes())
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
    return _call(p.registry.entry("tasks", p.task.name).plugin, f"task '{p.task.name}' teacher_view", view)


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
                 to_plain(tier.optimizer), to_plain(tier.schedule)],
        "seed": seed,
    }


def _teacher_key(p: Plan, seed: int, dataset, model: nn.Module, task: Any) -> str:
    """Everything a trained teacher depends on: which teacher (plugin version, code and
    architecture), the data files, and its configuration (``teacher_config``)."""
    t_owner = p.registry.owner("teachers", p.teacher.name)
    return stable_hash({
        "teacher": p.teacher.name, "plugin": [t_owner.dist, t_owner.version], "xbench": __version__,
        "code": _code_hash(model), "data": getattr(dataset, "manifest_hash", lambda: None)(),
        **teacher_config(p, task, seed),
    })


def _teacher_outputs(p: Plan, cache: TeacherCache, teacher: nn.Module, train, t_mods, device,
                     meter: BudgetMeter) -> dict[str, torch.Tensor]:
    """The frozen teacher's taps on the train split: from the cache, or computed once and stored.
    Recorded as a ``teacher-inference`` stage either way."""
    import time

    # every tap the teacher declares, so a second method reading another tap hits the cache too
    taps = p.teacher.taps
    spend = meter.stage("teacher-inference", 0)
    spend.samples = spend.teacher_forwards = len(train)
    outs = cache.load_outputs("train", len(train))
    if outs is None or any(t not in outs for t in taps):
        t0 = time.perf_counter()
        outs = predict(teacher, train, t_mods, device, taps)
        spend.seconds = time.perf_counter() - t0
        cache.save_outputs("train", outs)
    else:
        spend.source = "cache"
    spend.stopped_by = "done"
    needed = {t.teacher for _, t, spec, _ in p.terms if spec.reads == "teacher"} | set(p.method.teacher_taps)
    return {t: outs[t].to(device) for t in taps if t in needed}


def _teacher_pretrain(p: Plan, teacher: nn.Module, ctx: ModelContext, seed: int,
                      device: torch.device, meter: BudgetMeter, progress: bool,
                      log: Callable[[str], None]) -> StageSpend:
    """Masked-LM pretraining of a text teacher (as Ghosh et al. pretrain on Recipe1M), on a local
    text file (one procedure per line, steps separated by ' ; ') or the task's train-split step
    texts. Counted in the budget; capped by the tier's teacher-steps cap."""
    from xbench.tasks import Examples

    opts = p.teacher_options
    if getattr(opts, "corpus", None):
        path = Path(opts.corpus)
        if not path.is_file():
            raise ConfigError(f"teacher '{p.teacher.name}' option corpus: no file {path}")
        docs = [tuple(s.strip() for s in line.split(";") if s.strip())
                for line in path.read_text().splitlines() if line.strip()]
    else:
        docs = [tuple(d) for d in ctx.extras.get("corpus", [])]
    if not docs:
        raise ConfigError(f"teacher '{p.teacher.name}': masked-LM pretraining has no text "
                          f"(give --set teacher.corpus=FILE)")
    corpus = Examples({"text": docs, "index": torch.arange(len(docs))})
    steps = min(opts.mlm_steps, p.tier.teacher_steps)
    torch.manual_seed(derive_seed(seed, "train", "teacher-pretrain"))
    spend, _ = fit(stage="teacher-pretrain", modules={"teacher": teacher},
                   groups=[([q for q in teacher.parameters() if q.requires_grad], 1.0)],
                   step_fn=lambda batch: {"mlm": teacher.mlm_loss(batch["text"])}, data=corpus,
                   keys=("text",), tier=p.tier, max_steps=steps, seed=seed, device=device,
                   meter=meter, evaluate=None, main_metric="mlm", progress=progress,
                   culprit=f"teacher '{p.teacher.name}'")
    log(f"teacher '{p.teacher.name}': masked-LM pretraining, {spend.steps} steps on {len(docs)} texts")
    return spend


def _pretrain(p: Plan, task, dataset, student: nn.Module, seed: int, device: torch.device,
              meter: BudgetMeter, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The encoder-pretraining stage: the student's clip encoder learns to recognise single step
    clips of the train split (labels masked as for the student). Same data, seed and budget for
    every method, so every method starts distillation from the same encoder."""
    clips = task.pretrain_examples(dataset, getattr(p.dataset_options, "label_fraction", 1.0), seed)
    ce = p.registry.get("losses", "ce").factory(None, {})

    def step(batch):
        return {"ce": ce(student.pretrain_logits(batch["rgb"]), batch["label"], batch["label_mask"])}

    torch.manual_seed(derive_seed(seed, "train", "pretrain"))
    spend, _ = fit(stage="pretrain", modules={"student": student},
                   groups=[(list(student.parameters()), 1.0)], step_fn=step, data=clips,
                   keys=("rgb", "label", "label_mask"), tier=p.tier, max_steps=p.tier.pretrain_steps,
                   seed=seed, device=device, meter=meter, evaluate=None, main_metric="top1",
                   progress=progress, culprit=f"student '{p.task.student}'")
    log(f"pretrain: {spend.steps} steps on {len(clips)} clips ({spend.stopped_by})")
    return spend.as_dict()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def _state_fingerprint(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def same_state(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
