"""Planning: from a RunConfig and the registry to a ``Plan`` that holds every resolved spec, its
options and its owner, and the list of stages the run will go through.

``plan`` does every check that can fail cheaply (names, options, modalities, taps) before any data
is generated or any model built, so a bad command fails in milliseconds with one line. Nothing
after planning looks a name up in the registry."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any

from xbench.checkpoints import SETUP_KEYS, ModelSetup, model_setup, untrained_teacher
from xbench.config import OptimizerConfig, RunConfig, Tier, from_mapping, replace_options, to_plain
from xbench.context import Stage
from xbench.errors import ConfigError, IncompatibleError, PluginError, XbenchError
from xbench.regimes import Regime, load_regime
from xbench.registry import Registry
from xbench.specs import (
    ANNOTATIONS,
    DatasetSpec,
    LossSpec,
    LossTerm,
    MethodSpec,
    StudentSpec,
    TaskSpec,
    TeacherSpec,
)
from xbench.taps import is_module_tap, parse

#: a resolved loss term: its key in the loss dict, the term, its loss spec, its options
Term = tuple[str, LossTerm, LossSpec, Any]


@dataclass
class Plan:
    """Everything one run needs but the seed and the device, resolved once."""

    cfg: RunConfig
    tier: Tier
    method: MethodSpec
    task: TaskSpec
    dataset: DatasetSpec
    student: StudentSpec
    teacher: TeacherSpec | None
    method_options: Any
    teacher_options: Any
    task_options: Any
    dataset_options: Any
    #: the method's loss terms, resolved
    terms: list[Term]
    #: the teacher's objective (the task's teacher terms, or CE on the label)
    teacher_terms: list[Term] = field(default_factory=list)
    #: the task's own objective, for fine-tuning a self-supervised student
    finetune_terms: list[Term] = field(default_factory=list)
    #: the cross-entropy loss the harness's own stages (pretrain, linear probe) use
    ce: LossSpec | None = None
    #: modality -> the student built for an objective that needs an encoder of that modality
    partners: dict[str, StudentSpec] = field(default_factory=dict)
    #: kind -> name -> the plugin that registered it (for naming a culprit)
    owners: dict[str, dict[str, str]] = field(default_factory=dict)
    #: every loaded plugin: name -> {"dist", "version"} (recorded with each run)
    plugins: dict[str, dict[str, str]] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    #: the regime the run is in (its dataset options and tier changes are applied above)
    regime: Regime | None = None
    #: the content hash of the user's files a dataset reads (None: generated data, which its
    #: options determine): part of the config hash, so other files are another configuration
    data_fingerprint: str | None = None
    #: the harness's options of the student and the teacher (a local checkpoint, teacher steps)
    student_setup: ModelSetup = field(default_factory=ModelSetup)
    teacher_setup: ModelSetup = field(default_factory=ModelSetup)
    #: frozen-feature mode: the student whose ``feature`` tap encodes each clip in place of its
    #: frames (``student.encoder``), or None
    encoder: StudentSpec | None = None

    @property
    def dataset_name(self) -> str:
        return self.dataset.name

    def owner(self, kind: str, name: str) -> str:
        return self.owners[kind][name]

    @property
    def frozen_encoder(self) -> bool:
        """Frozen-feature mode: the student reads a frozen encoder's features of its clips."""
        return self.encoder is not None and not self.student_setup.encoder_trainable

    @property
    def uses_teacher_in_loss(self) -> bool:
        return bool(self.method.teacher_taps) or any(spec.reads == "teacher" for _, _, spec, _ in self.terms)

    @property
    def method_optimizer(self) -> OptimizerConfig:
        """The optimizer of the method's own stage: the tier's, with the run's shared knobs
        (``hparams``: lr_scale, weight_decay) applied."""
        opt, hp = self.tier.optimizer, self.cfg.hparams
        return dataclasses.replace(opt, lr=opt.lr * hp.get("lr_scale", 1.0),
                                   weight_decay=hp.get("weight_decay", opt.weight_decay))

    @property
    def teacher_optimizer(self) -> OptimizerConfig:
        """The teacher stage's optimizer: the tier's, shared by every method's teacher; only the
        ``teacher`` reference method, whose own stage it is, tunes it."""
        return self.method_optimizer if self.method.evaluates == "teacher" else self.tier.optimizer

    @property
    def label_fraction(self) -> float:
        """The share of train labels the student may use (all, for a dataset without the option)."""
        return getattr(self.dataset_options, "label_fraction", 1.0)

    @property
    def teacher_steps(self) -> int:
        """The steps the teacher trains here: the tier's, or fewer for a pretrained teacher."""
        steps = self.teacher_setup.train_steps
        return self.tier.teacher_steps if steps is None else steps

    @property
    def protocol(self) -> str | None:
        """The task's evaluation protocol (``finetune`` or ``linear``), where it has one."""
        return getattr(self.task_options, "protocol", None)

    def resolved(self) -> dict[str, Any]:
        """Everything that determines a run's result but the seed: hashed into config_hash."""
        return {
            "method": self.method.name, "task": self.task.name, "dataset": self.dataset_name,
            "tier": _tier_plain(self.tier), "teacher": self.teacher.name if self.teacher else None,
            "teacher_options": to_plain(self.teacher_options),
            "student": self.student.name, "method_options": to_plain(self.method_options),
            "task_options": to_plain(self.task_options), "dataset_options": to_plain(self.dataset_options),
            "loss_terms": [_term_plain(k, t, o) for k, t, _, o in self.terms],
            "lr_multipliers": dict(self.method.lr_multipliers),
            # written only where set: the config hashes of runs from before they existed hold
            **({"hparams": dict(sorted(self.cfg.hparams.items()))} if self.cfg.hparams else {}),
            **({"trial": self.cfg.trial} if self.cfg.trial is not None else {}),
            **({"train_splits": list(self.method.train_splits)} if self.method.train_splits != ("train",) else {}),
            **({"tuning": self.cfg.tuning} if self.cfg.tuning else {}),
            **({"regime": self.regime.plain()} if self.regime else {}),
            # an oracle control's privileged facts: its rows are labelled so in every table
            **({"privileged": list(self.method.privileged)} if self.method.privileged else {}),
            **({"data": self.data_fingerprint} if self.data_fingerprint else {}),
            # the checkpoints' hashes and the teacher's own steps, where set
            **({"models": models} if (models := self.models()) else {}),
        }

    def module_taps(self, side: str) -> tuple[str, ...]:
        """The ``module:`` taps (``xbench.taps``) the run's losses read of the student or the
        teacher: hooks are installed for them when the model is built."""
        if side == "student":
            names = [n for _, t, _, _ in [*self.terms, *self.finetune_terms]
                     for n in (t.student, (t.target or "")[8:] if (t.target or "").startswith("student:") else None)]
        else:
            names = [t.teacher for _, t, spec, _ in self.terms if spec.reads == "teacher"]
            names += [*self.method.teacher_taps, *(t.student for _, t, _, _ in self.teacher_terms)]
        return tuple(dict.fromkeys(n for n in names if is_module_tap(n)))

    def models(self) -> dict[str, Any]:
        return {who: plain for who, setup in (("student", self.student_setup), ("teacher", self.teacher_setup))
                if (plain := setup.plain())}


def _tier_plain(tier: Tier) -> dict[str, Any]:
    """The tier as a run's result depends on it: the search's settings (``trials``,
    ``tuning_seed``) are the sweep's, not the run's, and a tier without a time budget is written
    as before time budgets existed (earlier runs keep their config hashes)."""
    out = to_plain(tier)
    for key in ("trials", "tuning_seed"):
        out.pop(key, None)
    if not out.get("time_budget"):
        out.pop("time_budget", None)
    return out


def _term_plain(key: str, term: LossTerm, options: Any) -> dict[str, Any]:
    """A term as the record keeps it; a term without warm-up is written as before warm-ups
    existed, so the config hashes of earlier runs still match."""
    out = {"key": key, **to_plain(term), "options": to_plain(options)}
    if not term.warmup:
        del out["warmup"]
    return out


def plan(reg: Registry, cfg: RunConfig, tiers: dict[str, Tier]) -> Plan:
    method, task = reg.get("methods", cfg.method), reg.get("tasks", cfg.task)
    if method.tasks is not None and task.name not in method.tasks:
        raise IncompatibleError(f"method '{method.name}' does not support task '{task.name}' "
                                f"(it supports: {', '.join(method.tasks)})")
    lacking = [k for k in method.privileged if k not in task.privileged]
    if lacking:
        raise IncompatibleError(f"method '{method.name}' reads the privileged fact '{lacking[0]}', which task "
                                f"'{task.name}' does not provide" + (f" (it provides: {', '.join(task.privileged)})"
                                                                     if task.privileged else ""))
    dataset = _dataset(reg, cfg, task)
    if task.name in dataset.main_metrics:  # the paper protocol's metric selects and is reported first
        task = dataclasses.replace(task, main_metric=dataset.main_metrics[task.name])
    unknown = [k for k in method.privileged if k in ANNOTATIONS and k not in dataset.annotations]
    if unknown:  # real data does not know it (which clips' audio carries the action)
        raise IncompatibleError(f"method '{method.name}' reads the privileged fact '{unknown[0]}', which dataset "
                                f"'{dataset.name}' does not annotate")
    regime = load_regime(cfg.regime) if cfg.regime else None
    tier = _tier(cfg, tiers, regime)
    dataset_options = _dataset_options(dataset, tier, task, cfg, regime)
    task_options = from_mapping(task.options, cfg.task_options, f"task '{task.name}' options")
    method_options = from_mapping(method.options, cfg.method_options, f"method '{method.name}' options")
    student = reg.get("students", cfg.student or task.student)
    student_setup, unknown_student = model_setup("student", cfg.student_options, 0)
    if unknown_student:
        raise ConfigError(f"student options: unknown key '{min(unknown_student)}' "
                          f"(known: {', '.join(SETUP_KEYS['student'])})")
    teacher, teacher_options, teacher_setup = _teacher(reg, cfg, method, task, tier)
    _check_modalities(method, student, teacher, dataset)
    terms = _method_terms(reg, method, method_options, task, student, teacher)
    _check_objective(method, teacher, dataset, terms)
    if (teacher is not None and method.teacher == "default" and not cfg.teacher and method.evaluates == "student"
            and not method.teacher_taps and not any(spec.reads == "teacher" for _, _, spec, _ in terms)):
        # nothing reads the task's default teacher (a combination of label losses): none is trained
        teacher, teacher_options = None, None
    p = Plan(cfg, tier, method, task, dataset, student, teacher, method_options, teacher_options,
             task_options, dataset_options, terms)
    p.regime = regime
    p.student_setup, p.teacher_setup = student_setup, teacher_setup if teacher is not None else ModelSetup()
    p.encoder = _encoder(reg, student_setup, student, task)
    if teacher is not None and (why := untrained_teacher(p.teacher_setup, p.teacher_steps, tier.name, teacher.name)):
        raise ConfigError(why)
    if dataset.fingerprint is not None:
        p.data_fingerprint = dataset.fingerprint(dataset_options)
    _check_protocol(p)
    if teacher is not None:
        p.teacher_terms = _task_terms(reg, p, list(task.teacher_terms or (LossTerm("ce", target="label"),)))
    if p.protocol == "finetune" and not method.labels:
        p.finetune_terms = _task_terms(reg, p, list(task.terms))
    p.ce = reg.get("losses", "ce")
    p.partners = _partners(reg, method, student)
    p.owners = _owners(reg, p)
    p.plugins = {name: {"dist": i.dist, "version": i.version} for name, i in reg.plugins.items()}
    p.stages = stages_of(p)
    return p


def stages_of(p: Plan) -> tuple[Stage, ...]:
    """The stages a run of ``p`` goes through, in order."""
    out: list[Stage] = []
    if p.teacher is not None:
        if getattr(p.teacher_options, "mlm_steps", 0) > 0 and p.teacher_steps > 0:
            out.append(Stage.TEACHER_PRETRAIN)
        out.append(Stage.TEACHER)
    if p.method.evaluates == "student":
        # a frozen encoder is the clip encoder the pretraining stage would train
        if p.task.pretrain and p.tier.pretrain_steps > 0 and not p.frozen_encoder:
            out.append(Stage.PRETRAIN)
        if p.uses_teacher_in_loss:
            out.append(Stage.TEACHER_INFERENCE)
        out.append(Stage.STUDENT)
        if p.protocol == "finetune" and not p.method.labels:
            out.append(Stage.FINETUNE)
        if p.protocol == "linear":
            out.append(Stage.PROBE)
    out.append(Stage.TEST)
    return tuple(out)


def _encoder(reg: Registry, setup: ModelSetup, student: StudentSpec, task: TaskSpec) -> StudentSpec | None:
    """Frozen-feature mode's encoder (``student.encoder=NAME``), checked: the student reads features,
    and the encoder reads the student's one modality, has a ``feature`` tap and a sample shape (how
    many trailing axes make one clip)."""
    if setup.encoder is None:
        return None
    try:
        encoder = reg.get("students", setup.encoder)
    except XbenchError as exc:
        raise type(exc)(f"student.encoder: {exc}") from None
    if not student.takes_encoder:
        raise IncompatibleError(f"student.encoder: student '{student.name}' takes no encoder (a student that "
                                "does declares takes_encoder)")
    modality = task.student_modalities[0] if len(task.student_modalities) == 1 else None
    if modality is None or encoder.modalities != (modality,):
        raise IncompatibleError(f"student.encoder: '{encoder.name}' reads {', '.join(encoder.modalities)}; task "
                                f"'{task.name}' gives the student {', '.join(task.student_modalities)}")
    if "feature" not in encoder.taps or modality not in encoder.sample:
        lacks = "a 'feature' tap" if "feature" not in encoder.taps else f"a sample shape of its {modality} input"
        raise IncompatibleError(f"student.encoder: '{encoder.name}' lacks {lacks}, so it cannot encode clips")
    return encoder


def _dataset(reg: Registry, cfg: RunConfig, task: TaskSpec) -> DatasetSpec:
    dataset = reg.get("datasets", cfg.dataset or task.default_dataset)
    missing = [a for a in task.annotations if a not in dataset.annotations]
    if missing:
        raise IncompatibleError(f"task '{task.name}' needs annotation '{missing[0]}', which dataset "
                                f"'{dataset.name}' does not provide (it provides: {', '.join(dataset.annotations)})")
    return dataset


def _tier(cfg: RunConfig, tiers: dict[str, Tier], regime: Regime | None) -> Tier:
    if cfg.budget not in tiers:
        hint = difflib.get_close_matches(cfg.budget, list(tiers), n=1)
        raise ConfigError(f"unknown budget tier '{cfg.budget}'"
                          + (f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(tiers)}"))
    tier = tiers[cfg.budget]
    if regime is not None:  # the regime's tier keeps its name: the record names the regime
        tier = regime.tier(tier)
    if cfg.budget_options:
        if "name" in cfg.budget_options:
            raise ConfigError("--set budget.name: a tier's name cannot be overridden")
        tier = replace_options(tier, cfg.budget_options, f"budget tier '{tier.name}'")
        # a modified tier is a different budget: never compared with the published one
        tier = replace_options(tier, {"name": f"{tier.name}+custom"}, "budget")
    return tier


def _dataset_options(dataset: DatasetSpec, tier: Tier, task: TaskSpec, cfg: RunConfig,
                     regime: Regime | None = None) -> Any:
    """The dataset's options: the tier's dataset settings, then the task's defaults, then the
    regime's, then the user's (each only where the dataset has such an option)."""
    known = {f.name for f in fields(dataset.options)} if dataset.options else set()
    values = {k: v for k, v in tier.dataset.items() if k in known}
    values.update({k: v for k, v in task.dataset_defaults.items() if k in known})
    if regime is not None:
        unknown = sorted(set(regime.dataset_options) - known)
        if unknown:
            raise IncompatibleError(f"regime '{regime.name}' sets dataset option '{unknown[0]}', which dataset "
                                    f"'{dataset.name}' does not have")
        clash = sorted(set(regime.dataset_options) & set(cfg.dataset_options))
        if clash:  # the record would name a regime whose condition the run does not have
            raise ConfigError(f"dataset.{clash[0]} is set by regime '{regime.name}'; run without the "
                              "regime, or in another one, to change it")
        values.update(regime.dataset_options)
    values.update(cfg.dataset_options)
    return from_mapping(dataset.options, values, f"dataset '{dataset.name}' options")


def _teacher(reg: Registry, cfg: RunConfig, method: MethodSpec, task: TaskSpec,
             tier: Tier) -> tuple[TeacherSpec | None, Any, ModelSetup]:
    teacher = None
    if cfg.teacher and method.teacher is None:
        raise IncompatibleError(f"--teacher {cfg.teacher}: method '{method.name}' uses no teacher")
    if method.teacher is not None:
        chosen = cfg.teacher or (reg.default_teacher(task) if method.teacher == "default" else method.teacher)
        teacher = reg.get("teachers", chosen)
    if teacher is None:
        if cfg.teacher_options:
            raise ConfigError(f"teacher options given, but method '{method.name}' uses no teacher")
        return None, None, ModelSetup()
    setup, rest = model_setup("teacher", cfg.teacher_options, tier.teacher_steps)
    return teacher, from_mapping(teacher.options, rest, f"teacher '{teacher.name}' options"), setup


def _check_modalities(method: MethodSpec, student: StudentSpec, teacher: TeacherSpec | None,
                      dataset: DatasetSpec) -> None:
    for mod in student.modalities + (teacher.modalities if teacher else ()):
        if mod not in dataset.modalities:
            who = f"teacher '{teacher.name}'" if teacher and mod in teacher.modalities else "the student"
            raise IncompatibleError(f"method '{method.name}' needs modality '{mod}' ({who}), which "
                                    f"dataset '{dataset.name}' does not provide")


def _raw_terms(reg: Registry, method: MethodSpec, options: Any, task: TaskSpec) -> list[LossTerm]:
    owner = reg.entry("methods", method.name).plugin
    try:
        wants_task = len(inspect.signature(method.terms).parameters) >= 2
        raw = list(method.terms(options, task) if wants_task else method.terms(options))
    except Exception as exc:
        raise PluginError(f"plugin '{owner}': method '{method.name}' failed to list its loss "
                          f"terms: {type(exc).__name__}: {exc}") from exc
    if not raw and method.evaluates == "student" and method.objective is None:
        raise PluginError(f"plugin '{owner}': method '{method.name}' has no loss terms")
    expanded: list[LossTerm] = []
    for term in raw:
        if not isinstance(term, LossTerm):
            raise PluginError(f"plugin '{owner}': method '{method.name}' returned {term!r}, not a LossTerm")
        if term.loss == "task":  # the task's supervised objective, scaled as a whole
            expanded += [dataclasses.replace(t, weight=t.weight * term.weight) for t in task.terms]
        else:
            expanded.append(term)
    return expanded


def _method_terms(reg: Registry, method: MethodSpec, options: Any, task: TaskSpec, student: StudentSpec,
                  teacher: TeacherSpec | None) -> list[Term]:
    terms: list[Term] = []
    for term in _raw_terms(reg, method, options, task):
        try:
            spec = reg.get("losses", term.loss)
        except XbenchError as exc:
            raise IncompatibleError(f"method '{method.name}': {exc}") from exc
        term = resolve_term(term, spec, task)
        _check_term(method, term, spec, task, student, teacher)
        opts = from_mapping(spec.options, dict(term.options), f"method '{method.name}': loss '{term.loss}'")
        key, n = term.loss, 2
        while any(k == key for k, *_ in terms):
            key, n = f"{term.loss}#{n}", n + 1
        terms.append((key, term, spec, opts))
    for name in method.lr_multipliers:
        # a name that is no loss may name a child module of the objective (checked when built)
        if not any(t.loss == name for _, t, _, _ in terms) and method.objective is None:
            raise PluginError(f"plugin '{reg.entry('methods', method.name).plugin}': method "
                              f"'{method.name}' sets an lr multiplier for '{name}', which is none of its losses")
    return terms


def _check_term(method: MethodSpec, term: LossTerm, spec: LossSpec, task: TaskSpec, student: StudentSpec,
                teacher: TeacherSpec | None) -> None:
    """A loss term reads only taps and targets that exist."""
    where = f"method '{method.name}': loss '{term.loss}'"

    def student_tap(tap: str) -> None:
        if is_module_tap(tap):  # any layer, through a hook: its path is checked when the model is built
            parse(tap)
            return
        if tap not in student.taps:
            raise IncompatibleError(f"{where} reads student tap '{tap}', which student '{student.name}' "
                                    f"does not have (taps: {', '.join(student.taps)})")

    def target(name: str | None) -> None:
        if name not in task.targets + method.privileged:
            raise IncompatibleError(f"{where} reads target '{name}', which task '{task.name}' does not provide")

    student_tap(term.student)
    if spec.reads == "teacher":
        if teacher is None:
            raise IncompatibleError(f"{where} needs a teacher but the method declares none")
        if is_module_tap(term.teacher):
            parse(term.teacher)
        elif term.teacher not in teacher.taps:
            raise IncompatibleError(f"{where} reads teacher tap '{term.teacher}', which teacher "
                                    f"'{teacher.name}' does not have (taps: {', '.join(teacher.taps)})")
        if spec.target:
            target(term.target)
    elif (term.target or "").startswith("student:"):
        student_tap(term.target[8:])
    else:
        target(term.target)


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


def _task_terms(reg: Registry, p: Plan, raw: list[LossTerm]) -> list[Term]:
    """A task's own loss terms (the teacher's objective, fine-tuning), keyed by position."""
    out = []
    for n, term in enumerate(raw):
        spec = reg.get("losses", term.loss)
        term = resolve_term(term, spec, p.task)
        opts = from_mapping(spec.options, dict(term.options), f"task '{p.task.name}': loss '{term.loss}'")
        out.append((f"{term.loss}#{n}" if n else term.loss, term, spec, opts))
    return out


def _check_objective(method: MethodSpec, teacher: TeacherSpec | None, dataset: DatasetSpec,
                     terms: list[Term]) -> None:
    for mod in method.modalities:
        if mod not in dataset.modalities:
            raise IncompatibleError(f"method '{method.name}' needs modality '{mod}' at train time, "
                                    f"which dataset '{dataset.name}' does not provide")
    if method.teacher_taps:
        if teacher is None:
            raise IncompatibleError(f"method '{method.name}': its objective reads teacher taps but "
                                    f"the method declares no teacher")
        missing = [t for t in method.teacher_taps if t not in teacher.taps and not is_module_tap(t)]
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


def _check_protocol(p: Plan) -> None:
    if p.protocol == "linear" and p.tier.probe_steps <= 0:
        raise ConfigError(f"task '{p.task.name}' protocol 'linear' needs probe_steps > 0 in budget "
                          f"tier '{p.tier.name}'")
    if p.protocol == "finetune" and not p.method.labels and p.tier.finetune_steps <= 0:
        raise ConfigError(f"self-supervised method '{p.method.name}' with protocol 'finetune' needs "
                          f"finetune_steps > 0 in budget tier '{p.tier.name}'")


def _partners(reg: Registry, method: MethodSpec, student: StudentSpec) -> dict[str, StudentSpec]:
    """For each train-time modality of a method with an objective that the student does not read:
    the student's named partner for it, else the first registered student that reads exactly
    that modality and has every tap the student has (so the objective can treat both encoders
    alike)."""
    out = {}
    for mod in method.modalities if method.objective is not None else ():
        if mod in student.modalities:
            continue
        if mod in student.partners:  # the student's own choice (a ViT's audio twin is a ViT)
            out[mod] = reg.get("students", student.partners[mod])
            continue
        fits = [s for s in (reg.get("students", n) for n in reg.names("students"))
                if s.modalities == (mod,) and set(student.taps) <= set(s.taps)]
        if not fits:
            raise IncompatibleError(f"method '{method.name}' needs an encoder of modality '{mod}' beside "
                                    f"student '{student.name}', and no registered student reads '{mod}' "
                                    f"with the taps {', '.join(student.taps)}")
        out[mod] = fits[0]
    return out


def _owners(reg: Registry, p: Plan) -> dict[str, dict[str, str]]:
    """Who registered each part the plan uses."""
    out: dict[str, dict[str, str]] = {
        "methods": {p.method.name: reg.entry("methods", p.method.name).plugin},
        "tasks": {p.task.name: reg.entry("tasks", p.task.name).plugin},
        "datasets": {p.dataset.name: reg.entry("datasets", p.dataset.name).plugin},
        "students": {s.name: reg.entry("students", s.name).plugin
                     for s in (p.student, *p.partners.values(), *([p.encoder] if p.encoder else []))},
        "teachers": {p.teacher.name: reg.entry("teachers", p.teacher.name).plugin} if p.teacher else {},
        "losses": {},
    }
    for _, _, spec, _ in [*p.terms, *p.teacher_terms, *p.finetune_terms]:
        out["losses"][spec.name] = reg.entry("losses", spec.name).plugin
    return out
